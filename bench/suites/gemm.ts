/**
 * @fileoverview `gemm` and `gemv`: ops.matmul on 1 and 2 threads (GEMM; GEMV for one row with
 * f32 and bf16 weights, and with weights kept as [N, K]), next to onnxruntime-web (2 threads),
 * tfjs-backend-wasm (1 thread) and plain JS (i-k-j) where it finishes in reasonable time, in
 * one process.
 */
import { ops, Runtime } from '../../src/index.js';
import { gemmReference } from '../../templates/gemm.js';
import { line, maxAbsErr, medianMs, randArray, type BenchContext } from '../harness.js';
import { naiveSgemm } from '../kernels.js';
import { loadTf, ortRunner, timePeer } from '../peers.js';

/** GEMV against weights kept as nn.Linear keeps them ([N, K], transB), f32. */
async function gemvTransposed(ctx: BenchContext, suite: string, N: number, K: number): Promise<void> {
  const a = randArray(K, 3), b = randArray(N * K, 4);
  const flops = 2 * N * K;
  const want = gemmReference(a, b, 1, N, K, { transB: true });
  const name = `matmul 1x${N}x${K} Bᵀ weights`;
  const params = { M: 1, N, K, dtype: 'f32', weights: 'f32', transB: true };
  for (const threads of [1, 2]) {
    const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
    const A = rt.tensor(a, [1, K]), B = rt.tensor(b, [N, K]), C = rt.empty([1, N]);
    await ops.matmul(A, B, { transB: true, out: C });
    const ms = await medianMs(() => ops.matmul(A, B, { transB: true, out: C }), { quick: ctx.quick });
    ctx.emit(line(suite, name, 'tilejit', threads, ms, { flops, bytes: 4 * N * K }, maxAbsErr(C.toArray(), want), params));
    rt.dispose();
  }
  await timePeer(ctx, {
    suite, name, impl: 'ort-web', threads: 2, want, work: { flops }, params,
    make: async () => {
      const run = await ortRunner(2, [{ op: 'Gemm', inputs: ['a', 'b'], outputs: ['c'], attrs: [{ name: 'transB', i: 1 }] }], [['a', [1, K]], ['b', [N, K]]], [['c', [1, N]]]);
      return () => run({ a, b });
    },
  });
  await timePeer(ctx, {
    suite, name, impl: 'tfjs-wasm', threads: 1, want, work: { flops }, params,
    make: async () => {
      const tf = await loadTf();
      const A = tf.tensor2d(a, [1, K]), B = tf.tensor2d(b, [N, K]);
      return async () => {
        const c = tf.matMul(A, B, false, true);
        const d = await c.data();
        c.dispose();
        return d as Float32Array;
      };
    },
  });
}

export async function gemmSuite(ctx: BenchContext): Promise<void> {
  await matmulCases(ctx, 'gemm', ctx.quick ? [[256, 256, 256]] : [[1024, 1024, 1024], [256, 256, 256], [64, 512, 2048]]);
}

export async function gemvSuite(ctx: BenchContext): Promise<void> {
  await matmulCases(ctx, 'gemv', [[1, 4096, 4096]]);
  await gemvTransposed(ctx, 'gemv', 4096, 4096);
}

/** Each [M, N, K] on tilejit (1 and 2 threads, and its variants), the peers and plain JS. */
async function matmulCases(ctx: BenchContext, suite: string, shapes: readonly (readonly [number, number, number])[]): Promise<void> {
  for (const [M, N, K] of shapes) {
    const a = randArray(M * K, 1), b = randArray(K * N, 2);
    const flops = 2 * M * N * K;
    const want = M * N * K <= 2 ** 28 ? gemmReference(a, b, M, N, K) : undefined;
    for (const dtype of M === 1 ? (['f32', 'bf16'] as const) : (['f32'] as const)) {
      const name = `matmul ${M}x${N}x${K}${dtype === 'bf16' ? ' bf16 weights' : ''}`;
      const params = { M, N, K, dtype, weights: dtype };
      for (const threads of [1, 2]) {
        const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
        const A = rt.tensor(a, [M, K]), B = rt.tensor(b, [K, N], dtype), C = rt.empty([M, N]);
        await ops.matmul(A, B, { out: C });
        const ms = await medianMs(() => ops.matmul(A, B, { out: C }), { quick: ctx.quick });
        const err = want && dtype === 'f32' ? maxAbsErr(C.toArray(), want) : null;
        ctx.emit(line(suite, name, 'tilejit', threads, ms, { flops, bytes: M === 1 ? K * N * (dtype === 'f32' ? 4 : 2) : undefined }, err, params));
        if (M === 1) {
          // The weights packed once into panels (ops.packWeights), as an inference session
          // would do with its weights; the packing is not timed.
          const W = await ops.packWeights(B);
          await ops.matmul(A, W, { out: C });
          const packed = await medianMs(() => ops.matmul(A, W, { out: C }), { quick: ctx.quick });
          const perr = want && dtype === 'f32' ? maxAbsErr(C.toArray(), want) : null;
          ctx.emit(line(suite, name, 'tilejit-packed', threads, packed, { flops, bytes: K * N * (dtype === 'f32' ? 4 : 2) }, perr, { ...params, packed: true }));
          W.free();
        }
        if (M > 1) {
          // The plain mul+add path, for engines without relaxed SIMD.
          await ops.matmul(A, B, { out: C, relaxedSimd: false });
          const plain = await medianMs(() => ops.matmul(A, B, { out: C, relaxedSimd: false }), { quick: ctx.quick });
          ctx.emit(line(suite, name, 'tilejit-mul+add', threads, plain, { flops }, want ? maxAbsErr(C.toArray(), want) : null, { ...params, relaxed: false }));
        }
        rt.dispose();
      }
      if (dtype !== 'f32') continue;
      await timePeer(ctx, {
        suite, name, impl: 'ort-web', threads: 2, want, work: { flops }, params,
        make: async () => {
          const run = await ortRunner(2, [{ op: 'MatMul', inputs: ['a', 'b'], outputs: ['c'] }], [['a', [M, K]], ['b', [K, N]]], [['c', [M, N]]]);
          return () => run({ a, b });
        },
      });
      await timePeer(ctx, {
        suite, name, impl: 'tfjs-wasm', threads: 1, want, work: { flops }, params,
        make: async () => {
          const tf = await loadTf();
          const A = tf.tensor2d(a, [M, K]), B = tf.tensor2d(b, [K, N]);
          return async () => {
            const c = tf.matMul(A, B);
            const d = await c.data();
            c.dispose();
            return d as Float32Array;
          };
        },
      });
      if (M * N * K <= 2 ** 27) {
        const c = new Float32Array(M * N);
        const ms = await medianMs(() => naiveSgemm(a, b, c, M, N, K), { quick: ctx.quick, slow: M * N * K > 2 ** 24 });
        ctx.emit(line(suite, name, 'naive-js', 1, ms, { flops }, want ? maxAbsErr(c, want) : null, params));
      }
    }
  }
}
