/**
 * @fileoverview `ops.softmax`, `ops.logSoftmax` and their backwards, along the last axis.
 */
import { chooseRowConfig, softmaxKernel } from '../../templates/softmax.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, floatTensor, sameShape } from './common.js';
import { elementwiseOutput, type ElementwiseOptions } from './activation.js';

/** Rows M and row length N of x viewed as [M, N] over its last axis. */
export function rowsOf(op: string, x: Tensor): { M: number; N: number } {
  if (x.shape.length === 0) fail(op, 'x must have at least one dim (the reduced last axis)');
  const N = x.shape[x.shape.length - 1]!;
  const M = N === 0 ? 0 : x.size / N;
  if (x.size >= 2 ** 31) fail(op, `x has ${x.size} elements; at most 2^31 - 1 are supported`);
  return { M, N };
}

async function run(op: string, log: boolean, x: Tensor, dy: Tensor | undefined, opts: ElementwiseOptions | undefined): Promise<Tensor> {
  const xname = dy ? 'y' : 'x';
  floatTensor(op, xname, x);
  if (dy) {
    floatTensor(op, 'dy', dy, x.runtime);
    sameShape(op, 'dy', dy.shape, x.shape);
  }
  const { M, N } = rowsOf(op, x);
  const out = elementwiseOutput(op, x, dy ? [[xname, x], ['dy', dy]] : [[xname, x]], opts);
  if (M === 0) return out;
  const c = chooseRowConfig(M, N);
  await softmaxKernel.launch(
    { grid: [c.SINGLE ? Math.ceil(M / c.R) : M], R: c.R, BN: c.BN, LOG: log, BWD: dy !== undefined, SINGLE: c.SINGLE, EVEN: c.EVEN, runtime: x.runtime },
    x, dy ?? x, out, M, N,
  );
  return out;
}

/** softmax(x) along the last axis: exp(x - max) / sum, computed in f32. */
export function softmax(x: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  return run('softmax', false, x, undefined, opts);
}

/** log softmax(x) along the last axis: x - max - log(sum(exp(x - max))). */
export function logSoftmax(x: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  return run('logSoftmax', true, x, undefined, opts);
}

/** dx = y · (dy - sum(dy · y)) from the forward's output y. */
export function softmaxBackward(dy: Tensor, y: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  return run('softmaxBackward', false, y, dy, opts);
}

/** dx = dy - exp(y) · sum(dy) from the forward's output y (the log-probabilities). */
export function logSoftmaxBackward(dy: Tensor, y: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  return run('logSoftmaxBackward', true, y, dy, opts);
}
