/**
 * @fileoverview SIMD f16/bf16 conversions against the scalar references in src/util/half.ts, bit
 * for bit: every 16-bit pattern widened, dense f32 sweeps with every rounding midpoint (and its
 * neighbours) narrowed, and the load/store helpers over memory at two offsets.
 */
import { describe, expect, test } from 'vitest';
import { vBf16ToF32, vF16ToF32, vF32ToBf16, vF32ToF16 } from '../codegen/convert.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/util/half.js';
import { bitsOf, floatOf, halfMap, vectorMap } from './util/wasmharness.js';

const ALL16 = Uint32Array.from({ length: 65536 }, (_, k) => k);
const hex = (v: number): string => `0x${v.toString(16)}`;

/** f32 bit patterns: every `step`-th one (both signs), Inf, NaNs with payloads. */
function f32Sweep(step: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < 0x80000000; b += step) out.push(b, (b | 0x80000000) >>> 0);
  out.push(0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff812345, 0x7fbfe000);
  return out;
}

/** A pattern and the ones just below and above it (same sign). */
const around = (b: number): number[] => [b - 1, b, b + 1].map((v) => v >>> 0);

/** The f32 bits of every f16 value and every midpoint between neighbours, with their neighbours. */
function f16Edges(): number[] {
  const out: number[] = [];
  for (let h = 0; h < 0x7c00; h++) {
    const a = f16BitsToF32(h);
    const mid = (a + f16BitsToF32(h + 1)) / 2; // exact in f32: f16 has 13 fewer bits
    for (const b of [bitsOf(a), bitsOf(mid)]) for (const v of around(b)) out.push(v, (v | 0x80000000) >>> 0);
  }
  return out.filter((b) => b !== 0xffffffff && b !== 0x7fffffff);
}

/** Expected widening: the reference value's f32 bits, NaNs compared as "NaN with the same sign". */
function checkWiden(got: Uint32Array, ref: (h: number) => number, kind: string): void {
  for (let h = 0; h < 65536; h++) {
    const want = ref(h);
    const g = got[h]!;
    const ok = Number.isNaN(want) ? Number.isNaN(floatOf(g)) && g >>> 31 === h >>> 15 : g === bitsOf(want);
    if (!ok) expect.fail(`${kind} ${hex(h)}: got ${hex(g)}, want ${want}`);
  }
}

function checkNarrow(bits: readonly number[], got: ArrayLike<number>, ref: (x: number) => number, kind: string): void {
  bits.forEach((b, k) => {
    const want = ref(floatOf(b));
    if (got[k] !== want) expect.fail(`${kind}: f32 ${hex(b)}: got ${hex(got[k]!)}, want ${hex(want)}`);
  });
}

describe('f16', () => {
  test('f16 -> f32 is exact for all 65536 patterns (sign of -0 and NaN kept)', () => {
    checkWiden(vectorMap(vF16ToF32, false)(ALL16), f16BitsToF32, 'f16');
  });

  test('f32 -> f16: every f16 value and midpoint with neighbours, a dense sweep, specials', () => {
    const bits = [...f16Edges(), ...f32Sweep(1031)];
    const out = vectorMap(vF32ToF16, false)(Uint32Array.from(bits));
    checkNarrow(bits, out, f32ToF16Bits, 'f16');
  });

  test('f32 -> f16 every 91st pattern in and near the f16 range', () => {
    // 2^-26 .. 2^17 covers underflow to 0, subnormals, normals and overflow to Inf.
    const bits: number[] = [];
    for (let b = bitsOf(2 ** -26); b < bitsOf(2 ** 17); b += 7 * 13) bits.push(b, (b | 0x80000000) >>> 0);
    const out = vectorMap(vF32ToF16, false)(Uint32Array.from(bits));
    checkNarrow(bits, out, f32ToF16Bits, 'f16');
  });
});

describe('bf16', () => {
  test('bf16 -> f32 is exact for all 65536 patterns', () => {
    checkWiden(vectorMap(vBf16ToF32, false)(ALL16), bf16BitsToF32, 'bf16');
  });

  test('f32 -> bf16: every tie with neighbours, a dense sweep, specials', () => {
    const bits: number[] = [];
    for (let h = 0; h < 65536; h++) if ((h & 0x7f80) !== 0x7f80) bits.push(...around(((h << 16) | 0x8000) >>> 0));
    const all = bits.concat(f32Sweep(1031));
    const out = vectorMap(vF32ToBf16, false)(Uint32Array.from(all));
    checkNarrow(all, out, f32ToBf16Bits, 'bf16');
  });
});

describe.each([0, 8])('loadHalf4 / storeHalf4 (offset %i)', (offset) => {
  test.each(['f16', 'bf16'] as const)('%s: all patterns load, a sweep stores, stores write 8 bytes', (kind) => {
    const h = halfMap(kind, offset);
    const widen = kind === 'f16' ? f16BitsToF32 : bf16BitsToF32;
    const narrow = kind === 'f16' ? f32ToF16Bits : f32ToBf16Bits;
    checkWiden(h.load(Uint16Array.from(ALL16)), widen, kind);
    // 4k+1 values so the last group is partly padding; the u16 after it must be untouched.
    const ties = [...around(bitsOf(1 + 2 ** -11)), ...around(bitsOf(1 + 3 * 2 ** -11)), 0x3f808000, 0x3f818000];
    const bits = ties.concat(f32Sweep(65537 * 3)).slice(0, 4 * 100 + 1);
    const { out, sentinel } = h.store(Uint32Array.from(bits));
    checkNarrow(bits, out, narrow, kind);
    expect(sentinel).toBe(0xa5a5);
  });
});
