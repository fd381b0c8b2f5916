/**
 * @fileoverview The same forecaster in plain JavaScript, written the way a competent developer
 * would without SIMD or threads: Float32Array buffers, i-k-j matmuls, attention with the N x N
 * scores of one head at a time, buffers allocated once per step and never inside loops. It is
 * the speed baseline and the check that tilejit's losses and gradients are right.
 */
import { erf64 } from '../../src/util/erf.js';
import { initParams, paramSpecs, tokens, type ForecastConfig } from './common.js';

type F = Float32Array;

/** C[M,N] = A[M,K]·B[K,N] (+ bias[N]) (+ C when `acc`). */
function mm(A: F, B: F, C: F, M: number, K: number, N: number, bias?: F, acc = false): void {
  for (let i = 0; i < M; i++) {
    const co = i * N;
    if (!acc) for (let j = 0; j < N; j++) C[co + j] = bias ? bias[j]! : 0;
    else if (bias) for (let j = 0; j < N; j++) C[co + j]! += bias[j]!;
    for (let k = 0; k < K; k++) {
      const a = A[i * K + k]!, bo = k * N;
      for (let j = 0; j < N; j++) C[co + j]! += a * B[bo + j]!;
    }
  }
}

/** C[M,N] = A[K,M]ᵀ·B[K,N]. */
function mmTA(A: F, B: F, C: F, K: number, M: number, N: number): void {
  C.fill(0);
  for (let k = 0; k < K; k++) {
    for (let i = 0; i < M; i++) {
      const a = A[k * M + i]!, co = i * N, bo = k * N;
      for (let j = 0; j < N; j++) C[co + j]! += a * B[bo + j]!;
    }
  }
}

/** C[M,N] = A[M,K]·B[N,K]ᵀ. */
function mmTB(A: F, B: F, C: F, M: number, K: number, N: number): void {
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[i * K + k]! * B[j * K + k]!;
      C[i * N + j] = s;
    }
  }
}

function colSum(X: F, out: F, R: number, N: number): void {
  out.fill(0);
  for (let r = 0; r < R; r++) for (let j = 0; j < N; j++) out[j]! += X[r * N + j]!;
}

function layerNorm(x: F, w: F, b: F, y: F, mean: F, rstd: F, R: number, N: number): void {
  for (let r = 0; r < R; r++) {
    let m = 0;
    for (let j = 0; j < N; j++) m += x[r * N + j]!;
    m /= N;
    let v = 0;
    for (let j = 0; j < N; j++) v += (x[r * N + j]! - m) ** 2;
    const rs = 1 / Math.sqrt(v / N + 1e-5);
    mean[r] = m;
    rstd[r] = rs;
    for (let j = 0; j < N; j++) y[r * N + j] = (x[r * N + j]! - m) * rs * w[j]! + b[j]!;
  }
}

function layerNormBack(dy: F, x: F, w: F, mean: F, rstd: F, dx: F, dw: F, db: F, R: number, N: number): void {
  dw.fill(0);
  db.fill(0);
  for (let r = 0; r < R; r++) {
    let c1 = 0, c2 = 0;
    for (let j = 0; j < N; j++) {
      const xh = (x[r * N + j]! - mean[r]!) * rstd[r]!, g = dy[r * N + j]! * w[j]!;
      c1 += g;
      c2 += g * xh;
      dw[j]! += dy[r * N + j]! * xh;
      db[j]! += dy[r * N + j]!;
    }
    c1 /= N;
    c2 /= N;
    for (let j = 0; j < N; j++) {
      const xh = (x[r * N + j]! - mean[r]!) * rstd[r]!;
      dx[r * N + j] = rstd[r]! * (dy[r * N + j]! * w[j]! - c1 - xh * c2);
    }
  }
}

const gelu = (u: number): number => 0.5 * u * (1 + erf64(u * Math.SQRT1_2));
const geluGrad = (u: number): number => 0.5 * (1 + erf64(u * Math.SQRT1_2)) + (u * Math.exp(-0.5 * u * u)) / Math.sqrt(2 * Math.PI);

interface Layer { x: F; h: F; m1: F; r1: F; qkv: F; att: F; lse: F; x2: F; h2: F; m2: F; r2: F; u: F; g: F; P: F }

export class ReferenceForecaster {
  readonly names: string[];
  readonly p: F[];
  private readonly m: F[];
  private readonly v: F[];
  step = 0;

  constructor(readonly cfg: ForecastConfig, readonly opts: { lr?: number; weightDecay?: number; seed?: number } = {}) {
    this.names = paramSpecs(cfg).map((s) => s.name);
    this.p = initParams(cfg, opts.seed ?? 1);
    this.m = this.p.map((a) => new Float32Array(a.length));
    this.v = this.p.map((a) => new Float32Array(a.length));
  }

  private w(name: string): F {
    return this.p[this.names.indexOf(name)]!;
  }

  forward(x: F, B: number): { pred: F; layers: Layer[]; xL: F; hf: F; mf: F; rf: F } {
    const c = this.cfg, N = tokens(c), d = c.dModel, H = c.heads, Dh = d / H, R = B * N, fin = c.patch * c.channels;
    let h0 = new Float32Array(R * d);
    mm(x, this.w('embed.w'), h0, R, fin, d, this.w('embed.b'));
    const pos = this.w('pos');
    for (let i = 0; i < R * d; i++) h0[i]! += pos[i % (N * d)]!;
    const layers: Layer[] = [];
    const scale = 1 / Math.sqrt(Dh);
    for (let l = 0; l < c.layers; l++) {
      const w = (s: string): F => this.w(`l${l}.${s}`);
      const L: Layer = {
        x: h0, h: new Float32Array(R * d), m1: new Float32Array(R), r1: new Float32Array(R), qkv: new Float32Array(R * 3 * d),
        att: new Float32Array(R * d), lse: new Float32Array(B * H * N), x2: new Float32Array(R * d), h2: new Float32Array(R * d),
        m2: new Float32Array(R), r2: new Float32Array(R), u: new Float32Array(R * c.ffn), g: new Float32Array(R * c.ffn),
        P: new Float32Array(B * H * N * N),
      };
      layerNorm(h0, w('ln1.w'), w('ln1.b'), L.h, L.m1, L.r1, R, d);
      mm(L.h, w('qkv.w'), L.qkv, R, d, 3 * d, w('qkv.b'));
      // Attention, one head at a time: scores, softmax, P·V (att is [B, N, H·Dh], merged).
      for (let b = 0; b < B; b++) {
        for (let hh = 0; hh < H; hh++) {
          const P = L.P.subarray(((b * H + hh) * N) * N, ((b * H + hh) * N + N) * N);
          for (let i = 0; i < N; i++) {
            const qo = (b * N + i) * 3 * d + hh * Dh;
            let mx = -Infinity;
            for (let j = 0; j < N; j++) {
              const ko = (b * N + j) * 3 * d + d + hh * Dh;
              let s = 0;
              for (let e = 0; e < Dh; e++) s += L.qkv[qo + e]! * L.qkv[ko + e]!;
              P[i * N + j] = s * scale;
              if (s * scale > mx) mx = s * scale;
            }
            let sum = 0;
            for (let j = 0; j < N; j++) sum += P[i * N + j] = Math.exp(P[i * N + j]! - mx);
            for (let j = 0; j < N; j++) P[i * N + j]! /= sum;
            L.lse[(b * H + hh) * N + i] = mx + Math.log(sum);
            const ao = (b * N + i) * d + hh * Dh;
            for (let e = 0; e < Dh; e++) L.att[ao + e] = 0;
            for (let j = 0; j < N; j++) {
              const pij = P[i * N + j]!, vo = (b * N + j) * 3 * d + 2 * d + hh * Dh;
              for (let e = 0; e < Dh; e++) L.att[ao + e]! += pij * L.qkv[vo + e]!;
            }
          }
        }
      }
      L.x2.set(h0);
      mm(L.att, w('out.w'), L.x2, R, d, d, w('out.b'), true);
      layerNorm(L.x2, w('ln2.w'), w('ln2.b'), L.h2, L.m2, L.r2, R, d);
      mm(L.h2, w('fc1.w'), L.u, R, d, c.ffn, w('fc1.b'));
      for (let i = 0; i < L.u.length; i++) L.g[i] = gelu(L.u[i]!);
      h0 = new Float32Array(R * d);
      h0.set(L.x2);
      mm(L.g, w('fc2.w'), h0, R, c.ffn, d, w('fc2.b'), true);
      layers.push(L);
    }
    const hf = new Float32Array(R * d), mf = new Float32Array(R), rf = new Float32Array(R);
    layerNorm(h0, this.w('lnf.w'), this.w('lnf.b'), hf, mf, rf, R, d);
    const out = c.horizon * c.channels;
    const pred = new Float32Array(B * out);
    mm(hf, this.w('head.w'), pred, B, N * d, out, this.w('head.b'));
    return { pred, layers, xL: h0, hf, mf, rf };
  }

  /** Gradients in `names` order for d(loss)/d(pred) = dpred. */
  backward(x: F, B: number, f: ReturnType<ReferenceForecaster['forward']>, dpred: F): F[] {
    const c = this.cfg, N = tokens(c), d = c.dModel, H = c.heads, Dh = d / H, R = B * N, fin = c.patch * c.channels;
    const out = c.horizon * c.channels;
    const g = this.p.map((a) => new Float32Array(a.length));
    const G = (name: string): F => g[this.names.indexOf(name)]!;
    const linear = (name: string, input: F, dy: F, rows: number, i: number, o: number, dx?: F): void => {
      mmTA(input, dy, G(`${name}.w`), rows, i, o);
      colSum(dy, G(`${name}.b`), rows, o);
      if (dx) mmTB(dy, this.w(`${name}.w`), dx, rows, o, i);
    };
    const dflat = new Float32Array(R * d);
    linear('head', f.hf, dpred, B, N * d, out, dflat);
    let dx = new Float32Array(R * d);
    layerNormBack(dflat, f.xL, this.w('lnf.w'), f.mf, f.rf, dx, G('lnf.w'), G('lnf.b'), R, d);
    const scale = 1 / Math.sqrt(Dh);
    const dg = new Float32Array(R * c.ffn), dh2 = new Float32Array(R * d), tmp = new Float32Array(R * d);
    const dam = new Float32Array(R * d), dqkv = new Float32Array(R * 3 * d), dh = new Float32Array(R * d), dP = new Float32Array(N);
    for (let l = c.layers - 1; l >= 0; l--) {
      const L = f.layers[l]!;
      const n = (s: string): string => `l${l}.${s}`;
      linear(n('fc2'), L.g, dx, R, c.ffn, d, dg);
      for (let i = 0; i < dg.length; i++) dg[i]! *= geluGrad(L.u[i]!);
      linear(n('fc1'), L.h2, dg, R, d, c.ffn, dh2);
      layerNormBack(dh2, L.x2, this.w(n('ln2.w')), L.m2, L.r2, tmp, G(n('ln2.w')), G(n('ln2.b')), R, d);
      const dx2 = new Float32Array(R * d);
      for (let i = 0; i < dx2.length; i++) dx2[i] = dx[i]! + tmp[i]!;
      linear(n('out'), L.att, dx2, R, d, d, dam);
      dqkv.fill(0);
      for (let b = 0; b < B; b++) {
        for (let hh = 0; hh < H; hh++) {
          const P = L.P.subarray(((b * H + hh) * N) * N, ((b * H + hh) * N + N) * N);
          for (let i = 0; i < N; i++) {
            const ao = (b * N + i) * d + hh * Dh, qo = (b * N + i) * 3 * d + hh * Dh;
            let rs = 0;
            for (let j = 0; j < N; j++) {
              const vo = (b * N + j) * 3 * d + 2 * d + hh * Dh;
              let s = 0;
              for (let e = 0; e < Dh; e++) s += dam[ao + e]! * L.qkv[vo + e]!;
              dP[j] = s;
              rs += s * P[i * N + j]!;
            }
            for (let j = 0; j < N; j++) {
              const pij = P[i * N + j]!, ds = pij * (dP[j]! - rs) * scale;
              const ko = (b * N + j) * 3 * d + d + hh * Dh, vo = ko + d;
              for (let e = 0; e < Dh; e++) {
                dqkv[qo + e]! += ds * L.qkv[ko + e]!;
                dqkv[ko + e]! += ds * L.qkv[qo + e]!;
                dqkv[vo + e]! += pij * dam[ao + e]!;
              }
            }
          }
        }
      }
      linear(n('qkv'), L.h, dqkv, R, d, 3 * d, dh);
      layerNormBack(dh, L.x, this.w(n('ln1.w')), L.m1, L.r1, tmp, G(n('ln1.w')), G(n('ln1.b')), R, d);
      dx = new Float32Array(R * d);
      for (let i = 0; i < dx.length; i++) dx[i] = dx2[i]! + tmp[i]!;
    }
    const gp = G('pos');
    gp.fill(0);
    for (let i = 0; i < R * d; i++) gp[i % (N * d)]! += dx[i]!;
    linear('embed', x, dx, R, fin, d);
    return g;
  }

  /** AdamW with PyTorch's defaults for the rest (betas 0.9, 0.999; eps 1e-8). */
  private adamw(grads: F[]): void {
    const lr = this.opts.lr ?? 1e-3, wd = this.opts.weightDecay ?? 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    this.step++;
    const ss = lr / (1 - b1 ** this.step), ib = 1 / Math.sqrt(1 - b2 ** this.step);
    this.p.forEach((p, k) => {
      const g = grads[k]!, m = this.m[k]!, v = this.v[k]!;
      for (let i = 0; i < p.length; i++) {
        p[i]! *= 1 - lr * wd;
        m[i] = b1 * m[i]! + (1 - b1) * g[i]!;
        v[i] = b2 * v[i]! + (1 - b2) * g[i]! * g[i]!;
        p[i]! -= (ss * m[i]!) / (Math.sqrt(v[i]!) * ib + eps);
      }
    });
  }

  /** MSE over the batch and its gradient with respect to pred. */
  static mse(pred: F, y: F): { loss: number; grad: F } {
    let s = 0;
    const grad = new Float32Array(pred.length);
    for (let i = 0; i < pred.length; i++) {
      const e = pred[i]! - y[i]!;
      s += e * e;
      grad[i] = (2 * e) / pred.length;
    }
    return { loss: s / pred.length, grad };
  }

  /** One step; returns the loss before the update. */
  trainStep(x: F, y: F): number {
    const B = y.length / (this.cfg.horizon * this.cfg.channels);
    const f = this.forward(x, B);
    const { loss, grad } = ReferenceForecaster.mse(f.pred, y);
    this.adamw(this.backward(x, B, f, grad));
    return loss;
  }

  predict(x: F): F {
    return this.forward(x, x.length / (this.cfg.context * this.cfg.channels)).pred;
  }
}
