/**
 * @fileoverview Elementwise tile ops of the interpreter: unary, binary, cast and where. f32
 * results are computed in f64 and rounded once by the Float32Array they are stored in; i32
 * arithmetic wraps like WebAssembly's; bool is 0/1.
 */
import type { BinaryFn, DType, UnaryFn } from '../ir/ir.js';
import { erf64, gelu64, geluGrad64, geluTanh64, geluTanhGrad64 } from '../util/erf.js';
import type { Tile } from './memory.js';
import { EXP2_FTZ_BELOW, EXP_FTZ_BELOW } from '../ir/ir.js';

/** f32 unary functions in f64 (the Float32Array store rounds the result to f32). */
const F32_UNARY: Record<Exclude<UnaryFn, 'not'>, (x: number) => number> = {
  neg: (x) => -x,
  abs: Math.abs,
  floor: Math.floor,
  ceil: Math.ceil,
  sqrt: Math.sqrt,
  rsqrt: (x) => 1 / Math.sqrt(x),
  exp: Math.exp,
  expFtz: (x) => (x < EXP_FTZ_BELOW ? 0 : Math.exp(x)),
  exp2Ftz: (x) => (x < EXP2_FTZ_BELOW ? 0 : 2 ** x),
  exp2: (x) => 2 ** x,
  log: Math.log,
  log2: Math.log2,
  tanh: Math.tanh,
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  // erf64's continued fraction gives NaN at ±Infinity (Infinity * 0); the limits are ±1.
  erf: (x) => (x === Infinity ? 1 : x === -Infinity ? -1 : erf64(x)),
  // GELU(-Infinity) is NaN (-Infinity · 0), as the compiled form and PyTorch give.
  gelu: gelu64,
  geluTanh: geluTanh64,
  geluGrad: geluGrad64,
  geluTanhGrad: geluTanhGrad64,
};

/** out[i] = fn(x[i]) for a value of `dtype` (the operand's and the result's). */
export function unary(fn: UnaryFn, dtype: DType, x: Tile, out: Tile): void {
  const n = out.length;
  if (fn === 'not') {
    // bool: logical not of 0/1; i32: bitwise complement.
    if (dtype === 'bool') for (let i = 0; i < n; i++) out[i] = x[i] === 0 ? 1 : 0;
    else for (let i = 0; i < n; i++) out[i] = ~x[i]!;
    return;
  }
  if (dtype === 'i32') {
    // -(-2^31) and |-2^31| wrap back to -2^31, as i32.sub(0, x) does.
    if (fn === 'neg') for (let i = 0; i < n; i++) out[i] = -x[i]! | 0;
    else if (fn === 'abs') for (let i = 0; i < n; i++) out[i] = Math.abs(x[i]!) | 0;
    else throw new Error(`interpreter: ${fn} is not defined on i32`);
    return;
  }
  const f = F32_UNARY[fn];
  for (let i = 0; i < n; i++) out[i] = f(x[i]!);
}

type Scalar2 = (x: number, y: number) => number;

/** Ops whose result is the same on every dtype (comparisons give 0/1). */
const COMMON: Partial<Record<BinaryFn, Scalar2>> = {
  min: Math.min,
  max: Math.max,
  lt: (x, y) => (x < y ? 1 : 0),
  le: (x, y) => (x <= y ? 1 : 0),
  gt: (x, y) => (x > y ? 1 : 0),
  ge: (x, y) => (x >= y ? 1 : 0),
  eq: (x, y) => (x === y ? 1 : 0),
  ne: (x, y) => (x !== y ? 1 : 0),
};

/** f32: exact f64 results of f32 operands, rounded to f32 by the store. JS % is fmod. */
const F32_BINARY: Partial<Record<BinaryFn, Scalar2>> = {
  ...COMMON,
  add: (x, y) => x + y,
  sub: (x, y) => x - y,
  mul: (x, y) => x * y,
  div: (x, y) => x / y,
  rem: (x, y) => x % y,
};

/** i32 (and bool, for and/or/xor and comparisons): wrapping; shift counts are taken mod 32 by JS. */
const I32_BINARY: Partial<Record<BinaryFn, Scalar2>> = {
  ...COMMON,
  add: (x, y) => (x + y) | 0,
  sub: (x, y) => (x - y) | 0,
  mul: Math.imul,
  // Truncating division; -2^31 / -1 wraps to -2^31. Zero divisors are caught before.
  div: (x, y) => (x / y) | 0,
  // Sign of the dividend, like JS % and i32.rem_s (-2^31 % -1 is 0).
  rem: (x, y) => (x % y) | 0,
  and: (x, y) => x & y,
  or: (x, y) => x | y,
  xor: (x, y) => x ^ y,
  shl: (x, y) => x << y,
  shr: (x, y) => x >> y,
  shru: (x, y) => (x >>> y) | 0,
};

/**
 * out[i] = fn(a[i], b[i]) for operands of `dtype`. On i32 div/rem with a zero divisor in any
 * lane, calls `divByZero` (which throws) before computing anything.
 */
export function binary(fn: BinaryFn, dtype: DType, a: Tile, b: Tile, out: Tile, divByZero: () => never): void {
  const f = (dtype === 'f32' ? F32_BINARY : I32_BINARY)[fn];
  if (!f) throw new Error(`interpreter: ${fn} is not defined on ${dtype}`);
  const n = out.length;
  if (dtype !== 'f32' && (fn === 'div' || fn === 'rem')) {
    for (let i = 0; i < n; i++) if (b[i] === 0) divByZero();
  }
  for (let i = 0; i < n; i++) out[i] = f(a[i]!, b[i]!);
}

/** One element converted from `from` to `to` (see CastV in ir.ts). */
export function castScalar(x: number, from: DType, to: DType): number {
  if (to === 'bool') return x !== 0 ? 1 : 0; // NaN != 0 is true
  if (to === 'f32') return Math.fround(x);
  if (from !== 'f32') return x; // i32 or bool (0/1) to i32
  if (Number.isNaN(x)) return 0;
  return Math.max(-2147483648, Math.min(2147483647, Math.trunc(x)));
}

/** out[i] = x[i] converted from `from` to `to`. */
export function cast(from: DType, to: DType, x: Tile, out: Tile): void {
  for (let i = 0; i < out.length; i++) out[i] = castScalar(x[i]!, from, to);
}

/** out[i] = cond[i] ? a[i] : b[i]. */
export function where(cond: Int32Array, a: Tile, b: Tile, out: Tile): void {
  for (let i = 0; i < out.length; i++) out[i] = cond[i] !== 0 ? a[i]! : b[i]!;
}
