/**
 * @fileoverview ops.matmul against an f64-accumulating reference: awkward shapes, transposes,
 * alpha/beta, epilogues, storage dtypes, batches, and the same answers on 0 and 2 threads.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { ops } from '../src/index.js';
import { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { chooseGemmConfig } from '../src/ops/matmul.js';
import { gemmReference, type GemmActivation } from '../templates/gemm.js';
import { activationGradRef, activationRef } from '../templates/reference.js';
import { rand } from './util/data.js';

const rts = { 0: Runtime.create({ threads: 0 }), 2: Runtime.create({ threads: 2 }) };
afterAll(async () => {
  (await rts[0]).dispose();
  (await rts[2]).dispose();
});

function check(got: Float32Array | Int32Array, want: Float32Array, K: number, dt: string): void {
  const tol = dt === 'f32' ? 2e-6 * Math.sqrt(K + 1) * 4 : 1e-2;
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol * (1 + Math.abs(want[i]!)))) expect.fail(`[${i}]: got ${got[i]}, want ${want[i]} (tol ${tol})`);
  }
}

/** Bit-for-bit equality, reporting the first difference (toEqual's diff of 100k elements takes minutes). */
function sameValues(got: Float32Array | Int32Array, want: Float32Array | Int32Array): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) expect.fail(`[${i}]: ${got[i]} differs from ${want[i]}`);
}

const DIMS = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 255];
const sample: [number, number, number][] = [];
for (let i = 0; i < 40; i++) sample.push([DIMS[(i * 7) % DIMS.length]!, DIMS[(i * 11 + 3) % DIMS.length]!, DIMS[(i * 5 + 1) % DIMS.length]!]);
sample.push([256, 256, 256], [300, 200, 130]);

describe.each([0, 2] as const)('ops.matmul (threads %i)', (threads) => {
  test.each(sample)('M=%i N=%i K=%i', async (M, N, K) => {
    const rt = await rts[threads];
    const a = rand(M * K, M + 13 * K), b = rand(K * N, N + 7 * K);
    const out = await ops.matmul(rt.tensor(a, [M, K]), rt.tensor(b, [K, N]));
    expect(out.shape).toEqual([M, N]);
    check(out.toArray(), gemmReference(a, b, M, N, K), K, 'f32');
  });

  test.each([
    [false, true, 'relu'], [true, false, 'gelu'], [true, true, 'silu'], [false, false, 'gelu_tanh'],
  ] as [boolean, boolean, GemmActivation][])('transA=%s transB=%s, alpha/beta/c/bias, %s epilogue', async (transA, transB, activation) => {
    const rt = await rts[threads];
    const M = 37, N = 29, K = 41;
    const a = rand(M * K, 1), b = rand(K * N, 2), c = rand(M * N, 3), bias = rand(N, 4);
    const out = await ops.matmul(
      rt.tensor(a, transA ? [K, M] : [M, K]), rt.tensor(b, transB ? [N, K] : [K, N]),
      { transA, transB, alpha: 0.75, beta: -0.5, c: rt.tensor(c, [M, N]), bias: rt.tensor(bias, [N]), activation },
    );
    check(out.toArray(), gemmReference(a, b, M, N, K, { transA, transB, alpha: 0.75, beta: -0.5, c, bias, activation }), K, 'f32');
  });

  test.each([[96, 200, 4096], [128, 64, 2048], [384, 128, 2048], [160, 136, 2056], [1024, 72, 128], [2048, 64, 64]])(
    'shapes the rule tiles whole (a weight gradient, transA; tall and shallow): M=%i N=%i K=%i', async (M, N, K) => {
      const rt = await rts[threads];
      const transA = K > M;
      const a = rand(M * K, 5), b = rand(K * N, 6), bias = rand(N, 7);
      const out = await ops.matmul(rt.tensor(a, transA ? [K, M] : [M, K]), rt.tensor(b, [K, N]), { transA, bias: rt.tensor(bias, [N]) });
      check(out.toArray(), gemmReference(a, b, M, N, K, { transA, bias }), K, 'f32');
    });

  test.each([[false, 'none'], [true, 'relu'], [false, 'silu'], [true, 'gelu']] as [boolean, GemmActivation][])(
    'GEMV (M = 1) transB=%s with alpha/beta/c/bias and %s', async (transB, activation) => {
      const rt = await rts[threads];
      for (const [N, K] of [[1, 1], [7, 300], [300, 7], [513, 129]] as const) {
        const a = rand(K, N), b = rand(K * N, K), c = rand(N, 9), bias = rand(N, 10);
        const out = await ops.matmul(rt.tensor(a, [1, K]), rt.tensor(b, transB ? [N, K] : [K, N]),
          { transB, alpha: 1.25, beta: 0.5, c: rt.tensor(c, [1, N]), bias: rt.tensor(bias, [N]), activation });
        check(out.toArray(), gemmReference(a, b, 1, N, K, { transB, alpha: 1.25, beta: 0.5, c, bias, activation }), K, 'f32');
      }
    });

  test.each([[1024, 4096], [2049, 2051]])('GEMV with Bᵀ weights streamed from memory (%i x %i: the [4, 32] partial), c and bias', async (N, K) => {
    const rt = await rts[threads];
    const a = rand(K, 81), b = rand(K * N, 82), c = rand(N, 83), bias = rand(N, 84);
    const out = await ops.matmul(rt.tensor(a, [1, K]), rt.tensor(b, [N, K]),
      { transB: true, alpha: 0.5, beta: 2, c: rt.tensor(c, [1, N]), bias: rt.tensor(bias, [N]), activation: 'silu' });
    check(out.toArray(), gemmReference(a, b, 1, N, K, { transB: true, alpha: 0.5, beta: 2, c, bias, activation: 'silu' }), K, 'f32');
  });

  test('batched GEMV with bf16 weights shared across the batch', async () => {
    const rt = await rts[threads];
    const B = 4, N = 96, K = 80;
    const x = rt.tensor(rand(B * K, 11), [B, 1, K]);
    const w = rt.tensor(rand(K * N, 12), [K, N], 'bf16');
    const out = await ops.matmul(x, w);
    expect(out.shape).toEqual([B, 1, N]);
    const xv = x.toArray() as Float32Array, wv = w.toArray() as Float32Array, got = out.toArray();
    for (let bi = 0; bi < B; bi++) check(got.subarray(bi * N, (bi + 1) * N), gemmReference(xv.subarray(bi * K, (bi + 1) * K), wv, 1, N, K), K, 'f32');
  });

  test.each(['f16', 'bf16'] as const)('%s storage (f32 compute), batched', async (dt) => {
    const rt = await rts[threads];
    const B = 3, M = 20, N = 24, K = 18;
    const A = rt.tensor(rand(B * M * K, 5), [B, M, K], dt);
    const W = rt.tensor(rand(K * N, 6), [K, N], dt); // shared across the batch
    const out = await ops.matmul(A, W);
    expect(out.shape).toEqual([B, M, N]);
    expect(out.dtype).toBe(dt);
    const a = A.toArray() as Float32Array, w = W.toArray() as Float32Array, got = out.toArray();
    for (let bi = 0; bi < B; bi++) {
      const want = gemmReference(a.subarray(bi * M * K, (bi + 1) * M * K), w, M, N, K);
      check(got.subarray(bi * M * N, (bi + 1) * M * N), want, K, dt);
    }
  });
});

describe.each([0, 2] as const)('ops.matmul with B packed into panels (threads %i)', (threads) => {
  // The tiles divide the shape and B would be copied by 16 row tiles: ops.matmul packs it once
  // and the dots read both operands in place. Bit for bit the unpacked result (same sums in
  // the same order), and within tolerance of the reference.
  const config = { BM: 64, BN: 64, BK: 32 };
  test.each([
    [false, 'f32', 'none'], [true, 'f32', 'gelu'], [false, 'bf16', 'relu'], [true, 'f16', 'none'],
  ] as const)('transB=%s, B stored %s, bias and c, %s epilogue', async (transB, dt, activation) => {
    const rt = await rts[threads];
    const [M, N, K] = [1024, 128, 256];
    const A = rt.tensor(rand(M * K, 31), [M, K]), B = rt.tensor(rand(K * N, 32), transB ? [N, K] : [K, N], dt);
    const c = rand(M * N, 33), bias = rand(N, 34);
    const opts = { transB, config, alpha: 0.5, beta: 2, c: rt.tensor(c, [M, N]), bias: rt.tensor(bias, [N]), activation };
    const packed = (await ops.matmul(A, B, opts)).toArray();
    const unpacked = (await ops.matmul(A, B, { ...opts, packB: false })).toArray();
    sameValues(packed, unpacked);
    const want = gemmReference(A.toArray() as Float32Array, B.toArray() as Float32Array, M, N, K, { transB, alpha: 0.5, beta: 2, c, bias, activation });
    check(packed, want, K, 'f32');
  });
  test('batched B (one set of panels per batch entry) and a 2-D B shared by a batched A', async () => {
    const rt = await rts[threads];
    const [Bt, M, N, K] = [3, 1024, 128, 256];
    const A = rt.tensor(rand(Bt * M * K, 41), [Bt, M, K]);
    for (const W of [rt.tensor(rand(Bt * K * N, 42), [Bt, K, N]), rt.tensor(rand(K * N, 43), [K, N])]) {
      const packed = (await ops.matmul(A, W, { config })).toArray();
      sameValues(packed, (await ops.matmul(A, W, { config, packB: false })).toArray());
      const a = A.toArray() as Float32Array, w = W.toArray() as Float32Array;
      for (let bi = 0; bi < Bt; bi++) {
        const wb = W.shape.length === 3 ? w.subarray(bi * K * N, (bi + 1) * K * N) : w;
        check(packed.subarray(bi * M * N, (bi + 1) * M * N), gemmReference(a.subarray(bi * M * K, (bi + 1) * M * K), wb, M, N, K), K, 'f32');
      }
    }
  });
});

describe('threads 0 and 2 give the same results', () => {
  // One config, one pass: every output element is the same sums in the same order whichever
  // thread runs its program, so the bits agree. (Split-K, on two threads or more only, and the
  // thread-dependent default configs reorder the sums: those agree within tolerance.)
  test.each(sample.filter((_, i) => i % 3 === 0))('M=%i N=%i K=%i: bit for bit with the same config', async (M, N, K) => {
    const a = rand(M * K, 91 + M), b = rand(K * N, 92 + N);
    const config = chooseGemmConfig(M, N, K);
    const run = async (t: 0 | 2): Promise<Float32Array | Int32Array> => {
      const rt = await rts[t];
      return (await ops.matmul(rt.tensor(a, [M, K]), rt.tensor(b, [K, N]), { config, splitK: false })).toArray();
    };
    sameValues(await run(2), await run(0));
  });

  test('GEMV (B and Bᵀ), packed weights and default configs', async () => {
    const cases: [number, number, number, boolean][] = [[1, 513, 129, false], [1, 300, 700, true], [1, 2049, 2051, true], [64, 128, 4096, false], [300, 200, 130, true]];
    for (const [M, N, K, transB] of cases) {
      const a = rand(M * K, 93), b = rand(K * N, 94);
      const run = async (t: 0 | 2, packed: boolean): Promise<Float32Array | Int32Array> => {
        const rt = await rts[t];
        const B = rt.tensor(b, transB ? [N, K] : [K, N]);
        return (await ops.matmul(rt.tensor(a, [M, K]), packed ? await ops.packWeights(B, { transB }) : B, { transB: !packed && transB })).toArray();
      };
      const r0 = await run(0, false);
      check(await run(2, false), r0 as Float32Array, K, 'f32');
      // Packed weights run one kernel and one config on any thread count.
      sameValues(await run(2, true), await run(0, true));
    }
  });
});

describe('ops.matmul with K split into slabs (threads 2)', () => {
  // Fewer output tiles than threads and a deep K: slabs of K summed by a second pass with the
  // epilogue. Within tolerance of the reference and of the one-pass result.
  const config = { BM: 64, BN: 64, BK: 64 };
  const splitRan = async (rt: Runtime, fn: () => Promise<unknown>): Promise<boolean> =>
    (await rt.profile(fn)).kernels.some((k) => k.kernel === 'gemmReduce');
  test.each([
    [false, false, 'f32', 'none'], [true, false, 'f32', 'gelu'], [false, true, 'bf16', 'relu'], [true, true, 'f16', 'silu'],
  ] as const)('transA=%s transB=%s, B stored %s, bias and c, %s epilogue', async (transA, transB, dt, activation) => {
    const rt = await rts[2];
    const [M, N, K] = [64, 128, 4096];
    const A = rt.tensor(rand(M * K, 61), transA ? [K, M] : [M, K]), B = rt.tensor(rand(K * N, 62), transB ? [N, K] : [K, N], dt);
    const c = rand(M * N, 63), bias = rand(N, 64);
    const opts = { transA, transB, config, alpha: 0.5, beta: 2, c: rt.tensor(c, [M, N]), bias: rt.tensor(bias, [N]), activation };
    let split: Float32Array | Int32Array = new Float32Array();
    expect(await splitRan(rt, async () => { split = (await ops.matmul(A, B, opts)).toArray(); })).toBe(true);
    const whole = (await ops.matmul(A, B, { ...opts, splitK: false })).toArray();
    const want = gemmReference(A.toArray() as Float32Array, B.toArray() as Float32Array, M, N, K, { transA, transB, alpha: 0.5, beta: 2, c, bias, activation });
    check(split, want, K, 'f32');
    check(whole, want, K, 'f32');
  });
  test('batched, with out of another dtype; masked or many tiles stay whole', async () => {
    const rt = await rts[2];
    const [Bt, M, N, K] = [3, 64, 64, 8192];
    const A = rt.tensor(rand(Bt * M * K, 71), [Bt, M, K]), W = rt.tensor(rand(K * N, 72), [K, N]);
    const out = rt.empty([Bt, M, N], 'bf16');
    expect(await splitRan(rt, () => ops.matmul(A, W, { config, out }))).toBe(true);
    const a = A.toArray() as Float32Array, w = W.toArray() as Float32Array, got = out.toArray();
    for (let bi = 0; bi < Bt; bi++) check(got.subarray(bi * M * N, (bi + 1) * M * N), gemmReference(a.subarray(bi * M * K, (bi + 1) * M * K), w, M, N, K), K, 'bf16');
    // A ragged N (masked tiles) and an output of many tiles take the one pass.
    expect(await splitRan(rt, () => ops.matmul(rt.tensor(rand(64 * 4096, 73), [64, 4096]), rt.tensor(rand(4096 * 60, 74), [4096, 60]), { config }))).toBe(false);
    expect(await splitRan(rt, () => ops.matmul(rt.tensor(rand(256 * 4096, 75), [256, 4096]), rt.tensor(rand(4096 * 128, 76), [4096, 128]), { config }))).toBe(false);
  });
});

test('when the memory cannot take B\'s panels, the GEMM copies tiles as before instead of failing', async () => {
  const [M, N, K] = [1024, 128, 256];
  // Room for A, B, the output and scratch, not for the 128 KB of panels.
  const rt = await Runtime.create({ threads: 0, maxMemoryBytes: (M * K + K * N + M * N) * 4 + (64 << 10), initialMemoryBytes: 1 << 16 });
  try {
    const a = rand(M * K, 51), b = rand(K * N, 52);
    const out = await ops.matmul(rt.tensor(a, [M, K]), rt.tensor(b, [K, N]), { config: { BM: 64, BN: 64, BK: 32 } });
    check(out.toArray(), gemmReference(a, b, M, N, K), K, 'f32');
  } finally {
    rt.dispose();
  }
});

describe('ops.matmul validation', () => {
  test('bad shapes and options are clear errors; nothing is written', async () => {
    const rt = await rts[0];
    const a = rt.tensor(rand(6, 1), [2, 3]), b = rt.tensor(rand(8, 2), [4, 2]);
    await expect(ops.matmul(a, b)).rejects.toThrow(/inner dimensions differ: op\(a\) is \[2, 3\] and op\(b\) is \[4, 2\]/);
    await expect(ops.matmul(a, rt.tensor([1, 2, 3], [3]))).rejects.toThrow(/at least 2 dims/);
    const out = rt.tensor([7, 7, 7, 7], [2, 2]);
    await expect(ops.matmul(a, rt.tensor(rand(6, 3), [3, 2]), { out: rt.empty([3, 2]) })).rejects.toThrow(/out must be \[2,2\]/);
    await expect(ops.matmul(a, rt.tensor(rand(6, 3), [3, 2]), { activation: 'tanh' as never, out })).rejects.toThrow(/activation must be one of/);
    expect(Array.from(out.toArray())).toEqual([7, 7, 7, 7]);
  });
});

test('relaxedSimd: false compiles the mul+add path and agrees with the reference', async () => {
  const rt = await rts[0];
  const [M, N, K] = [33, 65, 17];
  const a = rand(M * K, 3), b = rand(K * N, 4);
  const out = await ops.matmul(rt.tensor(a, [M, K]), rt.tensor(b, [K, N]), { relaxedSimd: false });
  check(out.toArray(), gemmReference(a, b, M, N, K), K, 'f32');
});

describe('ops.matmul aux epilogues: preActivation (store the activation\'s input) and activationGrad (times its derivative)', () => {
  const ACT_REF: Record<string, (x: number) => number> = {
    relu: (x) => Math.max(x, 0), gelu: (x) => activationRef('gelu', x), gelu_tanh: (x) => activationRef('gelu_tanh', x), silu: (x) => activationRef('silu', x),
  };
  const GRAD_REF: Record<string, (x: number) => number> = {
    relu: (x) => (x > 0 ? 1 : 0), gelu: (x) => activationGradRef('gelu', x), gelu_tanh: (x) => activationGradRef('gelu_tanh', x), silu: (x) => activationGradRef('silu', x),
  };
  // Every path ops.matmul can take: the GEMM (masked and mask-free), B packed into panels, the
  // derivative after the GEMM, split-K's reduction, GEMV, and packed weights (GEMM and GEMV).
  const paths: [string, number, number, number, Record<string, unknown>, boolean][] = [
    ['GEMM, masked tiles', 37, 29, 41, {}, false],
    ['GEMM, B in panels', 1024, 128, 256, { config: { BM: 64, BN: 64, BK: 32 } }, false],
    // Over 4 MB of f32 output: a costly derivative runs as a second pass after the GEMM.
    ['GEMM, derivative as a second pass', 1024, 1040, 8, {}, false],
    ['split-K', 64, 128, 4096, { config: { BM: 64, BN: 64, BK: 64 } }, false],
    ['GEMV', 1, 300, 70, {}, false],
    ['packed weights, GEMM', 19, 45, 37, {}, true],
    ['packed weights, GEMV', 1, 45, 37, {}, true],
  ];
  test.each(paths)('%s (M=%i N=%i K=%i)', async (_, M, N, K, extra, packed) => {
    const rt = await rts[2];
    const a = rand(M * K, 101), b = rand(K * N, 102), c = rand(M * N, 103), bias = rand(N, 104);
    const A = rt.tensor(a, [M, K]), B0 = rt.tensor(b, [K, N]);
    const B = packed ? await ops.packWeights(B0) : B0;
    const opts = { ...extra, alpha: 0.5, beta: 2, c: rt.tensor(c, [M, N]), bias: rt.tensor(bias, [N]) };
    const lin = gemmReference(a, b, M, N, K, { alpha: 0.5, beta: 2, c, bias });
    for (const act of ['relu', 'gelu', 'gelu_tanh', 'silu'] as const) {
      const pre = rt.empty([M, N]);
      const y = await ops.matmul(A, B, { ...opts, activation: act, preActivation: pre });
      check(pre.toArray(), lin, K, 'f32');
      check(y.toArray(), lin.map(ACT_REF[act]!), K, 'f32');
      // The backward: the same product times act'(pre).
      const d = await ops.matmul(A, B, { ...opts, activationGrad: { activation: act, preActivation: pre } });
      const p = pre.toArray();
      check(d.toArray(), lin.map((v, i) => v * GRAD_REF[act]!(p[i]!)), K, 'f32');
    }
  });

  test('the derivative as a second pass gives the fused epilogue\'s bits', async () => {
    // 1024 x 1040 f32 is past the fused limit; its first 64 rows alone are within it.
    const rt = await rts[2];
    const M = 1024, N = 1040, K = 8, rows = 64;
    const a = rand(M * K, 201), b = rand(K * N, 202), u = rand(M * N, 203).map((v) => 3 * v);
    const B = rt.tensor(b, [K, N]);
    const big = await ops.matmul(rt.tensor(a, [M, K]), B, { activationGrad: { activation: 'gelu', preActivation: rt.tensor(u, [M, N]) } });
    const small = await ops.matmul(rt.tensor(a.subarray(0, rows * K), [rows, K]), B, { activationGrad: { activation: 'gelu', preActivation: rt.tensor(u.subarray(0, rows * N), [rows, N]) } });
    expect(big.toArray().subarray(0, rows * N)).toEqual(small.toArray());
  });

  test('bad aux arguments are clear errors', async () => {
    const rt = await rts[0];
    const a = rt.tensor(rand(6, 1), [2, 3]), b = rt.tensor(rand(6, 2), [3, 2]);
    const pre = rt.empty([2, 2]);
    await expect(ops.matmul(a, b, { preActivation: pre })).rejects.toThrow(/preActivation needs an activation/);
    await expect(ops.matmul(a, b, { activation: 'gelu', preActivation: rt.empty([2, 3]) })).rejects.toThrow(/preActivation must be \[2,2\]/);
    await expect(ops.matmul(a, b, { activation: 'gelu', preActivation: pre, out: pre })).rejects.toThrow(/preActivation and out must not overlap/);
    await expect(ops.matmul(a, b, { activationGrad: { activation: 'gelu', preActivation: pre }, out: pre })).rejects.toThrow(/activationGrad.preActivation and out must not overlap/);
    const both = rt.empty([2, 2, 2]);
    await expect(ops.matmul(a, b, { activationGrad: { activation: 'relu', preActivation: both.narrow(0, 1).reshape([2, 2]) }, out: both.reshape([8]).narrow(2, 6).reshape([2, 2]) })).rejects.toThrow(/must not overlap/);
    await expect(ops.matmul(a, b, { activation: 'gelu', activationGrad: { activation: 'gelu', preActivation: pre } })).rejects.toThrow(/activation must be none/);
    await expect(ops.matmul(a, b, { activationGrad: { activation: 'tanh' as never, preActivation: pre } })).rejects.toThrow(/activationGrad.activation must be one of/);
    await expect(ops.matmul(a, b, { activation: 'gelu', preActivation: pre, activationGrad: { activation: 'gelu', preActivation: pre } })).rejects.toThrow(/exclude each other/);
    const freed = rt.empty([2, 2]);
    freed.free();
    await expect(ops.matmul(a, b, { activationGrad: { activation: 'relu', preActivation: freed } })).rejects.toThrow(/activationGrad.preActivation has been freed/);
  });
});

/** Names of the kernels `fn` launched (which path a product took). */
async function kernelsOf(rt: Runtime, fn: () => Promise<unknown>): Promise<Set<string>> {
  return new Set((await rt.profile(fn)).kernels.map((k) => k.kernel));
}

describe('ops.matmul refuses outputs over its operands (they would be read back half-overwritten)', () => {
  test('out or preActivation over a, b, bias or part of c: a TypeError naming both; nothing is written', async () => {
    const rt = await rts[2];
    const n = 128;
    const A = rand(n * n, 301), B = rand(n * n, 302);
    const a = rt.tensor(A, [n, n]), b = rt.tensor(B, [n, n]);
    await expect(ops.matmul(a, b, { out: a })).rejects.toThrow(/^matmul: out must not overlap a$/);
    await expect(ops.matmul(a, b, { out: b, packB: false })).rejects.toThrow(/^matmul: out must not overlap b$/);
    await expect(ops.matmul(a, b, { activation: 'relu', preActivation: a })).rejects.toThrow(/^matmul: preActivation must not overlap a$/);
    await expect(ops.matmul(a, b, { activation: 'gelu', preActivation: b })).rejects.toThrow(/^matmul: preActivation must not overlap b$/);
    // GEMV (one row): the row is both a and out.
    const row = rt.tensor(A.subarray(0, n), [1, n]);
    await expect(ops.matmul(row, b, { out: row })).rejects.toThrow(/out must not overlap a/);
    // Views: half of out over half of a; bias the first row of out.
    const big = rt.empty([2 * n, n]);
    await expect(ops.matmul(big.narrow(0, n), b, { out: big.narrow(n / 2, n / 2 + n) })).rejects.toThrow(/out must not overlap a/);
    const out = rt.empty([n, n]);
    await expect(ops.matmul(a, b, { out, bias: out.reshape([n * n]).narrow(0, n) })).rejects.toThrow(/out must not overlap bias/);
    // c may be out itself (in place, below), not a shifted view of it, nor the preActivation.
    const cc = rt.empty([n + 1, n]);
    await expect(ops.matmul(a, b, { c: cc.narrow(0, n), out: cc.narrow(1, n + 1) })).rejects.toThrow(/out must not overlap c \(out may be c itself/);
    await expect(ops.matmul(a, b, { c: out, activation: 'relu', preActivation: out })).rejects.toThrow(/preActivation must not overlap c/);
    sameValues(a.toArray(), A);
    sameValues(b.toArray(), B);
    // Packed weights: out over a, or over the panels themselves.
    const w = await ops.packWeights(b);
    await expect(ops.matmul(a, w, { out: a })).rejects.toThrow(/^matmul: out must not overlap a$/);
    await expect(ops.matmul(a, w, { out: w.panels.reshape([n, n]) })).rejects.toThrow(/^matmul: out must not overlap the packed weights$/);
    await expect(ops.matmul(row, w, { activation: 'silu', preActivation: row })).rejects.toThrow(/preActivation must not overlap a/);
    sameValues(a.toArray(), A);
    w.free();
  });

  // Every path ops.matmul can take (see the aux epilogues' test above), with out === c.
  const paths: [string, number, number, number, Record<string, unknown>, boolean][] = [
    ['GEMM, masked tiles', 37, 29, 41, {}, false],
    ['GEMM, 200 x 200', 200, 200, 200, {}, false],
    ['GEMM, B in panels', 1024, 128, 256, { config: { BM: 64, BN: 64, BK: 32 } }, false],
    ['split-K', 64, 128, 4096, { config: { BM: 64, BN: 64, BK: 64 } }, false],
    ['GEMV', 1, 300, 70, {}, false],
    ['packed weights, GEMM', 19, 45, 37, {}, true],
    ['packed weights, GEMV', 1, 45, 37, {}, true],
  ];
  test.each(paths)('out may be c itself (c = a·b + beta·c in place): %s (M=%i N=%i K=%i)', async (name, M, N, K, extra, packed) => {
    const rt = await rts[2];
    const a = rand(M * K, 311), b = rand(K * N, 312), c = rand(M * N, 313), bias = rand(N, 314);
    const A = rt.tensor(a, [M, K]), B0 = rt.tensor(b, [K, N]);
    const B = packed ? await ops.packWeights(B0) : B0;
    const lin = gemmReference(a, b, M, N, K, { alpha: 0.5, beta: 2, c, bias });
    const Bias = rt.tensor(bias, [N]);
    for (const act of ['none', 'gelu'] as const) {
      const C = rt.tensor(c, [M, N]);
      const pre = act === 'none' ? undefined : rt.empty([M, N]);
      let y: Tensor | undefined;
      const ran = await kernelsOf(rt, async () => {
        y = await ops.matmul(A, B, { ...extra, alpha: 0.5, beta: 2, c: C, bias: Bias, out: C, activation: act, preActivation: pre });
      });
      expect(y).toBe(C);
      if (name === 'split-K') expect(ran.has('gemmReduce')).toBe(true);
      check(C.toArray(), act === 'none' ? lin : lin.map((v) => activationRef('gelu', v)), K, 'f32');
      if (pre) check(pre.toArray(), lin, K, 'f32');
    }
    // The backward's epilogue in place too.
    const C = rt.tensor(c, [M, N]), U = rt.tensor(rand(M * N, 315), [M, N]);
    await ops.matmul(A, B, { ...extra, alpha: 0.5, beta: 2, c: C, bias: Bias, out: C, activationGrad: { activation: 'silu', preActivation: U } });
    const u = U.toArray();
    check(C.toArray(), lin.map((v, i) => v * activationGradRef('silu', u[i]!)), K, 'f32');
  });
});

describe('ops.matmul with a half-precision preActivation or out rounds once, after the f32 epilogue, on every path', () => {
  // The fused GEMM applies the activation (or its derivative) to the f32 value and rounds what
  // it stores; GEMV and split-K's reduction run it as a second pass, which must start from the
  // same f32 value, not from the rounded preActivation or out.
  const paths: [string, number, number, number, Record<string, unknown>, boolean, string][] = [
    ['GEMM', 37, 29, 41, {}, false, 'gemm'],
    ['split-K', 64, 128, 4096, { config: { BM: 64, BN: 64, BK: 64 } }, false, 'gemmReduce'],
    ['GEMV', 1, 300, 70, {}, false, 'gemv'],
    ['packed weights, GEMM', 19, 45, 37, {}, true, 'gemm'],
    ['packed weights, GEMV', 1, 45, 37, {}, true, 'gemvPacked'],
  ];
  test.each(paths)('%s (M=%i N=%i K=%i): bit for bit the f32 results, rounded', async (_, M, N, K, extra, packed, kernel) => {
    const rt = await rts[2];
    const A = rt.tensor(rand(M * K, 401).map((v) => 4 * v), [M, K]), B0 = rt.tensor(rand(K * N, 402), [K, N]);
    const B = packed ? await ops.packWeights(B0) : B0;
    const opts = { ...extra, alpha: 0.5, beta: 2, c: rt.tensor(rand(M * N, 403), [M, N]), bias: rt.tensor(rand(N, 404), [N]) };
    const lin = await ops.matmul(A, B, opts);
    const y32 = (await ops.matmul(A, B, { ...opts, activation: 'gelu' })).toArray();
    for (const dt of ['bf16', 'f16'] as const) {
      const u = rt.empty([M, N], dt);
      let y: Tensor | undefined;
      expect((await kernelsOf(rt, async () => { y = await ops.matmul(A, B, { ...opts, activation: 'gelu', preActivation: u }); })).has(kernel)).toBe(true);
      sameValues(y!.toArray(), y32);
      sameValues(u.toArray(), (await ops.cast(lin, dt)).toArray());
      // A half out as well: the f32 activation, rounded once.
      const yh = await ops.matmul(A, B, { ...opts, activation: 'gelu', preActivation: u, out: rt.empty([M, N], dt) });
      sameValues(yh.toArray(), (await ops.cast(rt.tensor(y32, [M, N]), dt)).toArray());
      // The backward into a half out: the f32 product times the derivative, rounded once.
      const d32 = await ops.matmul(A, B, { ...opts, activationGrad: { activation: 'gelu', preActivation: u } });
      const dh = await ops.matmul(A, B, { ...opts, activationGrad: { activation: 'gelu', preActivation: u }, out: rt.empty([M, N], dt) });
      sameValues(dh.toArray(), (await ops.cast(d32, dt)).toArray());
    }
  });

  test('64x64x4096 gelu with a bf16 preActivation: threads 0 and 2 (split-K) agree within f32 tolerance of the reference', async () => {
    const [M, N, K] = [64, 64, 4096];
    const a = rand(M * K, 411), b = rand(K * N, 412);
    const want = gemmReference(a, b, M, N, K, { activation: 'gelu' });
    const results: Float32Array[] = [];
    for (const t of [0, 2] as const) {
      const rt = await rts[t];
      const u = rt.empty([M, N], 'bf16');
      const y = (await ops.matmul(rt.tensor(a, [M, K]), rt.tensor(b, [K, N]), { activation: 'gelu', preActivation: u })).toArray() as Float32Array;
      check(y, want, K, 'f32');
      results.push(y);
    }
    check(results[1]!, results[0]!, K, 'f32');
  });
});

describe('ops.matmul checks every tensor at its boundary and leaks nothing it refuses', () => {
  test('a freed operand is named in the op\'s words (not a kernel parameter); nothing is allocated', async () => {
    const rt = await rts[0];
    const live = (shape: number[]): Tensor => rt.tensor(rand(shape.reduce((p, d) => p * d, 1), 7), shape);
    const freed = (shape: number[]): Tensor => {
      const t = live(shape);
      t.free();
      return t;
    };
    const a = live([65, 33]), b = live([33, 70]);
    const before = rt.stats().inUseBytes;
    await expect(ops.matmul(freed([65, 33]), b)).rejects.toThrow(/^matmul: a has been freed$/);
    await expect(ops.matmul(a, freed([33, 70]))).rejects.toThrow(/^matmul: b has been freed$/);
    await expect(ops.matmul(freed([1, 33]), b)).rejects.toThrow(/^matmul: a has been freed$/);
    await expect(ops.matmul(a, b, { c: freed([65, 70]) })).rejects.toThrow(/^matmul: c has been freed$/);
    await expect(ops.matmul(a, b, { bias: freed([70]) })).rejects.toThrow(/^matmul: bias has been freed$/);
    await expect(ops.matmul(a, b, { out: freed([65, 70]) })).rejects.toThrow(/^matmul: out has been freed$/);
    await expect(ops.matmul(a, b, { activation: 'gelu', preActivation: freed([65, 70]) })).rejects.toThrow(/^matmul: preActivation has been freed$/);
    expect(rt.stats().inUseBytes).toBe(before);
  });

  test('a refused config frees nothing it was not given and keeps nothing it allocated', async () => {
    const rt = await rts[0];
    const a = rt.tensor(rand(256 * 256, 501), [256, 256]);
    const w = await ops.packWeights(a);
    const out = rt.tensor(new Float32Array(256 * 256).fill(7), [256, 256]);
    const before = rt.stats().inUseBytes;
    for (let i = 0; i < 3; i++) {
      await expect(ops.matmul(a, a, { config: { BM: 3, BN: 64, BK: 32 } })).rejects.toThrow(/^matmul: config.BM must be a power of two, got 3$/);
      await expect(ops.matmul(a, a, { config: { BM: 64, BN: 0, BK: 32 } })).rejects.toThrow(/config.BN must be a power of two, got 0/);
      await expect(ops.matmul(a.narrow(0, 1), a, { config: { BM: 1, BN: 64, BK: 2.5 } })).rejects.toThrow(/config.BK must be a power of two, got 2.5/);
      await expect(ops.matmul(a, a, { config: null as never })).rejects.toThrow(/config must be an object/);
      await expect(ops.matmul(a, w, { config: { BM: 3, BN: 16, BK: 16 } })).rejects.toThrow(/^matmul: config.BM must be a power of two, got 3$/);
      await expect(ops.matmul(a, w, { config: { BM: 64, BN: 32, BK: 16 } })).rejects.toThrow(/config.BN must be the panel width 16/);
      await expect(ops.matmul(a, a, { config: { BM: 3, BN: 64, BK: 32 }, out })).rejects.toThrow(/config.BM/);
      // Powers of two the GEMM cannot compile fail after the output is allocated: it is freed
      // (and a given out is left alone).
      await expect(ops.matmul(a, a, { config: { BM: 64, BN: 2048, BK: 64 } })).rejects.toThrow(/does not compile/);
      await expect(ops.matmul(a, a, { config: { BM: 64, BN: 2048, BK: 64 }, out })).rejects.toThrow(/does not compile/);
    }
    expect(rt.stats().inUseBytes).toBe(before);
    expect(out.isFreed).toBe(false);
    expect(out.toArray().every((v) => v === 7)).toBe(true);
  });
});
