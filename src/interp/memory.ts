/**
 * @fileoverview The interpreter's view of memory: typed-array views built once per call, tensor
 * arguments checked against the buffer, and the element conversions between storage dtypes
 * (f32, f16, bf16, i32) and the f32/i32 compute types.
 */
import type { ParamIR, StorageDType } from '../ir/ir.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../util/half.js';

/** A tile (or a scalar: one element): f32 in a Float32Array, i32 and bool (0/1) in an Int32Array. */
export type Tile = Float32Array | Int32Array;

/** Views over the whole buffer; every tensor access indexes one of them. */
export interface Views {
  readonly f32: Float32Array;
  readonly i32: Int32Array;
  readonly u16: Uint16Array;
}

/** A tensor argument bound to its parameter: `base` is its first element's index in its view. */
export interface BoundTensor {
  readonly name: string;
  readonly dtype: StorageDType;
  readonly base: number;
  /** Number of elements; valid offsets are [0, length). */
  readonly length: number;
}

/** Bytes per element of each storage dtype. */
export const STORAGE_BYTES: Record<StorageDType, number> = { f32: 4, i32: 4, f16: 2, bf16: 2 };

/**
 * Views over `memory`. A buffer whose length is not a multiple of 4 still gets views: the
 * 32-bit ones stop at the last whole word (tensor checks keep accesses inside them).
 */
export function makeViews(memory: ArrayBufferLike): Views {
  const n = memory.byteLength;
  return {
    f32: new Float32Array(memory, 0, Math.floor(n / 4)),
    i32: new Int32Array(memory, 0, Math.floor(n / 4)),
    u16: new Uint16Array(memory, 0, Math.floor(n / 2)),
  };
}

/**
 * Checks a tensor argument (integral, aligned for its dtype, inside the buffer) and binds it.
 * `where` prefixes the message, e.g. "interpret 'saxpy': argument 0 ('X')".
 */
export function bindTensor(
  param: ParamIR & { kind: 'tensor' }, byteOffset: number, length: number, bufferBytes: number, where: string,
): BoundTensor {
  const size = STORAGE_BYTES[param.dtype];
  if (!Number.isSafeInteger(byteOffset) || byteOffset < 0) throw new RangeError(`${where}: byteOffset ${byteOffset} is not a non-negative integer`);
  if (!Number.isSafeInteger(length) || length < 0) throw new RangeError(`${where}: length ${length} is not a non-negative integer`);
  // Element views index whole elements, so a misaligned tensor cannot be read through them.
  if (byteOffset % size !== 0) throw new RangeError(`${where}: byteOffset ${byteOffset} is not aligned to ${size} bytes for ${param.dtype}`);
  const end = byteOffset + length * size;
  if (end > bufferBytes) {
    throw new RangeError(`${where}: ${length} ${param.dtype} elements at byte ${byteOffset} end at byte ${end}, past the buffer's ${bufferBytes} bytes`);
  }
  return { name: param.name, dtype: param.dtype, base: byteOffset / size, length };
}

/** The first active lane whose offset is outside the tensor, or -1. */
export function firstOutOfBounds(t: BoundTensor, offs: Int32Array, mask: Int32Array | undefined): number {
  for (let i = 0; i < offs.length; i++) {
    if (mask && mask[i] === 0) continue;
    const o = offs[i]!;
    if (o < 0 || o >= t.length) return i;
  }
  return -1;
}

/**
 * Reads `t` at `offs` into `out` (f32 for float storage, i32 for i32). Lanes where `mask` is 0
 * read nothing and take `other` (0 when absent). Offsets must already be checked.
 */
export function gather(views: Views, t: BoundTensor, offs: Int32Array, mask: Int32Array | undefined, other: Tile | undefined, out: Tile): void {
  const n = offs.length;
  const b = t.base;
  const active = (i: number): boolean => !mask || mask[i] !== 0;
  switch (t.dtype) {
    case 'f32': case 'i32': {
      const src = t.dtype === 'f32' ? views.f32 : views.i32;
      for (let i = 0; i < n; i++) out[i] = active(i) ? src[b + offs[i]!]! : other ? other[i]! : 0;
      break;
    }
    case 'f16':
      for (let i = 0; i < n; i++) out[i] = active(i) ? f16BitsToF32(views.u16[b + offs[i]!]!) : other ? other[i]! : 0;
      break;
    case 'bf16':
      for (let i = 0; i < n; i++) out[i] = active(i) ? bf16BitsToF32(views.u16[b + offs[i]!]!) : other ? other[i]! : 0;
      break;
  }
}

/**
 * Writes `value` to `t` at `offs` where `mask` is not 0, rounding f32 to f16/bf16 to nearest
 * even. Offsets must already be checked. Lanes run in order, so of two lanes with the same
 * offset the later one wins.
 */
export function scatter(views: Views, t: BoundTensor, offs: Int32Array, value: Tile, mask: Int32Array | undefined): void {
  const n = offs.length;
  const b = t.base;
  for (let i = 0; i < n; i++) {
    if (mask && mask[i] === 0) continue;
    const at = b + offs[i]!;
    switch (t.dtype) {
      case 'f32': views.f32[at] = value[i]!; break;
      case 'i32': views.i32[at] = value[i]!; break;
      case 'f16': views.u16[at] = f32ToF16Bits(value[i]!); break;
      case 'bf16': views.u16[at] = f32ToBf16Bits(value[i]!); break;
    }
  }
}
