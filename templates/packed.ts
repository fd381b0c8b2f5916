/**
 * @fileoverview Weights packed once for many products (`ops.packWeights`): op(B) ([K, N]) laid
 * out as column panels of NR, each panel's rows contiguous, padded with zeros to whole panels
 * (N up to a multiple of NR, K up to a multiple of 16). A product then streams each panel as
 * one sequential run of memory instead of K rows a row-pitch apart: the GEMV below reads one
 * 64-byte line a k step, and the GEMM reads the panels in place as its B tiles (PACKED_B with
 * BN = NR). Measured, the kernels alone, against the row-major GEMV on a 2-core host
 * (1x4096x4096, GFLOP/s, interleaved runs): f32 9.6 -> 13.1 on one thread, 14.3 -> 20.5 on
 * two; bf16 13.3 -> 22.7 and 12.6 -> 34.7.
 */
import { jit } from '../src/kernel.js';
import { ACT_FORWARD_HELPER } from './activation.js';

/** K rows a panel holds: K rounded up to this (zero rows), so unrolled k steps need no tail. */
export const PANEL_K_STEP = 16;

/** Panel width for a storage dtype: one 64-byte cache line a row (16 f32, 32 halves). */
export function panelWidth(dtype: 'f32' | 'f16' | 'bf16'): number {
  return dtype === 'f32' ? 16 : 32;
}

/**
 * Packs op(B) into panels. One program per BK x NR block: rows and columns past K and N load
 * as zeros, so every panel is whole. Bᵀ ([N, K]) is transposed on the way.
 */
export const PACK_WEIGHTS_SOURCE = `function packWeights(B, P, K, N, panelK, NR, BK, TRANS_B) {
  const rk = programId(0) * BK + arange(BK);
  const rn = programId(1) * NR + arange(NR);
  let b = zeros([BK, NR]);
  if (TRANS_B) {
    b = trans(load(B, expandDims(rn, 1) * K + expandDims(rk, 0), expandDims(rn < N, 1) && expandDims(rk < K, 0)));
  } else {
    b = load(B, expandDims(rk, 1) * N + expandDims(rn, 0), expandDims(rk < K, 1) && expandDims(rn < N, 0));
  }
  store(P, programId(1) * panelK * NR + expandDims(rk, 1) * NR + expandDims(arange(NR), 0), b);
}`;

/** The packing kernel (see PACK_WEIGHTS_SOURCE). */
export const packWeightsKernel = jit(PACK_WEIGHTS_SOURCE, {
  signature: {
    B: 'ptr', P: 'ptr', K: 'i32', N: 'i32', panelK: 'i32',
    NR: 'constexpr', BK: 'constexpr', TRANS_B: 'constexpr',
  },
});

/**
 * GEMV over packed weights: out = act(alpha · a · B + beta · c + bias) for one row of `a` per
 * grid-axis-2 entry. One program per panel: NR accumulators stay in registers (four f32
 * vectors, eight for halves) while the panel streams by, UK rows a step. EVEN: K fills the
 * panels (K % 16 = 0), so a's loads need no mask; the zero rows past K meet a masked a of 0.
 */
export const GEMV_PACKED_SOURCE = `function gemvPacked(A, P, C, Bias, Out, N, K, panelK, strideA, strideC, strideOut, alpha, beta,
    NR, UK, HAS_C, HAS_BIAS, ACT, EVEN) {
  const rn = programId(0) * NR + arange(NR);
  const row = programId(2);
  const panel = programId(0) * panelK * NR;
  const mn = rn < N;
  let acc = zeros([NR]);
  for (let k = 0; k < panelK; k += UK) {
    for (const j of staticRange(UK)) {
      const kk = k + j;
      if (EVEN) { acc = acc + load(A, row * strideA + kk) * load(P, panel + kk * NR + arange(NR)); }
      else { acc = acc + load(A, row * strideA + kk, kk < K, 0.0) * load(P, panel + kk * NR + arange(NR)); }
    }
  }
  let y = acc * alpha;
  if (HAS_C) { y = y + beta * load(C, row * strideC + rn, mn); }
  if (HAS_BIAS) { y = y + load(Bias, rn, mn); }
  y = fwd(y, ACT);
  store(Out, row * strideOut + rn, y, mn);
}`;

/** The packed-weights GEMV kernel (see GEMV_PACKED_SOURCE). */
export const gemvPackedKernel = jit(GEMV_PACKED_SOURCE, {
  signature: {
    A: 'ptr', P: 'ptr', C: 'ptr', Bias: 'ptr', Out: 'ptr',
    N: 'i32', K: 'i32', panelK: 'i32', strideA: 'i32', strideC: 'i32', strideOut: 'i32', alpha: 'f32', beta: 'f32',
    NR: 'constexpr', UK: 'constexpr', HAS_C: 'constexpr', HAS_BIAS: 'constexpr', ACT: 'constexpr', EVEN: 'constexpr',
  },
  // 2·N·K per row (grid axis 2), for the profiler's GFLOP/s.
  work: ({ grid, params }) => ({ flops: 2 * params[5]! * params[6]! * grid[2] }),
  fpFusion: true,
  helpers: { fwd: ACT_FORWARD_HELPER },
});
