/**
 * @fileoverview Flash attention against the naive f64 reference: sizes with tails, head dims,
 * causal, sliding windows, grouped-query heads, per-batch key lengths, storage dtypes, dropout
 * replay, and the backward (reference gradients and finite differences).
 */
import { afterAll, describe, expect, test } from 'vitest';
import { ops, Runtime, type Tensor } from '../src/index.js';
import { randUniform } from '../src/util/rand.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/util/half.js';
import { attentionRef, type AttentionRefOptions } from '../templates/reference.js';
import { maxErr, rand } from './util/data.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

interface Case { B: number; H: number; Hkv: number; N: number; D: number; causal?: boolean; window?: number; kvLens?: number[]; dtype?: 'f32' | 'f16' | 'bf16' }

const stored = (x: number, d: string): number => (d === 'f16' ? f16BitsToF32(f32ToF16Bits(x)) : d === 'bf16' ? bf16BitsToF32(f32ToBf16Bits(x)) : x);

async function run(c: Case, grads: boolean): Promise<void> {
  const rt = await rtP;
  const { B, H, Hkv, N, D } = c;
  const dtype = c.dtype ?? 'f32';
  const q = rand(B * H * N * D, N + D, 1.5).map((x) => stored(x, dtype));
  const k = rand(B * Hkv * N * D, N + 2 * D, 1.5).map((x) => stored(x, dtype));
  const v = rand(B * Hkv * N * D, N + 3 * D).map((x) => stored(x, dtype));
  const Q = rt.tensor(q, [B, H, N, D], dtype), K = rt.tensor(k, [B, Hkv, N, D], dtype), V = rt.tensor(v, [B, Hkv, N, D], dtype);
  const opts = { causal: c.causal, window: c.window, kvLens: c.kvLens };
  const fwd = await ops.attention(Q, K, V, opts);
  const dout = rand(B * H * N * D, 77);
  const ref = attentionRef(q, k, v, { B, H, Hkv, N, D, ...opts } as AttentionRefOptions, grads ? dout : undefined);
  const tol = dtype === 'f32' ? 1e-5 : dtype === 'f16' ? 2e-3 : 1.6e-2;
  expect(maxErr(fwd.out.toArray(), Float64Array.from(ref.out, (x) => stored(x, dtype)))).toBeLessThanOrEqual(tol);
  const lse = fwd.lse.toArray();
  for (let i = 0; i < lse.length; i++) {
    if (ref.lse[i] === -Infinity) expect(lse[i]).toBe(-Infinity);
    else expect(Math.abs(lse[i]! - ref.lse[i]!)).toBeLessThanOrEqual(2e-5 * (1 + Math.abs(ref.lse[i]!)));
  }
  if (!grads) return;
  const gt = dtype === 'f32' ? 5e-5 : 3e-2;
  // Both schedules; the one-pass backward sums dq in place, so its dq starts out as garbage.
  for (const fused of dtype === 'f32' ? [true, false] : [false]) {
    const out = { dq: rt.tensor(new Float32Array(B * H * N * D).fill(NaN), [B, H, N, D], dtype), dk: rt.tensor(new Float32Array(B * Hkv * N * D).fill(7), [B, Hkv, N, D], dtype) };
    const g = await ops.attentionBackward(rt.tensor(dout, [B, H, N, D], dtype), Q, K, V, fwd, { ...opts, fused, out });
    expect(maxErr(g.dq.toArray(), ref.dq!), `dq (fused ${fused})`).toBeLessThanOrEqual(gt);
    expect(maxErr(g.dk.toArray(), ref.dk!), `dk (fused ${fused})`).toBeLessThanOrEqual(gt);
    expect(maxErr(g.dv.toArray(), ref.dv!), `dv (fused ${fused})`).toBeLessThanOrEqual(gt);
  }
  if (dtype !== 'f32') {
    await expect(ops.attentionBackward(rt.tensor(dout, [B, H, N, D], dtype), Q, K, V, fwd, { ...opts, fused: true })).rejects.toThrow(/sums dq in place in f32; dq is/);
  }
}

describe('ops.attention forward', () => {
  const cases: Case[] = [];
  for (const N of [1, 7, 64, 100]) for (const D of [16, 64, 128]) for (const causal of [false, true]) cases.push({ B: 1, H: 2, Hkv: 2, N, D, causal });
  cases.push({ B: 1, H: 1, Hkv: 1, N: 1000, D: 64 }, { B: 1, H: 1, Hkv: 1, N: 1000, D: 32, causal: true });
  test.each(cases.map((c) => [`N=${c.N} D=${c.D} causal=${c.causal}`, c] as const))('%s', async (_, c) => run(c, false));
});

describe('ops.attention: windows, grouped-query heads, key lengths, dtypes, backward', () => {
  const cases: Case[] = [
    { B: 2, H: 4, Hkv: 2, N: 37, D: 16 },
    { B: 2, H: 4, Hkv: 1, N: 70, D: 32, causal: true },
    { B: 1, H: 2, Hkv: 2, N: 100, D: 16, causal: true, window: 17 },
    { B: 1, H: 2, Hkv: 1, N: 90, D: 16, window: 33 },
    { B: 3, H: 2, Hkv: 2, N: 50, D: 16, kvLens: [50, 13, 0] },
    { B: 2, H: 2, Hkv: 2, N: 65, D: 32, causal: true, kvLens: [40, 65] },
    { B: 1, H: 2, Hkv: 2, N: 77, D: 64, dtype: 'f16' },
    { B: 1, H: 2, Hkv: 1, N: 77, D: 64, causal: true, dtype: 'bf16' },
    { B: 1, H: 1, Hkv: 1, N: 130, D: 128, causal: true },
  ];
  test.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s', async (_, c) => run(c, true));
});

describe('ops.attention: padded keys (rows at or past kvLens) contribute nothing, whatever they hold', () => {
  type PadCase = Case & { kvLens: number[]; config?: { BM: number; BN: number } };
  const cases: PadCase[] = [
    { B: 1, H: 2, Hkv: 2, N: 128, D: 32, kvLens: [100] },
    { B: 2, H: 4, Hkv: 2, N: 70, D: 16, causal: true, kvLens: [45, 70] },
    { B: 2, H: 2, Hkv: 1, N: 50, D: 64, window: 20, kvLens: [37, 0], config: { BM: 16, BN: 16 } },
  ];
  test.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s: NaN/Inf padding gives the bits of clean padding, forward and backward', async (_, c) => {
    const rt = await rtP;
    const { B, H, Hkv, N, D, kvLens } = c;
    const q = rand(B * H * N * D, 5), k = rand(B * Hkv * N * D, 6), v = rand(B * Hkv * N * D, 7), dout = rand(B * H * N * D, 8);
    // The same k and v with every padded row poisoned: NaN in v, NaN and Inf in k.
    const bad = (x: Float32Array, fill: (row: number) => number): Float32Array => {
      const y = x.slice();
      for (let b = 0; b < B; b++) for (let h = 0; h < Hkv; h++) for (let n = kvLens[b]!; n < N; n++) y.fill(fill(n), ((b * Hkv + h) * N + n) * D, ((b * Hkv + h) * N + n + 1) * D);
      return y;
    };
    const opts = { causal: c.causal, window: c.window, kvLens, config: c.config };
    const Q = rt.tensor(q, [B, H, N, D]), Do = rt.tensor(dout, [B, H, N, D]);
    const results = [];
    for (const [kk, vv] of [[k, v], [bad(k, (n) => (n % 2 ? Infinity : NaN)), bad(v, () => NaN)]] as const) {
      const K = rt.tensor(kk, [B, Hkv, N, D]), V = rt.tensor(vv, [B, Hkv, N, D]);
      const fwd = await ops.attention(Q, K, V, opts);
      const grads = [];
      for (const fused of [true, false]) {
        // Garbage in the given gradients: the padded rows of dk and dv must be written (as 0).
        const out = { dq: rt.tensor(new Float32Array(B * H * N * D).fill(NaN), [B, H, N, D]), dk: rt.tensor(new Float32Array(B * Hkv * N * D).fill(7), [B, Hkv, N, D]) };
        const g = await ops.attentionBackward(Do, Q, K, V, fwd, { ...opts, fused, out });
        grads.push([g.dq, g.dk, g.dv].map((t) => t.toArray()));
      }
      results.push({ out: fwd.out.toArray(), lse: fwd.lse.toArray(), grads });
    }
    // The first element whose bits differ (-1: none), so that a failure stays one line.
    const differs = (got: ArrayLike<number>, want: ArrayLike<number>): number => Array.prototype.findIndex.call(want, (w: number, i: number) => !Object.is(w, got[i]));
    const [clean, poisoned] = results as [typeof results[0], typeof results[0]];
    expect(clean.out.every(Number.isFinite)).toBe(true);
    expect(differs(poisoned.out, clean.out), 'out').toBe(-1);
    expect(differs(poisoned.lse, clean.lse), 'lse').toBe(-1);
    for (const [s, fused] of [true, false].entries()) {
      for (const [i, name] of ['dq', 'dk', 'dv'].entries()) {
        const want = clean.grads[s]![i]!, got = poisoned.grads[s]![i]!;
        expect(want.every(Number.isFinite), `${name} (fused ${fused}) finite`).toBe(true);
        expect(differs(got, want), `${name} (fused ${fused})`).toBe(-1);
      }
      // dk and dv of the padded rows are exactly 0.
      for (const t of [poisoned.grads[s]![1]!, poisoned.grads[s]![2]!]) {
        for (let b = 0; b < B; b++) for (let h = 0; h < Hkv; h++) {
          const row0 = (b * Hkv + h) * N;
          expect(Array.from(t.subarray((row0 + kvLens[b]!) * D, (row0 + N) * D)).every((x) => x === 0), `padded rows of batch entry ${b} (fused ${fused})`).toBe(true);
        }
      }
    }
  });
});

describe('ops.attention: long sequences, dropout, finite differences, errors', () => {
  test('N=2048 f32 forward within 1e-5 of f64; N=2049 causal', async () => {
    await run({ B: 1, H: 1, Hkv: 1, N: 2048, D: 64 }, false);
    await run({ B: 1, H: 1, Hkv: 1, N: 2049, D: 16, causal: true }, false);
  }, 60_000);

  test('dropout: the same seed gives the same output, the mask matches rand(), backward replays it', async () => {
    const rt = await rtP;
    const [B, H, N, D] = [1, 2, 40, 16];
    const q = rand(B * H * N * D, 1), k = rand(B * H * N * D, 2), v = rand(B * H * N * D, 3), dout = rand(B * H * N * D, 4);
    const Q = rt.tensor(q, [B, H, N, D]), K = rt.tensor(k, [B, H, N, D]), V = rt.tensor(v, [B, H, N, D]);
    const p = 0.3, seed = 1234;
    const opts = { causal: true, dropout: { p, seed } };
    const a = await ops.attention(Q, K, V, opts);
    const b = await ops.attention(Q, K, V, opts);
    expect(Array.from(a.out.toArray())).toEqual(Array.from(b.out.toArray()));
    const c = await ops.attention(Q, K, V, { ...opts, dropout: { p, seed: seed + 1 } });
    expect(maxErr(c.out.toArray(), a.out.toArray())).toBeGreaterThan(1e-3);
    // The public surface's form, p with the seed beside it: the same mask.
    const bare = await ops.attention(Q, K, V, { causal: true, dropout: p, seed });
    expect(Array.from(bare.out.toArray())).toEqual(Array.from(a.out.toArray()));
    const gb = await ops.attentionBackward(rt.tensor(dout, [B, H, N, D]), Q, K, V, bare, { causal: true, dropout: p, seed });
    const ga = await ops.attentionBackward(rt.tensor(dout, [B, H, N, D]), Q, K, V, a, opts);
    expect(Array.from(gb.dq.toArray())).toEqual(Array.from(ga.dq.toArray()));
    // The reference with the same keep mask: rand(seed + 7919·bh, i·N + j) >= p.
    const keep = (bh: number, i: number, j: number): boolean => randUniform((seed + bh * 7919) | 0, i * N + j) >= p;
    const ref = attentionRef(q, k, v, { B, H, Hkv: H, N, D, causal: true, dropout: { p, keep } }, dout);
    expect(maxErr(a.out.toArray(), ref.out)).toBeLessThanOrEqual(1e-5);
    for (const fused of [true, false]) {
      const g = await ops.attentionBackward(rt.tensor(dout, [B, H, N, D]), Q, K, V, a, { ...opts, fused });
      expect(maxErr(g.dq.toArray(), ref.dq!)).toBeLessThanOrEqual(5e-5);
      expect(maxErr(g.dk.toArray(), ref.dk!)).toBeLessThanOrEqual(5e-5);
      expect(maxErr(g.dv.toArray(), ref.dv!)).toBeLessThanOrEqual(5e-5);
    }
  });

  test('backward matches finite differences of the reference forward (tiny, causal, grouped)', async () => {
    const rt = await rtP;
    const [B, H, Hkv, N, D] = [1, 2, 1, 5, 16];
    const q = rand(B * H * N * D, 11), k = rand(B * Hkv * N * D, 12), v = rand(B * Hkv * N * D, 13), w = rand(B * H * N * D, 14);
    const o: AttentionRefOptions = { B, H, Hkv, N, D, causal: true };
    const Q = rt.tensor(q, [B, H, N, D]), K = rt.tensor(k, [B, Hkv, N, D]), V = rt.tensor(v, [B, Hkv, N, D]);
    const fwd = await ops.attention(Q, K, V, { causal: true });
    const g = await ops.attentionBackward(rt.tensor(w, [B, H, N, D]), Q, K, V, fwd, { causal: true });
    const L = (qq: ArrayLike<number>, kk: ArrayLike<number>, vv: ArrayLike<number>): number => {
      const out = attentionRef(qq, kk, vv, o).out;
      let s = 0;
      for (let i = 0; i < out.length; i++) s += out[i]! * w[i]!;
      return s;
    };
    const fd = (x: Float32Array, which: 0 | 1 | 2): Float64Array => {
      const xx = Float64Array.from(x), r = new Float64Array(x.length), h = 1e-6;
      const args = (a: Float64Array): [ArrayLike<number>, ArrayLike<number>, ArrayLike<number>] => (which === 0 ? [a, k, v] : which === 1 ? [q, a, v] : [q, k, a]);
      for (let i = 0; i < x.length; i++) {
        const keep = xx[i]!;
        xx[i] = keep + h; const up = L(...args(xx));
        xx[i] = keep - h; const down = L(...args(xx));
        xx[i] = keep;
        r[i] = (up - down) / (2 * h);
      }
      return r;
    };
    expect(maxErr(g.dq.toArray(), fd(q, 0))).toBeLessThan(2e-5);
    expect(maxErr(g.dk.toArray(), fd(k, 1))).toBeLessThan(2e-5);
    expect(maxErr(g.dv.toArray(), fd(v, 2))).toBeLessThan(2e-5);
  });

  test('bad input: shapes, head counts, head dim, key lengths, dropout', async () => {
    const rt = await rtP;
    const q = rt.empty([1, 4, 8, 16]), k = rt.empty([1, 3, 8, 16]);
    await expect(ops.attention(q, k, k)).rejects.toThrow(/attention: q's 4 heads must be a multiple of k's 3/);
    await expect(ops.attention(rt.empty([4, 8, 16]), k, k)).rejects.toThrow(/q must be \[B, H, N, D\], got \[4, 8, 16\]/);
    await expect(ops.attention(q, rt.empty([1, 4, 9, 16]), rt.empty([1, 4, 9, 16]))).rejects.toThrow(/k must be \[1, Hkv, 8, 16\]/);
    await expect(ops.attention(rt.empty([1, 1, 8, 24]), rt.empty([1, 1, 8, 24]), rt.empty([1, 1, 8, 24]))).rejects.toThrow(/head dim D must be one of 16, 32, 64, 128, got 24/);
    await expect(ops.attention(q, q, q, { kvLens: [1, 2] })).rejects.toThrow(/kvLens must list 1 non-negative integers/);
    await expect(ops.attention(q, q, q, { dropout: { p: 1, seed: 0 } })).rejects.toThrow(/dropout.p must be in \[0, 1\), got 1/);
    await expect(ops.attention(q, q, rt.empty([1, 4, 8, 32]))).rejects.toThrow(/v: expected shape \[1, 4, 8, 16\]/);
    const z = rt.zeros([1, 4, 8, 16]);
    const fwd = await ops.attention(z, z, z);
    await expect(ops.attentionBackward(z, z, z, z, fwd, { fused: 'yes' as never })).rejects.toThrow(/attentionBackward: fused must be a boolean, got/);
    // Refused after the inputs were checked (key lengths made, a gradient allocated): nothing stays allocated.
    const before = rt.stats().inUseBytes;
    const h = rt.zeros([1, 4, 8, 16], 'f16');
    const hf = await ops.attention(h, h, h);
    const held = rt.stats().inUseBytes;
    await expect(ops.attentionBackward(h, h, h, h, hf, { fused: true, kvLens: [3] })).rejects.toThrow(/sums dq in place in f32; dq is f16/);
    await expect(ops.attentionBackward(z, z, z, z, fwd, { kvLens: [3], out: { dk: rt.empty([1, 4, 8, 8]) } })).rejects.toThrow(/out.dk: expected shape \[1, 4, 8, 16\], got \[1, 4, 8, 8\]/);
    expect(rt.stats().inUseBytes).toBe(held + 1 * 4 * 8 * 8 * 4);
    expect(held).toBeGreaterThan(before);
  });

  test('bad input names the op and the argument: freed and missing tensors, options of the wrong type', async () => {
    const rt = await rtP;
    const q = rt.zeros([1, 2, 8, 16]), k = rt.zeros([1, 2, 8, 16]), v = rt.zeros([1, 2, 8, 16]);
    const fwd = await ops.attention(q, k, v);
    const freed = (t: Tensor): Tensor => (t.free(), t);
    // Caught at the op's boundary, not by the launcher under a kernel parameter's name (Lens, Lse).
    await expect(ops.attention(q, k, v, { kvLens: freed(rt.tensor([3], [1], 'i32')) })).rejects.toThrow(/^attention: kvLens has been freed$/);
    await expect(ops.attention(q, k, v, { kvLens: rt.tensor([3, 4], [2], 'i32') })).rejects.toThrow(/attention: kvLens must be a contiguous i32 tensor of 1 elements/);
    await expect(ops.attention(q, freed(rt.zeros([1, 2, 8, 16])), v)).rejects.toThrow(/^attention: k has been freed$/);
    const lse = rt.zeros(fwd.lse.shape);
    freed(lse);
    await expect(ops.attentionBackward(fwd.out, q, k, v, { out: fwd.out, lse })).rejects.toThrow(/^attentionBackward: fwd.lse has been freed$/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, { out: fwd.out, lse: rt.zeros(fwd.lse.shape, 'bf16') })).rejects.toThrow(/fwd.lse must be the forward's f32 log-sum-exp, got bf16/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, { out: fwd.out } as never)).rejects.toThrow(/attentionBackward: fwd.lse must be a Tensor, got undefined/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, { out: rt.zeros([1, 2, 8, 32]), lse: fwd.lse })).rejects.toThrow(/attentionBackward: fwd.out: expected shape \[1, 2, 8, 16\]/);
    // Missing arguments: a TypeError that says what was expected, not "Cannot read properties of ...".
    await expect(ops.attentionBackward(fwd.out, q, k, v, undefined as never)).rejects.toThrow(/^attentionBackward: fwd must be the forward's result \{ out, lse \}, got undefined$/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, null as never)).rejects.toThrow(/^attentionBackward: options must be an object, got null$/);
    await expect(ops.attention(q, k, v, null as never)).rejects.toThrow(/^attention: options must be an object, got null$/);
    await expect(ops.attentionQKV(rt.zeros([1, 8, 3, 2, 16]), 5 as never)).rejects.toThrow(/^attentionQKV: options must be an object, got 5$/);
    // Options of the wrong type are refused, not coerced ('yes' used to act as false).
    await expect(ops.attention(q, k, v, { causal: 'yes' as never })).rejects.toThrow(/^attention: causal must be a boolean, got "yes"$/);
    await expect(ops.attention(q, k, v, { causal: 1 as never })).rejects.toThrow(TypeError);
    await expect(ops.attention(q, k, v, { window: '4' as never })).rejects.toThrow(/attention: window must be an integer >= 0, got "4"/);
    await expect(ops.attention(q, k, v, { dropout: '0.1' as never })).rejects.toThrow(/^attention: dropout must be a probability or an object \{ p, seed \}, got "0.1"$/);
    await expect(ops.attention(q, k, v, { dropout: 0.1 })).rejects.toThrow(/^attention: dropout needs a seed beside it \(\{ dropout, seed \}\)/);
    await expect(ops.attention(q, k, v, { dropout: 1, seed: 3 })).rejects.toThrow(/^attention: dropout must be in \[0, 1\), got 1$/);
    await expect(ops.attention(q, k, v, { dropout: { p: 0.1, seed: 3 }, seed: 3 })).rejects.toThrow(/^attention: seed goes in dropout.seed when dropout is an object/);
    await expect(ops.attention(q, k, v, { dropout: 0.1, seed: 2 ** 31 })).rejects.toThrow(new RangeError("attention: seed must be an integer in [-2^31, 2^31 - 1] (the kernels' i32 seed), got 2147483648"));
    await expect(ops.attention(q, k, v, { dropout: { p: 0.1 } as never })).rejects.toThrow(/^attention: dropout.seed must be an integer, got undefined$/);
    await expect(ops.attention(q, k, v, { config: { BM: 3, BN: 16 } })).rejects.toThrow(/^attention: config.BM must be a power of two, got 3$/);
    await expect(ops.attention(q, k, v, { config: 'fast' as never })).rejects.toThrow(/attention: config must be an object \{ BM, BN \}/);
    expect(await ops.attention(q, k, v, { causal: false, config: { BM: 16, BN: 16 } })).toBeDefined();
  });

  test('dropout.seed: an integer in the kernels\' i32 range, refused (RangeError) rather than wrapped', async () => {
    const rt = await rtP;
    const x = rt.tensor(rand(2 * 16 * 16, 3), [1, 2, 16, 16]);
    const at = async (seed: number): Promise<Float32Array> => (await ops.attention(x, x, x, { dropout: { p: 0.5, seed } })).out.toArray() as Float32Array;
    // 2^32 + 5 used to be reduced with | 0, giving exactly the mask of seed 5 (and 2^40 that of 0).
    for (const seed of [2 ** 32 + 5, 2 ** 31, -(2 ** 31) - 1, 2 ** 40, 1.5, Infinity, NaN]) {
      const err = await ops.attention(x, x, x, { dropout: { p: 0.5, seed } }).catch((e: unknown) => e);
      expect(err, `seed ${seed}`).toBeInstanceOf(RangeError);
      expect((err as Error).message).toMatch(/^attention: dropout.seed must be an integer in \[-2\^31, 2\^31 - 1\] \(the kernels' i32 seed\), got /);
    }
    await expect(ops.attention(x, x, x, { dropout: { p: 0.5, seed: '5' as never } })).rejects.toThrow(TypeError);
    // The ends of the range are seeds like any other: distinct masks.
    const [lo, hi, five] = [await at(-(2 ** 31)), await at(2 ** 31 - 1), await at(5)];
    expect(hi).not.toEqual(lo);
    expect(hi).not.toEqual(five);
    const f = await ops.attention(x, x, x, { dropout: { p: 0.5, seed: 2 ** 31 - 1 } });
    await expect(ops.attentionBackward(f.out, x, x, x, f, { dropout: { p: 0.5, seed: 2 ** 32 - 1 } })).rejects.toThrow(/attentionBackward: dropout.seed must be an integer in/);
  });

  test('attentionBackward names the gradient it refuses (out.dq, out.dk, out.dv) and leaves nothing allocated', async () => {
    const rt = await rtP;
    const q = rt.zeros([1, 4, 8, 16]), k = rt.zeros([1, 2, 8, 16]), v = rt.zeros([1, 2, 8, 16]);
    const fwd = await ops.attention(q, k, v);
    const wrong = rt.empty([1, 4, 8, 32]), kvShaped = rt.empty([1, 2, 8, 16]), half = rt.empty([1, 4, 8, 16], 'f16'), ints = rt.empty([1, 2, 8, 16], 'i32');
    const before = rt.stats().inUseBytes;
    // kvLens as numbers: the op allocates them, and must free them on every refusal.
    const o = { kvLens: [5] };
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dq: wrong } })).rejects.toThrow(/^attentionBackward: out.dq: expected shape \[1, 4, 8, 16\], got \[1, 4, 8, 32\]$/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dq: kvShaped } })).rejects.toThrow(/out.dq: expected shape \[1, 4, 8, 16\], got \[1, 2, 8, 16\]/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dk: wrong } })).rejects.toThrow(/out.dk: expected shape \[1, 2, 8, 16\], got \[1, 4, 8, 32\]/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dv: wrong } })).rejects.toThrow(/out.dv: expected shape \[1, 2, 8, 16\]/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dv: 3 as never } })).rejects.toThrow(/^attentionBackward: out.dv must be a Tensor, got number$/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dk: ints } })).rejects.toThrow(/out.dk must be f32, f16 or bf16, got i32/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dq: freedLike(rt.empty([1, 4, 8, 16])) } })).rejects.toThrow(/^attentionBackward: out.dq has been freed$/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dq: half }, fused: true })).rejects.toThrow(/sums dq in place in f32; dq is f16/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: kvShaped as never })).rejects.toThrow(/^attentionBackward: out must be an object \{ dq\?, dk\?, dv\? \}, got a tensor of shape/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dk: kvShaped, dv: kvShaped } })).rejects.toThrow(/out.dk must not overlap out.dv/);
    await expect(ops.attentionBackward(fwd.out, q, k, v, fwd, { ...o, out: { dq: fwd.out } })).rejects.toThrow(/out.dq must not overlap dout/);
    const dout = rt.zeros(q.shape);
    await expect(ops.attentionBackward(dout, q, k, v, fwd, { ...o, out: { dq: fwd.out } })).rejects.toThrow(/out.dq must not overlap fwd.out/);
    expect(rt.stats().inUseBytes - before).toBe(dout.byteLength);
    const qkv = rt.zeros([1, 8, 3, 2, 16]);
    const f = await ops.attentionQKV(qkv);
    const held = rt.stats().inUseBytes;
    await expect(ops.attentionQKVBackward(f.out, qkv, f, { ...o, out: null as never })).rejects.toThrow(/^attentionQKVBackward: out must be a Tensor, got null$/);
    await expect(ops.attentionQKVBackward(f.out, qkv, f, { ...o, out: f.lse })).rejects.toThrow(/attentionQKVBackward: out: expected shape/);
    await expect(ops.attentionQKVBackward(f.out, qkv, f, { ...o, out: qkv.reshape([1, 8, 3, 2, 16]) })).rejects.toThrow(/attentionQKVBackward: out must not overlap qkv/);
    expect(rt.stats().inUseBytes).toBe(held);
    function freedLike(t: Tensor): Tensor { t.free(); return t; }
  });
});

describe('ops.attentionQKV: a packed [B, N, 3, H, D] projection read in place', () => {
  // [B, N, 3, H, D] -> component c as [B, H, N, D], and [B, H, N, D] <-> [B, N, H, D].
  const component = (x: Float32Array, B: number, N: number, H: number, D: number, c: number): Float32Array => {
    const out = new Float32Array(B * H * N * D);
    for (let b = 0; b < B; b++) for (let n = 0; n < N; n++) for (let h = 0; h < H; h++) {
      for (let d = 0; d < D; d++) out[((b * H + h) * N + n) * D + d] = x[(((b * N + n) * 3 + c) * H + h) * D + d]!;
    }
    return out;
  };
  const tokenMajor = (x: Float32Array, B: number, N: number, H: number, D: number): Float32Array => {
    const out = new Float32Array(x.length);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let n = 0; n < N; n++) {
      for (let d = 0; d < D; d++) out[((b * N + n) * H + h) * D + d] = x[((b * H + h) * N + n) * D + d]!;
    }
    return out;
  };
  const headMajor = (x: Float32Array, B: number, N: number, H: number, D: number): Float32Array => {
    const out = new Float32Array(x.length);
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let n = 0; n < N; n++) {
      for (let d = 0; d < D; d++) out[((b * H + h) * N + n) * D + d] = x[((b * N + n) * H + h) * D + d]!;
    }
    return out;
  };
  type QkvCase = { B: number; H: number; N: number; D: number; dtype?: 'f32' | 'bf16' } & Parameters<typeof ops.attention>[3];
  const cases: QkvCase[] = [
    { B: 2, H: 4, N: 37, D: 16 },
    { B: 1, H: 2, N: 100, D: 32, causal: true },
    { B: 2, H: 2, N: 70, D: 64, window: 20, kvLens: [70, 31] },
    { B: 1, H: 3, N: 65, D: 32, causal: true, dropout: { p: 0.2, seed: 5 } },
    { B: 1, H: 2, N: 48, D: 32, causal: true, dtype: 'bf16' },
  ];
  // The same arithmetic at other addresses: the bits of ops.attention on head-major copies.
  test.each(cases.map((c) => [JSON.stringify(c), c] as const))('%s: same bits as ops.attention, forward and backward', async (_, c) => {
    const rt = await rtP;
    const { B, H, N, D, dtype = 'f32', ...opts } = c;
    const x = rand(B * N * 3 * H * D, N + H, 1.5).map((v) => stored(v, dtype));
    const qkv = rt.tensor(x, [B, N, 3, H, D], dtype);
    const [q, k, v] = [0, 1, 2].map((i) => rt.tensor(component(x, B, N, H, D, i), [B, H, N, D], dtype)) as [Tensor, Tensor, Tensor];
    const want = await ops.attention(q, k, v, opts);
    const got = await ops.attentionQKV(qkv, opts);
    expect(got.out.shape).toEqual([B, N, H, D]);
    expect(got.out.toArray()).toEqual(tokenMajor(want.out.toArray() as Float32Array, B, N, H, D));
    expect(got.lse.toArray()).toEqual(want.lse.toArray());
    const dout = rand(B * N * H * D, 9).map((v) => stored(v, dtype));
    const doutHeads = rt.tensor(headMajor(dout, B, N, H, D), [B, H, N, D], dtype);
    for (const fused of dtype === 'f32' ? [true, false] : [false]) {
      const g = await ops.attentionBackward(doutHeads, q, k, v, want, { ...opts, fused });
      const dqkv = await ops.attentionQKVBackward(rt.tensor(dout, [B, N, H, D], dtype), qkv, got, { ...opts, fused });
      expect(dqkv.shape).toEqual([B, N, 3, H, D]);
      const d = dqkv.toArray() as Float32Array;
      for (const [i, t] of [g.dq, g.dk, g.dv].entries()) expect(component(d, B, N, H, D, i), `component ${i} (fused ${fused})`).toEqual(t.toArray());
    }
  });

  test('bad input is a clear error and leaves nothing allocated', async () => {
    const rt = await rtP;
    await expect(ops.attentionQKV(rt.empty([2, 8, 4, 16]))).rejects.toThrow(/attentionQKV: qkv must be \[B, N, 3, H, D\].*got \[2, 8, 4, 16\]/);
    await expect(ops.attentionQKV(rt.empty([1, 8, 2, 2, 16]))).rejects.toThrow(/qkv must be \[B, N, 3, H, D\]/);
    await expect(ops.attentionQKV(rt.empty([1, 8, 3, 2, 24]))).rejects.toThrow(/head dim D must be one of 16, 32, 64, 128, got 24/);
    const qkv = rt.zeros([1, 8, 3, 2, 16]);
    const fwd = await ops.attentionQKV(qkv);
    const [badDout, badOut, halfOut] = [rt.empty([1, 2, 8, 16]), rt.empty([1, 8, 3, 2, 8]), rt.empty([1, 8, 3, 2, 16], 'bf16')];
    const before = rt.stats().inUseBytes;
    await expect(ops.attentionQKVBackward(badDout, qkv, fwd, { kvLens: [3] })).rejects.toThrow(/attentionQKVBackward: dout: expected shape \[1, 8, 2, 16\]/);
    await expect(ops.attentionQKVBackward(fwd.out, qkv, fwd, { out: badOut })).rejects.toThrow(/out: expected shape \[1, 8, 3, 2, 16\]/);
    await expect(ops.attentionQKVBackward(fwd.out, qkv, fwd, { fused: true, kvLens: [3], out: halfOut })).rejects.toThrow(/sums dq in place in f32; dq is bf16/);
    expect(rt.stats().inUseBytes).toBe(before);
    // Gradients over their own inputs would read them back half-overwritten.
    await expect(ops.attentionQKVBackward(fwd.out, qkv, fwd, { out: qkv })).rejects.toThrow(/attentionQKVBackward: out must not overlap qkv/);
    await expect(ops.attentionQKVBackward(fwd.out, qkv, fwd, { out: rt.empty([1, 8, 3, 2, 16]), kvLens: [2] })).resolves.toBeDefined();
    const q = rt.zeros([1, 2, 8, 16]), k = rt.zeros([1, 2, 8, 16]), v = rt.zeros([1, 2, 8, 16]);
    const f = await ops.attention(q, k, v);
    await expect(ops.attentionBackward(f.out, q, k, v, f, { out: { dk: q } })).rejects.toThrow(/attentionBackward: out.dk must not overlap q/);
    await expect(ops.attentionBackward(f.out, q, k, v, f, { out: { dq: f.out } })).rejects.toThrow(/out.dq must not overlap dout/);
    const held = rt.empty([1, 2, 8, 16]);
    await expect(ops.attentionBackward(f.out, q, k, v, f, { out: { dk: held, dv: held } })).rejects.toThrow(/out.dk must not overlap out.dv/);
  });

  test('empty shapes (no tokens, no batch entries) give empty results and leave nothing behind', async () => {
    const rt = await rtP;
    const before = rt.stats().inUseBytes;
    for (const [B, N] of [[1, 0], [0, 8]] as const) {
      const qkv = rt.empty([B, N, 3, 2, 16]);
      const f = await ops.attentionQKV(qkv, { kvLens: Array(B).fill(0) });
      expect(f.out.shape).toEqual([B, N, 2, 16]);
      const d = await ops.attentionQKVBackward(f.out, qkv, f, { kvLens: Array(B).fill(0) });
      expect(d.shape).toEqual([B, N, 3, 2, 16]);
      for (const t of [qkv, f.out, f.lse, d]) t.free();
    }
    expect(rt.stats().inUseBytes).toBe(before);
  });
});
