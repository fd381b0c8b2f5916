/**
 * @fileoverview Argument checks shared by the ops: every message names the op, the argument,
 * what it got and what was expected.
 */
import type { StorageDType } from '../ir/ir.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';

/** Throw a TypeError prefixed with the op's name. */
export function fail(op: string, msg: string): never {
  throw new TypeError(`${op}: ${msg}`);
}

/** A live, contiguous float tensor (f32, f16 or bf16). */
export function floatTensor(op: string, name: string, t: unknown, rt?: Runtime): Tensor {
  if (!(t instanceof Tensor)) fail(op, `${name} must be a Tensor, got ${t === null ? 'null' : typeof t}`);
  if (t.isFreed) fail(op, `${name} has been freed`);
  if (t.dtype === 'i32') fail(op, `${name} must be f32, f16 or bf16, got i32`);
  if (!t.isContiguous()) fail(op, `${name} must be contiguous (row-major); copy it first`);
  if (rt && t.runtime !== rt) fail(op, `${name} belongs to a different runtime than the first tensor`);
  return t;
}

/** Shapes equal, or a message naming both. */
export function sameShape(op: string, what: string, a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length || a.some((d, i) => d !== b[i])) fail(op, `${what}: expected shape [${b.join(', ')}], got [${a.join(', ')}]`);
}

/** The `out` argument if given (checked against shape), else a fresh tensor. */
export function output(op: string, rt: Runtime, shape: readonly number[], dtype: StorageDType, out: Tensor | undefined): Tensor {
  if (out === undefined) return rt.empty(shape, dtype);
  floatTensor(op, 'out', out, rt);
  sameShape(op, 'out', out.shape, shape);
  return out;
}

/** A short description of a bad argument for an error message (never a whole tensor or array). */
export function describe(v: unknown): string {
  if (typeof v === 'string') return v.length > 40 ? `${JSON.stringify(v.slice(0, 40))}...` : JSON.stringify(v);
  if (v === null || typeof v !== 'object') return typeof v === 'function' ? 'a function' : String(v);
  const t = v as { shape?: unknown; dtype?: unknown };
  if (Array.isArray(t.shape) && typeof t.dtype === 'string') return `a tensor of shape [${t.shape.join(', ')}] (${t.dtype})`;
  if (Array.isArray(v)) return v.length > 8 ? `[${v.slice(0, 8).map(describe).join(', ')}, ... (${v.length} items)]` : `[${v.map(describe).join(', ')}]`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  return `an object (${v.constructor?.name ?? 'Object'})`;
}

/** A finite number option. */
export function finite(op: string, name: string, v: unknown, check?: (x: number) => boolean, expect = 'a finite number'): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || (check && !check(v))) fail(op, `${name} must be ${expect}, got ${describe(v)}`);
  return v;
}

/** One of the listed strings. */
/** The float storage dtypes: what an op's fresh output may be. */
export const FLOAT_DTYPES = ['f32', 'f16', 'bf16'] as const;

/** Two contiguous tensors over exactly the same elements (an op's in-place output and its input). */
export function sameMemory(a: Tensor, b: Tensor): boolean {
  return a.runtime === b.runtime && a.byteOffset === b.byteOffset && a.dtype === b.dtype && a.size === b.size;
}

/**
 * An options argument: an object, or undefined for the defaults unless it is `required` (then
 * what it should hold, for the message). null or a number would crash on a property read.
 */
export function optionsOf<T extends object>(op: string, opts: T | undefined, required?: string): T {
  if (opts === undefined && required === undefined) return {} as T;
  if (opts === null || typeof opts !== 'object') fail(op, `options must be an object${required ? ` ${required}` : ''}, got ${describe(opts)}`);
  return opts;
}

/** A boolean option (default false), refused rather than coerced: 'no' is truthy, 'yes' is not true. */
export function flag(op: string, name: string, v: unknown): boolean {
  if (v !== undefined && typeof v !== 'boolean') fail(op, `${name} must be a boolean, got ${describe(v)}`);
  return v === true;
}

/** The runtime of `t` (named `name`), refused once disposed: the op would fail later in a helper's name. */
export function liveRuntime(op: string, name: string, t: Tensor): Runtime {
  if (t.runtime.isDisposed) fail(op, `the runtime of ${name} has been disposed; create another with Runtime.create()`);
  return t.runtime;
}

export function oneOf<T extends string>(op: string, name: string, v: unknown, allowed: readonly T[]): T {
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) fail(op, `${name} must be one of ${allowed.map((a) => `'${a}'`).join(', ')}, got ${describe(v)}`);
  return v as T;
}

/** x is a positive integer power of two. */
export const isPow2 = (x: unknown): boolean => typeof x === 'number' && Number.isInteger(x) && x > 0 && (x & (x - 1)) === 0;

/** Smallest power of two >= x (and >= min). */
export function pow2AtLeast(x: number, min = 1): number {
  let p = min;
  while (p < x) p *= 2;
  return p;
}

/**
 * How a column sum over `rows` splits into slabs summed in parallel (then added across slabs):
 * up to 16 slabs of whole BR-row steps. The split depends only on the shape, so results do not
 * change with the thread count.
 */
export function rowSlabs(rows: number, BR: number): { rowsPer: number; slabs: number } {
  const want = Math.max(1, Math.min(16, Math.ceil(rows / 256)));
  const rowsPer = Math.max(BR, Math.ceil(rows / want / BR) * BR);
  return { rowsPer, slabs: Math.max(1, Math.ceil(rows / rowsPer)) };
}

/**
 * The tile of a column sum over rows (sumRows, normGrad): columns as wide as divide N up to 512
 * (a row's run of 2 KB streams where 256-byte pieces of rows far apart do not), 1024 elements
 * in all up to eight rows (narrower tiles stay eight rows deep), into a loop-carried partial
 * reduced once at the end. Measured on 2 threads (GB/s, the
 * old 16x64 tile with a reduction per step -> this): sums of 8192x512 9 -> 41, 8192x128
 * 25 -> 53, 8192x384 9 -> 28, 32x32768 10 -> 31.
 */
export function columnSumTiles(N: number): { BR: number; BN: number } {
  const low = N & -N;
  const BN = Math.min(512, low >= 64 ? low : pow2AtLeast(N, 8));
  return { BR: Math.max(1, Math.min(8, 1024 / BN)), BN };
}

/** True when two (contiguous) tensors share any byte of the runtime's memory. */
export function overlaps(a: Tensor, b: Tensor): boolean {
  return a.runtime === b.runtime && a.byteLength > 0 && b.byteLength > 0 &&
    a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
