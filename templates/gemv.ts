/**
 * @fileoverview GEMV (M = 1): out = act(alpha · a · op(B) + beta · c + bias). Memory-bound, so
 * it does not pack tiles for `dot`: each program streams a BK x BN block of B (BN rows of Bᵀ,
 * BK wide) a step straight into fused multiply-adds on loop-carried accumulators. Measured
 * (1x4096x4096 f32, 2 threads) 7.4 GFLOP/s against 3.1 through the 1-row `dot` path. Weights
 * packed once (templates/packed.ts) stream faster still.
 */
import { jit } from '../src/kernel.js';
import { ACT_FORWARD_HELPER } from './activation.js';
import { nearestRow } from './lookup.js';
import { GEMV_TABLE, TUNED_THREADS } from './tuned-tables.js';

export const GEMV_SOURCE = `function gemv(A, B, C, Bias, Out, N, K, strideA, strideB, strideC, strideOut, alpha, beta,
    BN, BK, TRANS_B, HAS_C, HAS_BIAS, ACT, EVEN) {
  const rn = programId(0) * BN + arange(BN);
  const batch = programId(2);
  const mn = rn < N;
  let acc = zeros([BN]);
  if (TRANS_B && BK <= 64) {
    // BN rows of Bᵀ side by side, BK columns a step, into a loop-carried [BN, BK] partial: one
    // FMA a lane, and the reduction over its BK lanes once, at the end (f32 weights).
    let part = zeros([BN, BK]);
    for (let k = 0; k < K; k += BK) {
      const rk = k + arange(BK);
      const offs = batch * strideB + expandDims(rn, 1) * K + expandDims(rk, 0);
      if (EVEN) {
        part = part + load(B, offs) * expandDims(load(A, batch * strideA + rk), 0);
      } else {
        const mk = rk < K;
        part = part + load(B, offs, expandDims(mn, 1) && expandDims(mk, 0)) * expandDims(load(A, batch * strideA + rk, mk), 0);
      }
    }
    acc = sum(part, 1);
  } else if (TRANS_B) {
    // Wider steps reduce each row's BK products as they stream (halves: long runs of a row).
    for (let k = 0; k < K; k += BK) {
      const rk = k + arange(BK);
      const mk = rk < K;
      const offs = batch * strideB + expandDims(rn, 1) * K + expandDims(rk, 0);
      if (EVEN) {
        acc = acc + sum(load(B, offs) * expandDims(load(A, batch * strideA + rk), 0), 1);
      } else {
        acc = acc + sum(load(B, offs, expandDims(mn, 1) && expandDims(mk, 0)) * expandDims(load(A, batch * strideA + rk, mk), 0), 1);
      }
    }
  } else {
    for (let k = 0; k < K; k += BK) {
      // BK rows of B, each scaled by one element of a: one fused pass over the BN accumulators.
      if (EVEN) {
        // Four rows a step (BK is a multiple of 4 here) as (acc + p0 + p1) + (p2 + p3): with
        // fpFusion three FMAs, a multiply and an add (1 thread, 1x1024x1024 in L2: 17.4 GFLOP/s
        // against 16.2 for the tree (p0 + p1) + (p2 + p3), six ops fused); unfused, acc's
        // chain is three adds deep.
        for (const j of staticRange(BK / 4)) {
          const kk = k + 4 * j;
          const p0 = load(A, batch * strideA + kk) * load(B, batch * strideB + kk * N + rn);
          const p1 = load(A, batch * strideA + kk + 1) * load(B, batch * strideB + (kk + 1) * N + rn);
          const p2 = load(A, batch * strideA + kk + 2) * load(B, batch * strideB + (kk + 2) * N + rn);
          const p3 = load(A, batch * strideA + kk + 3) * load(B, batch * strideB + (kk + 3) * N + rn);
          acc = (acc + p0 + p1) + (p2 + p3);
        }
      } else {
        for (const j of staticRange(BK)) {
          const kk = k + j;
          acc = acc + load(A, batch * strideA + kk, kk < K, 0.0) * load(B, batch * strideB + kk * N + rn, mn && kk < K, 0.0);
        }
      }
    }
  }
  let y = acc * alpha;
  if (HAS_C) { y = y + beta * load(C, batch * strideC + rn, mn); }
  if (HAS_BIAS) { y = y + load(Bias, rn, mn); }
  y = fwd(y, ACT);
  store(Out, batch * strideOut + rn, y, mn);
}`;

/** The GEMV kernel object. */
export const gemvKernel = jit(GEMV_SOURCE, {
  signature: {
    A: 'ptr', B: 'ptr', C: 'ptr', Bias: 'ptr', Out: 'ptr',
    N: 'i32', K: 'i32', strideA: 'i32', strideB: 'i32', strideC: 'i32', strideOut: 'i32', alpha: 'f32', beta: 'f32',
    BN: 'constexpr', BK: 'constexpr', TRANS_B: 'constexpr', HAS_C: 'constexpr', HAS_BIAS: 'constexpr', ACT: 'constexpr',
    EVEN: 'constexpr',
  },
  // 2·N·K per batch entry (grid axis 2), for the profiler's GFLOP/s.
  work: ({ grid, params }) => ({ flops: 2 * params[5]! * params[6]! * grid[2] }),
  // Each a·b + acc becomes one FMA where the target has relaxed SIMD.
  fpFusion: true,
  helpers: { fwd: ACT_FORWARD_HELPER },
});

/** GEMV's config space (the autotuner's candidates): B, and Bᵀ. */
export const GEMV_CONFIGS: Readonly<Record<'b' | 'bt', readonly { BN: number; BK: number }[]>> = {
  b: [256, 512, 1024, 2048, 4096].flatMap((BN) => [4, 8, 16].map((BK) => ({ BN, BK }))),
  bt: [...[2, 4, 8].flatMap((BN) => [16, 32, 64].map((BK) => ({ BN, BK }))), ...[8, 16, 32].flatMap((BN) => [128, 256].map((BK) => ({ BN, BK })))],
};

/**
 * Tile sizes for GEMV: the tuned table's (templates/tuned-tables.ts, measured with f32
 * weights; Bᵀ with half weights skips it) when it was measured on this many threads and has a
 * shape near this one, else the rule. Rule for B: BK = 8 rows per step over BN columns, as
 * wide as the threads allow (one program per thread): 1x4096x4096 f32 measured 10.4 GFLOP/s
 * on one thread at BN = 4096 and 15-16 on two at BN = 2048, against 6-9 at BN = 512. Bᵀ, f32
 * weights of 16 MB or more (streamed from memory): 4 rows, 32 columns a step into a partial
 * (1x4096x4096, 2 threads: 14.5 GFLOP/s against 8.5 for 8 rows reduced every 128 columns; one
 * thread 8.6 against 4.3; 1024x4096 18.8 against 10.9). Smaller f32 weights (in cache:
 * 1x1024x1024 on one thread 12.7 against 10.4 for the partial) and halves (bf16 1x4096x4096:
 * 15.5 against 9.5): 16 rows reduced every 256 columns.
 */
export function chooseGemvConfig(N: number, K: number, transB: boolean, threads = 1, halfWeights = false): { BN: number; BK: number } {
  if (threads === TUNED_THREADS && !(transB && halfWeights)) {
    const row = nearestRow(GEMV_TABLE, { N, K, transB }, ['N', 'K'], ['transB']);
    if (row) return { BN: row.BN, BK: row.BK };
  }
  if (transB) return halfWeights || N * K < 1 << 22 ? { BN: 16, BK: 256 } : { BN: 4, BK: 32 };
  let BN = 4096;
  while (BN > 16 && BN * Math.max(1, threads) > N) BN /= 2;
  return { BN, BK: 8 };
}
