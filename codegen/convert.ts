/**
 * @fileoverview f16 / bf16 <-> f32 on four lanes at a time, bit-exact with src/util/half.ts
 * (round to nearest even, subnormals, Inf, NaN quieted with its sign kept, -0).
 */
import binaryen from 'binaryen';
import type { Emit, Ref } from './emit.js';

const splat = (e: Emit, c: number): Ref => e.m.i32x4.splat(e.m.i32.const(c | 0));

/** i32x4 lanes holding f16 bit patterns (0..65535) -> the f32 values they denote, exactly. */
export function vF16ToF32(e: Emit, bits: Ref): Ref {
  const m = e.m;
  const h = e.bind(binaryen.v128, bits);
  const em = e.bind(binaryen.v128, m.v128.and(h.get(), splat(e, 0x7fff)));
  const sign = m.i32x4.shl(m.v128.and(h.get(), splat(e, 0x8000)), m.i32.const(16));
  // Shifted into f32 position the exponent is off by 112; one exact multiply by 2^112 fixes
  // normals and subnormals alike (wasm keeps f32 subnormals).
  const shifted = e.bind(binaryen.v128, m.i32x4.shl(em.get(), m.i32.const(13)));
  const finite = m.f32x4.mul(shifted.get(), m.f32x4.splat(m.f32.const(2 ** 112)));
  const special = m.v128.or(shifted.get(), splat(e, 0x7f800000)); // Inf / NaN keep their payload
  const isSpecial = m.i32x4.ge_s(em.get(), splat(e, 0x7c00));
  return m.block(null, [h.set, em.set, shifted.set, m.v128.or(m.v128.bitselect(special, finite, isSpecial), sign)], binaryen.v128);
}

/** f32x4 -> i32x4 lanes holding the nearest f16 bit patterns (ties to even; overflow -> Inf). */
export function vF32ToF16(e: Emit, x: Ref): Ref {
  const m = e.m;
  const b = e.bind(binaryen.v128, x);
  const a = e.bind(binaryen.v128, m.v128.and(b.get(), splat(e, 0x7fffffff)));
  const sign = m.v128.and(m.i32x4.shr_u(b.get(), m.i32.const(16)), splat(e, 0x8000));
  // Normal range: rebias the exponent, add the round-to-even bias, shift. A carry out of the
  // mantissa bumps the exponent, which is exactly right; past 65504 it lands on or beyond Inf.
  const lsb = m.v128.and(m.i32x4.shr_u(a.get(), m.i32.const(13)), splat(e, 1));
  const normal = m.i32x4.min_s(
    m.i32x4.shr_u(m.i32x4.add(m.i32x4.add(m.i32x4.sub(a.get(), splat(e, 112 << 23)), splat(e, 0xfff)), lsb), m.i32.const(13)),
    splat(e, 0x7c00),
  );
  // Subnormal range: adding 0.5 leaves round(|x| * 2^24) in the low mantissa bits (the ulp of
  // [0.5, 1) is 2^-24), rounded to even by the f32 adder itself.
  const sub = m.i32x4.sub(m.f32x4.add(a.get(), m.f32x4.splat(m.f32.const(0.5))), splat(e, 0x3f000000));
  const finite = m.v128.bitselect(sub, normal, m.i32x4.lt_s(a.get(), splat(e, 0x38800000)));
  const nan = m.v128.or(splat(e, 0x7e00), m.v128.and(m.i32x4.shr_u(a.get(), m.i32.const(13)), splat(e, 0x3ff)));
  const isNan = m.i32x4.gt_s(a.get(), splat(e, 0x7f800000));
  return m.block(null, [b.set, a.set, m.v128.or(m.v128.bitselect(nan, finite, isNan), sign)], binaryen.v128);
}

/** i32x4 lanes holding bf16 bit patterns -> f32x4 (exact: the top half of an f32). */
export function vBf16ToF32(e: Emit, bits: Ref): Ref {
  return e.m.i32x4.shl(bits, e.m.i32.const(16));
}

/** f32x4 -> i32x4 lanes holding the nearest bf16 bit patterns (ties to even; NaN quieted). */
export function vF32ToBf16(e: Emit, x: Ref): Ref {
  const m = e.m;
  const b = e.bind(binaryen.v128, x);
  const lsb = m.v128.and(m.i32x4.shr_u(b.get(), m.i32.const(16)), splat(e, 1));
  const rounded = m.i32x4.shr_u(m.i32x4.add(m.i32x4.add(b.get(), splat(e, 0x7fff)), lsb), m.i32.const(16));
  const nan = m.v128.or(m.i32x4.shr_u(b.get(), m.i32.const(16)), splat(e, 0x40));
  const isNan = m.i32x4.gt_u(m.v128.and(b.get(), splat(e, 0x7fffffff)), splat(e, 0x7f800000));
  return m.block(null, [b.set, m.v128.and(m.v128.bitselect(nan, rounded, isNan), splat(e, 0xffff))], binaryen.v128);
}

/**
 * Byte indices that move four bf16 (the low 8 bytes) into the top halves of four f32 lanes;
 * 0x80 is out of range, so swizzle writes 0 there.
 */
const BF16_TO_F32_BYTES = [0x80, 0x80, 0, 1, 0x80, 0x80, 2, 3, 0x80, 0x80, 4, 5, 0x80, 0x80, 6, 7];

/**
 * Four halves at byte address `addr` (+offset) as f32x4. bf16 is 8 bytes loaded into the low
 * half and one byte swizzle into place: a shuffle-port op instead of a widening load and a
 * shift, the shift taking an FP port that FMAs need (x64).
 */
export function loadHalf4(e: Emit, addr: Ref, kind: 'f16' | 'bf16', offset = 0): Ref {
  const m = e.m;
  if (kind === 'bf16') return m.i8x16.swizzle(m.v128.load64_zero(offset, 2, addr), m.v128.const(BF16_TO_F32_BYTES));
  return vF16ToF32(e, m.v128.load16x4_u(offset, 2, addr));
}

/** Store f32x4 `x` as four halves at byte address `addr` (+offset). */
export function storeHalf4(e: Emit, addr: Ref, x: Ref, kind: 'f16' | 'bf16', offset = 0): Ref {
  // The address is evaluated before the value, as the operands are written.
  const a = e.bind(binaryen.i32, addr);
  const bits = e.bind(binaryen.v128, kind === 'f16' ? vF32ToF16(e, x) : vF32ToBf16(e, x));
  // Lanes hold 0..65535, so the saturating narrow is exact; the low 8 bytes are the 4 halves.
  const packed = e.m.i16x8.narrow_i32x4_u(bits.get(), bits.get());
  return e.m.block(null, [a.set, bits.set, e.m.v128.store64_lane(offset, 2, 0, a.get(), packed)]);
}
