/**
 * @fileoverview This machine's ceilings for the roofline, measured with tilejit kernels: the
 * SIMD compute peak (a `dot` on register-sized tiles repeated in place: no memory traffic) and
 * the memory bandwidth (a streaming copy far larger than the caches), each on one thread and
 * on every core.
 */
import { availableParallelism } from 'node:os';
import { jit, Runtime } from '../src/index.js';

const peakKernel = jit(`function peak(X, Out, iters, BM, BN, BK) {
  const a = load(X, expandDims(arange(BM), 1) * BK + expandDims(arange(BK), 0));
  const b = load(X, expandDims(arange(BK), 1) * BN + expandDims(arange(BN), 0));
  let acc = zeros([BM, BN]);
  for (let i = 0; i < iters; i += 1) { acc = dot(a, b, acc); }
  store(Out, programId(0) * BM * BN + expandDims(arange(BM), 1) * BN + expandDims(arange(BN), 0), acc);
}`, { signature: { X: 'ptr', Out: 'ptr', iters: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } });

const copyKernel = jit(`function copy(X, Out, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i, load(X, i));
}`, { signature: { X: 'ptr', Out: 'ptr', BLOCK: 'constexpr' } });

/** Ceilings: GFLOP/s and GB/s, by thread count. */
export interface MachineCeilings {
  readonly peakGflops: Readonly<Record<number, number>>;
  readonly bandwidthGbps: Readonly<Record<number, number>>;
}

async function best(fn: () => Promise<void>, reps: number): Promise<number> {
  await fn();
  let min = Infinity;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    min = Math.min(min, performance.now() - t0);
  }
  return min;
}

/** Measure the ceilings on 1 thread and on every core (`quick`: smaller and fewer runs). */
export async function measureCeilings(quick = false): Promise<MachineCeilings> {
  const peakGflops: Record<number, number> = {};
  const bandwidthGbps: Record<number, number> = {};
  const cores = availableParallelism();
  for (const threads of cores > 1 ? [1, cores] : [1]) {
    // inlineBelowBytes 0: the peak kernel touches a few KB, which would otherwise run inline.
    const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads, inlineBelowBytes: 0 });
    const x = rt.tensor(new Float32Array(64 * 64).fill(1e-3), [64 * 64]);
    let gflops = 0;
    for (const [BM, BN, BK] of [[8, 16, 32], [4, 8, 64], [16, 16, 16]] as const) {
      const out = rt.empty([threads * BM * BN]);
      const iters = quick ? 500 : 2000;
      const ms = await best(() => peakKernel.launch({ grid: [threads], BM, BN, BK, runtime: rt }, x, out, iters), quick ? 3 : 8);
      gflops = Math.max(gflops, (2 * BM * BN * BK * iters * threads) / ms / 1e6);
      out.free();
    }
    peakGflops[threads] = gflops;
    const n = quick ? 1 << 22 : 1 << 24;
    const src = rt.zeros([n]), dst = rt.empty([n]);
    const ms = await best(() => copyKernel.launch({ grid: [n / 4096], BLOCK: 4096, runtime: rt }, src, dst), quick ? 3 : 8);
    bandwidthGbps[threads] = (8 * n) / ms / 1e6;
    rt.dispose();
  }
  return { peakGflops, bandwidthGbps };
}
