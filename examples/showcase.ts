/**
 * @fileoverview The showcase (`npm run demo`): compiles a few kernels written in the tilejit
 * language, checks each against a plain-JS reference, and prints its speed next to plain JS;
 * then trains the transformer forecaster (examples/forecaster) end to end.
 */
import { jit, Runtime, detectFeatures, type Kernel, type KernelArg } from '../src/index.js';
import { sgemm } from '../bench/kernels.js';
import { forecasterDemo } from './forecaster/main.js';
import { medianMs } from './timing.js';

const GELU = jit(`function gelu(X, Out, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  const x = load(X, i, m);
  store(Out, i, 0.5 * x * (1.0 + tanh(0.7978845608 * (x + 0.044715 * x * x * x))), m);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } });

// The same function through the language's fused builtin (a rational gate instead of tanh).
const GELU_FUSED = jit(`function geluFused(X, Out, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  store(Out, i, geluTanh(load(X, i, m)), m);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } });

const SOFTMAX = jit(`function softmax(X, Out, cols, BC) {
  const row = programId(0);
  const c = arange(BC);
  const m = c < cols;
  const x = load(X, row * cols + c, m, -Infinity);
  const e = exp(x - max(x));
  store(Out, row * cols + c, e / sum(e), m);
}`, { signature: { X: 'ptr', Out: 'ptr', cols: 'i32', BC: 'constexpr' } });

function randn(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s / 2 ** 32 - 0.5) * 4;
  });
}

function maxErr(a: Float32Array, b: Float32Array): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return e;
}

async function show(name: string, k: Kernel, launch: Record<string, unknown> & { grid: number[] }, args: KernelArg[],
  out: { toArray(): Float32Array | Int32Array }, ref: () => Float32Array, work: { flops?: number; bytes?: number }, tol: number): Promise<boolean> {
  const ms = await medianMs(() => k.launch(launch, ...args), 5);
  const want = ref();
  const err = maxErr(out.toArray() as Float32Array, want);
  // The same statistic on both sides: a median of an odd count after a warm-up (the call above
  // warms plain JS); plain JS gets fewer calls, being the slow side.
  const jsMs = await medianMs(ref, 3, false);
  const rate = (t: number): string => (work.flops ? `${(work.flops / t / 1e6).toFixed(1)} GFLOP/s` : `${(work.bytes! / t / 1e6).toFixed(2)} GB/s`);
  const ok = err <= tol;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name.padEnd(26)} tilejit ${ms.toFixed(2).padStart(8)} ms (${rate(ms).padStart(14)})   plain JS ${jsMs.toFixed(1).padStart(8)} ms (${rate(jsMs).padStart(12)})   x${(jsMs / ms).toFixed(1).padStart(6)}   max err ${err.toExponential(1)}`);
  return ok;
}

async function main(): Promise<void> {
  const f = detectFeatures();
  const rt = await Runtime.create({ threads: 0 });
  console.log(`tilejit showcase — WebAssembly SIMD${f.relaxedSimd ? ' + relaxed SIMD (FMA)' : ''}, 1 thread\n`);
  let ok = true;

  const n = 1 << 22;
  const xs = randn(n, 1);
  const x = rt.tensor(xs, [n]);
  const y = rt.empty([n]);
  const ref = new Float32Array(n);
  const geluRef = (): Float32Array => {
    for (let i = 0; i < n; i++) {
      const v = xs[i]!;
      ref[i] = 0.5 * v * (1 + Math.tanh(0.7978845608 * (v + 0.044715 * v * v * v)));
    }
    return ref;
  };
  ok = (await show('gelu (tanh) 4M f32', GELU, { grid: [Math.ceil(n / 1024)], BLOCK: 1024 }, [x, y, n], y, geluRef, { bytes: 8 * n }, 1e-5)) && ok;
  ok = (await show('geluTanh builtin 4M f32', GELU_FUSED, { grid: [Math.ceil(n / 1024)], BLOCK: 1024 }, [x, y, n], y, geluRef, { bytes: 8 * n }, 1e-5)) && ok;

  const rows = 4096, cols = 1000;
  const ss = randn(rows * cols, 2);
  const s = rt.tensor(ss, [rows, cols]);
  const so = rt.empty([rows, cols]);
  const sref = new Float32Array(rows * cols);
  ok = (await show('softmax 4096x1000', SOFTMAX, { grid: [rows], BC: 1024 }, [s, so, cols], so, () => {
    for (let r = 0; r < rows; r++) {
      let mx = -Infinity, sum = 0;
      for (let c = 0; c < cols; c++) mx = Math.max(mx, ss[r * cols + c]!);
      for (let c = 0; c < cols; c++) sum += (sref[r * cols + c] = Math.exp(ss[r * cols + c]! - mx));
      for (let c = 0; c < cols; c++) sref[r * cols + c]! /= sum;
    }
    return sref;
  }, { bytes: 8 * rows * cols }, 1e-6)) && ok;

  const N = 512;
  const as = randn(N * N, 3), bs = randn(N * N, 4);
  const A = rt.tensor(as, [N, N]), B = rt.tensor(bs, [N, N]), C = rt.empty([N, N]);
  const cref = new Float32Array(N * N);
  ok = (await show(`sgemm ${N}x${N}x${N}`, sgemm, { grid: [N / 64, N / 64], BM: 64, BN: 64, BK: 32 }, [A, B, C, N, N, N], C, () => {
    cref.fill(0);
    for (let i = 0; i < N; i++) for (let k = 0; k < N; k++) {
      const a = as[i * N + k]!;
      for (let j = 0; j < N; j++) cref[i * N + j]! += a * bs[k * N + j]!;
    }
    return cref;
  }, { flops: 2 * N * N * N }, 1e-3)) && ok;

  rt.dispose();
  ok = (await forecasterDemo()) && ok;
  if (!ok) {
    console.error('\nsome kernels disagree with their reference');
    process.exit(1);
  }
}

await main();
