/**
 * @fileoverview The counter-based generator behind `rand(seed, offsets)`: a pure function of
 * (seed, offset), so dropout's backward pass replays the forward's mask exactly. Integer-only
 * (multiply, xor, shift) so codegen vectorises it bit-for-bit with this reference.
 */

/** 32 random bits for (seed, offset): lowbias32 finaliser over a seeded Weyl step. */
export function randBits(seed: number, offset: number): number {
  let x = (Math.imul(offset | 0, 0x9e3779b1) + Math.imul(seed | 0, 0x85ebca77)) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x7feb352d);
  x ^= x >>> 15;
  x = Math.imul(x, 0x846ca68b);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Uniform f32 in [0, 1): the top 24 bits of `randBits` times 2^-24 (exact in f32). */
export function randUniform(seed: number, offset: number): number {
  return (randBits(seed, offset) >>> 8) * 2 ** -24;
}
