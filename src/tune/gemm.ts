/**
 * @fileoverview The GEMM template under the autotuner (plain C = A·B, f32): what `tilejit tune
 * matmul` runs and what the config-table script measures. Each candidate is checked on a small
 * problem shaped to its tiles (one or two tiles per axis, with ragged edges when the real
 * shape has them, so the masked or the mask-free body is the one verified).
 */
import { gemmKernel, GEMM_CONFIGS, type GemmConfig } from '../../templates/gemm.js';
import type { KernelArg } from '../kernel.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { autotune, type TunedKernel, type TuneEvent } from './autotune.js';

/** Options of `tunedGemm`. */
export interface TunedGemmOptions {
  readonly configs?: readonly GemmConfig[];
  /** Tune the plain mul+add path: launches pass `relaxedSimd: false`, keyed apart. */
  readonly plain?: boolean;
  readonly cacheDir?: string | false;
  readonly warmup?: number;
  readonly rep?: number;
  readonly listener?: (e: TuneEvent) => void;
}

/** The constexprs a plain GEMM fixes. */
export const PLAIN_GEMM = { TRANS_A: false, TRANS_B: false, HAS_C: false, HAS_BIAS: false, ACT: 'none', PACKED_B: false, AUX_OUT: false, DACT: 'none' } as const;

const num = (x: unknown): number => x as number;

/** n values in [-1, 1) from a seeded linear congruential generator. */
export function deterministic(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 * 2 - 1;
  }
  return out;
}

/** The GEMM kernel tuned over its config space, keyed by M, N, K. */
export function tunedGemm(opts: TunedGemmOptions = {}): TunedKernel {
  return autotune(gemmKernel, {
    configs: (opts.configs ?? GEMM_CONFIGS).map((c) => ({ BM: c.BM, BN: c.BN, BK: c.BK })),
    key: opts.plain ? ['M', 'N', 'K', 'relaxedSimd'] : ['M', 'N', 'K'],
    grid: (m, a) => [Math.ceil(num(a.M) / num(m.BM)), Math.ceil(num(a.N) / num(m.BN)), 1],
    derive: (m, a) => ({ EVEN: num(a.M) % num(m.BM) === 0 && num(a.N) % num(m.BN) === 0 && num(a.K) % num(m.BK) === 0 }),
    // A tile much taller or wider than the problem only computes padding.
    prune: (configs, { args }) => {
      const kept = configs.filter((c) => num(c.BM) <= Math.max(4, 2 * num(args.M)) && num(c.BN) <= Math.max(16, 2 * num(args.N)));
      return kept.length ? kept : configs;
    },
    outputs: ['Out'],
    warmup: opts.warmup,
    rep: opts.rep,
    cacheDir: opts.cacheDir,
    listener: opts.listener,
    verify: {
      args: (rt, meta) => {
        const ragged = meta.EVEN ? 0 : 1;
        return gemmArgs(rt, num(meta.BM) * (1 + ragged) + 3 * ragged, num(meta.BN) + 5 * ragged, num(meta.BK) * 2 + 7 * ragged);
      },
    },
  });
}

/** Arguments of a plain M x N x K GEMM (A, B deterministic; Out uninitialised). */
export function gemmArgs(rt: Runtime, M: number, N: number, K: number): KernelArg[] {
  const a = rt.tensor(deterministic(M * K, 1), [M, K]);
  const b = rt.tensor(deterministic(K * N, 2), [K, N]);
  const out = rt.empty([M, N]);
  return gemmArgsFor(a, b, out, M, N, K);
}

/** The kernel's argument list for tensors already made (C and Bias unused: they point at Out). */
export function gemmArgsFor(a: Tensor, b: Tensor, out: Tensor, M: number, N: number, K: number): KernelArg[] {
  return [a, b, out, out, out, M, N, K, 0, 0, M * N, M * N, 1, 0, K, 1, K, out];
}
