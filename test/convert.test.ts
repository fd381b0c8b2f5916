/**
 * @fileoverview SIMD f16/bf16 conversions against the scalar references: every f16 bit
 * pattern both ways, dense f32 sweeps with every f16 rounding midpoint, bf16 sweeps.
 */
import { describe, expect, test } from 'vitest';
import { vBf16ToF32, vF16ToF32, vF32ToBf16, vF32ToF16 } from '../codegen/convert.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/util/half.js';
import { bitsOf, floatOf, vectorMap } from './util/wasmharness.js';

const same = (a: number, b: number): boolean => a === b || (Number.isNaN(a) && Number.isNaN(b)) ;

describe('f16', () => {
  test('f16 -> f32 is exact for all 65536 bit patterns', () => {
    const run = vectorMap(vF16ToF32, false);
    const input = Uint32Array.from({ length: 65536 }, (_, i) => i);
    const out = run(input);
    for (let h = 0; h < 65536; h++) {
      const want = f16BitsToF32(h);
      const got = floatOf(out[h]!);
      if (!same(got, want) || Object.is(got, -0) !== Object.is(want, -0)) expect.fail(`f16 0x${h.toString(16)}: got ${got}, want ${want}`);
      if (Number.isNaN(want)) expect((out[h]! >>> 31) === (h >>> 15)).toBe(true);
    }
  });

  test('f32 -> f16 rounds to nearest even: every f16 value, every midpoint, a dense sweep', () => {
    const run = vectorMap(vF32ToF16, false);
    const xs: number[] = [];
    for (let h = 0; h < 0x7c00; h++) {
      const a = f16BitsToF32(h);
      const b = f16BitsToF32(h + 1);
      xs.push(a, -a, (a + b) / 2, -(a + b) / 2); // exact values and exact midpoints
    }
    for (let b = 0; b < 0x80000000; b += 7919) xs.push(floatOf(b), floatOf(b | 0x80000000));
    xs.push(Infinity, -Infinity, NaN, 65519.99, 65520, 1e10, 2 ** -25, 2 ** -25 * 1.0000001, 2 ** -24 * 1.5);
    const input = Uint32Array.from(xs, bitsOf);
    const out = run(input);
    xs.forEach((x, k) => {
      const want = f32ToF16Bits(Math.fround(x));
      if (out[k] !== want) expect.fail(`f32 ${x} (0x${input[k]!.toString(16)}): got 0x${out[k]!.toString(16)}, want 0x${want.toString(16)}`);
    });
  });
});

describe('bf16', () => {
  test('bf16 -> f32 for all 65536 patterns, f32 -> bf16 over a dense sweep with ties', () => {
    const up = vectorMap(vBf16ToF32, false)(Uint32Array.from({ length: 65536 }, (_, i) => i));
    for (let h = 0; h < 65536; h++) if (!same(floatOf(up[h]!), bf16BitsToF32(h))) expect.fail(`bf16 0x${h.toString(16)}`);
    const xs: number[] = [];
    for (let b = 0; b < 0x100000000; b += 65537) xs.push(floatOf(b >>> 0));
    for (let h = 0; h < 65536; h += 3) xs.push(floatOf(((h << 16) | 0x8000) >>> 0)); // exact ties
    const input = Uint32Array.from(xs, bitsOf);
    const out = vectorMap(vF32ToBf16, false)(input);
    xs.forEach((x, k) => {
      const want = f32ToBf16Bits(x);
      if (out[k] !== want) expect.fail(`f32 0x${input[k]!.toString(16)}: got 0x${out[k]!.toString(16)}, want 0x${want.toString(16)}`);
    });
  });
});
