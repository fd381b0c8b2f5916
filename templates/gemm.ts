/**
 * @fileoverview GEMM: Out = act(alpha · op(A) · op(B) + beta · C + bias), batched, in the kernel
 * language. One program per BM x BN output tile (and batch index); K streams through in BK
 * slices into a loop-carried accumulator that `dot` updates in place. Constexprs select the
 * transposes, the epilogue and a mask-free body when the shapes divide the tiles.
 */
import { jit } from '../src/kernel.js';
import { ACT_BACKWARD_HELPER, ACT_FORWARD_HELPER } from './activation.js';
import { gelu64, geluTanh64 } from '../src/util/erf.js';

export const GEMM_SOURCE = `function gemm(A, B, C, Bias, Out, M, N, K, strideA, strideB, strideC, strideOut, alpha, beta,
    kSlab, splits, panelK, Aux, BM, BN, BK, TRANS_A, TRANS_B, HAS_C, HAS_BIAS, ACT, EVEN, PACKED_B, AUX_OUT, DACT) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  // Grid axis 2: batch entry · splits + K slab; a slab is kSlab deep (splits 1: all of K).
  const batch = idiv(programId(2), splits);
  const k0 = (programId(2) - batch * splits) * kSlab;
  const k1 = minimum(K, k0 + kSlab);
  const baseA = batch * strideA;
  const baseB = batch * strideB;
  let acc = zeros([BM, BN]);
  for (let k = k0; k < k1; k += BK) {
    const rk = k + arange(BK);
    let a = zeros([BM, BK]);
    let b = zeros([BK, BN]);
    if (TRANS_A) {
      const offA = baseA + expandDims(rk, 1) * M + expandDims(rm, 0);
      if (EVEN) { a = trans(load(A, offA)); }
      else { a = trans(load(A, offA, expandDims(rk < K, 1) && expandDims(rm < M, 0))); }
    } else {
      const offA = baseA + expandDims(rm, 1) * K + expandDims(rk, 0);
      if (EVEN) { a = load(A, offA); }
      else { a = load(A, offA, expandDims(rm < M, 1) && expandDims(rk < K, 0)); }
    }
    if (PACKED_B) {
      // B in panels (packBKernel, packWeights): panel n holds B[:, n·BN .. n·BN + BN) as panelK
      // rows of BN (K, or K padded with zero rows), so the dot reads this tile in place, rows
      // BN apart. Panels are whole: past N and K they hold zeros, never another panel's rows.
      b = load(B, baseB + programId(1) * panelK * BN + expandDims(rk, 1) * BN + expandDims(arange(BN), 0));
    } else if (TRANS_B) {
      const offB = baseB + expandDims(rn, 1) * K + expandDims(rk, 0);
      if (EVEN) { b = trans(load(B, offB)); }
      else { b = trans(load(B, offB, expandDims(rn < N, 1) && expandDims(rk < K, 0))); }
    } else {
      const offB = baseB + expandDims(rk, 1) * N + expandDims(rn, 0);
      if (EVEN) { b = load(B, offB); }
      else { b = load(B, offB, expandDims(rk < K, 1) && expandDims(rn < N, 0)); }
    }
    acc = dot(a, b, acc);
  }
  const offC = expandDims(rm, 1) * N + expandDims(rn, 0);
  const mask = expandDims(rm < M, 1) && expandDims(rn < N, 0);
  let y = acc * alpha;
  if (HAS_C) {
    if (EVEN) { y = y + beta * load(C, batch * strideC + offC); }
    else { y = y + beta * load(C, batch * strideC + offC, mask); }
  }
  if (HAS_BIAS) {
    if (EVEN) { y = y + expandDims(load(Bias, rn), 0); }
    else { y = y + expandDims(load(Bias, rn, rn < N), 0); }
  }
  // Aux (laid out as Out): AUX_OUT stores the activation's input there for a backward pass;
  // DACT multiplies by that activation's derivative at Aux (the backward fused behind dy·Wᵀ).
  if (AUX_OUT) {
    if (EVEN) { store(Aux, programId(2) * strideOut + offC, y); }
    else { store(Aux, programId(2) * strideOut + offC, y, mask); }
  }
  if (DACT != 'none') {
    if (EVEN) { y = bwd(load(Aux, programId(2) * strideOut + offC), y, DACT); }
    else { y = bwd(load(Aux, programId(2) * strideOut + offC, mask), y, DACT); }
  }
  y = fwd(y, ACT);
  if (EVEN) { store(Out, programId(2) * strideOut + offC, y); }
  else { store(Out, programId(2) * strideOut + offC, y, mask); }
}`;

/** The GEMM kernel object (compiled per specialisation on first use). */
export const gemmKernel = jit(GEMM_SOURCE, {
  signature: {
    A: 'ptr', B: 'ptr', C: 'ptr', Bias: 'ptr', Out: 'ptr',
    M: 'i32', N: 'i32', K: 'i32', strideA: 'i32', strideB: 'i32', strideC: 'i32', strideOut: 'i32',
    alpha: 'f32', beta: 'f32', kSlab: 'i32', splits: 'i32', panelK: 'i32', Aux: 'ptr',
    BM: 'constexpr', BN: 'constexpr', BK: 'constexpr', TRANS_A: 'constexpr', TRANS_B: 'constexpr',
    HAS_C: 'constexpr', HAS_BIAS: 'constexpr', ACT: 'constexpr', EVEN: 'constexpr', PACKED_B: 'constexpr',
    AUX_OUT: 'constexpr', DACT: 'constexpr',
  },
  helpers: { fwd: ACT_FORWARD_HELPER, bwd: ACT_BACKWARD_HELPER },
  // 2·M·N·K per batch entry (grid axis 2 over the K slabs), for the profiler's GFLOP/s.
  work: ({ grid, params }) => ({ flops: 2 * params[5]! * params[6]! * params[7]! * grid[2] / params[15]! }),
});

/**
 * Split-K's second step: Out[b] = act(alpha · (the S slabs' partial products P[b·S + s] summed)
 * + beta · C[b] + bias), the epilogue the slabs left out.
 */
export const GEMM_REDUCE_SOURCE = `function gemmReduce(P, C, Bias, Out, M, N, S, strideC, alpha, beta, BR, BC, HAS_C, HAS_BIAS, ACT) {
  const rm = programId(0) * BR + arange(BR);
  const rn = programId(1) * BC + arange(BC);
  const batch = programId(2);
  const offs = expandDims(rm, 1) * N + expandDims(rn, 0);
  const mask = expandDims(rm < M, 1) && expandDims(rn < N, 0);
  const base = batch * S * M * N;
  let acc = load(P, base + offs, mask, 0.0);
  for (let s = 1; s < S; s += 1) { acc = acc + load(P, base + s * M * N + offs, mask, 0.0); }
  let y = acc * alpha;
  if (HAS_C) { y = y + beta * load(C, batch * strideC + offs, mask, 0.0); }
  if (HAS_BIAS) { y = y + expandDims(load(Bias, rn, rn < N, 0.0), 0); }
  y = fwd(y, ACT);
  store(Out, batch * M * N + offs, y, mask);
}`;

/** The split-K reduction (see GEMM_REDUCE_SOURCE). */
export const gemmReduceKernel = jit(GEMM_REDUCE_SOURCE, {
  signature: {
    P: 'ptr', C: 'ptr', Bias: 'ptr', Out: 'ptr', M: 'i32', N: 'i32', S: 'i32', strideC: 'i32', alpha: 'f32', beta: 'f32',
    BR: 'constexpr', BC: 'constexpr', HAS_C: 'constexpr', HAS_BIAS: 'constexpr', ACT: 'constexpr',
  },
  helpers: { fwd: ACT_FORWARD_HELPER },
});

/**
 * op(B) [K, N] (any storage dtype) -> f32 panels P[batch][N / BN][K][BN], for the GEMM's
 * PACKED_B path: one program per BK x BN block. Bᵀ ([N, K]) is transposed on the way. K must
 * be a multiple of BK and N of BN (the GEMM's EVEN case).
 */
export const PACK_B_SOURCE = `function packB(B, P, K, N, strideB, strideP, BN, BK, TRANS_B) {
  const rk = programId(0) * BK + arange(BK);
  const rn = programId(1) * BN + arange(BN);
  const base = programId(2) * strideB;
  let b = zeros([BK, BN]);
  if (TRANS_B) { b = trans(load(B, base + expandDims(rn, 1) * K + expandDims(rk, 0))); }
  else { b = load(B, base + expandDims(rk, 1) * N + expandDims(rn, 0)); }
  store(P, programId(2) * strideP + programId(1) * K * BN + expandDims(rk, 1) * BN + expandDims(arange(BN), 0), b);
}`;

/** The B-packing kernel (see PACK_B_SOURCE). */
export const packBKernel = jit(PACK_B_SOURCE, {
  signature: { B: 'ptr', P: 'ptr', K: 'i32', N: 'i32', strideB: 'i32', strideP: 'i32', BN: 'constexpr', BK: 'constexpr', TRANS_B: 'constexpr' },
});

/** Epilogue activations of `ops.matmul`. */
export type GemmActivation = 'none' | 'relu' | 'gelu' | 'gelu_tanh' | 'silu';

/** A GEMM tile configuration. */
export interface GemmConfig {
  readonly BM: number;
  readonly BN: number;
  readonly BK: number;
}

/** The configuration space the tuner searches. */
export const GEMM_CONFIGS: readonly GemmConfig[] = [
  { BM: 64, BN: 64, BK: 64 }, { BM: 64, BN: 64, BK: 32 }, { BM: 32, BN: 64, BK: 64 },
  { BM: 64, BN: 32, BK: 64 }, { BM: 32, BN: 32, BK: 32 }, { BM: 16, BN: 64, BK: 64 },
  { BM: 16, BN: 16, BK: 16 }, { BM: 4, BN: 64, BK: 128 }, { BM: 1, BN: 64, BK: 256 },
  { BM: 128, BN: 128, BK: 32 }, { BM: 128, BN: 64, BK: 64 }, { BM: 64, BN: 128, BK: 64 },
];

/** Plain-JS reference with f64 accumulation: out[b] = act(alpha·op(A)·op(B) + beta·C + bias). */
export function gemmReference(
  a: Float32Array, b: Float32Array, M: number, N: number, K: number,
  opts: { transA?: boolean; transB?: boolean; alpha?: number; beta?: number; c?: Float32Array; bias?: Float32Array; activation?: GemmActivation } = {},
): Float32Array {
  const { transA = false, transB = false, alpha = 1, beta = 0, c, bias, activation = 'none' } = opts;
  const out = new Float32Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[transA ? k * M + i : i * K + k]! * b[transB ? j * K + k : k * N + j]!;
      let y = alpha * s + (c ? beta * c[i * N + j]! : 0) + (bias ? bias[j]! : 0);
      y = activate(y, activation);
      out[i * N + j] = y;
    }
  }
  return out;
}

function activate(y: number, act: GemmActivation): number {
  switch (act) {
    case 'relu': return Math.max(y, 0);
    case 'gelu': return gelu64(y);
    case 'gelu_tanh': return geluTanh64(y);
    case 'silu': return y / (1 + Math.exp(-y));
    default: return y;
  }
}
