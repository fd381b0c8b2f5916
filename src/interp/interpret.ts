/**
 * @fileoverview The reference interpreter: runs a kernel's IR program by program over a memory
 * buffer, one typed array per tile. It is the oracle of the differential tests and the user's
 * debug mode, so it favours the obvious: every value is computed at its place in its block,
 * f32 math is done in f64 and rounded once, dot and sum accumulate in f64, and every fault
 * (out-of-bounds access, integer division by zero) names the kernel, the program and the
 * source position.
 */
import { faultPlace, KernelRuntimeError, type BoundsFault } from '../errors.js';
import { isValue, numel, type ForI, type IfI, type Instr, type KernelIR, type Loc, type StoreI, type Value } from '../ir/ir.js';
import { randUniform } from '../util/rand.js';
import { binary, cast, unary, where } from './elementwise.js';
import { bindTensor, firstOutOfBounds, gather, makeViews, scatter, type BoundTensor, type Tile, type Views } from './memory.js';
import { broadcast, dims2, dot, reduce, trans } from './tiles.js';

/** One argument: a tensor in the memory buffer (length in elements) or an i32/f32 scalar. */
export type InterpArg =
  | { readonly kind: 'tensor'; readonly byteOffset: number; readonly length: number }
  | number;

/** Options of `interpret`. */
export interface InterpretOptions {
  /** The name errors use (defaults to the IR's). */
  readonly kernelName?: string;
  /** The kernel's source: a fault's message then shows the line with a caret. */
  readonly source?: string;
  /** The helpers' sources by name (a fault in a helper shows its own line). */
  readonly helpers?: Readonly<Record<string, string>>;
}

type Grid = readonly [number, number, number];

/** Thrown by a `return` and caught at the program's top: it ends the program from any depth. */
class ProgramReturn {}

/** Run every program of `grid` (p0 fastest, then p1, then p2) against `memory`. */
export function interpret(
  ir: KernelIR, grid: readonly [number, number, number], args: readonly InterpArg[], memory: ArrayBufferLike, opts: InterpretOptions = {},
): void {
  const name = opts.kernelName ?? ir.name;
  const where = `interpret '${name}'`;
  for (const g of grid) {
    if (!Number.isSafeInteger(g) || g < 0) throw new RangeError(`${where}: grid [${grid.join(', ')}] must hold three non-negative integers`);
  }
  const bound = bindArgs(ir, args, memory.byteLength, where);
  const views = makeViews(memory);
  const [g0, g1, g2] = grid;
  for (let p2 = 0; p2 < g2; p2++) {
    for (let p1 = 0; p1 < g1; p1++) {
      for (let p0 = 0; p0 < g0; p0++) {
        const program = new Program(ir, name, [p0, p1, p2], grid, bound, views, opts.source, opts.helpers);
        try {
          program.block(ir.body);
        } catch (err) {
          if (!(err instanceof ProgramReturn)) throw err;
        }
      }
    }
  }
}

/** Checks that each argument fits its parameter; tensors come back bound, scalars as numbers. */
function bindArgs(ir: KernelIR, args: readonly InterpArg[], bufferBytes: number, where: string): (BoundTensor | number)[] {
  if (args.length !== ir.params.length) {
    throw new TypeError(`${where}: expected ${ir.params.length} arguments (${ir.params.map((p) => p.name).join(', ')}), got ${args.length}`);
  }
  return ir.params.map((p, i) => {
    const a = args[i]!;
    const at = `${where}: argument ${i} ('${p.name}')`;
    if (p.kind === 'tensor') {
      if (typeof a !== 'object' || a === null || a.kind !== 'tensor') throw new TypeError(`${at} must be a tensor ({ kind: 'tensor', byteOffset, length }), got ${typeof a}`);
      return bindTensor(p, a.byteOffset, a.length, bufferBytes, at);
    }
    if (typeof a !== 'number') throw new TypeError(`${at} must be a ${p.dtype} number, got a tensor`);
    if (p.dtype === 'i32' && !(Number.isInteger(a) && a >= -2147483648 && a <= 2147483647)) {
      throw new RangeError(`${at} must be an i32 integer, got ${a}`);
    }
    return a;
  });
}

/** One program's run: its values (by id) and what it needs to compute them. */
class Program {
  private readonly vals: (Tile | undefined)[];

  constructor(
    private readonly ir: KernelIR,
    private readonly name: string,
    private readonly pid: readonly [number, number, number],
    private readonly grid: Grid,
    private readonly args: readonly (BoundTensor | number)[],
    private readonly views: Views,
    private readonly source?: string,
    private readonly helpers?: Readonly<Record<string, string>>,
  ) {
    this.vals = new Array<Tile | undefined>(ir.numValues);
  }

  /** A run-time fault at `loc`, in the format every interpreter error uses. */
  private fault(loc: Loc, msg: string, fault?: BoundsFault): KernelRuntimeError {
    const { at, frame } = faultPlace(loc, this.source, this.helpers);
    return new KernelRuntimeError(`kernel '${this.name}' program (${this.pid.join(', ')}) ${at}: ${msg}${frame}`, this.name, [...this.pid], fault ? { fault } : undefined);
  }

  private get(v: Value): Tile {
    const t = this.vals[v.id];
    if (!t) throw new Error(`interpreter: %${v.id} (${v.op}) in '${this.ir.name}' is used before it is computed (does the IR verify?)`);
    return t;
  }

  /** Tiles are never written after they are set, so values may share one (reshape, carried). */
  private set(v: Value, t: Tile): void {
    this.vals[v.id] = t;
  }

  /** Runs `instrs` in order. */
  block(instrs: readonly Instr[]): void {
    for (const ins of instrs) {
      if (isValue(ins)) this.set(ins, this.value(ins));
      else if (ins.op === 'store') this.store(ins);
      else if (ins.op === 'for') this.forLoop(ins);
      else if (ins.op === 'if') this.ifElse(ins);
      else throw new ProgramReturn();
    }
  }

  private ifElse(s: IfI): void {
    const taken = this.get(s.cond)[0] !== 0;
    this.block(taken ? s.then : s.else);
    const ys = (taken ? s.thenYields : s.elseYields).map((y) => this.get(y));
    s.results.forEach((r, i) => this.set(r, ys[i]!));
  }

  private forLoop(f: ForI): void {
    const start = this.get(f.start)[0]!;
    const end = this.get(f.end)[0]!;
    const step = this.get(f.step)[0]!;
    f.carried.forEach((c, i) => this.set(c, this.get(f.inits[i]!)));
    // A zero or wrongly signed step runs no iteration. The induction variable is stepped in
    // f64 and the loop stops once it leaves i32: a loop near 2^31 ends instead of wrapping.
    if (f.descending ? step < 0 : step > 0) {
      for (let iv = start; f.descending ? iv > end : iv < end; iv += step) {
        this.set(f.iv, Int32Array.of(iv));
        this.block(f.body);
        // Read every yield before rebinding any carried value (a yield may be a carried one).
        const ys = f.yields.map((y) => this.get(y));
        f.carried.forEach((c, i) => this.set(c, ys[i]!));
      }
    }
    f.results.forEach((r, i) => this.set(r, this.get(f.carried[i]!)));
  }

  private tensor(ptr: number, loc: Loc): BoundTensor {
    const t = this.args[ptr];
    if (typeof t !== 'object') throw this.fault(loc, `parameter ${ptr} is not a tensor`);
    return t;
  }

  private outOfBounds(what: 'load from' | 'store to', t: BoundTensor, offs: Int32Array, lane: number, loc: Loc): KernelRuntimeError {
    const offset = offs[lane]!;
    return this.fault(loc, `${what} tensor '${t.name}' at offset ${offset} (lane ${lane}), outside [0, ${t.length}): the tensor has ${t.length} elements`, {
      kind: what === 'load from' ? 'load' : 'store', tensor: t.name, offset, size: t.length, line: loc.line, column: loc.column, ...(loc.helper ? { helper: loc.helper } : {}),
    });
  }

  private store(s: StoreI): void {
    const t = this.tensor(s.ptr, s.loc);
    const offs = this.get(s.offsets) as Int32Array;
    const mask = s.mask ? (this.get(s.mask) as Int32Array) : undefined;
    // Every active lane is checked before any is written: a faulting store writes nothing.
    const bad = firstOutOfBounds(t, offs, mask);
    if (bad >= 0) throw this.outOfBounds('store to', t, offs, bad, s.loc);
    scatter(this.views, t, offs, this.get(s.value), mask);
  }

  private alloc(v: Value): Tile {
    const n = numel(v.shape);
    return v.dtype === 'f32' ? new Float32Array(n) : new Int32Array(n);
  }

  private scalar(v: Value, x: number): Tile {
    return v.dtype === 'f32' ? Float32Array.of(x) : Int32Array.of(x);
  }

  private value(v: Value): Tile {
    switch (v.op) {
      case 'const': return this.scalar(v, v.value);
      case 'arg': {
        const a = this.args[v.index];
        if (typeof a !== 'number') throw this.fault(v.loc, `parameter ${v.index} is not a scalar`);
        return this.scalar(v, a);
      }
      case 'programId': return Int32Array.of(this.pid[v.axis]);
      case 'numPrograms': return Int32Array.of(this.grid[v.axis]);
      case 'arange': {
        const out = new Int32Array(v.shape[0]!);
        for (let i = 0; i < out.length; i++) out[i] = v.start + i;
        return out;
      }
      case 'broadcast': {
        const out = this.alloc(v);
        broadcast(this.get(v.src), v.src.shape, v.shape, out);
        return out;
      }
      case 'reshape': return this.get(v.src); // row-major elements are unchanged
      case 'trans': {
        const out = this.alloc(v);
        trans(this.get(v.src), v.src.shape, out);
        return out;
      }
      case 'unary': {
        const out = this.alloc(v);
        unary(v.fn, v.dtype, this.get(v.src), out);
        return out;
      }
      case 'binary': {
        const out = this.alloc(v);
        binary(v.fn, v.a.dtype, this.get(v.a), this.get(v.b), out, () => {
          throw this.fault(v.loc, 'integer division by zero');
        });
        return out;
      }
      case 'cast': {
        const out = this.alloc(v);
        cast(v.src.dtype, v.dtype, this.get(v.src), out);
        return out;
      }
      case 'where': {
        const out = this.alloc(v);
        where(this.get(v.cond) as Int32Array, this.get(v.a), this.get(v.b), out);
        return out;
      }
      case 'load': {
        const t = this.tensor(v.ptr, v.loc);
        const offs = this.get(v.offsets) as Int32Array;
        const mask = v.mask ? (this.get(v.mask) as Int32Array) : undefined;
        const bad = firstOutOfBounds(t, offs, mask);
        if (bad >= 0) throw this.outOfBounds('load from', t, offs, bad, v.loc);
        const out = this.alloc(v);
        // Without a mask every lane is read, so `other` is never used.
        gather(this.views, t, offs, mask, mask && v.other ? this.get(v.other) : undefined, out);
        return out;
      }
      case 'dot': {
        const [M, K] = dims2(v.a.shape);
        const N = dims2(v.b.shape)[1];
        const out = new Float32Array(M * N);
        dot(this.get(v.a) as Float32Array, this.get(v.b) as Float32Array, v.acc ? (this.get(v.acc) as Float32Array) : undefined, M, K, N, out);
        return out;
      }
      case 'reduce': {
        const out = this.alloc(v);
        reduce(v.fn, this.get(v.src), v.src.shape, v.axis, v.dtype === 'i32', out, v.skipNan === true);
        return out;
      }
      case 'rand': {
        const seed = this.get(v.seed)[0]!;
        const offs = this.get(v.offsets);
        const out = new Float32Array(offs.length);
        for (let i = 0; i < out.length; i++) out[i] = randUniform(seed, offs[i]!);
        return out;
      }
      case 'iv': case 'carried': case 'result':
        throw new Error(`interpreter: %${v.id} (${v.op}) is defined by its for/if, not placed in a block`);
    }
  }
}
