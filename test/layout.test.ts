/**
 * @fileoverview Tensor views (reshape, narrow), splitHeads / mergeHeads index by index, and
 * ops.sum over the leading axis.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { jit, ops, Runtime } from '../src/index.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

const seq = (n: number): Float32Array => Float32Array.from({ length: n }, (_, i) => i);

describe('views', () => {
  test('reshape and narrow share memory; freeing a view frees nothing; views die with the owner', async () => {
    const rt = await rtP;
    const t = rt.tensor(seq(24), [4, 6]);
    const r = t.reshape([2, 3, 4]);
    expect(r.shape).toEqual([2, 3, 4]);
    const n = r.narrow(1, 2);
    expect(n.shape).toEqual([1, 3, 4]);
    expect(Array.from(n.toArray())).toEqual(Array.from(seq(24)).slice(12));
    n.write(new Float32Array(12).fill(-1));
    expect(t.toArray()[12]).toBe(-1);
    const inUse = rt.stats().inUseBytes;
    n.free();
    expect(rt.stats().inUseBytes).toBe(inUse);
    expect(t.toArray()[0]).toBe(0);
    t.free();
    expect(r.isFreed).toBe(true);
    expect(() => r.toArray()).toThrow(/freed/);
    expect(() => rt.tensor(seq(6), [6]).reshape([4])).toThrow(/reshape: \[6\] has 6 elements, \[4\] has 4/);
    expect(() => rt.tensor(seq(6), [3, 2]).narrow(2, 4)).toThrow(/narrow: need 0 <= start <= end <= 3/);
  });

  test('a view returned from rt.scope keeps its memory alive', async () => {
    const rt = await rtP;
    const v = await rt.scope(async () => (await ops.sum(rt.tensor(seq(12), [2, 6]))).reshape([2, 3]));
    expect(v.isFreed).toBe(false);
    expect(Array.from(v.toArray())).toEqual([6, 8, 10, 12, 14, 16]);
  });
});

describe('splitHeads / mergeHeads', () => {
  test.each([[2, 5, 3, 2, 16], [1, 70, 1, 4, 32], [3, 1, 3, 1, 64], [2, 128, 3, 2, 32]])('B=%i N=%i C=%i H=%i Dh=%i', async (B, N, C, H, Dh) => {
    const rt = await rtP;
    const x = seq(B * N * C * H * Dh);
    const s = await ops.splitHeads(rt.tensor(x, [B, N, C * H * Dh]), { heads: H, components: C });
    expect(s.shape).toEqual([C, B, H, N, Dh]);
    const got = s.toArray();
    for (let c = 0; c < C; c++) for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let n = 0; n < N; n++) for (let d = 0; d < Dh; d++) {
      const want = (((b * N + n) * C + c) * H + h) * Dh + d;
      const at = (((c * B + b) * H + h) * N + n) * Dh + d;
      if (got[at] !== want) expect.fail(`[${c},${b},${h},${n},${d}] = ${got[at]}, want ${want}`);
    }
    const m = await ops.mergeHeads(s);
    expect(m.shape).toEqual([B, N, C * H * Dh]);
    expect(Array.from(m.toArray())).toEqual(Array.from(x));
  });

  test('bad input', async () => {
    const rt = await rtP;
    await expect(ops.splitHeads(rt.empty([2, 3, 48]), { heads: 5 })).rejects.toThrow(/must be positive integers dividing the last dim 48/);
    await expect(ops.splitHeads(rt.empty([2, 3, 48]), { heads: 2 })).rejects.toThrow(/head dim .* = 24\) must be a power of two/);
    await expect(ops.mergeHeads(rt.empty([2, 3, 48]))).rejects.toThrow(/x must be \[C, B, H, N, Dh\]/);
  });
});

describe('ops.sum over axis 0', () => {
  // Each tile width (N's power-of-two factor up to 512, or N rounded up, masked), ragged slabs.
  test.each([[1, 1], [3, 5], [1000, 7], [4097, 130], [0, 4], [4096, 128], [512, 64], [100, 512], [1001, 384], [33, 24], [7, 1000], [64, 2048], [19, 256], [513, 1], [4096, 1], [100003, 3], [2048, 63], [777, 40]])('[%i, %i]', async (R, N) => {
    const rt = await rtP;
    let s = 7;
    const x = Float32Array.from({ length: R * N }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5);
    const out = await ops.sum(rt.tensor(x, [R, N]));
    expect(out.shape).toEqual([N]);
    const got = out.toArray();
    for (let c = 0; c < N; c++) {
      let want = 0;
      for (let r = 0; r < R; r++) want += x[r * N + c]!;
      expect(Math.abs(got[c]! - want)).toBeLessThanOrEqual(1e-6 * Math.sqrt(R + 1) * 4);
    }
  });

  // A few columns are summed as wider rows (every lane of the tile busy); every lane adds in two
  // levels and the slabs' partials are added compensated: 4.2 units of 2^-24 at worst here (a
  // million 0.1s), where one running sum a lane drifted by hundreds (940 for that case).
  test.each([[1_000_000, 1, 'const'], [1_000_000, 1, 'mixed'], [1 << 22, 1, 'mixed'], [300_001, 3, 'mixed'], [65_536, 24, 'mixed'], [8192, 512, 'const']])('[%i, %i] of %s positive values: within 8·2^-24 of the exact sum', async (R, N, kind) => {
    const rt = await rtP;
    const x = Float32Array.from({ length: R * N }, (_, i) => (kind === 'const' ? 0.1 : 0.1 + (i % 5) * 0.01));
    const exact = new Float64Array(N);
    for (let i = 0; i < R * N; i++) exact[i % N]! += x[i]!;
    const got = (await ops.sum(rt.tensor(x, [R, N]))).toArray();
    for (let c = 0; c < N; c++) expect(Math.abs(got[c]! - exact[c]!) / exact[c]!, `column ${c}`).toBeLessThanOrEqual(8 * 2 ** -24);
  });

  test('infinities and NaN survive the compensation', async () => {
    const rt = await rtP;
    const run = async (at: Record<number, number>): Promise<number> =>
      (await ops.sum(rt.tensor(Float32Array.from({ length: 5000 }, (_, i) => at[i] ?? 1), [5000]))).toArray()[0]!;
    expect(await run({ 7: Infinity })).toBe(Infinity);
    expect(await run({ 7: -Infinity })).toBe(-Infinity);
    expect(await run({ 7: Infinity, 4000: -Infinity })).toBeNaN();
    expect(await run({ 9: NaN })).toBeNaN();
    expect(await run(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [i, 3e38])))).toBe(Infinity);
  });
});

describe('fresh outputs are float', () => {
  test("ops.sum and jit.map refuse dtype 'i32' for the output they allocate", async () => {
    const rt = await rtP;
    const x = rt.tensor([1.5, 2.5, 3.5, 4.5], [2, 2]);
    await expect(ops.sum(x, { dtype: 'i32' as never })).rejects.toThrow(/sum: dtype must be 'f32', 'f16' or 'bf16', got "i32"/);
    const twice = jit.map('(a) => a * 2.0');
    await expect(twice(x, { dtype: 'i32' as never })).rejects.toThrow(/dtype must be 'f32', 'f16' or 'bf16', got "i32"/);
    expect(Array.from((await twice(x, { dtype: 'bf16' })).toArray())).toEqual([3, 5, 7, 9]);
  });
});
