/**
 * @fileoverview Tensors: typed views (dtype, shape, strides, offset) into a runtime's shared
 * memory. Copies in and out go through Buffer.copy (a native memcpy): on shared memory
 * TypedArray.prototype.set is several times slower.
 */
import type { StorageDType } from '../ir/ir.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits, f64ToF32Odd } from '../util/half.js';
import type { Runtime } from './runtime.js';

/** Bytes per element of each storage dtype. */
export const DTYPE_BYTES: Readonly<Record<StorageDType, number>> = { f32: 4, i32: 4, f16: 2, bf16: 2 };
const DTYPES = new Set(Object.keys(DTYPE_BYTES));

/** The owner of a tensor's memory (a Runtime). */
export interface TensorOwner {
  readonly memory: WebAssembly.Memory;
  /** Give a tensor's block back; called once by `free`. */
  releaseTensor(t: Tensor): void;
}

/** Validate a dtype name, with a clear error. */
export function checkDtype(dtype: unknown, where: string): StorageDType {
  if (typeof dtype !== 'string' || !DTYPES.has(dtype)) {
    throw new TypeError(`${where}: dtype must be one of f32, f16, bf16, i32, got ${JSON.stringify(dtype)}`);
  }
  return dtype as StorageDType;
}

/** Validate a shape (non-negative integers), with a clear error; returns its element count. */
export function checkShape(shape: unknown, where: string): number {
  if (!Array.isArray(shape)) throw new TypeError(`${where}: shape must be an array of non-negative integers, got ${JSON.stringify(shape)}`);
  let n = 1;
  shape.forEach((d: unknown, i: number) => {
    if (typeof d !== 'number' || !Number.isInteger(d) || d < 0) {
      throw new TypeError(`${where}: shape[${i}] must be a non-negative integer, got ${JSON.stringify(d)}`);
    }
    n *= d;
  });
  if (n > 2 ** 31 - 1) throw new RangeError(`${where}: shape [${shape.join(', ')}] has more than 2^31-1 elements`);
  return n;
}

/**
 * Validate the data of `rt.tensor` / `write`: a typed array of numbers, or an array-like whose
 * elements are all numbers (NaN is a number). A string is array-like too, and would quietly
 * become NaNs.
 */
export function checkData(data: unknown, where: string): asserts data is ArrayLike<number> {
  if (ArrayBuffer.isView(data)) {
    // Typed arrays hold numbers, except the BigInt ones; a DataView has no elements.
    if (!(data instanceof DataView) && !(data instanceof BigInt64Array) && !(data instanceof BigUint64Array)) return;
  } else if (data !== null && typeof data === 'object' && typeof (data as { length?: unknown }).length === 'number') {
    const a = data as ArrayLike<unknown>;
    for (let i = 0; i < a.length; i++) {
      if (typeof a[i] !== 'number') throw new TypeError(`${where}: data[${i}] must be a number, got ${typeof a[i] === 'string' ? JSON.stringify(a[i]) : typeof a[i]}`);
    }
    return;
  }
  const got = data === null ? 'null' : typeof data === 'object' ? ((data as object).constructor?.name ?? 'an object') : typeof data === 'string' ? `the string ${JSON.stringify(data.length > 20 ? `${data.slice(0, 20)}...` : data)}` : typeof data;
  throw new TypeError(`${where}: data must be a typed array or an array of numbers, got ${got}`);
}

/** A dense (or strided) view of `size` elements of `dtype` in a runtime's memory. */
export class Tensor {
  readonly shape: readonly number[];
  readonly strides: readonly number[];
  readonly size: number;
  private freed = false;

  /** @internal Use `runtime.tensor` / `runtime.empty`. */
  constructor(
    readonly runtime: Runtime,
    /** Byte offset of element 0 in the runtime's memory. */
    readonly byteOffset: number,
    shape: readonly number[],
    readonly dtype: StorageDType,
    strides?: readonly number[],
  ) {
    this.shape = Object.freeze([...shape]);
    this.size = shape.reduce((p, d) => p * d, 1);
    this.strides = Object.freeze(strides ? [...strides] : contiguousStrides(shape));
  }

  /** Bytes of the elements (contiguous tensors). */
  get byteLength(): number {
    return this.size * DTYPE_BYTES[this.dtype];
  }

  /** The tensor whose memory this view shares (undefined for a tensor that owns its memory). */
  base?: Tensor;

  /** True once `free` has been called (on this view or on the memory's owner). */
  get isFreed(): boolean {
    return this.freed || (this.base?.isFreed ?? false);
  }

  /**
   * A view of the same memory with another shape of the same size (contiguous tensors). Freeing
   * a view frees nothing; the view dies with its owner.
   */
  reshape(shape: readonly number[]): Tensor {
    this.assertLive('reshape');
    const n = checkShape(shape, 'reshape');
    if (n !== this.size) throw new RangeError(`reshape: [${this.shape.join(', ')}] has ${this.size} elements, [${shape.join(', ')}] has ${n}`);
    if (!this.isContiguous()) throw new Error('reshape: only contiguous tensors can be reshaped');
    return this.view(0, shape);
  }

  /** Entries [start, end) along the first axis, as a view (see `reshape`). */
  narrow(start: number, end: number): Tensor {
    this.assertLive('narrow');
    const d0 = this.shape[0];
    if (d0 === undefined) throw new RangeError('narrow: a 0-d tensor has no first axis');
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end < start || end > d0) {
      throw new RangeError(`narrow: need 0 <= start <= end <= ${d0} (integers), got ${start}, ${end}`);
    }
    if (!this.isContiguous()) throw new Error('narrow: only contiguous tensors can be narrowed');
    const row = this.size / d0 || 0;
    return this.view(start * row, [end - start, ...this.shape.slice(1)]);
  }

  private view(elementOffset: number, shape: readonly number[]): Tensor {
    const t = new Tensor(this.runtime, this.byteOffset + elementOffset * DTYPE_BYTES[this.dtype], shape, this.dtype);
    t.base = this.base ?? this;
    return t;
  }

  /** Row-major with no gaps. */
  isContiguous(): boolean {
    const c = contiguousStrides(this.shape);
    return this.strides.every((s, i) => s === c[i] || this.shape[i] === 1);
  }

  /** Throw a clear error if this tensor was freed (`what` names it). */
  assertLive(what = 'tensor'): void {
    if (this.isFreed) throw new Error(`${what}: this tensor was freed`);
  }

  /** The elements as a new Float32Array (Int32Array for i32), f16/bf16 widened exactly. */
  toArray(): Float32Array | Int32Array {
    this.assertLive('toArray');
    if (!this.isContiguous()) throw new Error('toArray: only contiguous tensors can be read (copy a strided view first)');
    const buf = this.runtime.memory.buffer;
    if (this.dtype === 'f32' || this.dtype === 'i32') {
      const out = this.dtype === 'f32' ? new Float32Array(this.size) : new Int32Array(this.size);
      Buffer.from(buf, this.byteOffset, this.byteLength).copy(Buffer.from(out.buffer));
      return out;
    }
    const bits = new Uint16Array(this.size);
    Buffer.from(buf, this.byteOffset, this.byteLength).copy(Buffer.from(bits.buffer));
    const widen = this.dtype === 'f16' ? f16BitsToF32 : bf16BitsToF32;
    const out = new Float32Array(this.size);
    for (let i = 0; i < bits.length; i++) out[i] = widen(bits[i]!);
    return out;
  }

  /** Overwrite the elements from `data` (converted to this dtype; length must match). */
  write(data: ArrayLike<number>): void {
    this.assertLive('write');
    checkData(data, 'write');
    if (data.length !== this.size) throw new RangeError(`write: expected ${this.size} values for shape [${this.shape.join(', ')}], got ${data.length}`);
    writeElements(this.runtime.memory, this.byteOffset, this.dtype, data);
  }

  /** Give the memory back to the runtime. Idempotent. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    if (this.base) return;
    this.runtime.releaseTensor(this);
  }
}

export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Copy `data` into memory at `byteOffset` as `dtype`. */
export function writeElements(memory: WebAssembly.Memory, byteOffset: number, dtype: StorageDType, data: ArrayLike<number>): void {
  const n = data.length;
  let src: ArrayBufferView;
  if (dtype === 'f32') src = data instanceof Float32Array ? data : Float32Array.from(data);
  else if (dtype === 'i32') {
    if (!(data instanceof Int32Array)) {
      for (let i = 0; i < n; i++) {
        const v = data[i]!;
        if (!Number.isInteger(v) || v < -2147483648 || v > 2147483647) throw new RangeError(`i32 tensor: element ${i} is ${v}, not an i32 integer`);
      }
    }
    src = data instanceof Int32Array ? data : Int32Array.from(data);
  } else {
    const narrow = dtype === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
    const bits = new Uint16Array(n);
    // f32 data is exact in f32; other numbers go through f32 rounded to odd, so they round once.
    if (data instanceof Float32Array) for (let i = 0; i < n; i++) bits[i] = narrow(data[i]!);
    else for (let i = 0; i < n; i++) bits[i] = narrow(f64ToF32Odd(data[i]!));
    src = bits;
  }
  Buffer.from(src.buffer, src.byteOffset, src.byteLength).copy(Buffer.from(memory.buffer, byteOffset, src.byteLength));
}
