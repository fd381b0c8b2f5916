/**
 * @fileoverview IR invariants (see ir.ts). A failure here is a compiler bug, not a user error,
 * so it throws a plain Error naming the broken rule and the node.
 */
import { isValue, numel, MAX_TILE_ELEMENTS, type DType, type Instr, type KernelIR, type Shape, type Value } from './ir.js';

/** The operands a value reads. */
export function operandsOf(v: Value): Value[] {
  switch (v.op) {
    case 'broadcast': case 'reshape': case 'trans': case 'unary': case 'cast': case 'reduce': return [v.src];
    case 'binary': return [v.a, v.b];
    case 'where': return [v.cond, v.a, v.b];
    case 'load': return [v.offsets, ...(v.mask ? [v.mask] : []), ...(v.other ? [v.other] : [])];
    case 'dot': return [v.a, v.b, ...(v.acc ? [v.acc] : [])];
    case 'rand': return [v.seed, v.offsets];
    default: return [];
  }
}

const CMP = new Set(['lt', 'le', 'gt', 'ge', 'eq', 'ne']);
const LOGIC = new Set(['and', 'or', 'xor']);
const SHIFT = new Set(['shl', 'shr', 'shru']);
const FLOAT_ONLY = new Set(['sqrt', 'rsqrt', 'exp', 'expFtz', 'exp2', 'exp2Ftz', 'log', 'log2', 'tanh', 'sigmoid', 'erf', 'gelu', 'geluTanh', 'geluGrad', 'geluTanhGrad', 'floor', 'ceil']);

const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const text = (s: Shape): string => `[${s.join(', ')}]`;

/** Throws if `ir` breaks an invariant of ir.ts: dominance, shapes and dtypes, unique ids. */
export function verify(ir: KernelIR): void {
  const fail = (msg: string, at?: { readonly loc: { line: number; column: number } }): never => {
    throw new Error(`IR verification failed in '${ir.name}'${at ? ` at ${at.loc.line}:${at.loc.column}` : ''}: ${msg}`);
  };
  const ids = new Set<number>();
  const name = (v: Value): string => `%${v.id} (${v.op} ${v.dtype}${text(v.shape)})`;

  /** Types of values produced by their parent (iv, carried, result) are checked there. */
  const define = (v: Value): void => {
    if (!Number.isInteger(v.id) || v.id < 0 || v.id >= ir.numValues) fail(`${name(v)} has an id outside 0..numValues-1`, v);
    if (ids.has(v.id)) fail(`value id ${v.id} defined twice`, v);
    ids.add(v.id);
    if (!v.loc || v.loc.line < 0 || v.loc.column < 0) fail(`${name(v)} has no location`);
    if (v.shape.length > 2) fail(`${name(v)} has rank ${v.shape.length} > 2`, v);
    for (const d of v.shape) if (!Number.isInteger(d) || d < 1 || (d & (d - 1)) !== 0) fail(`${name(v)}: dim ${d} is not a power of two`, v);
    if (numel(v.shape) > MAX_TILE_ELEMENTS) fail(`${name(v)} has more than ${MAX_TILE_ELEMENTS} elements`, v);
  };

  const tensorDtype = (ptr: number, at: { readonly loc: { line: number; column: number } }): DType => {
    const p = ir.params[ptr];
    if (p?.kind !== 'tensor') return fail(`param ${ptr} is not a tensor`, at);
    return p.dtype === 'i32' ? 'i32' : 'f32';
  };

  const checkTypes = (v: Value): void => {
    const want = (ok: boolean, msg: string): void => {
      if (!ok) fail(`${name(v)}: ${msg}`, v);
    };
    const scalar = v.shape.length === 0;
    switch (v.op) {
      case 'const':
        want(scalar, 'constants are scalars');
        want(Number.isNaN(v.value) || (v.dtype === 'f32' ? Object.is(Math.fround(v.value), v.value) : v.dtype === 'bool' ? v.value === 0 || v.value === 1 : (v.value | 0) === v.value), `value ${v.value} is not a ${v.dtype}`);
        break;
      case 'arg': {
        const p = ir.params[v.index];
        want(scalar && p?.kind === 'scalar' && p.dtype === v.dtype, `param ${v.index} is not a ${v.dtype} scalar`);
        if (v.divisibility !== undefined) want([1, 4, 16].includes(v.divisibility) && v.dtype === 'i32', 'divisibility is 1, 4 or 16 on an i32');
        break;
      }
      case 'programId': case 'numPrograms':
        want(scalar && v.dtype === 'i32' && [0, 1, 2].includes(v.axis), 'an i32 scalar with axis 0..2');
        break;
      case 'arange':
        want(v.shape.length === 1 && v.dtype === 'i32' && Number.isInteger(v.start), 'arange is a 1-D i32 tile with an integer start');
        break;
      case 'broadcast': {
        want(v.src.dtype === v.dtype, 'broadcast keeps the dtype');
        const r = v.shape.length - v.src.shape.length;
        want(r >= 0 && v.src.shape.every((d, i) => d === 1 || d === v.shape[i + r]), `cannot broadcast ${text(v.src.shape)} to ${text(v.shape)}`);
        break;
      }
      case 'reshape':
        want(v.src.dtype === v.dtype && numel(v.src.shape) === numel(v.shape), 'reshape keeps the dtype and element count');
        break;
      case 'trans':
        want(v.src.dtype === v.dtype && v.src.shape.length === 2 && v.shape[0] === v.src.shape[1] && v.shape[1] === v.src.shape[0], 'trans swaps the two dims');
        break;
      case 'unary':
        want(sameShape(v.src.shape, v.shape) && v.src.dtype === v.dtype, 'unary keeps shape and dtype');
        if (v.fn === 'not') want(v.dtype !== 'f32', 'not applies to bool or i32');
        else if (v.fn === 'neg' || v.fn === 'abs') want(v.dtype !== 'bool', `${v.fn} applies to numbers`);
        else if (FLOAT_ONLY.has(v.fn)) want(v.dtype === 'f32', `${v.fn} applies to f32`);
        break;
      case 'binary':
        want(sameShape(v.a.shape, v.shape) && sameShape(v.b.shape, v.shape), `operands ${text(v.a.shape)} and ${text(v.b.shape)} must have the result shape (broadcast explicitly)`);
        want(v.a.dtype === v.b.dtype, `operand dtypes differ (${v.a.dtype}, ${v.b.dtype})`);
        if (CMP.has(v.fn)) want(v.dtype === 'bool', 'comparisons give bool');
        else want(v.dtype === v.a.dtype, 'arithmetic keeps the operand dtype');
        if (LOGIC.has(v.fn)) want(v.dtype !== 'f32', `${v.fn} applies to bool or i32`);
        else if (SHIFT.has(v.fn)) want(v.dtype === 'i32', `${v.fn} applies to i32`);
        else if (!CMP.has(v.fn)) want(v.dtype !== 'bool', `${v.fn} applies to numbers`);
        break;
      case 'cast':
        want(sameShape(v.src.shape, v.shape), 'cast keeps the shape');
        break;
      case 'where':
        want(v.cond.dtype === 'bool' && [v.cond, v.a, v.b].every((o) => sameShape(o.shape, v.shape)), 'where: bool cond and operands of the result shape');
        want(v.a.dtype === v.dtype && v.b.dtype === v.dtype, 'where: both sides have the result dtype');
        break;
      case 'load':
        want(v.dtype === tensorDtype(v.ptr, v), `loads from this tensor give ${tensorDtype(v.ptr, v)}`);
        want(v.offsets.dtype === 'i32' && sameShape(v.offsets.shape, v.shape), 'offsets are i32 of the result shape');
        if (v.mask) want(v.mask.dtype === 'bool' && sameShape(v.mask.shape, v.shape), 'the mask is bool of the result shape');
        if (v.other) want(v.other.dtype === v.dtype && sameShape(v.other.shape, v.shape), '`other` has the result type');
        break;
      case 'dot': {
        const [a, b] = [v.a, v.b];
        want(v.dtype === 'f32' && a.dtype === 'f32' && b.dtype === 'f32', 'dot is f32');
        want(a.shape.length === 2 && b.shape.length === 2 && a.shape[1] === b.shape[0] && sameShape(v.shape, [a.shape[0]!, b.shape[1]!]), `dot shapes ${text(a.shape)} x ${text(b.shape)}`);
        if (v.acc) want(v.acc.dtype === 'f32' && sameShape(v.acc.shape, v.shape), 'acc has the result type');
        break;
      }
      case 'reduce':
        want(v.src.dtype === v.dtype && v.dtype !== 'bool', 'reduce keeps a numeric dtype');
        want(v.axis >= 0 && v.axis < v.src.shape.length && sameShape(v.shape, v.src.shape.filter((_, i) => i !== v.axis)), `reduce of ${text(v.src.shape)} along ${v.axis}`);
        break;
      case 'rand':
        want(v.dtype === 'f32' && v.seed.dtype === 'i32' && v.seed.shape.length === 0, 'rand: f32 from an i32 scalar seed');
        want(v.offsets.dtype === 'i32' && sameShape(v.offsets.shape, v.shape), 'rand offsets are i32 of the result shape');
        break;
      case 'iv':
        want(scalar && v.dtype === 'i32', 'a loop variable is an i32 scalar');
        break;
      case 'carried': case 'result':
        break;
    }
  };

  const sameType = (a: Value, b: Value): boolean => a.dtype === b.dtype && sameShape(a.shape, b.shape);
  /** Scopes of visible ids, innermost last. */
  const visible: Set<number>[] = [];
  const use = (o: Value, user: string, at: { readonly loc: { line: number; column: number } }): void => {
    if (!visible.some((s) => s.has(o.id))) fail(`${user} uses %${o.id} (${o.op}) before it is defined or outside its block`, at);
  };

  const block = (instrs: readonly Instr[], defined: readonly Value[], yields: readonly Value[], what: string, at?: Instr): void => {
    const scope = new Set<number>(defined.map((v) => v.id));
    visible.push(scope);
    for (const ins of instrs) {
      if (isValue(ins)) {
        if (ins.op === 'iv' || ins.op === 'carried' || ins.op === 'result') fail(`%${ins.id} (${ins.op}) is placed in a block; its instruction defines it`, ins);
        define(ins);
        checkTypes(ins);
        for (const o of operandsOf(ins)) use(o, `%${ins.id} (${ins.op})`, ins);
        scope.add(ins.id);
        continue;
      }
      switch (ins.op) {
        case 'return':
          break;
        case 'store': {
          const dt = tensorDtype(ins.ptr, ins);
          [ins.offsets, ins.value, ...(ins.mask ? [ins.mask] : [])].forEach((o) => use(o, 'store', ins));
          if (ins.offsets.dtype !== 'i32') fail('store offsets must be i32', ins);
          if (!sameShape(ins.value.shape, ins.offsets.shape)) fail(`store value ${text(ins.value.shape)} differs from offsets ${text(ins.offsets.shape)}`, ins);
          if (ins.value.dtype !== dt) fail(`store of ${ins.value.dtype} into a tensor that takes ${dt}`, ins);
          if (ins.mask && (ins.mask.dtype !== 'bool' || !sameShape(ins.mask.shape, ins.offsets.shape))) fail('store mask must be bool of the offsets shape', ins);
          break;
        }
        case 'for': {
          for (const o of [ins.start, ins.end, ins.step]) {
            use(o, 'for bounds', ins);
            if (o.dtype !== 'i32' || o.shape.length !== 0) fail('loop bounds and step are i32 scalars', ins);
          }
          ins.inits.forEach((o) => use(o, 'for init', ins));
          const n = ins.carried.length;
          if (ins.inits.length !== n || ins.yields.length !== n || ins.results.length !== n) fail('for: inits, carried, yields and results differ in number', ins);
          define(ins.iv);
          checkTypes(ins.iv);
          ins.carried.forEach((c, i) => {
            define(c);
            if (!sameType(c, ins.inits[i]!) || !sameType(c, ins.yields[i]!) || !sameType(c, ins.results[i]!)) fail(`for: carried value ${i} changes type`, ins);
          });
          block(ins.body, [ins.iv, ...ins.carried], ins.yields, 'for body', ins);
          ins.results.forEach((r) => define(r));
          ins.results.forEach((r) => scope.add(r.id));
          break;
        }
        case 'if': {
          use(ins.cond, 'if', ins);
          if (ins.cond.dtype !== 'bool' || ins.cond.shape.length !== 0) fail('an if condition is a bool scalar', ins);
          const n = ins.results.length;
          if (ins.thenYields.length !== n || ins.elseYields.length !== n) fail('if: yields and results differ in number', ins);
          ins.results.forEach((r, i) => {
            if (!sameType(r, ins.thenYields[i]!) || !sameType(r, ins.elseYields[i]!)) fail(`if: result ${i} has different types on the two branches`, ins);
          });
          block(ins.then, [], ins.thenYields, 'then', ins);
          block(ins.else, [], ins.elseYields, 'else', ins);
          ins.results.forEach((r) => define(r));
          ins.results.forEach((r) => scope.add(r.id));
          break;
        }
      }
    }
    // Yields are read at the end of the block: anything visible there.
    for (const y of yields) use(y, `${what} yield`, at ?? { loc: { line: 0, column: 0 } });
    visible.pop();
  };
  block(ir.body, [], [], 'kernel');
}
