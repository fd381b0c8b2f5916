/**
 * @fileoverview Kernels the core benchmarks time, written in the tilejit language as a user
 * would write them (the built-in templates live in templates/).
 */
import { jit } from '../src/index.js';

/** Plain SGEMM: one program per BM x BN output tile, a loop over K, `dot` (no masks: shapes divide). */
export const sgemm = jit(`function sgemm(A, B, C, M, N, K, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    const a = load(A, expandDims(rm, 1) * K + expandDims(rk, 0));
    const b = load(B, expandDims(rk, 1) * N + expandDims(rn, 0));
    acc = dot(a, b, acc);
  }
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), acc);
}`, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } });

/**
 * GELU, tanh form, over a flat tensor: 0.5·x·(1 + tanh(u)) written as x / (1 + e^(-2u)), the
 * same function with one exp and one divide. EVEN (n a multiple of BLOCK) drops the masks.
 */
export const geluTanh = jit(`function gelu(X, Out, n, BLOCK, EVEN) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  if (EVEN) {
    const x = load(X, i);
    store(Out, i, x / (1.0 + exp(-1.5957691216057308 * (x + 0.044715 * x * x * x))));
  } else {
    const m = i < n;
    const x = load(X, i, m);
    store(Out, i, x / (1.0 + exp(-1.5957691216057308 * (x + 0.044715 * x * x * x))), m);
  }
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr', EVEN: 'constexpr' } });

/** Plain-JS SGEMM the way a competent developer writes it: i-k-j, no allocation in loops. */
export function naiveSgemm(a: Float32Array, b: Float32Array, c: Float32Array, M: number, N: number, K: number): void {
  c.fill(0);
  for (let i = 0; i < M; i++) {
    for (let k = 0; k < K; k++) {
      const av = a[i * K + k]!;
      const bo = k * N;
      const co = i * N;
      for (let j = 0; j < N; j++) c[co + j]! += av * b[bo + j]!;
    }
  }
}
