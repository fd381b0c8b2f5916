/**
 * @fileoverview `ops.mseLoss`, `ops.l1Loss`, `ops.huberLoss`: the loss and, when asked, its
 * gradient with respect to the prediction, in one pass.
 */
import { lossKernel } from '../../templates/loss.js';
import { MULTI_STORE_BLOCK } from '../../templates/activation.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, finite, flag, floatTensor, liveRuntime, oneOf, optionsOf, sameShape } from './common.js';

/** How the pointwise losses are combined. */
export type Reduction = 'mean' | 'sum' | 'none';

/** Options of the losses. */
export interface LossOptions {
  /** 'mean' (default), 'sum' or 'none' (the pointwise losses, shaped like the input). */
  readonly reduction?: Reduction;
  /** Also return d(loss)/d(pred) (default false). */
  readonly grad?: boolean;
  /** Gradient of the final objective with respect to this loss (default 1; a loss scale, say). */
  readonly gradScale?: number;
  /** Huber's threshold between the quadratic and linear parts (default 1). */
  readonly delta?: number;
}

/** The loss (a 0-d f32 tensor when reduced, with `value` its number) and the gradient. */
export interface LossResult {
  readonly loss: Tensor;
  /** The reduced loss as a number (absent for 'none'). */
  readonly value?: number;
  /** d(loss)/d(pred), shaped and typed like pred (when `grad` was asked for). */
  readonly grad?: Tensor;
}

/** Elements per program (the value and the gradient share their loads). */
const BLOCK = MULTI_STORE_BLOCK;

async function run(op: string, kind: 'mse' | 'mae' | 'huber', pred: Tensor, target: Tensor, options: LossOptions | undefined): Promise<LossResult> {
  floatTensor(op, 'pred', pred);
  const rt = pred.runtime;
  liveRuntime(op, 'pred', pred);
  floatTensor(op, 'target', target, rt);
  sameShape(op, 'target', target.shape, pred.shape);
  const opts = optionsOf(op, options);
  const reduction = oneOf(op, 'reduction', opts.reduction ?? 'mean', ['mean', 'sum', 'none'] as const);
  const wantGrad = flag(op, 'grad', opts.grad);
  const delta = finite(op, 'delta', opts.delta ?? 1, (v) => v > 0, 'a finite number > 0');
  const gradScale = finite(op, 'gradScale', opts.gradScale ?? 1);
  const n = pred.size;
  if (n >= 2 ** 31 - BLOCK) fail(op, `pred has ${n} elements; at most ${2 ** 31 - BLOCK - 1} are supported`);
  const reduce = reduction !== 'none';
  const programs = Math.max(1, Math.ceil(n / BLOCK));
  const part = reduce ? rt.empty([programs], 'f32') : undefined;
  const pointwise = reduce ? undefined : rt.empty(pred.shape, pred.dtype);
  const grad = wantGrad ? rt.empty(pred.shape, pred.dtype) : undefined;
  try {
    if (n > 0) {
      const gscale = reduction === 'mean' ? gradScale / n : gradScale;
      const any = pointwise ?? part!;
      await lossKernel.launch(
        { grid: [programs], BLOCK, KIND: kind, REDUCE: reduce, GRAD: grad !== undefined, EVEN: n % BLOCK === 0, runtime: rt },
        pred, target, any, grad ?? any, part ?? any, n, delta, gscale,
      );
    }
    if (!reduce) return { loss: pointwise!, grad };
    let s = 0;
    if (n > 0) for (const v of part!.toArray()) s += v;
    // The mean of nothing is NaN, as in PyTorch; the sum of nothing is 0.
    const value = reduction === 'mean' ? s / n : s;
    return { loss: rt.tensor([value], [], 'f32'), value, grad };
  } catch (err) {
    // A failed launch leaves none of the results it allocated behind.
    pointwise?.free();
    grad?.free();
    throw err;
  } finally {
    part?.free();
  }
}

/** Mean squared error: (pred - target)². */
export function mseLoss(pred: Tensor, target: Tensor, opts?: LossOptions): Promise<LossResult> {
  return run('mseLoss', 'mse', pred, target, opts);
}

/** Mean absolute error (L1): |pred - target|; its gradient at 0 is 0, and NaN where d is NaN. */
export function l1Loss(pred: Tensor, target: Tensor, opts?: LossOptions): Promise<LossResult> {
  return run('l1Loss', 'mae', pred, target, opts);
}

/** Huber: 0.5·d² where |d| < delta, else delta·(|d| - 0.5·delta), d = pred - target. */
export function huberLoss(pred: Tensor, target: Tensor, opts?: LossOptions): Promise<LossResult> {
  return run('huberLoss', 'huber', pred, target, opts);
}
