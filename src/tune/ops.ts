/**
 * @fileoverview The built-in templates under the autotuner, by op name: what `tilejit tune <op>`
 * runs and what `npm run tune:tables` measures to regenerate the tables `ops.*` choose their
 * configs from (templates/gemm-table.ts, templates/tuned-tables.ts). Each op knows its shape
 * form, its config space and candidate checks, one problem of a given shape, the work of a call
 * (for the rate column) and the table row a result becomes.
 */
import {
  ATTENTION_CONFIGS, ATTENTION_SCRATCH_MAX, attnBwdKernel, attnBwdKVKernel, attnBwdQKernel, attnFwdKernel, headMajorStrides, type AttentionPass,
} from '../../templates/attention.js';
import { GEMV_CONFIGS, gemvKernel } from '../../templates/gemv.js';
import { normFwdKernel } from '../../templates/norm.js';
import { ROW_CONFIGS, rowConfigFor, rowTile, softmaxKernel } from '../../templates/softmax.js';
import type { Kernel, KernelArg } from '../kernel.js';
import type { ConstexprValue } from '../lang/index.js';
import { detectFeatures } from '../runtime/features.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { autotune, type TunedKernel, type TuneConfig, type TuneEvent } from './autotune.js';
import { deterministic, gemmArgs, PLAIN_GEMM, tunedGemm } from './gemm.js';

/** Options every tuned op takes (those of autotune that a caller sets). */
export interface TuneOpOptions {
  readonly cacheDir?: string | false;
  readonly warmup?: number;
  readonly rep?: number;
  readonly listener?: (e: TuneEvent) => void;
}

/** One op the tuner knows. */
export interface TuneOp {
  /** The --shape form (e.g. 'MxNxK') and the default shape. */
  readonly form: string;
  readonly fallback: string;
  /** What is tuned, in a few words (for --help). */
  readonly what: string;
  /** The template kernel over its config space. */
  tuned(opts: TuneOpOptions): TunedKernel;
  /** A problem of this shape in `rt`: the constexprs the op fixes and the kernel's arguments. */
  problem(rt: Runtime, dims: readonly number[]): { fixed: Record<string, ConstexprValue>; args: KernelArg[] };
  /** Work of one call: flops (GFLOP/s column) or compulsory bytes (GB/s column). */
  work(dims: readonly number[]): { flops?: number; bytes?: number };
  /** The shapes `npm run tune:tables` measures. */
  readonly tableShapes: readonly (readonly number[])[];
  /** The table row of a winning config at a shape. */
  tableRow(dims: readonly number[], cfg: TuneConfig): Record<string, number | boolean | string>;
}

const num = (x: unknown): number => x as number;

/** Deterministic f32 data as a tensor of `shape`. */
function data(rt: Runtime, shape: number[], seed: number, scale = 1): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const d = deterministic(n, seed);
  if (scale !== 1) for (let i = 0; i < n; i++) d[i]! *= scale;
  return rt.tensor(d, shape);
}

function gemv(transB: boolean): TuneOp {
  const configs = GEMV_CONFIGS[transB ? 'bt' : 'b'];
  const args = (rt: Runtime, N: number, K: number): KernelArg[] => {
    const a = data(rt, [K], 1), b = data(rt, transB ? [N, K] : [K, N], 2), out = rt.empty([N]);
    return [a, b, out, out, out, N, K, 0, 0, 0, 0, 1, 0];
  };
  return {
    form: 'NxK', fallback: '4096x4096',
    what: transB ? 'GEMV 1xK · (NxK)ᵀ (weights as nn.Linear keeps them): BN x BK' : 'GEMV 1xK · KxN: BN columns x BK rows per step',
    tuned: (o) => autotune(gemvKernel, {
      configs, key: ['N', 'K', 'TRANS_B'], outputs: ['Out'], ...o,
      grid: (m, a) => [Math.ceil(num(a.N) / num(m.BN)), 1, 1],
      derive: (m, a) => ({ EVEN: num(a.N) % num(m.BN) === 0 && num(a.K) % num(m.BK) === 0 && (transB || num(m.BK) % 4 === 0) }),
      prune: (cs, { args: a }) => {
        const kept = cs.filter((c) => num(c.BN) <= Math.max(16, 2 * num(a.N)) && num(c.BK) <= Math.max(8, 2 * num(a.K)));
        return kept.length ? kept : cs;
      },
      verify: { args: (rt, m) => args(rt, num(m.BN) * 2 + (m.EVEN ? 0 : 3), num(m.BK) * 2 + (m.EVEN ? 0 : 5)) },
    }),
    problem: (rt, [N, K]) => ({ fixed: { TRANS_B: transB, HAS_C: false, HAS_BIAS: false, ACT: 'none' }, args: args(rt, N!, K!) }),
    work: ([N, K]) => ({ flops: 2 * N! * K! }),
    tableShapes: [[4096, 4096], [1024, 1024], [4096, 1024], [1024, 4096], [512, 512], [384, 128], [128, 512], [128, 128]],
    tableRow: ([N, K], c) => ({ N: N!, K: K!, transB, BN: num(c.BN), BK: num(c.BK) }),
  };
}

/** Softmax or layer norm forward: the row kernels' configs. */
function rows(kind: 'softmax' | 'layernorm'): TuneOp {
  const kernel: Kernel = kind === 'softmax' ? softmaxKernel : normFwdKernel;
  const args = (rt: Runtime, M: number, N: number): KernelArg[] => {
    const x = data(rt, [M, N], 1, 4), y = rt.empty([M, N]);
    if (kind === 'softmax') return [x, x, y, M, N];
    const w = data(rt, [N], 2), st = rt.empty([M]);
    return [x, w, w, y, st, rt.empty([M]), M, N, 1e-5];
  };
  return {
    form: 'MxN', fallback: '4096x1024',
    what: `${kind === 'softmax' ? 'softmax' : 'layer norm'} forward over rows of N: R rows per program in one tile, or one row in BN chunks`,
    tuned: (o) => autotune(kernel, {
      configs: ROW_CONFIGS, key: ['M', 'N'], ...o,
      outputs: kind === 'softmax' ? ['Out'] : ['Y', 'Mean', 'Rstd'],
      grid: (m, a) => [m.SINGLE ? Math.ceil(num(a.M) / num(m.R)) : num(a.M), 1, 1],
      // A SINGLE candidate's tile is the row's width: BN and EVEN come from the arguments.
      derive: (m, a): Record<string, ConstexprValue> => {
        const c = rowConfigFor(num(a.M), num(a.N), { R: num(m.R), BN: m.BN === undefined ? undefined : num(m.BN), SINGLE: m.SINGLE === true });
        return c ? { R: c.R, BN: c.BN, EVEN: c.EVEN } : { EVEN: false };
      },
      prune: (cs, { args: a }) => {
        const M = num(a.M), N = num(a.N), tile = rowTile(N);
        // Whole rows need a tile that holds them; chunks only pay once a row outgrows a tile's reach.
        const kept = cs.filter((c) => (c.SINGLE ? tile !== undefined && num(c.R) <= Math.max(1, M) && num(c.R) * tile <= 1 << 16 : N >= 1024 && num(c.BN) < 2 * N));
        return kept.length ? kept : cs;
      },
      verify: {
        args: (rt, m) => {
          const ragged = m.EVEN ? 0 : 1;
          const N = m.SINGLE ? Math.max(1, num(m.BN) - 3 * ragged) : 2 * num(m.BN) + 7;
          return args(rt, num(m.R) * 2 + ragged, N);
        },
      },
    }),
    problem: (rt, [M, N]) => ({
      fixed: (kind === 'softmax' ? { LOG: false, BWD: false } : { RMS: false, HAS_W: true, HAS_B: true }) as Record<string, ConstexprValue>,
      args: args(rt, M!, N!),
    }),
    work: ([M, N]) => ({ bytes: 8 * M! * N! }),
    tableShapes: [[4096, 1024], [1024, 1024], [8192, 128], [8192, 384], [1024, 4096], [256, 256], [64, 8192], [16, 32768]],
    tableRow: ([M, N], c) => ({ M: M!, N: N!, R: num(c.R), BN: c.SINGLE ? rowTile(N!) ?? 0 : num(c.BN), SINGLE: c.SINGLE === true }),
  };
}

/** Matmuls of N x N x D per head in each pass: S and O (forward); S, dV, dP, dK; S, dP, dQ; S, dV, dP, dK, dQ. */
const PASS_MATMULS: Readonly<Record<AttentionPass, number>> = { fwd: 2, dkv: 4, dq: 3, bwd: 5 };

/**
 * Heads an attention problem of N x D runs over: H, times enough batch entries that q, k and v
 * take about 12 MB, as a training batch's do. On one batch entry (cache-resident) small tiles
 * won (32x64 at N 256, D 32), and lost 12% to 128x128 on the forecaster's batch of 32.
 */
const attentionHeads = (H: number, N: number, D: number): number => H * Math.max(1, Math.round((12 << 20) / (3 * H * N * D * 4)));

/** One attention pass over a batch of H-head entries, as heads (self-attention: q, k, v of one shape). */
function attention(pass: AttentionPass, causal: boolean): TuneOp {
  const H = 4;
  const kernel = { fwd: attnFwdKernel, dkv: attnBwdKVKernel, dq: attnBwdQKernel, bwd: attnBwdKernel }[pass];
  const args = (rt: Runtime, N: number, D: number, heads = H): KernelArg[] => {
    const shape = [1, heads, N, D];
    const q = data(rt, shape, 1), k = data(rt, shape, 2), v = data(rt, shape, 3);
    const tail = [N, heads, 1, 1 / Math.sqrt(D), 0, 0, ...headMajorStrides(heads, heads, N, D)];
    if (pass === 'fwd') {
      const lse = rt.empty([1, heads, N]);
      return [q, k, v, rt.empty(shape), lse, lse, ...tail];
    }
    // The backward's inputs need only be in range: |q·k| <= D keeps exp(s - lse) finite at lse = 0.
    const dout = data(rt, shape, 4), lse = rt.zeros([1, heads, N]), delta = data(rt, [heads * N], 5, 0.1);
    if (pass === 'bwd') return [q, k, v, dout, lse, delta, rt.empty(shape), rt.empty(shape), rt.empty(shape), delta, ...tail];
    return pass === 'dkv'
      ? [q, k, v, dout, lse, delta, delta, rt.empty(shape), rt.empty(shape), delta, ...tail]
      : [q, k, v, dout, lse, delta, rt.empty(shape), delta, ...tail];
  };
  const label = { fwd: 'flash attention forward', dkv: 'attention backward, dK and dV', dq: 'attention backward, dQ', bwd: 'attention backward in one pass' }[pass];
  return {
    form: 'NxD', fallback: '1024x64',
    what: `${label}${causal ? ', causal' : ''}, batch entries of ${H} heads: BM query rows x BN keys per block`,
    tuned: (o) => autotune(kernel, {
      configs: ATTENTION_CONFIGS, key: ['N', 'D', 'CAUSAL'], ...o,
      outputs: { fwd: ['O', 'Lse'], dkv: ['Dk', 'Dv'], dq: ['Dq'], bwd: ['Dq', 'Dk', 'Dv'] }[pass],
      // The one-pass backward: a program per kv head.
      grid: (m, a) => (pass === 'bwd' ? [num(a.H), 1, 1] : [Math.ceil(num(a.N) / num(pass === 'dkv' ? m.BN : m.BM)), num(a.H), 1]),
      // Tiles whose program would need more scratch than the pass's budget are not candidates.
      prune: async (cs, { args: a, meta, runtime }) => {
        const N = num(a.N), kept: TuneConfig[] = [];
        for (const c of cs) {
          if (num(c.BM) > Math.max(16, 2 * N) || num(c.BN) > Math.max(16, 2 * N)) continue;
          const ck = await kernel.prepare({ ...meta, ...c, grid: [1, 1, 1], runtime }, ...Object.values(a));
          if (ck.scratchBytes <= ATTENTION_SCRATCH_MAX[pass]) kept.push(c);
        }
        return kept.length ? kept : cs;
      },
      verify: { args: (rt, m) => args(rt, 2 * Math.max(num(m.BM), num(m.BN)) + 3, num(m.D), 2) },
    }),
    problem: (rt, [N, D]) => ({
      fixed: { D: D!, CAUSAL: causal, WINDOW: 0, HAS_LENS: false, DROPOUT: false, ...(pass === 'dkv' || pass === 'bwd' ? { FUSED: pass === 'bwd' } : {}) },
      args: args(rt, N!, D!, attentionHeads(H, N!, D!)),
    }),
    work: ([N, D]) => ({ flops: 2 * PASS_MATMULS[pass] * attentionHeads(H, N!, D!) * N! * N! * D! * (causal ? 0.5 : 1) }),
    tableShapes: [[256, 32], [512, 64], [1024, 64], [2048, 64], [4096, 64], [1024, 128], [256, 16]],
    tableRow: ([N, D], c) => ({ N: N!, D: D!, causal, pass, BM: num(c.BM), BN: num(c.BN) }),
  };
}

/** GEMM tiles with relaxed-SIMD FMA (where the engine has it) or, `plain`, the mul+add path. */
const gemm = (plain: boolean): TuneOp => ({
  form: 'MxNxK', fallback: '512x512x512',
  what: `GEMM C = A·B${plain ? ' on the mul+add path (no relaxed SIMD)' : ''}: BM x BN output tiles, BK deep`,
  tuned: (o) => tunedGemm({ ...o, plain }),
  problem: (rt, [M, N, K]) => ({ fixed: plain ? { ...PLAIN_GEMM, relaxedSimd: false } : { ...PLAIN_GEMM }, args: gemmArgs(rt, M!, N!, K!) }),
  work: ([M, N, K]) => ({ flops: 2 * M! * N! * K! }),
  tableShapes: [
    [4, 1024, 1024], [16, 1024, 1024], [32, 512, 512], [64, 64, 64], [128, 128, 128],
    [256, 256, 256], [512, 512, 512], [1024, 1024, 1024], [256, 1024, 256], [1024, 256, 1024],
    [2048, 64, 64], [64, 4096, 1024], [64, 512, 2048],
    // Tall and deep: a transformer's projections and their weight gradients (rows = batch x
    // tokens), the forecaster's (d_model 128, ffn 512) among them. Its weight gradients with
    // M = 128 run transposed (xᵀ·dy), which this plain GEMM does not measure: the rule tiles them.
    [8192, 384, 128], [8192, 128, 512], [512, 128, 8192], [8192, 512, 128], [8192, 128, 128],
  ],
  tableRow: ([M, N, K], c) => ({ M: M!, N: N!, K: K!, relaxed: !plain && detectFeatures().relaxedSimd, BM: num(c.BM), BN: num(c.BN), BK: num(c.BK) }),
});

/** The ops `tilejit tune` and `npm run tune:tables` know. */
export const TUNE_OPS: Readonly<Record<string, TuneOp>> = {
  matmul: gemm(false),
  'matmul-plain': gemm(true),
  gemv: gemv(false),
  'gemv-bt': gemv(true),
  softmax: rows('softmax'),
  layernorm: rows('layernorm'),
  attention: attention('fwd', false),
  'attention-causal': attention('fwd', true),
  'attention-dkv': attention('dkv', false),
  'attention-dkv-causal': attention('dkv', true),
  'attention-dq': attention('dq', false),
  'attention-dq-causal': attention('dq', true),
  'attention-bwd': attention('bwd', false),
  'attention-bwd-causal': attention('bwd', true),
};

/** Free a problem's tensors. */
export function freeProblem(args: readonly KernelArg[]): void {
  const seen = new Set<Tensor>();
  for (const a of args) {
    if (!(a instanceof Tensor) || seen.has(a) || a.isFreed) continue;
    seen.add(a);
    a.free();
  }
}
