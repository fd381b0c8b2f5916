/**
 * @fileoverview The forecaster on tilejit: a pre-norm transformer encoder over patch tokens
 * (embedding + learned positions, `layers` x [layer norm, multi-head flash attention, residual,
 * layer norm, GELU MLP, residual], a final layer norm, a linear head over the flattened tokens),
 * MSE loss, AdamW. Forward and backward are `ops.*` calls and two small kernels; no per-element
 * JS runs in a step. With `mixed: 'bf16' | 'f16'` the forward and backward run on half copies of
 * the f32 master weights, with dynamic loss scaling.
 */
import { AdamW, jit, LossScaler, ops, type Runtime, type Tensor } from '../../src/index.js';
import { initParams, paramSpecs, tokens, type ForecastConfig } from './common.js';

/** x + pos for x [B, period] and pos [period] (the positions, broadcast over the batch: grid axis 1). */
const addPeriodic = jit(`function addPeriodic(X, P, Out, period, BLOCK) {
  const j = programId(0) * BLOCK + arange(BLOCK);
  const m = j < period;
  const i = programId(1) * period + j;
  store(Out, i, load(X, i, m) + load(P, j, m), m);
}`, { signature: { X: 'ptr', P: 'ptr', Out: 'ptr', period: 'i32', BLOCK: 'constexpr' } });

/** Training options. */
export interface TrainOptions {
  readonly lr?: number;
  readonly weightDecay?: number;
  /** Compute in half precision on copies of the f32 master weights. */
  readonly mixed?: 'bf16' | 'f16';
  readonly seed?: number;
}

interface LayerCache {
  x: Tensor; ln1: { mean?: Tensor; rstd: Tensor }; h: Tensor; qkv: Tensor;
  att: { out: Tensor; lse: Tensor }; am: Tensor; x2: Tensor; ln2: { mean?: Tensor; rstd: Tensor }; h2: Tensor; u: Tensor; g: Tensor;
}

export class TilejitForecaster {
  readonly names: string[];
  /** f32 master weights, by name. */
  readonly master = new Map<string, Tensor>();
  /** The weights the forward and backward use (the masters, or their half copies). */
  readonly weights = new Map<string, Tensor>();
  readonly opt: AdamW;
  readonly scaler?: LossScaler;
  readonly dtype: 'f32' | 'bf16' | 'f16';

  constructor(readonly rt: Runtime, readonly cfg: ForecastConfig, opts: TrainOptions = {}) {
    const specs = paramSpecs(cfg);
    const init = initParams(cfg, opts.seed ?? 1);
    this.names = specs.map((s) => s.name);
    this.dtype = opts.mixed ?? 'f32';
    specs.forEach((s, i) => {
      const t = rt.tensor(init[i]!, s.shape, 'f32');
      this.master.set(s.name, t);
      this.weights.set(s.name, this.dtype === 'f32' ? t : rt.tensor(init[i]!, s.shape, this.dtype));
    });
    const params = this.names.map((n) => this.master.get(n)!);
    const copies = this.dtype === 'f32' ? undefined : this.names.map((n) => this.weights.get(n)!);
    this.opt = new AdamW(params, { lr: opts.lr ?? 1e-3, weightDecay: opts.weightDecay ?? 0.01, copies });
    if (opts.mixed) this.scaler = new LossScaler({ initScale: 2 ** 12, growthInterval: 200 });
  }

  private w(name: string): Tensor {
    return this.weights.get(name)!;
  }

  /** Predictions [B, horizon·channels] for inputs [B, tokens, patch·channels]. */
  async forward(x: Tensor): Promise<{ pred: Tensor; caches: LayerCache[]; xe: Tensor; xL: Tensor; lnf: { mean?: Tensor; rstd: Tensor }; flat: Tensor }> {
    const c = this.cfg, N = tokens(c), d = c.dModel, B = x.shape[0]!, H = c.heads, Dh = d / H;
    const xr = x.reshape([B * N, c.patch * c.channels]);
    const xe = await ops.matmul(xr, this.w('embed.w'), { bias: this.w('embed.b') });
    let h0 = this.rt.empty([B * N, d], this.dtype);
    await addPeriodic.launch({ grid: [Math.ceil((N * d) / 1024), B], BLOCK: 1024, runtime: this.rt }, xe, this.w('pos'), h0, N * d);
    const caches: LayerCache[] = [];
    for (let l = 0; l < c.layers; l++) {
      const p = (s: string): Tensor => this.w(`l${l}.${s}`);
      const xIn = h0;
      const ln1 = await ops.layerNorm(xIn, { weight: p('ln1.w'), bias: p('ln1.b') });
      const qkv = await ops.matmul(ln1.y, p('qkv.w'), { bias: p('qkv.b') });
      // Attention reads q, k and v in place in the projection's [B, N, 3, H, Dh] and writes
      // [B, N, H, Dh], which is the output projection's [B·N, d]: no head shuffles.
      const qkvHeads = qkv.reshape([B, N, 3, H, Dh]);
      const att = await ops.attentionQKV(qkvHeads);
      const am = att.out.reshape([B * N, d]);
      const x2 = await ops.matmul(am, p('out.w'), { bias: p('out.b'), c: xIn });
      const ln2 = await ops.layerNorm(x2, { weight: p('ln2.w'), bias: p('ln2.b') });
      // GELU in fc1's epilogue, which also keeps its input u for the backward.
      const u = this.rt.empty([B * N, c.ffn], this.dtype);
      const g = await ops.matmul(ln2.y, p('fc1.w'), { bias: p('fc1.b'), activation: 'gelu', preActivation: u });
      h0 = await ops.matmul(g, p('fc2.w'), { bias: p('fc2.b'), c: x2 });
      caches.push({ x: xIn, ln1, h: ln1.y, qkv: qkvHeads, att, am, x2, ln2, h2: ln2.y, u, g });
    }
    const lnf = await ops.layerNorm(h0, { weight: this.w('lnf.w'), bias: this.w('lnf.b') });
    const flat = lnf.y.reshape([B, N * d]);
    const pred = await ops.matmul(flat, this.w('head.w'), { bias: this.w('head.b') });
    return { pred, caches, xe: xr, xL: h0, lnf, flat };
  }

  /** Gradients (in `names` order) of the loss whose gradient with respect to pred is dpred. */
  async backward(x: Tensor, f: Awaited<ReturnType<TilejitForecaster['forward']>>, dpred: Tensor): Promise<Tensor[]> {
    const c = this.cfg, N = tokens(c), d = c.dModel, B = x.shape[0]!, H = c.heads, Dh = d / H;
    const grads = new Map<string, Tensor>();
    // dx = dy · Wᵀ, times gelu'(u) when the input went through a GELU whose input was u.
    const linear = async (name: string, input: Tensor, dy: Tensor, geluInput?: Tensor): Promise<Tensor> => {
      grads.set(`${name}.w`, await ops.matmul(input, dy, { transA: true }));
      grads.set(`${name}.b`, await ops.sum(dy));
      const activationGrad = geluInput ? { activation: 'gelu' as const, preActivation: geluInput } : undefined;
      return ops.matmul(dy, this.w(`${name}.w`), { transB: true, activationGrad });
    };
    // The norm's input gradient, plus `residual`'s (the skip path around the block) when given.
    const norm = async (name: string, dy: Tensor, input: Tensor, st: { mean?: Tensor; rstd: Tensor }, residual?: Tensor): Promise<Tensor> => {
      const r = await ops.layerNormBackward(dy, input, { weight: this.w(`${name}.w`), bias: true, mean: st.mean, rstd: st.rstd, residual });
      grads.set(`${name}.w`, r.dweight!);
      grads.set(`${name}.b`, r.dbias!);
      return r.dx;
    };
    const dflat = await linear('head', f.flat, dpred);
    let dx = await norm('lnf', dflat.reshape([B * N, d]), f.xL, f.lnf);
    for (let l = c.layers - 1; l >= 0; l--) {
      const k = f.caches[l]!;
      const name = (s: string): string => `l${l}.${s}`;
      const du = await linear(name('fc2'), k.g, dx, k.u);
      const dh2 = await linear(name('fc1'), k.h2, du);
      const dx2 = await norm(name('ln2'), dh2, k.x2, k.ln2, dx);
      const dam = await linear(name('out'), k.am, dx2);
      const dqkv = (await ops.attentionQKVBackward(dam.reshape([B, N, H, Dh]), k.qkv, k.att)).reshape([B * N, 3 * d]);
      const dh = await linear(name('qkv'), k.h, dqkv);
      dx = await norm(name('ln1'), dh, k.x, k.ln1, dx2);
    }
    grads.set('pos', (await ops.sum(dx.reshape([B, N * d]))).reshape([N, d]));
    await linear('embed', f.xe, dx);
    return this.names.map((n) => grads.get(n)!);
  }

  /**
   * One training step on a batch (x [B, tokens, patch·channels], y [B, horizon·channels] as
   * plain arrays); returns the batch's MSE (before the update). Every tensor of the step is freed.
   */
  async trainStep(x: Float32Array, y: Float32Array): Promise<number> {
    const c = this.cfg, B = y.length / (c.horizon * c.channels);
    return this.rt.scope(async () => {
      const X = this.rt.tensor(x, [B, tokens(c), c.patch * c.channels], this.dtype);
      const Y = this.rt.tensor(y, [B, c.horizon * c.channels], this.dtype);
      const f = await this.forward(X);
      const scale = this.scaler?.scale ?? 1;
      const loss = await ops.mseLoss(f.pred, Y, { grad: true, gradScale: scale });
      const grads = await this.backward(X, f, loss.grad!);
      if (this.scaler) await this.scaler.step(grads, () => this.opt.step(grads));
      else await this.opt.step(grads);
      return loss.value!;
    });
  }

  /** Predictions for a batch of inputs, as a plain array. */
  async predict(x: Float32Array): Promise<Float32Array> {
    const c = this.cfg, B = x.length / (c.context * c.channels);
    return this.rt.scope(async () => {
      const f = await this.forward(this.rt.tensor(x, [B, tokens(c), c.patch * c.channels], this.dtype));
      return f.pred.toArray() as Float32Array;
    });
  }

  /** Free the weights and the optimiser state. */
  dispose(): void {
    this.opt.dispose();
    for (const t of this.master.values()) t.free();
    for (const t of this.weights.values()) t.free();
  }
}
