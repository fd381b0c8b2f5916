/**
 * @fileoverview Property tests of the ops at random shapes (fast-check, seeded, shrinking):
 * matmul with random transposes and batch dims, softmax and layer norm over random rows, and
 * attention with random heads, lengths, masks and key lengths (NaN in the padded keys), each
 * against its f64 reference.
 */
import fc from 'fast-check';
import { afterAll, expect, test } from 'vitest';
import { ops, Runtime } from '../src/index.js';
import { gemmReference } from '../templates/gemm.js';
import { attentionRef, normRef, softmaxRef } from '../templates/reference.js';
import { maxErr, rand } from './util/data.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

const dim = (max: number): fc.Arbitrary<number> => fc.integer({ min: 1, max });
const SEED = { seed: 20261124, numRuns: 25 };

test('matmul: random M, N, K, transposes and batch', async () => {
  const rt = await rtP;
  await fc.assert(fc.asyncProperty(dim(70), dim(70), dim(90), fc.boolean(), fc.boolean(), fc.integer({ min: 1, max: 3 }), fc.integer(), async (M, N, K, tA, tB, batch, seed) => {
    const a = rand(batch * M * K, seed), b = rand(K * N, seed + 1);
    const A = rt.tensor(a, batch > 1 ? [batch, tA ? K : M, tA ? M : K] : [tA ? K : M, tA ? M : K]);
    const B = rt.tensor(b, tB ? [N, K] : [K, N]);
    const C = await ops.matmul(A, B, { transA: tA, transB: tB });
    const got = C.toArray();
    for (let i = 0; i < batch; i++) {
      // Plain row-major operands for the reference.
      const ai = new Float32Array(M * K), bi = new Float32Array(K * N);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) ai[m * K + k] = tA ? a[i * M * K + k * M + m]! : a[i * M * K + m * K + k]!;
      for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) bi[k * N + n] = tB ? b[n * K + k]! : b[k * N + n]!;
      expect(maxErr(got.subarray(i * M * N, (i + 1) * M * N), gemmReference(ai, bi, M, N, K))).toBeLessThanOrEqual(1e-5 * Math.sqrt(K) * 4);
    }
    for (const t of [A, B, C]) t.free();
  }), SEED);
});

test('softmax and layer norm: random rows and row lengths', async () => {
  const rt = await rtP;
  await fc.assert(fc.asyncProperty(dim(40), fc.integer({ min: 1, max: 9000 }), fc.boolean(), fc.integer(), async (M, N, log, seed) => {
    const x = rand(M * N, seed).map((v) => v * 5);
    const X = rt.tensor(x, [M, N]);
    const y = await (log ? ops.logSoftmax(X) : ops.softmax(X));
    expect(maxErr(y.toArray(), softmaxRef(x, M, N, log))).toBeLessThanOrEqual(log ? 5e-5 : 1e-6);
    const ln = await ops.layerNorm(X);
    expect(maxErr(ln.y.toArray(), normRef(x, M, N).y)).toBeLessThanOrEqual(1e-4);
    for (const t of [X, y, ln.y, ln.mean!, ln.rstd]) t.free();
  }), SEED);
});

test('attention: random heads, lengths, head dims, causal, windows and key lengths (NaN padding)', async () => {
  const rt = await rtP;
  const arb = fc.record({
    B: dim(2), Hkv: dim(2), group: dim(2), N: dim(80), D: fc.constantFrom(16, 32, 64),
    causal: fc.boolean(), window: fc.oneof(fc.constant(0), dim(40)), padded: fc.boolean(), seed: fc.integer(),
  });
  await fc.assert(fc.asyncProperty(arb, async (c) => {
    const H = c.Hkv * c.group;
    const q = rand(c.B * H * c.N * c.D, c.seed), k = rand(c.B * c.Hkv * c.N * c.D, c.seed + 1), v = rand(c.B * c.Hkv * c.N * c.D, c.seed + 2);
    const kvLens = c.padded ? Array.from({ length: c.B }, (_, b) => (((c.seed + b * 7) % (c.N + 1)) + c.N + 1) % (c.N + 1)) : undefined;
    const opts = { causal: c.causal, window: c.window, kvLens };
    // The kernel gets NaN in the padded rows of k and v (ignored keys), the reference clean ones.
    const poisoned = (x: Float32Array): Float32Array => {
      const y = x.slice();
      if (kvLens) for (let bh = 0; bh < c.B * c.Hkv; bh++) y.fill(NaN, (bh * c.N + kvLens[Math.floor(bh / c.Hkv)]!) * c.D, (bh + 1) * c.N * c.D);
      return y;
    };
    const Q = rt.tensor(q, [c.B, H, c.N, c.D]), K = rt.tensor(poisoned(k), [c.B, c.Hkv, c.N, c.D]), V = rt.tensor(poisoned(v), [c.B, c.Hkv, c.N, c.D]);
    const r = await ops.attention(Q, K, V, opts);
    const ref = attentionRef(q, k, v, { B: c.B, H, Hkv: c.Hkv, N: c.N, D: c.D, ...opts });
    expect(maxErr(r.out.toArray(), ref.out)).toBeLessThanOrEqual(1e-5);
    for (const t of [Q, K, V, r.out, r.lse]) t.free();
  }), SEED);
});
