/**
 * @fileoverview Fused in-place optimiser steps (`ops.adamStep`, `ops.sgdStep`) and the loss
 * scaler's unscale-and-check pass (`ops.unscaleGrads`). Parameters and state are typically f32
 * (master weights); gradients may be f16/bf16; `copy` receives the updated parameter in its own
 * dtype (the f16/bf16 weights used for compute).
 */
import { adamKernel, sgdKernel, unscaleKernel } from '../../templates/optim.js';
import { ELEMENTWISE_BLOCK, MULTI_STORE_BLOCK } from '../../templates/activation.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, finite, floatTensor, sameShape } from './common.js';

/** Elements per program of the unscale pass (one overflow flag each), as for the other elementwise kernels. */
const BLOCK = ELEMENTWISE_BLOCK;

/**
 * The least magnitude a gradient's dtype rounds to inf (round to nearest even): halfway between
 * its largest finite value, (2 - 2^-m)·2^e for m mantissa bits, and 2^(e+1); the tie goes up,
 * since that largest value's mantissa is odd. f16 from 65520, bf16 from about 3.3962e38.
 */
function overflowAt(dtype: Tensor['dtype']): number {
  if (dtype === 'f16') return (2 - 2 ** -11) * 2 ** 15;
  if (dtype === 'bf16') return (2 - 2 ** -8) * 2 ** 127;
  return Infinity;
}

/** Options of an Adam / AdamW step. */
export interface AdamStepOptions {
  readonly lr: number;
  /** 1-based step count, for the bias corrections. */
  readonly step: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  readonly weightDecay?: number;
  /** AdamW: decay the weights directly (p -= lr·wd·p) instead of adding wd·p to the gradient. */
  readonly decoupled?: boolean;
  /** The gradient is multiplied by this first (default 1; 1/scale unscales). */
  readonly gradScale?: number;
  /** Receives the updated parameter (same shape; f16/bf16 compute weights). */
  readonly copy?: Tensor;
}

/** Options of an SGD step. */
export interface SgdStepOptions {
  readonly lr: number;
  readonly momentum?: number;
  readonly dampening?: number;
  readonly nesterov?: boolean;
  readonly weightDecay?: number;
  /** The momentum buffer holds nothing yet: it starts as the gradient (PyTorch's first step). */
  readonly firstStep?: boolean;
  readonly gradScale?: number;
  readonly copy?: Tensor;
}

function checkState(op: string, p: Tensor, named: Record<string, Tensor | undefined>): void {
  for (const [name, t] of Object.entries(named)) {
    if (t === undefined) continue;
    floatTensor(op, name, t, p.runtime);
    sameShape(op, name, t.shape, p.shape);
  }
}

const unit = (v: number): boolean => v >= 0 && v < 1;

/** One Adam (or AdamW with `decoupled`) step, in place on param, m and v. */
export async function adamStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamStepOptions): Promise<void> {
  const op = 'adamStep';
  floatTensor(op, 'param', param);
  checkState(op, param, { grad, m, v, copy: opts.copy });
  const lr = finite(op, 'lr', opts.lr, (x) => x >= 0, 'a finite number >= 0');
  const step = finite(op, 'step', opts.step, (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
  const b1 = finite(op, 'beta1', opts.beta1 ?? 0.9, unit, 'in [0, 1)');
  const b2 = finite(op, 'beta2', opts.beta2 ?? 0.999, unit, 'in [0, 1)');
  const eps = finite(op, 'eps', opts.eps ?? 1e-8, (x) => x >= 0, 'a finite number >= 0');
  const wd = finite(op, 'weightDecay', opts.weightDecay ?? (opts.decoupled ? 0.01 : 0), (x) => x >= 0, 'a finite number >= 0');
  const gscale = finite(op, 'gradScale', opts.gradScale ?? 1);
  const n = param.size;
  if (n === 0) return;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  await adamKernel.launch(
    {
      grid: [Math.ceil(n / MULTI_STORE_BLOCK)], BLOCK: MULTI_STORE_BLOCK, DECOUPLED: opts.decoupled === true, HAS_WD: wd !== 0, HAS_COPY: opts.copy !== undefined,
      EVEN: n % MULTI_STORE_BLOCK === 0, runtime: param.runtime,
    },
    param, grad, m, v, opts.copy ?? param, n, b1, 1 - b1, b2, 1 - b2, eps, wd, 1 - lr * wd, lr / bc1, 1 / Math.sqrt(bc2), gscale,
  );
}

/** One SGD step (momentum, dampening, Nesterov, weight decay as in PyTorch), in place. */
export async function sgdStep(param: Tensor, grad: Tensor, buf: Tensor | undefined, opts: SgdStepOptions): Promise<void> {
  const op = 'sgdStep';
  floatTensor(op, 'param', param);
  checkState(op, param, { grad, buf, copy: opts.copy });
  const lr = finite(op, 'lr', opts.lr, (x) => x >= 0, 'a finite number >= 0');
  const momentum = finite(op, 'momentum', opts.momentum ?? 0, (x) => x >= 0, 'a finite number >= 0');
  const dampening = finite(op, 'dampening', opts.dampening ?? 0);
  const wd = finite(op, 'weightDecay', opts.weightDecay ?? 0, (x) => x >= 0, 'a finite number >= 0');
  const gscale = finite(op, 'gradScale', opts.gradScale ?? 1);
  if (momentum !== 0 && !buf) fail(op, 'momentum needs a buffer tensor (buf)');
  if (opts.nesterov && (momentum === 0 || dampening !== 0)) fail(op, 'Nesterov momentum needs momentum > 0 and dampening 0');
  const n = param.size;
  if (n === 0) return;
  await sgdKernel.launch(
    {
      grid: [Math.ceil(n / MULTI_STORE_BLOCK)], BLOCK: MULTI_STORE_BLOCK, MOMENTUM: momentum !== 0, NESTEROV: opts.nesterov === true, FIRST: opts.firstStep === true,
      HAS_WD: wd !== 0, HAS_COPY: opts.copy !== undefined, EVEN: n % MULTI_STORE_BLOCK === 0, runtime: param.runtime,
    },
    param, grad, buf ?? param, opts.copy ?? param, n, lr, momentum, 1 - dampening, wd, gscale,
  );
}

/**
 * Multiply each gradient by `inv` in place and say whether any result is inf or NaN as stored
 * (an f16 or bf16 gradient overflows its dtype long before f32 does), in one pass over each tensor.
 */
export async function unscaleGrads(grads: readonly Tensor[], inv: number): Promise<boolean> {
  const op = 'unscaleGrads';
  finite(op, 'inv', inv);
  let found = false;
  for (const [i, g] of grads.entries()) {
    floatTensor(op, `grads[${i}]`, g, grads[0]!.runtime);
    const n = g.size;
    if (n === 0) continue;
    const programs = Math.ceil(n / BLOCK);
    const flags = g.runtime.empty([programs], 'f32');
    try {
      await unscaleKernel.launch({ grid: [programs], BLOCK, runtime: g.runtime }, g, flags, n, inv, overflowAt(g.dtype));
      if (flags.toArray().some((c) => c !== 0)) found = true;
    } finally {
      flags.free();
    }
  }
  return found;
}
