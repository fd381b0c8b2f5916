/**
 * @fileoverview `ops.matmul`: validate -> choose a config -> launch the GEMM template.
 */
import { gemmKernel, gemmReduceKernel, packBKernel, type GemmActivation, type GemmConfig } from '../../templates/gemm.js';
import { IN_PLACE_B_PITCH } from '../../codegen/plan.js';
import { GEMM_TABLE } from '../../templates/gemm-table.js';
import { chooseGemvConfig, gemvKernel } from '../../templates/gemv.js';
import { gemvPackedKernel } from '../../templates/packed.js';
import { detectFeatures } from '../runtime/features.js';
import { Tensor } from '../runtime/tensor.js';
import { activation as activationOp, activationBackward, cast, type Activation } from './activation.js';
import { describe, isPow2, overlaps, pow2AtLeast, sameMemory } from './common.js';
import { PackedWeights } from './packed.js';

/** Options of `ops.matmul`. */
export interface MatmulOptions {
  /** Use A transposed: a is [K, M] (its last two dims). */
  readonly transA?: boolean;
  /** Use B transposed: b is [N, K]. Packed weights fix it when packed (only false may be passed). */
  readonly transB?: boolean;
  readonly alpha?: number;
  /** Scale of `c` (default 1); only with `c`. */
  readonly beta?: number;
  /** Added after scaling: [.., M, N] like the output. */
  readonly c?: Tensor;
  /** Added per column: [N]. */
  readonly bias?: Tensor;
  readonly activation?: GemmActivation;
  /**
   * Write here instead of allocating ([.., M, N]; any float dtype). It must not overlap a, b,
   * bias or preActivation; it may be `c` itself (the same tensor: c += a·b in place), but not
   * overlap it otherwise.
   */
  readonly out?: Tensor;
  /**
   * Also store the activation's input, alpha · op(a) · op(b) + beta · c + bias, here ([.., M, N],
   * any float dtype): what the activation's backward needs (a GELU_AUX epilogue). Needs an
   * activation; fused into the GEMM's epilogue. The activation is applied to the f32 value on
   * every path, so a half-precision preActivation only rounds what it stores. It must not
   * overlap a, b, c, bias or out.
   */
  readonly preActivation?: Tensor;
  /**
   * The backward of an activation behind this product: multiply the result by the activation's
   * derivative at `preActivation` (saved by the forward's `preActivation`), e.g. dU = (dY · W₂ᵀ)
   * ⊙ gelu'(U) (a DGELU epilogue). Fused into the GEMM's epilogue, except for a derivative
   * costlier than relu's over more than 4 MB of f32 output, and on the GEMV and split-K paths,
   * which run it as a second pass with the same result. `activation` must then be 'none', and
   * `out` must not overlap `preActivation`.
   */
  readonly activationGrad?: { readonly activation: Exclude<GemmActivation, 'none'>; readonly preActivation: Tensor };
  /** Force a tile configuration (tuning, tests). */
  readonly config?: GemmConfig;
  /** Compile with relaxed-SIMD FMA (default: when the engine has it); false gives the mul+add path. */
  readonly relaxedSimd?: boolean;
  /**
   * Copy op(B) once into f32 panels that every row tile reads in place, when the tiles divide
   * the shape and the row tiles would otherwise copy B again many times (default true; false:
   * each row tile copies its own B tiles, as tests compare). Packed weights are panels already.
   */
  readonly packB?: boolean;
  /**
   * Split K into slabs summed by a second pass when the output has too few tiles to keep the
   * threads busy and K is deep (default true where `splitKFor` applies; false: one pass, as
   * tests compare). Products with packed weights run in one pass.
   */
  readonly splitK?: boolean;
}

/**
 * K slabs for a GEMM with `tiles` output tiles (batch entries included) on `threads`: a power
 * of two S, so that there are about 8 programs a thread, each slab at least SPLIT_K_MIN deep
 * and a multiple of BK (the slabs tile K exactly); 1 (no split) on one thread, with two tiles
 * a thread or more, for masked tiles, or when K is too short. Measured on 2 threads, side by
 * side: 64x64x16384 (one tile) 4.2-4.6 -> 3.1 ms; 128x128x8192 (four tiles) and 32x24x32768
 * (masked tiles) no faster or slower, so they stay whole.
 */
export function splitKFor(tiles: number, K: number, BK: number, threads: number, even: boolean): number {
  if (threads < 2 || !even || tiles >= 2 * threads) return 1;
  let S = 1;
  while (S < 16 && tiles * S < 8 * threads && K % (2 * S * BK) === 0 && K / (2 * S) >= SPLIT_K_MIN) S *= 2;
  return S;
}

/** Shallowest K slab split-K makes. */
export const SPLIT_K_MIN = 512;

const ACTS = new Set(['none', 'relu', 'gelu', 'gelu_tanh', 'silu']);

/** Fewest B elements the panels must save copying before ops.matmul packs B (see `matmul`). */
const PACK_B_MIN = 1 << 18;

/**
 * Tile configuration for an M x N x K problem: the tuned table's row for the nearest shape (in
 * powers of two, at most one step away on each axis in total two) among the rows measured on
 * this feature set (`relaxed`: FMA, else the mul+add path; default: what the engine has), else
 * a rule: small M gets thin tiles (GEMV-like). The table was measured without transposes, so
 * a transposed weight gradient (`transA`: xᵀ·dy, M 128 to 512, K at least 2048) takes its own
 * rule. Either way a tile whose masked tail would waste much of its dimension shrinks to one
 * that divides it (`fitTiles`).
 */
export function chooseGemmConfig(M: number, N: number, K: number, relaxed = detectFeatures().relaxedSimd, transA = false): GemmConfig {
  const weightGrad = transA && M >= 128 && M <= 512 && K >= 2048 ? WEIGHT_GRAD_TILES : undefined;
  return fitTiles(weightGrad ?? nearestTuned(M, N, K, relaxed) ?? ruleConfig(M, N, K), M, N, K);
}

/**
 * A transposed weight gradient's tiles. Side by side through ops.matmul on 2 threads (AMD
 * host), transA, GFLOP/s against what the table or rule gave: 512x128x8192 73 -> 82 (64x64x64
 * before), 128x512x8192 88 -> 91, 128x384x8192 82 -> 82, 128x128x8192 75 -> 90 (128x64x32),
 * 256x512x4096 82 -> 84; the best of 27 tilings was within 3% on each. Fewer rows lose a
 * thread to so wide a tile (64x128x8192: 76 against 84 at 64x32x32), so they keep the rule.
 */
const WEIGHT_GRAD_TILES: GemmConfig = { BM: 128, BN: 128, BK: 16 };

/** The rule's configuration (`chooseGemmConfig` without the table), tiles fitted. */
export function gemmRuleConfig(M: number, N: number, K: number): GemmConfig {
  return fitTiles(ruleConfig(M, N, K), M, N, K);
}

/** The largest power of two dividing n (n > 0). */
const lowBit = (n: number): number => n & -n;

/**
 * Shrinks a tile that does not divide its dimension to the largest power of two that does,
 * where the masked tail wastes more than 5% of the dimension and the smaller tile is still
 * useful: a shape that divides every tile runs the mask-free body (and may pack B or split K),
 * one that does not runs every step masked. Measured side by side through ops.matmul on
 * 2 threads, interleaved rounds (GFLOP/s, masked -> fitted): N 24 (BN 32 -> 8) 8192x24x128
 * 54 -> 84, 32x24x32768 32 -> 47; N 200 (BN 128 -> 8) 8192x200x256 65 -> 88; K 24 (BK 32 -> 8)
 * 32x32768x24 33 -> 42; K 200 (64 -> 8) 8192x128x200 53 -> 67; K 3 (16 -> 1) 8192x128x3
 * 3.5 -> 6.2; M 96 (128 -> 32) 96x256x4096 (transA) 62 -> 77. A small tail keeps its masks,
 * which cost less than a thin tile: N 1000 (BN 64 -> 8) 1024x1000x1024 87 -> 55, M 8200
 * 73 -> 63; so does K with an odd factor above 4 (K 17: 30 -> 21).
 */
function fitTiles(c: GemmConfig, M: number, N: number, K: number): GemmConfig {
  const fit = (tile: number, dim: number, thinOk: boolean): number => {
    const waste = Math.ceil(dim / tile) * tile - dim;
    if (waste <= 0.05 * dim) return tile;
    return lowBit(dim) >= 8 || thinOk ? Math.min(tile, lowBit(dim)) : tile;
  };
  return { BM: fit(c.BM, M, false), BN: fit(c.BN, N, false), BK: fit(c.BK, K, K <= 4) };
}

function ruleConfig(M: number, N: number, K: number): GemmConfig {
  const nTile = N >= 64 ? 64 : N >= 32 ? 32 : 16;
  if (M <= 1) return { BM: 1, BN: nTile, BK: Math.min(256, pow2AtLeast(K, 16)) };
  if (M <= 4) return { BM: 4, BN: nTile, BK: Math.min(128, pow2AtLeast(K, 16)) };
  // A K shorter than the tile would run every step masked: 32768x24x32 (a forecaster head's
  // weight gradient) measured 6.6 ms at 32x16x64, 2.8 at 32x16x32 and 1.9 at 64x32x32.
  const kTile = Math.min(64, pow2AtLeast(K, 16));
  if (M <= 16) return { BM: 16, BN: nTile, BK: kTile };
  if (M <= 32) return { BM: 32, BN: nTile, BK: kTile };
  if (N <= 32) return { BM: 64, BN: N > 16 ? 32 : 16, BK: kTile };
  // A weight gradient (xᵀ·dy: a few rows, K the batch's tokens): the whole of M in one tile
  // and thin K steps. Side by side through ops.matmul on 2 threads (AMD host), transA:
  // 128x384x8192 49 -> 59 GFLOP/s, 128x512x8192 49 -> 58, 128x128x8192 77 -> 80 against 64x64x64.
  if (M <= 128 && K >= 2048) return { BM: pow2AtLeast(M, 64), BN: 64, BK: 32 };
  // Tall and shallow (a projection of the tokens, K a power of two up to 128): K in one slab,
  // 128-row tiles.
  // 8192x128x128: 60 -> 80 GFLOP/s.
  if (K <= 128 && M >= 1024 && (K & (K - 1)) === 0) return { BM: 128, BN: 64, BK: Math.max(16, K) };
  return { BM: 64, BN: 64, BK: kTile };
}

function nearestTuned(M: number, N: number, K: number, relaxed: boolean): GemmConfig | undefined {
  let best: GemmConfig | undefined;
  let bestD = Infinity;
  for (const r of GEMM_TABLE) {
    if (r.relaxed !== relaxed) continue;
    const dm = Math.abs(Math.log2(M / r.M)), dn = Math.abs(Math.log2(N / r.N)), dk = Math.abs(Math.log2(K / r.K));
    const d = dm + dn + dk;
    if (dm <= 1 && dn <= 1 && dk <= 1 && d <= 2 && d < bestD) {
      best = { BM: r.BM, BN: r.BN, BK: r.BK };
      bestD = d;
    }
  }
  return best;
}

function fail(msg: string): never {
  throw new TypeError(`matmul: ${msg}`);
}

/**
 * C = act(alpha · op(a) · op(b) + beta · c + bias) over the last two dims, batched over the rest.
 * b may be weights packed by `ops.packWeights` (then shared by every batch entry of a).
 */
export async function matmul(a: Tensor, b: Tensor | PackedWeights, opts: MatmulOptions = {}): Promise<Tensor> {
  if (b instanceof PackedWeights) return matmulPacked(a, b, opts);
  const { transA = false, transB = false, alpha = 1, activation = 'none' } = opts;
  if (!(a instanceof Tensor) || !(b instanceof Tensor)) fail('a and b must be Tensors (b may be PackedWeights)');
  if (a.isFreed) fail('a has been freed');
  if (b.isFreed) fail('b has been freed');
  if (a.shape.length < 2 || b.shape.length < 2) fail(`a and b need at least 2 dims, got a [${a.shape}] and b [${b.shape}]`);
  if (a.dtype === 'i32' || b.dtype === 'i32') fail(`a and b must be f32, f16 or bf16, got ${a.dtype} and ${b.dtype}`);
  if (!ACTS.has(activation)) fail(`activation must be one of ${[...ACTS].join(', ')}, got '${activation}'`);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail(`alpha must be a finite number, got ${alpha}`);
  const ra = a.shape.length, rb = b.shape.length;
  const M = transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const Ka = transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const Kb = transB ? b.shape[rb - 1]! : b.shape[rb - 2]!;
  const N = transB ? b.shape[rb - 2]! : b.shape[rb - 1]!;
  if (Ka !== Kb) fail(`inner dimensions differ: op(a) is [${M}, ${Ka}] and op(b) is [${Kb}, ${N}]`);
  const K = Ka;
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const batch = batchA.length >= batchB.length ? batchA : batchB;
  const count = batch.reduce((p, d) => p * d, 1);
  const sameBatch = (s: readonly number[]): boolean => s.length === 0 || (s.length === batch.length && s.every((d, i) => d === batch[i]));
  if (!sameBatch(batchA) || !sameBatch(batchB)) fail(`batch dims differ: a [${batchA}] and b [${batchB}] (one may be 2-D and shared)`);
  const outShape = [...batch, M, N];
  for (const t of [a, b]) if (!t.isContiguous()) fail('a and b must be contiguous (row-major); copy them first');
  const rt = a.runtime;
  if (b.runtime !== rt) fail('a and b belong to different runtimes');
  const { beta, aux } = epilogueArgs(rt, outShape, opts, [['a', a], ['b', b]]);
  if (opts.config !== undefined) checkConfig(opts.config);
  // Everything is checked: from here on a failure frees the output this call allocated.
  const out = opts.out ?? rt.empty(outShape, a.dtype === b.dtype ? a.dtype : 'f32');
  try {
    if (M === 0 || N === 0 || count === 0) return out;
    if (M === 1 && !opts.config) {
      // GEMV: a is a K-vector whatever transA says; stream B through a fused multiply-reduce.
      const g = chooseGemvConfig(N, K, transB, rt.threads, b.dtype !== 'f32');
      await unfusedAux(aux, activation, out, (act, target) => gemvKernel.launch(
        {
          grid: [Math.ceil(N / g.BN), 1, count], BN: g.BN, BK: g.BK, TRANS_B: transB, HAS_C: opts.c !== undefined, HAS_BIAS: opts.bias !== undefined,
          ACT: act, EVEN: N % g.BN === 0 && K % g.BK === 0 && (transB || g.BK % 4 === 0), relaxedSimd: opts.relaxedSimd,
        },
        a, b, opts.c ?? out, opts.bias ?? out, target,
        N, K, batchA.length ? K : 0, batchB.length ? K * N : 0, N, N, alpha, beta,
      ));
      return out;
    }
    const cfg = opts.config ?? chooseGemmConfig(M, N, K, opts.relaxedSimd, transA);
    const even = M % cfg.BM === 0 && N % cfg.BN === 0 && K % cfg.BK === 0;
    const dummy = out; // unused pointer params still need a tensor of this runtime
    // B goes once into f32 panels that every row tile's dots read in place, instead of each row
    // tile copying (or transposing) its B tiles again: when the copies saved, (M/BM - 1)·K·N
    // elements, pay for the extra pass and launch (measured, 2 threads: 1024³ 78 -> 85 GFLOP/s,
    // 8192x128x512 75 -> 88; 256³, saving 0.2M, 71 -> 68). A weight gradient's two row tiles over
    // K = 8192 still gain: panels stream in, tile copies of rows 1.5 KB apart miss.
    const tiles = Math.ceil(M / cfg.BM) * Math.ceil(N / cfg.BN) * count;
    const S = opts.splitK === false ? 1 : splitKFor(tiles, K, cfg.BK, rt.threads, even);
    const part = S > 1 ? tryEmpty(rt, count * S * M * N) : undefined;
    if (part) {
      try {
        // Each slab's partial product, then one pass summing them with the epilogue.
        await gemmKernel.launch(
          {
            grid: [M / cfg.BM, N / cfg.BN, count * S],
            BM: cfg.BM, BN: cfg.BN, BK: cfg.BK, TRANS_A: transA, TRANS_B: transB,
            HAS_C: false, HAS_BIAS: false, ACT: 'none', EVEN: true, PACKED_B: false, AUX_OUT: false, DACT: 'none', relaxedSimd: opts.relaxedSimd,
          },
          a, b, part, part, part, M, N, K,
          batchA.length ? M * K : 0, batchB.length ? K * N : 0, 0, M * N, 1, 0, K / S, S, K, part,
        );
        await unfusedAux(aux, activation, out, (act, target) => gemmReduceKernel.launch(
          { grid: [Math.ceil(M / 16), Math.ceil(N / 64), count], BR: 16, BC: 64, HAS_C: opts.c !== undefined, HAS_BIAS: opts.bias !== undefined, ACT: act, relaxedSimd: opts.relaxedSimd },
          part, opts.c ?? part, opts.bias ?? part, target, M, N, S, M * N, alpha, beta,
        ));
      } finally {
        part.free();
      }
      return out;
    }
    const { fused, after } = splitAux(aux, out);
    const pack = even && (M / cfg.BM - 1) * K * N >= PACK_B_MIN && cfg.BN <= IN_PLACE_B_PITCH && opts.packB !== false;
    const bCount = batchB.length ? count : 1; // B's batch entries (one when a 2-D B is shared)
    const panels = pack ? tryEmpty(rt, bCount * K * N) : undefined;
    try {
      if (panels) {
        await packBKernel.launch(
          { grid: [K / cfg.BK, N / cfg.BN, bCount], BN: cfg.BN, BK: cfg.BK, TRANS_B: transB, relaxedSimd: opts.relaxedSimd },
          b, panels, K, N, batchB.length ? K * N : 0, K * N,
        );
      }
      await gemmKernel.launch(
        {
          grid: [Math.ceil(M / cfg.BM), Math.ceil(N / cfg.BN), count],
          BM: cfg.BM, BN: cfg.BN, BK: cfg.BK, TRANS_A: transA, TRANS_B: transB && !panels,
          HAS_C: opts.c !== undefined, HAS_BIAS: opts.bias !== undefined, ACT: activation, EVEN: even, PACKED_B: panels !== undefined,
          ...auxConstexprs(fused), relaxedSimd: opts.relaxedSimd,
        },
        a, panels ?? b, opts.c ?? dummy, opts.bias ?? dummy, out,
        M, N, K,
        batchA.length ? M * K : 0, batchB.length ? K * N : 0, M * N, M * N,
        alpha, beta, K, 1, K, fused.tensor ?? dummy,
      );
    } finally {
      panels?.free();
    }
    await finishAux(after, out);
    return out;
  } catch (err) {
    if (out !== opts.out) out.free();
    throw err;
  }
}

/**
 * Tiles for a GEMM over packed weights (BN is the panel width): all M rows in one tile up to
 * 64 (a power of two at least M), K steps of 64 where the panels allow, of 16 for eight rows or
 * fewer.
 * Measured on 2 threads, K = N = 4096, f32 panels (GFLOP/s): M 4: BK 16 48.9, 64 45.5; M 256:
 * 64x16x64 94.9, 32x16x128 95.7, 128x16x64 88.8. bf16 panels (BN 32): M 4 77.0 at BK 16.
 */
export function packedGemmConfig(M: number, panelK: number, nr: number): GemmConfig {
  const BM = Math.min(64, pow2AtLeast(M, 1));
  const deep = M <= 8 ? 16 : 64;
  let BK = deep;
  while (panelK % BK !== 0) BK /= 2;
  return { BM, BN: nr, BK };
}

/** ops.matmul with weights packed by ops.packWeights: GEMV for one row, else the GEMM over the panels. */
async function matmulPacked(a: Tensor, w: PackedWeights, opts: MatmulOptions): Promise<Tensor> {
  const { transA = false, alpha = 1, activation = 'none' } = opts;
  if (!(a instanceof Tensor)) fail('a must be a Tensor');
  if (a.isFreed) fail('a has been freed');
  if (w.isFreed) fail('the packed weights have been freed');
  if (opts.transB) fail('transB is fixed when the weights are packed: pass it to ops.packWeights');
  if (a.shape.length < 2) fail(`a needs at least 2 dims, got a [${a.shape}]`);
  if (a.dtype === 'i32') fail(`a must be f32, f16 or bf16, got ${a.dtype}`);
  if (!ACTS.has(activation)) fail(`activation must be one of ${[...ACTS].join(', ')}, got '${activation}'`);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha)) fail(`alpha must be a finite number, got ${alpha}`);
  if (!a.isContiguous()) fail('a must be contiguous (row-major); copy it first');
  const rt = a.runtime;
  if (w.runtime !== rt) fail('a and the packed weights belong to different runtimes');
  const ra = a.shape.length;
  const M = transA ? a.shape[ra - 1]! : a.shape[ra - 2]!;
  const K = transA ? a.shape[ra - 2]! : a.shape[ra - 1]!;
  const { N, panelK, nr } = w;
  if (K !== w.K) fail(`inner dimensions differ: op(a) is [${M}, ${K}] and the packed weights are [${w.K}, ${N}]`);
  const batch = a.shape.slice(0, -2);
  const count = batch.reduce((p, d) => p * d, 1);
  const outShape = [...batch, M, N];
  const { beta, aux } = epilogueArgs(rt, outShape, opts, [['a', a], ['the packed weights', w.panels]]);
  if (opts.config !== undefined) {
    const cfg = checkConfig(opts.config);
    if (cfg.BN !== nr) fail(`config.BN must be the panel width ${nr} with packed weights, got ${cfg.BN}`);
    if (panelK % cfg.BK !== 0) fail(`config.BK must be a power of two dividing the panels' ${panelK} rows, got ${cfg.BK}`);
  }
  // Everything is checked: from here on a failure frees the output this call allocated.
  const out = opts.out ?? rt.empty(outShape, a.dtype === w.sourceDtype ? a.dtype : 'f32');
  try {
    if (M === 0 || count === 0) return out;
    const panelCount = Math.ceil(N / nr);
    const epilogue = { HAS_C: opts.c !== undefined, HAS_BIAS: opts.bias !== undefined, relaxedSimd: opts.relaxedSimd };
    if (M === 1 && !opts.config) {
      // One row per batch entry (a [.., 1, K], or [.., K, 1] with transA: the same K values).
      await unfusedAux(aux, activation, out, (act, target) => gemvPackedKernel.launch(
        { grid: [panelCount, 1, count], NR: nr, UK: 4, EVEN: K === panelK, ACT: act, ...epilogue },
        a, w.panels, opts.c ?? out, opts.bias ?? out, target, N, K, panelK, K, N, N, alpha, beta,
      ));
      return out;
    }
    // The panels are shared, so without transA the batch entries' rows are one tall M.
    const [rows, entries] = transA ? [M, count] : [M * count, 1];
    const cfg = opts.config ?? packedGemmConfig(rows, panelK, nr);
    const { fused, after } = splitAux(aux, out);
    await gemmKernel.launch(
      {
        grid: [Math.ceil(rows / cfg.BM), panelCount, entries],
        BM: cfg.BM, BN: cfg.BN, BK: cfg.BK, TRANS_A: transA, TRANS_B: false, EVEN: rows % cfg.BM === 0 && N % nr === 0 && K % cfg.BK === 0, PACKED_B: true,
        ACT: activation, ...auxConstexprs(fused), ...epilogue,
      },
      a, w.panels, opts.c ?? out, opts.bias ?? out, out,
      rows, N, K, entries > 1 ? M * K : 0, 0, rows * N, rows * N, alpha, beta, K, 1, panelK, fused.tensor ?? out,
    );
    await finishAux(after, out);
    return out;
  } catch (err) {
    if (out !== opts.out) out.free();
    throw err;
  }
}

/** A forced tile configuration: BM, BN and BK powers of two (the kernels' arange lengths). */
function checkConfig(cfg: GemmConfig): GemmConfig {
  if (cfg === null || typeof cfg !== 'object') fail(`config must be an object { BM, BN, BK }, got ${describe(cfg)}`);
  for (const k of ['BM', 'BN', 'BK'] as const) if (!isPow2(cfg[k])) fail(`config.${k} must be a power of two, got ${describe(cfg[k])}`);
  return cfg;
}

/**
 * Checks `c`, `bias`, `out` and the aux epilogue's tensor against the output shape [.., M, N]
 * (bias: [N]) and against the operands (`inputs`), and returns beta (0 without `c`) and the
 * aux epilogue. Allocates nothing, so a refused call leaves nothing behind.
 */
function epilogueArgs(rt: Tensor['runtime'], outShape: readonly number[], opts: MatmulOptions, inputs: readonly [string, Tensor][]): { beta: number; aux: AuxEpilogue } {
  const N = outShape[outShape.length - 1]!;
  let beta = opts.beta ?? 1;
  if (typeof beta !== 'number' || !Number.isFinite(beta)) fail(`beta must be a finite number, got ${beta}`);
  // beta scales c: given without it, it would be dropped without a word.
  if (opts.beta !== undefined && opts.c === undefined) fail('beta scales c, but no c was given');
  const { preActivation: pre, activationGrad: grad } = opts;
  if (pre !== undefined && grad !== undefined) fail('preActivation and activationGrad exclude each other (one is a forward, the other a backward)');
  if (pre !== undefined && (opts.activation ?? 'none') === 'none') fail('preActivation needs an activation whose input it stores');
  if (grad !== undefined) {
    if (!ACTS.has(grad.activation) || (grad.activation as string) === 'none') fail(`activationGrad.activation must be one of ${[...ACTS].filter((a) => a !== 'none').join(', ')}, got '${grad.activation}'`);
    if ((opts.activation ?? 'none') !== 'none') fail('activationGrad applies a derivative: activation must be none');
  }
  // Each tensor argument: live, of this runtime, of its shape, float, contiguous (the kernels
  // address it row-major, and `overlaps` compares byte ranges).
  const args: [string, Tensor | undefined, readonly number[]][] = [
    ['c', opts.c, outShape], ['bias', opts.bias, [N]], ['out', opts.out, outShape],
    [pre ? 'preActivation' : 'activationGrad.preActivation', pre ?? grad?.preActivation, outShape],
  ];
  for (const [name, t, shape] of args) {
    if (t === undefined) continue;
    if (!(t instanceof Tensor)) fail(`${name} must be a Tensor`);
    if (t.isFreed) fail(`${name} has been freed`);
    if (t.runtime !== rt) fail(`${name} belongs to another runtime`);
    if (!sameShape(t.shape, shape)) fail(`${name} must be [${shape}], got [${t.shape}]`);
    if (t.dtype === 'i32') fail(`${name} must be a float tensor`);
    if (!t.isContiguous()) fail(`${name} must be contiguous (row-major); copy it first`);
  }
  if (!opts.c) beta = 0;
  if (pre && opts.out && overlaps(opts.out, pre)) fail('preActivation and out must not overlap');
  // The second pass (see splitAux) reads the saved input after the product is written.
  if (grad && opts.out && overlaps(opts.out, grad.preActivation)) fail('activationGrad.preActivation and out must not overlap');
  // An output over an operand would be read back half-overwritten by other tiles (and the K
  // loop reads a and b long after the first tiles are stored): refuse any overlap. The one
  // exception is out as c itself, C = A·B + beta·C in place: each tile reads its own C
  // elements, at the offsets it then writes, before it writes them, on every path.
  const read: [string, Tensor | undefined][] = [...inputs, ['c', opts.c], ['bias', opts.bias]];
  for (const [name, t] of [['out', opts.out], ['preActivation', pre]] as const) {
    if (t === undefined) continue;
    for (const [other, x] of read) {
      if (x === undefined || !overlaps(t, x)) continue;
      if (name === 'out' && other === 'c' && sameMemory(t, x)) continue;
      fail(`${name} must not overlap ${other}${other === 'c' ? ' (out may be c itself, for an in-place c += a·b, but not part of it)' : ''}`);
    }
  }
  const auxEpilogue: AuxEpilogue = pre ? { kind: 'store', tensor: pre, dact: 'none' } : grad ? { kind: 'grad', tensor: grad.preActivation, dact: grad.activation } : NO_AUX;
  return { beta, aux: auxEpilogue };
}

/** The preActivation / activationGrad epilogue of a product (see MatmulOptions). */
type AuxEpilogue = { readonly kind: 'none' | 'store' | 'grad'; readonly tensor?: Tensor; readonly dact: GemmActivation };

/**
 * Largest output (bytes) whose activation-gradient epilogue the GEMM fuses when the derivative
 * is costlier than relu's. Past it the epilogue's loads of the saved input, a tile's rows
 * 64 columns long, miss while the derivative's arithmetic keeps the core busy, and a second,
 * streaming pass wins. Measured on 2 threads (ms, K 16, GELU: GEMM + fused -> GEMM, then the
 * activation's backward): M x 512 of M 1024 0.89 -> 0.98, 2048 1.62 -> 1.67, 4096 3.99 -> 3.38,
 * 8192 9.44 -> 6.3; the forecaster's 8192x512x128 dy·W₂ᵀ 19.1 -> 15.6, and with the exp-free
 * gelu' 16.7 -> 13.4 (4096x512x16 3.66 -> 2.07).
 */
const DACT_FUSE_MAX_BYTES = 4 << 20;

/**
 * The part of an aux epilogue the GEMM fuses, and the part `finishAux` runs after it: a
 * costly derivative over a large f32 output goes to the second pass (which gives the same bits;
 * a half output would round twice there, so it stays fused).
 */
function splitAux(aux: AuxEpilogue, out: Tensor): { fused: AuxEpilogue; after: AuxEpilogue } {
  const late = aux.kind === 'grad' && aux.dact !== 'relu' && out.dtype === 'f32' && out.size * 4 > DACT_FUSE_MAX_BYTES;
  return late ? { fused: NO_AUX, after: aux } : { fused: aux, after: NO_AUX };
}

const NO_AUX: AuxEpilogue = { kind: 'none', dact: 'none' };

/** The GEMM's constexprs for an aux epilogue it fuses. */
function auxConstexprs(aux: AuxEpilogue): { AUX_OUT: boolean; DACT: GemmActivation } {
  return { AUX_OUT: aux.kind === 'store', DACT: aux.dact };
}

/**
 * Runs a launch that cannot fuse the aux epilogue (GEMV, split-K's reduction), then the rest
 * of it as a second pass. `launch(act, target)` applies `act` and writes `target`. Without aux
 * that is the whole epilogue into `out`. With one, the launch writes the activation's input
 * (preActivation) or the product (activationGrad) to an f32 tensor, and the second pass
 * applies the activation or its derivative to that f32 value, as the fused epilogue does: a
 * half preActivation or out is rounded once, after it, so the result does not depend on which
 * path M and the thread count pick. The f32 tensor is the preActivation (or out) itself when
 * f32, else a scratch the size of the output (small: these paths run only for a few tiles).
 */
async function unfusedAux(aux: AuxEpilogue, activation: GemmActivation, out: Tensor, launch: (act: GemmActivation, target: Tensor) => Promise<unknown>): Promise<void> {
  if (aux.kind === 'none') {
    await launch(activation, out);
    return;
  }
  const written = aux.kind === 'store' ? aux.tensor! : out;
  const target = written.dtype === 'f32' ? written : out.runtime.empty(out.shape, 'f32');
  try {
    await launch('none', target);
    if (aux.kind === 'store') {
      await activationOp(activation as Activation, target, { out });
      if (target !== written) await cast(target, written.dtype, { out: written });
    } else {
      await activationBackward(aux.dact as Activation, target, aux.tensor!, { out });
    }
  } finally {
    if (target !== written) target.free();
  }
}

/** The part of an aux epilogue `splitAux` left for after the GEMM (an f32 out: see there). */
async function finishAux(aux: AuxEpilogue, out: Tensor): Promise<void> {
  if (aux.kind === 'grad') await activationBackward(aux.dact as Activation, out, aux.tensor!, { out });
}

/** Scratch panels, or undefined when the runtime's memory cannot take them (the GEMM then copies tiles as before). */
function tryEmpty(rt: Tensor['runtime'], n: number): Tensor | undefined {
  try {
    return rt.empty([n], 'f32');
  } catch (err) {
    // Out of memory is a RangeError; anything else (a disposed runtime, ...) is the caller's to see.
    if (err instanceof RangeError) return undefined;
    throw err;
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}
