/**
 * @fileoverview `ops.layerNorm`, `ops.rmsNorm` and their backwards over the last axis, with
 * optional per-column weight and bias ([N]) and their gradients.
 */
import { chooseRowConfig } from '../../templates/softmax.js';
import { normBwdKernel, normFwdKernel, normGradKernel } from '../../templates/norm.js';
import { colsumKernel } from '../../templates/reduce.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { columnSumTiles, fail, finite, floatTensor, output, rowSlabs, sameShape } from './common.js';
import { rowsOf } from './softmax.js';

/** Options of the norm forwards. */
export interface NormOptions {
  /** Per-column scale, [N]. */
  readonly weight?: Tensor;
  /** Per-column shift, [N] (layer norm only). */
  readonly bias?: Tensor;
  /** Added to the variance (mean square for RMS norm) before the square root; default 1e-5. */
  readonly eps?: number;
  /** Write y here instead of allocating. */
  readonly out?: Tensor;
}

/** y and the per-row statistics the backward needs (f32, [rows]); `mean` is absent for RMS norm. */
export interface NormResult {
  readonly y: Tensor;
  readonly mean?: Tensor;
  readonly rstd: Tensor;
}

/** Options of the norm backwards. */
export interface NormBackwardOptions {
  /** The forward's weight, if it had one: dweight is then returned. */
  readonly weight?: Tensor;
  /** Return dbias too (layer norm). */
  readonly bias?: boolean;
  /** The forward's statistics; recomputed from x when absent. */
  readonly mean?: Tensor;
  readonly rstd?: Tensor;
  /** The forward's eps (default 1e-5): the statistics are recomputed with it when not given. */
  readonly eps?: number;
  /**
   * Added to dx ([.., N] like x): the gradient that reaches the norm's input around it through
   * a residual connection (x + f(norm(x))), summed in the same pass.
   */
  readonly residual?: Tensor;
}

/** dx, and dweight / dbias when asked for. */
export interface NormGrads {
  readonly dx: Tensor;
  readonly dweight?: Tensor;
  readonly dbias?: Tensor;
}

function param(op: string, name: string, t: Tensor | undefined, rt: Runtime, N: number): Tensor | undefined {
  if (t === undefined) return undefined;
  floatTensor(op, name, t, rt);
  sameShape(op, name, t.shape, [N]);
  return t;
}

function stat(op: string, name: string, t: Tensor | undefined, rt: Runtime, M: number): Tensor | undefined {
  if (t === undefined) return undefined;
  floatTensor(op, name, t, rt);
  if (t.dtype !== 'f32' || t.size !== M) fail(op, `${name} must be the forward's f32 statistics with ${M} elements, got ${t.dtype} [${t.shape.join(', ')}]`);
  return t;
}

async function forward(op: string, rms: boolean, x: Tensor, opts: NormOptions): Promise<NormResult> {
  floatTensor(op, 'x', x);
  const rt = x.runtime;
  const { M, N } = rowsOf(op, x);
  const eps = finite(op, 'eps', opts.eps ?? 1e-5, (v) => v >= 0, 'a finite number >= 0');
  const w = param(op, 'weight', opts.weight, rt, N);
  const b = param(op, 'bias', opts.bias, rt, N);
  if (rms && b) fail(op, 'RMS norm has no bias');
  const y = output(op, rt, x.shape, x.dtype, opts.out);
  const rows = x.shape.slice(0, -1);
  if (N === 0) {
    // Rows of nothing: their mean and variance are NaN (as PyTorch's mean and var of nothing).
    const nan = (): Tensor => rt.tensor(new Float32Array(rows.reduce((p, d) => p * d, 1)).fill(NaN), rows, 'f32');
    return { y, mean: rms ? undefined : nan(), rstd: nan() };
  }
  const mean = rms ? undefined : rt.empty(rows, 'f32');
  const rstd = rt.empty(rows, 'f32');
  if (M === 0) return { y, mean, rstd };
  const c = chooseRowConfig(M, N, 'norm');
  await normFwdKernel.launch(
    { grid: [c.SINGLE ? Math.ceil(M / c.R) : M], R: c.R, BN: c.BN, RMS: rms, HAS_W: w !== undefined, HAS_B: b !== undefined, SINGLE: c.SINGLE, EVEN: c.EVEN, runtime: rt },
    x, w ?? x, b ?? x, y, mean ?? rstd, rstd, M, N, eps,
  );
  return { y, mean, rstd };
}

async function backward(op: string, rms: boolean, dy: Tensor, x: Tensor, opts: NormBackwardOptions): Promise<NormGrads> {
  floatTensor(op, 'x', x);
  const rt = x.runtime;
  floatTensor(op, 'dy', dy, rt);
  sameShape(op, 'dy', dy.shape, x.shape);
  const { M, N } = rowsOf(op, x);
  const w = param(op, 'weight', opts.weight, rt, N);
  if (rms && opts.bias) fail(op, 'RMS norm has no bias');
  if (opts.eps !== undefined) finite(op, 'eps', opts.eps, (v) => v >= 0, 'a finite number >= 0');
  let mean = rms ? undefined : stat(op, 'mean', opts.mean, rt, M);
  let rstd = stat(op, 'rstd', opts.rstd, rt, M);
  const res = opts.residual;
  if (res !== undefined) {
    floatTensor(op, 'residual', res, rt);
    sameShape(op, 'residual', res.shape, x.shape);
  }
  const own: Tensor[] = [];
  if (rstd === undefined || (!rms && mean === undefined)) {
    // Recompute the statistics (y is thrown away).
    const f = await forward(op, rms, x, { eps: opts.eps });
    f.y.free();
    mean = f.mean;
    rstd = f.rstd;
    if (mean) own.push(mean);
    own.push(rstd);
  }
  const dx = rt.empty(x.shape, x.dtype);
  const dweight = w ? rt.zeros([N], w.dtype) : undefined;
  const dbias = opts.bias ? rt.zeros([N], w?.dtype ?? x.dtype) : undefined;
  try {
    if (M === 0) return { dx, dweight, dbias };
    const c = chooseRowConfig(M, N, 'norm');
    await normBwdKernel.launch(
      {
        grid: [c.SINGLE ? Math.ceil(M / c.R) : M], R: c.R, BN: c.BN, RMS: rms, HAS_W: w !== undefined, HAS_RES: res !== undefined,
        SINGLE: c.SINGLE, EVEN: c.EVEN, runtime: rt,
      },
      x, w ?? x, dy, mean ?? rstd!, rstd!, dx, res ?? x, M, N,
    );
    if (dweight || dbias) {
      // Partial column sums over slabs of rows, then across slabs (see rowSlabs).
      const { BR, BN } = columnSumTiles(N);
      const { rowsPer, slabs: P } = rowSlabs(M, BR);
      const pw = rt.empty([P, N], 'f32');
      const pb = rt.empty([P, N], 'f32');
      own.push(pw, pb);
      await normGradKernel.launch(
        { grid: [Math.ceil(N / BN), P], BR, BN, RMS: rms, HAS_B: dbias !== undefined, EVEN: N % BN === 0 && M % rowsPer === 0, runtime: rt },
        x, dy, mean ?? rstd!, rstd!, pw, pb, M, N, rowsPer,
      );
      const cs = { grid: [Math.ceil(N / 256)], BN: 256, runtime: rt };
      if (dweight) await colsumKernel.launch(cs, pw, dweight, P, N);
      if (dbias) await colsumKernel.launch(cs, pb, dbias, P, N);
    }
    return { dx, dweight, dbias };
  } finally {
    for (const t of own) t.free();
  }
}

/** Layer norm over the last axis: (x - mean) / sqrt(var + eps) · weight + bias, biased variance. */
export async function layerNorm(x: Tensor, opts: NormOptions = {}): Promise<NormResult> {
  return forward('layerNorm', false, x, opts);
}

/** RMS norm over the last axis: x / sqrt(mean(x²) + eps) · weight. */
export async function rmsNorm(x: Tensor, opts: NormOptions = {}): Promise<NormResult> {
  return forward('rmsNorm', true, x, opts);
}

/** Gradients of layer norm: dx, and dweight / dbias when `weight` / `bias` are given. */
export async function layerNormBackward(dy: Tensor, x: Tensor, opts: NormBackwardOptions = {}): Promise<NormGrads> {
  return backward('layerNormBackward', false, dy, x, opts);
}

/** Gradients of RMS norm: dx, and dweight when `weight` is given. */
export async function rmsNormBackward(dy: Tensor, x: Tensor, opts: NormBackwardOptions = {}): Promise<NormGrads> {
  return backward('rmsNormBackward', true, dy, x, opts);
}
