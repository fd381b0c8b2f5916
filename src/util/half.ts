/**
 * @fileoverview Scalar reference conversions between f32 and the 16-bit storage types, exact
 * round-to-nearest-even. The interpreter and tensor copies use these; codegen's SIMD versions
 * are tested against them over every f16 bit pattern.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Round half to even of a non-negative double. */
function roundHalfEven(v: number): number {
  const f = Math.floor(v);
  const d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/** f16 bit pattern (0..65535) -> the f32 value it denotes (exact). */
export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const f = h & 0x3ff;
  if (e === 0) return sign * f * 2 ** -24;
  if (e === 31) return f ? NaN : sign * Infinity;
  return sign * (1024 + f) * 2 ** (e - 25);
}

/** f32 value -> nearest f16 bit pattern (ties to even; overflow -> inf; NaN -> quiet NaN). */
export function f32ToF16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  if (exp === 0xff) return sign | 0x7c00 | ((b & 0x7fffff) !== 0 ? 0x200 | ((b >>> 13) & 0x3ff) : 0);
  const a = Math.abs(f32[0]!);
  if (a < 2 ** -14) return sign | roundHalfEven(a * 2 ** 24); // subnormal (may round up to 0x400)
  const e = exp - 127;
  let m = roundHalfEven((a / 2 ** e) * 1024);
  let be = e + 15;
  if (m === 2048) {
    m = 1024;
    be += 1;
  }
  if (be >= 31) return sign | 0x7c00;
  return sign | (be << 10) | (m - 1024);
}

/**
 * x rounded to f32 with round-to-odd: an inexact result keeps its last bit set. Rounding that
 * again to f16 or bf16 (which have at least 2 bits fewer) with ties to even gives the correctly
 * rounded half of x itself; rounding x to the nearest f32 first can land on a half's tie and round
 * the wrong way (1 + 2^-11 + 2^-40 -> f16 gave 1, not 1 + 2^-10).
 */
export function f64ToF32Odd(x: number): number {
  const f = Math.fround(x);
  if (f === x || Number.isNaN(x)) return f;
  f32[0] = f;
  // Even last bit: step one ulp toward x, to the odd neighbour (f's magnitude is above or below x's).
  if ((u32[0]! & 1) === 0) u32[0] = Math.abs(f) > Math.abs(x) ? u32[0]! - 1 : u32[0]! + 1;
  return f32[0]!;
}

/** bf16 bit pattern -> f32 value (exact). */
export function bf16BitsToF32(h: number): number {
  u32[0] = (h & 0xffff) << 16;
  return f32[0]!;
}

/** f32 value -> nearest bf16 bit pattern (ties to even; NaN -> quiet NaN). */
export function f32ToBf16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7f800000) === 0x7f800000 && (b & 0x7fffff) !== 0) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}
