/**
 * @fileoverview The reference interpreter: runs a kernel's IR program by program over a memory
 * buffer, with plain typed arrays per tile. It is the oracle of the differential tests and the
 * user's debug mode, so it favours obviousness: f64 math rounded to f32, f64 accumulation in
 * dot and sum, every out-of-bounds access reported with its source location.
 */
import { KernelRuntimeError } from '../errors.js';
import { isValue, numel, type Instr, type KernelIR, type StorageDType, type Value } from '../ir/ir.js';
import { erf64 } from '../util/erf.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../util/half.js';
import { randUniform } from '../util/rand.js';

export type InterpArg =
  | { readonly kind: 'tensor'; readonly byteOffset: number; readonly length: number }
  | number;

export interface InterpretOptions {
  readonly kernelName?: string;
}

/** A tile (or scalar: one element) of f32 (Float32Array) or i32/bool (Int32Array, bool 0/1). */
type Tile = Float32Array | Int32Array;

class Return {}

const fr = Math.fround;
const UNARY: Record<string, (x: number) => number> = {
  exp: Math.exp, exp2: (x) => 2 ** x, log: Math.log, log2: Math.log2, tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)), erf: erf64, sqrt: Math.sqrt, rsqrt: (x) => 1 / Math.sqrt(x),
  abs: Math.abs, floor: Math.floor, ceil: Math.ceil, neg: (x) => -x,
};

/** Run every program of `grid` (p0 fastest, then p1, then p2) against `memory`. */
export function interpret(
  ir: KernelIR, grid: readonly [number, number, number], args: readonly InterpArg[], memory: ArrayBufferLike, opts: InterpretOptions = {},
): void {
  const name = opts.kernelName ?? ir.name;
  if (args.length !== ir.params.length) throw new Error(`interpret ${name}: expected ${ir.params.length} arguments, got ${args.length}`);
  ir.params.forEach((p, i) => {
    const a = args[i]!;
    if ((p.kind === 'tensor') !== (typeof a === 'object')) throw new Error(`interpret ${name}: argument ${i} ('${p.name}') must be a ${p.kind === 'tensor' ? 'tensor' : 'number'}`);
  });
  const mem = {
    f32: new Float32Array(memory),
    i32: new Int32Array(memory),
    u16: new Uint16Array(memory),
  };
  const total = grid[0] * grid[1] * grid[2];
  for (let lin = 0; lin < total; lin++) {
    const pid = [lin % grid[0], Math.floor(lin / grid[0]) % grid[1], Math.floor(lin / (grid[0] * grid[1]))] as const;
    const run = new Program(ir, name, pid, grid, args, mem);
    try {
      run.block(ir.body);
    } catch (err) {
      if (err instanceof Return) continue;
      throw err;
    }
  }
}

class Program {
  private readonly vals = new Map<number, Tile>();

  constructor(
    readonly ir: KernelIR,
    readonly name: string,
    readonly pid: readonly [number, number, number],
    readonly grid: readonly [number, number, number],
    readonly args: readonly InterpArg[],
    readonly mem: { f32: Float32Array; i32: Int32Array; u16: Uint16Array },
  ) {}

  private err(v: { loc: { line: number; column: number } }, msg: string): KernelRuntimeError {
    return new KernelRuntimeError(`kernel '${this.name}' program (${this.pid.join(', ')}) at ${v.loc.line}:${v.loc.column}: ${msg}`, this.name, [...this.pid]);
  }

  get(v: Value): Tile {
    const t = this.vals.get(v.id);
    if (!t) throw new Error(`interpreter: %${v.id} (${v.op}) used before it was computed`);
    return t;
  }

  private set(v: Value, t: Tile): void {
    this.vals.set(v.id, t);
  }

  block(instrs: readonly Instr[]): void {
    for (const ins of instrs) {
      if (isValue(ins)) this.set(ins, this.value(ins));
      else if (ins.op === 'store') this.store(ins.ptr, this.get(ins.offsets), this.get(ins.value), ins.mask ? this.get(ins.mask) : undefined, ins);
      else if (ins.op === 'return') throw new Return();
      else if (ins.op === 'if') {
        const taken = this.get(ins.cond)[0] !== 0;
        this.block(taken ? ins.then : ins.else);
        const ys = (taken ? ins.thenYields : ins.elseYields).map((y) => this.get(y));
        ins.results.forEach((r, i) => this.set(r, ys[i]!));
      } else {
        let iv = this.get(ins.start)[0]!;
        const end = this.get(ins.end)[0]!;
        const step = this.get(ins.step)[0]!;
        ins.carried.forEach((c, i) => this.set(c, this.get(ins.inits[i]!)));
        const ok = ins.descending ? step < 0 : step > 0;
        while (ok && (ins.descending ? iv > end : iv < end)) {
          this.set(ins.iv, Int32Array.of(iv));
          this.block(ins.body);
          const ys = ins.yields.map((y) => this.get(y));
          ins.carried.forEach((c, i) => this.set(c, ys[i]!));
          iv = (iv + step) | 0;
        }
        ins.results.forEach((r, i) => this.set(r, this.get(ins.carried[i]!)));
      }
    }
  }

  private alloc(v: Value): Tile {
    const n = numel(v.shape);
    return v.dtype === 'f32' ? new Float32Array(n) : new Int32Array(n);
  }

  private value(v: Value): Tile {
    switch (v.op) {
      case 'const': return v.dtype === 'f32' ? Float32Array.of(v.value) : Int32Array.of(v.value);
      case 'arg': {
        const a = this.args[v.index] as number;
        return v.dtype === 'f32' ? Float32Array.of(a) : Int32Array.of(a);
      }
      case 'programId': return Int32Array.of(this.pid[v.axis]);
      case 'numPrograms': return Int32Array.of(this.grid[v.axis]);
      case 'arange': return Int32Array.from({ length: v.shape[0]! }, (_, i) => v.start + i);
      case 'broadcast': {
        const src = this.get(v.src);
        const out = this.alloc(v);
        const [R, C] = dims2(v.shape);
        const [sR, sC] = dims2(v.src.shape);
        for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] = src[(sR === 1 ? 0 : r) * sC + (sC === 1 ? 0 : c)]!;
        return out;
      }
      case 'reshape': return this.get(v.src);
      case 'trans': {
        const src = this.get(v.src);
        const out = this.alloc(v);
        const [R, C] = dims2(v.shape);
        for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[r * C + c] = src[c * R + r]!;
        return out;
      }
      case 'unary': {
        const x = this.get(v.src);
        const out = this.alloc(v);
        if (v.fn === 'not') for (let i = 0; i < x.length; i++) out[i] = v.dtype === 'bool' ? (x[i] ? 0 : 1) : ~x[i]!;
        else if (v.dtype === 'i32') for (let i = 0; i < x.length; i++) out[i] = v.fn === 'neg' ? -x[i]! | 0 : Math.abs(x[i]!) | 0;
        else {
          const f = UNARY[v.fn]!;
          for (let i = 0; i < x.length; i++) out[i] = f(x[i]!);
        }
        return out;
      }
      case 'binary': return this.binary(v);
      case 'cast': {
        const x = this.get(v.src);
        const out = this.alloc(v);
        for (let i = 0; i < x.length; i++) out[i] = cast(x[i]!, v.src.dtype, v.dtype);
        return out;
      }
      case 'where': {
        const c = this.get(v.cond), a = this.get(v.a), b = this.get(v.b);
        const out = this.alloc(v);
        for (let i = 0; i < out.length; i++) out[i] = c[i] ? a[i]! : b[i]!;
        return out;
      }
      case 'load': return this.load(v);
      case 'dot': {
        const a = this.get(v.a), b = this.get(v.b);
        const [M, K] = dims2(v.a.shape);
        const N = v.shape[1]!;
        const acc = v.acc ? this.get(v.acc) : undefined;
        const out = new Float32Array(M * N);
        for (let i = 0; i < M; i++) {
          for (let j = 0; j < N; j++) {
            let s = acc ? acc[i * N + j]! : 0;
            for (let k = 0; k < K; k++) s += a[i * K + k]! * b[k * N + j]!;
            out[i * N + j] = s;
          }
        }
        return out;
      }
      case 'reduce': {
        const x = this.get(v.src);
        const out = this.alloc(v);
        const [R, C] = dims2(v.src.shape);
        const outer = v.src.shape.length === 2 && v.axis === 0 ? C : v.src.shape.length === 2 ? R : 1;
        const inner = v.src.shape.length === 2 && v.axis === 0 ? R : C;
        for (let o = 0; o < outer; o++) {
          let s = v.fn === 'sum' ? 0 : v.fn === 'max' ? -Infinity : Infinity;
          for (let k = 0; k < inner; k++) {
            const e = v.src.shape.length === 2 && v.axis === 0 ? x[k * C + o]! : x[o * C + k]!;
            s = v.fn === 'sum' ? s + e : v.fn === 'max' ? Math.max(s, e) : Math.min(s, e);
          }
          out[o] = v.dtype === 'i32' ? s | 0 : s;
        }
        return out;
      }
      case 'rand': {
        const seed = this.get(v.seed)[0]!;
        const offs = this.get(v.offsets);
        return Float32Array.from(offs, (o) => randUniform(seed, o));
      }
      default:
        throw new Error(`interpreter: ${v.op} is defined by its parent instruction`);
    }
  }

  private binary(v: Value & { op: 'binary' }): Tile {
    const a = this.get(v.a), b = this.get(v.b);
    const out = this.alloc(v);
    const dt = v.a.dtype;
    const n = out.length;
    const fn = v.fn;
    for (let i = 0; i < n; i++) {
      const x = a[i]!, y = b[i]!;
      let r: number;
      switch (fn) {
        case 'add': r = dt === 'f32' ? x + y : (x + y) | 0; break;
        case 'sub': r = dt === 'f32' ? x - y : (x - y) | 0; break;
        case 'mul': r = dt === 'f32' ? x * y : Math.imul(x, y); break;
        case 'div':
          if (dt !== 'f32' && y === 0) throw this.err(v, 'integer division by zero');
          r = dt === 'f32' ? x / y : (x / y) | 0;
          break;
        case 'rem':
          if (dt !== 'f32' && y === 0) throw this.err(v, 'integer division by zero');
          r = dt === 'f32' ? x % y : (x % y) | 0;
          break;
        case 'min': r = Math.min(x, y); break;
        case 'max': r = Math.max(x, y); break;
        case 'and': r = x & y; break;
        case 'or': r = x | y; break;
        case 'xor': r = x ^ y; break;
        case 'shl': r = x << y; break;
        case 'shr': r = x >> y; break;
        case 'shru': r = (x >>> y) | 0; break;
        case 'lt': r = x < y ? 1 : 0; break;
        case 'le': r = x <= y ? 1 : 0; break;
        case 'gt': r = x > y ? 1 : 0; break;
        case 'ge': r = x >= y ? 1 : 0; break;
        case 'eq': r = x === y ? 1 : 0; break;
        case 'ne': r = x !== y ? 1 : 0; break;
      }
      out[i] = r;
    }
    return out;
  }

  private tensor(ptr: number, v: { loc: { line: number; column: number } }): { byteOffset: number; length: number; dtype: StorageDType } {
    const a = this.args[ptr];
    const p = this.ir.params[ptr];
    if (typeof a !== 'object' || p?.kind !== 'tensor') throw this.err(v, `param ${ptr} is not a tensor`);
    return { ...a, dtype: p.dtype };
  }

  private load(v: Value & { op: 'load' }): Tile {
    const t = this.tensor(v.ptr, v);
    const offs = this.get(v.offsets);
    const mask = v.mask ? this.get(v.mask) : undefined;
    const other = v.other ? this.get(v.other) : undefined;
    const out = this.alloc(v);
    for (let i = 0; i < out.length; i++) {
      if (mask && !mask[i]) {
        out[i] = other ? other[i]! : 0;
        continue;
      }
      const o = offs[i]!;
      if (o < 0 || o >= t.length) throw this.err(v, `load from tensor '${this.ir.params[v.ptr]!.name}' at offset ${o}, outside [0, ${t.length})`);
      out[i] = readElem(this.mem, t.byteOffset, t.dtype, o);
    }
    return out;
  }

  private store(ptr: number, offs: Tile, val: Tile, mask: Tile | undefined, at: { loc: { line: number; column: number } }): void {
    const t = this.tensor(ptr, at);
    // Check every active lane first: a failing store writes nothing.
    for (let i = 0; i < offs.length; i++) {
      if (mask && !mask[i]) continue;
      const o = offs[i]!;
      if (o < 0 || o >= t.length) throw this.err(at, `store to tensor '${this.ir.params[ptr]!.name}' at offset ${o}, outside [0, ${t.length})`);
    }
    for (let i = 0; i < offs.length; i++) {
      if (mask && !mask[i]) continue;
      writeElem(this.mem, t.byteOffset, t.dtype, offs[i]!, val[i]!);
    }
  }
}

function dims2(shape: readonly number[]): [number, number] {
  if (shape.length === 2) return [shape[0]!, shape[1]!];
  if (shape.length === 1) return [1, shape[0]!];
  return [1, 1];
}

function cast(x: number, from: string, to: string): number {
  if (to === 'bool') return x !== 0 ? 1 : 0;
  if (to === 'i32') {
    if (from !== 'f32') return x;
    if (Number.isNaN(x)) return 0;
    return Math.max(-2147483648, Math.min(2147483647, Math.trunc(x)));
  }
  return fr(x);
}

function readElem(mem: { f32: Float32Array; i32: Int32Array; u16: Uint16Array }, base: number, dt: StorageDType, o: number): number {
  switch (dt) {
    case 'f32': return mem.f32[base / 4 + o]!;
    case 'i32': return mem.i32[base / 4 + o]!;
    case 'f16': return f16BitsToF32(mem.u16[base / 2 + o]!);
    case 'bf16': return bf16BitsToF32(mem.u16[base / 2 + o]!);
  }
}

function writeElem(mem: { f32: Float32Array; i32: Int32Array; u16: Uint16Array }, base: number, dt: StorageDType, o: number, x: number): void {
  switch (dt) {
    case 'f32': mem.f32[base / 4 + o] = x; break;
    case 'i32': mem.i32[base / 4 + o] = x; break;
    case 'f16': mem.u16[base / 2 + o] = f32ToF16Bits(x); break;
    case 'bf16': mem.u16[base / 2 + o] = f32ToBf16Bits(x); break;
  }
}
