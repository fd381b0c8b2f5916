/**
 * @fileoverview The kernel language's builtins: one registry entry per name, each with its
 * arity, a usage line for errors, and how it folds (constexpr arguments) or builds IR.
 */
import type * as acorn from 'acorn';
import type { DType, ReduceFn, Shape, UnaryFn, Value } from '../ir/ir.js';
import { EXP2_FTZ_BELOW, EXP_FTZ_BELOW } from '../ir/ir.js';
import { erf64, gelu64, geluGrad64, geluTanh64, geluTanhGrad64 } from '../util/erf.js';
import type { Specializer } from './specialize.js';
import { broadcastShapes, describe, POISON, sameShape, type Val } from './values.js';

interface Builtin {
  readonly min: number;
  readonly max: number;
  readonly usage: string;
  readonly fn: (sp: Specializer, node: acorn.CallExpression, args: Val[]) => Val;
}

export const BUILTINS = new Map<string, Builtin>();
const def = (name: string, min: number, max: number, usage: string, fn: Builtin['fn']): void => {
  if (BUILTINS.has(name)) throw new Error(`builtin '${name}' defined twice`);
  BUILTINS.set(name, { min, max, usage, fn });
};

const ir = (v: Value): Val => ({ kind: 'ir', v });
const argNode = (node: acorn.CallExpression, i: number): acorn.Node => node.arguments[i] ?? node;

function ceInt(sp: Specializer, node: acorn.Node, v: Val, what: string): number {
  const n = sp.asCeNumber(node, v, what);
  if (!Number.isInteger(n)) sp.b.fail(node, 'E_CONSTEXPR', `${what} must be an integer, got ${n}`);
  return n;
}

function shapeArg(sp: Specializer, node: acorn.Node, v: Val): number[] {
  if (v.kind === 'shape') {
    for (const d of v.v) if (!Number.isInteger(d)) sp.b.fail(node, 'E_CONSTEXPR', `shape dims must be integers, got [${v.v.join(', ')}]`);
    return [...v.v];
  }
  if (v.kind === 'ce' && typeof v.v === 'number') return [ceInt(sp, node, v, 'a shape')];
  return sp.b.fail(node, 'E_CONSTEXPR', `a shape must be a constexpr like [BM, BN] or BLOCK, got ${describe(v)}`);
}

function dtypeArg(sp: Specializer, node: acorn.Node, v: Val | undefined): DType {
  if (v === undefined) return 'f32';
  if (v.kind === 'ce' && (v.v === 'f32' || v.v === 'i32' || v.v === 'bool')) return v.v;
  return sp.b.fail(node, 'E_CONSTEXPR', `dtype must be 'f32', 'i32' or 'bool', got ${describe(v)}`);
}

/** A tile argument (scalars allowed where `scalarOk`). */
function tileArg(sp: Specializer, node: acorn.Node, v: Val, what: string, scalarOk = false): Value {
  const x = sp.toIR(v, node);
  if (!scalarOk && x.shape.length === 0) sp.b.fail(node, 'E_SHAPE', `${what} must be a tile, got ${describe(v)}`);
  return x;
}

function axisArg(sp: Specializer, node: acorn.Node, v: Val, rank: number): number {
  const a = ceInt(sp, node, v, 'axis');
  const ax = a < 0 ? a + rank : a;
  if (ax < 0 || ax >= rank) sp.b.fail(node, 'E_SHAPE', `axis ${a} is out of range for a tile of rank ${rank}`);
  return ax;
}

// ---- grid ---------------------------------------------------------------------------------

for (const [name, op] of [['programId', 'programId'], ['numPrograms', 'numPrograms']] as const) {
  def(name, 1, 1, `${name}(axis) with axis 0, 1 or 2`, (sp, node, [a]) => {
    const axis = ceInt(sp, argNode(node, 0), a!, 'axis');
    if (axis < 0 || axis > 2) sp.b.fail(argNode(node, 0), 'E_CONSTEXPR', `axis must be 0, 1 or 2, got ${axis}`);
    return ir(sp.b.emit(node, { op, axis: axis as 0 | 1 | 2, dtype: 'i32', shape: [] }));
  });
}

// ---- tile constructors --------------------------------------------------------------------

def('arange', 1, 2, 'arange(n) or arange(start, end), constexpr integers', (sp, node, args) => {
  const [start, end] = args.length === 1 ? [0, ceInt(sp, argNode(node, 0), args[0]!, 'arange bounds')] : [ceInt(sp, argNode(node, 0), args[0]!, 'arange bounds'), ceInt(sp, argNode(node, 1), args[1]!, 'arange bounds')];
  const n = end - start;
  if (n < 1 || (n & (n - 1)) !== 0) sp.b.fail(node, 'E_SHAPE', `arange length must be a power of two, got ${n}`);
  sp.b.checkShape(node, [n]);
  return ir(sp.b.emit(node, { op: 'arange', start, dtype: 'i32', shape: [n] }));
});

def('zeros', 1, 2, "zeros(shape, dtype = 'f32')", (sp, node, [s, d]) => fill(sp, node, s!, { kind: 'ce', v: 0 }, d));
def('full', 2, 3, "full(shape, value, dtype = 'f32')", (sp, node, [s, v, d]) => fill(sp, node, s!, v!, d));

function fill(sp: Specializer, node: acorn.CallExpression, s: Val, v: Val, d: Val | undefined): Val {
  const shape = shapeArg(sp, argNode(node, 0), s);
  sp.b.checkShape(node, shape);
  const dtype = dtypeArg(sp, node, d);
  let x = sp.toIR(v, argNode(node, 1), dtype);
  if (x.shape.length !== 0) sp.b.fail(argNode(node, 1), 'E_SHAPE', `the fill value must be a scalar, got ${describe(v)}`);
  x = sp.b.cast(node, x, dtype);
  return ir(sp.b.broadcast(node, x, shape));
}

def('expandDims', 2, 2, 'expandDims(x, axis)', (sp, node, [x, a]) => {
  const t = tileArg(sp, argNode(node, 0), x!, 'expandDims input', true);
  const axis = axisArg(sp, argNode(node, 1), a!, t.shape.length + 1);
  const shape = [...t.shape];
  shape.splice(axis, 0, 1);
  return ir(sp.b.reshape(node, t, shape));
});

def('reshape', 2, 2, 'reshape(x, shape)', (sp, node, [x, s]) => {
  const t = tileArg(sp, argNode(node, 0), x!, 'reshape input', true);
  return ir(sp.b.reshape(node, t, shapeArg(sp, argNode(node, 1), s!)));
});

def('broadcastTo', 2, 2, 'broadcastTo(x, shape)', (sp, node, [x, s]) => {
  const t = sp.toIR(x!, argNode(node, 0));
  const shape = shapeArg(sp, argNode(node, 1), s!);
  sp.b.checkShape(node, shape);
  return ir(sp.b.broadcast(node, t, shape));
});

def('trans', 1, 1, 'trans(x) of a 2-D tile', (sp, node, [x]) => {
  const t = tileArg(sp, argNode(node, 0), x!, 'trans input');
  if (t.shape.length !== 2) sp.b.fail(argNode(node, 0), 'E_SHAPE', `trans needs a 2-D tile, got [${t.shape.join(', ')}]`);
  return ir(sp.b.emit(node, { op: 'trans', src: t, dtype: t.dtype, shape: [t.shape[1]!, t.shape[0]!] }));
});

// ---- memory -------------------------------------------------------------------------------

function tensorArg(sp: Specializer, node: acorn.Node, v: Val, what: string): { index: number; dtype: DType } {
  if (v.kind !== 'tensor') sp.b.fail(node, 'E_TYPE', `${what} takes a ptr parameter first, got ${describe(v)}`);
  const p = sp.k.params.filter((q) => q.kind !== 'constexpr')[v.index];
  const storage = p ? sp.input.tensorDtypes[p.name] : undefined;
  return { index: v.index, dtype: storage === 'i32' ? 'i32' : 'f32' };
}

function offsetsArg(sp: Specializer, node: acorn.Node, v: Val): Value {
  const o = sp.toIR(v, node, 'i32');
  if (o.dtype !== 'i32') sp.b.fail(node, 'E_TYPE', `offsets must be i32, got ${describe(v)} (cast it with cast(x, 'i32'))`);
  return o;
}

function maskArg(sp: Specializer, node: acorn.Node, v: Val): Value | undefined {
  if (v.kind === 'ce' && v.v === true) return undefined;
  const m = sp.toIR(v, node, 'bool');
  if (m.dtype !== 'bool') sp.b.fail(node, 'E_TYPE', `a mask must be bool, got ${describe(v)} (compare it, e.g. i < n)`);
  return m;
}

/** `v` broadcast to the offsets' shape, which memory ops never widen (E_SHAPE otherwise). */
function toShape(sp: Specializer, node: acorn.Node, v: Value | undefined, shape: Shape, what: string): Value | undefined {
  if (!v) return undefined;
  const common = broadcastShapes(v.shape, shape);
  if (!common || !sameShape(common, shape)) {
    sp.b.fail(node, 'E_SHAPE', `${what} has shape [${v.shape.join(', ')}], which does not broadcast to the offsets' shape [${shape.join(', ')}]`);
  }
  return sp.b.broadcast(node, v, shape);
}

def('load', 2, 4, 'load(ptr, offsets, mask?, other?)', (sp, node, args) => {
  const t = tensorArg(sp, argNode(node, 0), args[0]!, 'load');
  const offs = offsetsArg(sp, argNode(node, 1), args[1]!);
  const mask = args[2] ? toShape(sp, argNode(node, 2), maskArg(sp, argNode(node, 2), args[2]), offs.shape, 'the mask') : undefined;
  let other: Value | undefined;
  // With no mask (or a constant true one) every lane is read, so `other` is never used.
  if (args[3] && mask) {
    other = sp.b.cast(node, sp.toIR(args[3], argNode(node, 3), t.dtype), t.dtype);
    other = toShape(sp, argNode(node, 3), other, offs.shape, '`other`');
  }
  return ir(sp.b.emit(node, { op: 'load', ptr: t.index, offsets: offs, ...(mask ? { mask } : {}), ...(other ? { other } : {}), dtype: t.dtype, shape: offs.shape }));
});

def('store', 3, 4, 'store(ptr, offsets, value, mask?)', (sp, node, args) => {
  const t = tensorArg(sp, argNode(node, 0), args[0]!, 'store');
  const offsets = offsetsArg(sp, argNode(node, 1), args[1]!);
  let value = sp.toIR(args[2]!, argNode(node, 2), t.dtype);
  if (value.dtype !== t.dtype) value = sp.b.cast(node, value, t.dtype);
  value = toShape(sp, argNode(node, 2), value, offsets.shape, 'the stored value')!;
  const mask = args[3] ? toShape(sp, argNode(node, 3), maskArg(sp, argNode(node, 3), args[3]), offsets.shape, 'the mask') : undefined;
  sp.b.block.push({ op: 'store', loc: { line: node.loc!.start.line, column: node.loc!.start.column + 1 }, ptr: t.index, offsets, value, ...(mask ? { mask } : {}) });
  return POISON;
});

// ---- matrix, reductions -------------------------------------------------------------------

def('dot', 2, 3, 'dot(a [M,K], b [K,N], acc? [M,N])', (sp, node, args) => {
  const a = sp.b.cast(node, tileArg(sp, argNode(node, 0), args[0]!, 'dot operand a'), 'f32');
  const b = sp.b.cast(node, tileArg(sp, argNode(node, 1), args[1]!, 'dot operand b'), 'f32');
  if (a.shape.length !== 2 || b.shape.length !== 2) sp.b.fail(node, 'E_SHAPE', `dot needs 2-D tiles, got [${a.shape.join(', ')}] and [${b.shape.join(', ')}]`);
  if (a.shape[1] !== b.shape[0]) sp.b.fail(node, 'E_SHAPE', `dot: inner dims differ: [${a.shape.join(', ')}] x [${b.shape.join(', ')}]`);
  const shape: Shape = [a.shape[0]!, b.shape[1]!];
  let acc: Value | undefined;
  if (args[2]) {
    acc = sp.b.cast(node, sp.toIR(args[2], argNode(node, 2), 'f32'), 'f32');
    if (acc.shape.length === 2 && !sameShape(acc.shape, shape)) sp.b.fail(argNode(node, 2), 'E_SHAPE', `dot: acc is [${acc.shape.join(', ')}], the product is [${shape.join(', ')}]`);
    acc = sp.b.broadcast(node, acc, shape);
  }
  return ir(sp.b.emit(node, { op: 'dot', a, b, ...(acc ? { acc } : {}), dtype: 'f32', shape }));
});

def('sum', 1, 3, 'sum(x, axis?, keepdims = false)', (sp, node, args) => reduce(sp, node, 'sum', args));
for (const fn of ['max', 'min'] as const) {
  // propagateNan = false: NaN elements are skipped and a zero may come out with either sign
  // (Triton's PropagateNan.NONE); cheaper when a NaN reaches the result another way anyway.
  def(fn, 1, 4, `${fn}(x, axis?, keepdims = false, propagateNan = true)`, (sp, node, args) => reduce(sp, node, fn, args));
}

function reduce(sp: Specializer, node: acorn.CallExpression, fn: ReduceFn, args: Val[]): Val {
  let x = tileArg(sp, argNode(node, 0), args[0]!, `${fn} input`, true);
  if (x.shape.length === 0) return ir(x);
  if (x.dtype === 'bool') x = sp.b.cast(node, x, 'i32');
  const keep = args[2] ? args[2].kind === 'ce' && args[2].v === true : false;
  if (args[2] && !(args[2].kind === 'ce' && typeof args[2].v === 'boolean')) sp.b.fail(argNode(node, 2), 'E_CONSTEXPR', 'keepdims must be a constexpr boolean');
  if (args[3] && !(args[3].kind === 'ce' && typeof args[3].v === 'boolean')) sp.b.fail(argNode(node, 3), 'E_CONSTEXPR', 'propagateNan must be a constexpr boolean');
  const skipNan = args[3] !== undefined && args[3].kind === 'ce' && args[3].v === false && x.dtype === 'f32';
  const rank = x.shape.length;
  const axes = args[1] && !(args[1].kind === 'ce' && args[1].v === undefined) ? [axisArg(sp, argNode(node, 1), args[1], rank)] : [...Array(rank).keys()].reverse();
  let y = x;
  for (const axis of axes) {
    const shape = y.shape.filter((_, i) => i !== axis);
    y = sp.b.emit(node, { op: 'reduce', fn, src: y, axis, dtype: y.dtype, shape, ...(skipNan ? { skipNan } : {}) });
  }
  if (keep) {
    const shape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
    y = sp.b.reshape(node, y, shape);
  }
  return ir(y);
}

// ---- elementwise --------------------------------------------------------------------------

def('where', 3, 3, 'where(cond, a, b)', (sp, node, [c, a, b]) => sp.where(node, c!, a!, b!));

for (const [name, op] of [['minimum', 'min'], ['maximum', 'max']] as const) {
  def(name, 2, 2, `${name}(a, b)`, (sp, node, [a, b]) => {
    if (a!.kind === 'ce' && b!.kind === 'ce' && typeof a!.v === 'number' && typeof b!.v === 'number') {
      return { kind: 'ce', v: (op === 'min' ? Math.min : Math.max)(a!.v, b!.v), float: a!.float || b!.float };
    }
    const [x, y] = sp.operands(node, [a!, b!]);
    if (x!.dtype === 'bool') sp.b.fail(node, 'E_TYPE', `${name} does not apply to bool values`);
    return ir(sp.b.binary(node, op, x!, y!, x!.dtype));
  });
}

const MATH: Record<string, [UnaryFn, (x: number) => number]> = {
  exp: ['exp', Math.exp], exp2: ['exp2', (x) => 2 ** x], log: ['log', Math.log], log2: ['log2', Math.log2],
  tanh: ['tanh', Math.tanh], sigmoid: ['sigmoid', (x) => 1 / (1 + Math.exp(-x))], sqrt: ['sqrt', Math.sqrt],
  rsqrt: ['rsqrt', (x) => 1 / Math.sqrt(x)], abs: ['abs', Math.abs], floor: ['floor', Math.floor], ceil: ['ceil', Math.ceil],
  erf: ['erf', erf64], gelu: ['gelu', gelu64], geluTanh: ['geluTanh', geluTanh64],
  geluGrad: ['geluGrad', geluGrad64], geluTanhGrad: ['geluTanhGrad', geluTanhGrad64],
};
/** The math functions with a flushing form: its IR function and the argument below which it gives +0. */
const FLUSHING: Record<string, [UnaryFn, number]> = { exp: ['expFtz', EXP_FTZ_BELOW], exp2: ['exp2Ftz', EXP2_FTZ_BELOW] };
for (const [name, [fn0, fold0]] of Object.entries(MATH)) {
  // exp/exp2(x, flushTiny = false): flushTiny (a constexpr) gives +0 for results under 1.7e-38, for a cheaper scale.
  const flush = FLUSHING[name];
  def(name, 1, flush ? 2 : 1, flush ? `${name}(x, flushTiny = false)` : `${name}(x)`, (sp, node, [a, flag]) => {
    if (flag && !(flag.kind === 'ce' && typeof flag.v === 'boolean')) sp.b.fail(argNode(node, 1), 'E_CONSTEXPR', 'flushTiny must be a constexpr boolean');
    const ftz = flush !== undefined && flag !== undefined && flag.kind === 'ce' && flag.v === true;
    const fn: UnaryFn = ftz ? flush[0] : fn0;
    const fold = ftz ? (x: number): number => (x < flush[1] ? 0 : fold0(x)) : fold0;
    // abs keeps an integer an integer, folded or not (abs(k) of an i32 k is i32 too), and wraps
    // as i32 does at run time: abs(-2^31) is -2^31.
    if (a!.kind === 'ce' && typeof a!.v === 'number') {
      const v = a!.v;
      const i32 = fn === 'abs' && a!.float !== true && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
      return { kind: 'ce', v: i32 ? Math.abs(v) | 0 : fold(v), float: fn === 'abs' ? a!.float === true : true };
    }
    let x = sp.toIR(a!, argNode(node, 0), 'f32');
    if (x.dtype === 'bool') sp.b.fail(argNode(node, 0), 'E_TYPE', `${name} does not apply to bool values`);
    if (x.dtype === 'i32') {
      if (fn === 'abs') return ir(sp.b.unary(node, 'abs', x));
      x = sp.b.cast(node, x, 'f32');
    }
    return ir(sp.b.unary(node, fn, x));
  });
}

def('cast', 2, 2, "cast(x, 'f32' | 'i32' | 'bool')", (sp, node, [x, d]) => {
  const dtype = dtypeArg(sp, argNode(node, 1), d);
  if (x!.kind === 'ce' && (typeof x!.v === 'number' || typeof x!.v === 'boolean')) {
    const n = Number(x!.v);
    if (dtype === 'bool') return { kind: 'ce', v: n !== 0 };
    if (dtype === 'i32') return { kind: 'ce', v: Number.isNaN(n) ? 0 : Math.max(-2147483648, Math.min(2147483647, Math.trunc(n))) };
    return { kind: 'ce', v: n, float: true };
  }
  return ir(sp.b.cast(node, sp.toIR(x!, argNode(node, 0), dtype), dtype));
});

def('rand', 2, 2, 'rand(seed, offsets): uniform f32 in [0, 1)', (sp, node, [s, o]) => {
  const seed = sp.toIR(s!, argNode(node, 0), 'i32');
  if (seed.dtype !== 'i32' || seed.shape.length !== 0) sp.b.fail(argNode(node, 0), 'E_TYPE', `rand's seed must be an i32 scalar, got ${describe(s!)}`);
  const offsets = offsetsArg(sp, argNode(node, 1), o!);
  return ir(sp.b.emit(node, { op: 'rand', seed, offsets, dtype: 'f32', shape: offsets.shape }));
});

def('cdiv', 2, 2, 'cdiv(a, b): ceil(a / b) for integers', (sp, node, [a, b]) => {
  if (a!.kind === 'ce' && b!.kind === 'ce') return { kind: 'ce', v: Math.ceil(sp.asCeNumber(node, a!, 'cdiv arguments') / sp.asCeNumber(node, b!, 'cdiv arguments')) };
  const [x, y] = intOperands(sp, node, 'cdiv', a!, b!);
  // The truncated quotient, plus one where the exact quotient is positive and not whole: the
  // remainder is nonzero with the divisor's sign. Right for any signs, and (a + b - 1) / b's
  // overflow near 2^31 cannot happen.
  const c = (v: number): Value => sp.b.broadcast(node, sp.b.constant(node, v, 'i32'), x!.shape);
  const q = sp.b.binary(node, 'div', x!, y!, 'i32');
  const r = sp.b.binary(node, 'rem', x!, y!, 'i32');
  const bool = (fn: 'lt' | 'gt', u: Value): Value => sp.b.binary(node, fn, u, c(0), 'bool');
  const both = (fn: 'lt' | 'gt'): Value => sp.b.binary(node, 'and', bool(fn, r), bool(fn, y!), 'bool');
  const up = sp.b.binary(node, 'or', both('gt'), both('lt'), 'bool');
  const step = sp.b.emit(node, { op: 'where', cond: up, a: c(1), b: c(0), dtype: 'i32', shape: x!.shape });
  return ir(sp.b.binary(node, 'add', q, step, 'i32'));
});

def('idiv', 2, 2, 'idiv(a, b): integer division truncating toward zero', (sp, node, [a, b]) => {
  if (a!.kind === 'ce' && b!.kind === 'ce') return { kind: 'ce', v: Math.trunc(sp.asCeNumber(node, a!, 'idiv arguments') / sp.asCeNumber(node, b!, 'idiv arguments')) };
  const [x, y] = intOperands(sp, node, 'idiv', a!, b!);
  return ir(sp.b.binary(node, 'div', x!, y!, 'i32'));
});

/** Integer operands of cdiv/idiv (f32 values are an error: the rounding would be silent). */
function intOperands(sp: Specializer, node: acorn.CallExpression, name: string, a: Val, b: Val): Value[] {
  for (const v of [a, b]) {
    const bad = (v.kind === 'ir' && v.v.dtype === 'f32') || (v.kind === 'ce' && (typeof v.v !== 'number' || !Number.isInteger(v.v)));
    if (bad) sp.b.fail(node, 'E_TYPE', `${name} takes integers, got ${describe(v)} (cast it with cast(x, 'i32'))`);
  }
  return sp.operands(node, [a, b], 'i32');
}

/** Every name a kernel may call (plus staticRange, valid only in for...of). */
export const BUILTIN_NAMES: readonly string[] = [...BUILTINS.keys(), 'staticRange'];
