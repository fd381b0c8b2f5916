/**
 * @fileoverview Plain-JS references for the row, elementwise, loss and optimiser templates,
 * computed in f64 from f32 inputs: what the tests compare against and what the benchmarks time as
 * the plain-JS baseline.
 */
import { erf64, gelu64, geluTanh64 } from '../src/util/erf.js';
import type { Activation } from './activation.js';

type Arr = ArrayLike<number>;
const sig = (x: number): number => 1 / (1 + Math.exp(-x));
const GELU_C = Math.sqrt(2 / Math.PI);

/** f(x) for each activation. */
export function activationRef(name: Activation, x: number): number {
  switch (name) {
    case 'relu': return x > 0 ? x : 0;
    case 'gelu': return gelu64(x);
    case 'gelu_tanh': return geluTanh64(x);
    case 'tanh': return Math.tanh(x);
    case 'sigmoid': return sig(x);
    case 'silu': return x * sig(x);
    case 'identity': return x;
  }
}

/** f'(x) for each activation. */
export function activationGradRef(name: Activation, x: number): number {
  switch (name) {
    case 'relu': return x > 0 ? 1 : 0;
    case 'gelu': return 0.5 * (1 + erf64(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
    case 'gelu_tanh': {
      const t = Math.tanh(GELU_C * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * x * x);
    }
    case 'tanh': return 1 - Math.tanh(x) ** 2;
    case 'sigmoid': return sig(x) * (1 - sig(x));
    case 'silu': return sig(x) * (1 + x * (1 - sig(x)));
    case 'identity': return 1;
  }
}

/** Row-wise softmax (or log-softmax) of x viewed as [M, N]. */
export function softmaxRef(x: Arr, M: number, N: number, log = false): Float64Array {
  const y = new Float64Array(M * N);
  for (let r = 0; r < M; r++) {
    let mx = -Infinity;
    for (let c = 0; c < N; c++) mx = Math.max(mx, x[r * N + c]!);
    let s = 0;
    for (let c = 0; c < N; c++) s += Math.exp(x[r * N + c]! - mx);
    for (let c = 0; c < N; c++) {
      const z = x[r * N + c]! - mx;
      y[r * N + c] = log ? z - Math.log(s) : Math.exp(z) / s;
    }
  }
  return y;
}

/** Softmax backward from y and dy (log: y are log-probabilities). */
export function softmaxBackwardRef(y: Arr, dy: Arr, M: number, N: number, log = false): Float64Array {
  const dx = new Float64Array(M * N);
  for (let r = 0; r < M; r++) {
    let s = 0;
    for (let c = 0; c < N; c++) s += log ? dy[r * N + c]! : dy[r * N + c]! * y[r * N + c]!;
    for (let c = 0; c < N; c++) {
      const i = r * N + c;
      dx[i] = log ? dy[i]! - Math.exp(y[i]!) * s : y[i]! * (dy[i]! - s);
    }
  }
  return dx;
}

/** Layer norm (or RMS norm) of x viewed as [M, N]; returns y and the per-row statistics. */
export function normRef(x: Arr, M: number, N: number, opts: { rms?: boolean; weight?: Arr; bias?: Arr; eps?: number } = {}): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const eps = opts.eps ?? 1e-5;
  const y = new Float64Array(M * N), mean = new Float64Array(M), rstd = new Float64Array(M);
  for (let r = 0; r < M; r++) {
    let mu = 0;
    if (!opts.rms) {
      for (let c = 0; c < N; c++) mu += x[r * N + c]!;
      mu /= N;
    }
    let v = 0;
    for (let c = 0; c < N; c++) v += (x[r * N + c]! - mu) ** 2;
    const rs = 1 / Math.sqrt(v / N + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (let c = 0; c < N; c++) {
      y[r * N + c] = (x[r * N + c]! - mu) * rs * (opts.weight ? opts.weight[c]! : 1) + (opts.bias ? opts.bias[c]! : 0);
    }
  }
  return { y, mean, rstd };
}

/** Pointwise loss and d/dpred for d = pred - target. */
export function lossRef(kind: 'mse' | 'mae' | 'huber', d: number, delta = 1): { l: number; g: number } {
  const ad = Math.abs(d);
  const sgn = d > 0 ? 1 : d < 0 ? -1 : d; // 0 and NaN are their own sign
  if (kind === 'mse') return { l: d * d, g: 2 * d };
  if (kind === 'mae') return { l: ad, g: sgn };
  return ad < delta ? { l: 0.5 * d * d, g: d } : { l: delta * (ad - 0.5 * delta), g: delta * sgn };
}

/** One Adam/AdamW step on plain arrays (in place), PyTorch's formulation. */
export function adamRef(p: Float64Array, g: Arr, m: Float64Array, v: Float64Array, o: { lr: number; step: number; beta1?: number; beta2?: number; eps?: number; weightDecay?: number; decoupled?: boolean }): void {
  const b1 = o.beta1 ?? 0.9, b2 = o.beta2 ?? 0.999, eps = o.eps ?? 1e-8, wd = o.weightDecay ?? 0;
  const bc1 = 1 - b1 ** o.step, bc2 = 1 - b2 ** o.step;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i]!;
    if (o.decoupled) p[i]! *= 1 - o.lr * wd;
    else gi += wd * p[i]!;
    m[i] = b1 * m[i]! + (1 - b1) * gi;
    v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
    p[i]! -= (o.lr / bc1) * m[i]! / (Math.sqrt(v[i]!) / Math.sqrt(bc2) + eps);
  }
}

/** One SGD step on plain arrays (in place); `buf` undefined without momentum. */
export function sgdRef(p: Float64Array, g: Arr, buf: Float64Array | undefined, o: { lr: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number; first: boolean }): void {
  const mom = o.momentum ?? 0, damp = o.dampening ?? 0, wd = o.weightDecay ?? 0;
  for (let i = 0; i < p.length; i++) {
    let gi = g[i]! + wd * p[i]!;
    if (mom !== 0 && buf) {
      buf[i] = o.first ? gi : mom * buf[i]! + (1 - damp) * gi;
      gi = o.nesterov ? gi + mom * buf[i]! : buf[i]!;
    }
    p[i]! -= o.lr * gi;
  }
}

/** Attention shapes and options of the naive reference. */
export interface AttentionRefOptions {
  B: number; H: number; Hkv: number; N: number; D: number;
  scale?: number; causal?: boolean; window?: number; kvLens?: readonly number[];
  /** keep(b·H + h, i, j): the dropout mask (scaled by 1 / (1 - p) where kept). */
  dropout?: { p: number; keep: (bh: number, i: number, j: number) => boolean };
}

/** Whether query i may attend key j. */
function allowed(o: AttentionRefOptions, b: number, i: number, j: number): boolean {
  if (j >= (o.kvLens?.[b] ?? o.N)) return false;
  if (o.causal && j > i) return false;
  if (o.window && (j <= i - o.window || (!o.causal && j >= i + o.window))) return false;
  return true;
}

/**
 * Naive attention in f64 with the N x N probabilities materialised; returns out, lse and, given
 * dout, the gradients.
 */
export function attentionRef(q: Arr, k: Arr, v: Arr, o: AttentionRefOptions, dout?: Arr): { out: Float64Array; lse: Float64Array; dq?: Float64Array; dk?: Float64Array; dv?: Float64Array } {
  const { B, H, Hkv, N, D } = o;
  const scale = o.scale ?? 1 / Math.sqrt(D);
  const out = new Float64Array(B * H * N * D), lse = new Float64Array(B * H * N);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const P = new Float64Array(N * N), S = new Float64Array(N * N);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const bh = b * H + h, qb = bh * N * D, kb = (b * Hkv + Math.floor(h / (H / Hkv))) * N * D;
      const keepScale = (i: number, j: number): number => (o.dropout ? (o.dropout.keep(bh, i, j) ? 1 / (1 - o.dropout.p) : 0) : 1);
      for (let i = 0; i < N; i++) {
        let mx = -Infinity;
        for (let j = 0; j < N; j++) {
          let s = -Infinity;
          if (allowed(o, b, i, j)) {
            s = 0;
            for (let d = 0; d < D; d++) s += q[qb + i * D + d]! * k[kb + j * D + d]!;
            s *= scale;
          }
          S[i * N + j] = s;
          mx = Math.max(mx, s);
        }
        let l = 0;
        for (let j = 0; j < N; j++) l += P[i * N + j] = mx === -Infinity ? 0 : Math.exp(S[i * N + j]! - mx);
        for (let j = 0; j < N; j++) P[i * N + j] = l > 0 ? P[i * N + j]! / l : 0;
        lse[bh * N + i] = l > 0 ? mx + Math.log(l) : -Infinity;
        for (let d = 0; d < D; d++) {
          let acc = 0;
          for (let j = 0; j < N; j++) acc += P[i * N + j]! * keepScale(i, j) * v[kb + j * D + d]!;
          out[qb + i * D + d] = acc;
        }
      }
      if (!dout) continue;
      for (let i = 0; i < N; i++) {
        // dP = dO·Vᵀ (through the dropout mask), dS = P ∘ (dP - rowsum(dP ∘ P)).
        const dp = new Float64Array(N);
        let rs = 0;
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += dout[qb + i * D + d]! * v[kb + j * D + d]!;
          dp[j] = s * keepScale(i, j);
          rs += dp[j]! * P[i * N + j]!;
        }
        for (let j = 0; j < N; j++) {
          const pij = P[i * N + j]!;
          const ds = pij * (dp[j]! - rs) * scale;
          const pk = pij * keepScale(i, j);
          for (let d = 0; d < D; d++) {
            dq[qb + i * D + d]! += ds * k[kb + j * D + d]!;
            dk[kb + j * D + d]! += ds * q[qb + i * D + d]!;
            dv[kb + j * D + d]! += pk * dout[qb + i * D + d]!;
          }
        }
      }
    }
  }
  return dout ? { out, lse, dq, dk, dv } : { out, lse };
}
