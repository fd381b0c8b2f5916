/**
 * @fileoverview Fused in-place optimiser steps (`ops.adamStep`, `ops.sgdStep`) and the loss
 * scaler's unscale-and-check pass (`ops.unscaleGrads`). Parameters and state are typically f32
 * (master weights); gradients may be f16/bf16; `copy` receives the updated parameter in its own
 * dtype (the f16/bf16 weights used for compute).
 */
import { adamKernel, sgdKernel, unscaleKernel } from '../../templates/optim.js';
import { ELEMENTWISE_BLOCK, MULTI_STORE_BLOCK } from '../../templates/activation.js';
import type { Tensor } from '../runtime/tensor.js';
import { describe, fail, finite, flag, floatTensor, liveRuntime, optionsOf, overlaps, sameShape } from './common.js';

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

/** Names of a step's tensors in the caller's words (the optimiser classes say `grads[2]`). */
export interface StepNames {
  readonly param: string; readonly grad: string; readonly copy: string;
  /** The state tensors: m and v (Adam), buf (SGD). */
  readonly state: readonly string[];
}

const ADAM_NAMES: StepNames = { param: 'param', grad: 'grad', copy: 'copy', state: ['m', 'v'] };
const SGD_NAMES: StepNames = { param: 'param', grad: 'grad', copy: 'copy', state: ['buf'] };

/**
 * The tensors of a step, `[name, tensor]` with the parameter first: each live, float and
 * contiguous, of the parameter's (live) runtime and shape, and no two overlapping. The kernel
 * updates them in place element by element, so m === v, or a gradient inside its parameter,
 * would silently mix what should be separate.
 */
function checkTensors(op: string, named: readonly (readonly [string, unknown])[]): void {
  const [pname, param] = named[0]!;
  const p = floatTensor(op, pname, param);
  liveRuntime(op, pname, p);
  const seen: [string, Tensor][] = [[pname, p]];
  for (const [name, x] of named.slice(1)) {
    const t = floatTensor(op, name, x, p.runtime);
    sameShape(op, name, t.shape, p.shape);
    for (const [other, u] of seen) if (overlaps(t, u)) fail(op, `${name} must not overlap ${other}${t === u ? ' (pass separate tensors)' : ''}`);
    seen.push([name, t]);
  }
}

const unit = (v: number): boolean => v >= 0 && v < 1;
const nonNegative = (x: number): boolean => x >= 0;

/**
 * A learning rate: a finite number >= 0 (the optimisers' constructors, their lr setters and the
 * step ops all refuse the same way).
 * @internal
 */
export function learningRate(op: string, v: unknown): number {
  return finite(op, 'lr', v, nonNegative, 'a finite number >= 0');
}

/** The hyper-parameters of an Adam step, checked (the Adam class checks its own once, up front). */
export function adamSettings(op: string, opts: Omit<AdamStepOptions, 'copy'>): {
  lr: number; step: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean; gscale: number;
} {
  const lr = learningRate(op, opts.lr);
  const step = finite(op, 'step', opts.step, (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
  const b1 = finite(op, 'beta1', opts.beta1 ?? 0.9, unit, 'in [0, 1)');
  const b2 = finite(op, 'beta2', opts.beta2 ?? 0.999, unit, 'in [0, 1)');
  const eps = finite(op, 'eps', opts.eps ?? 1e-8, nonNegative, 'a finite number >= 0');
  const decoupled = flag(op, 'decoupled', opts.decoupled);
  const wd = finite(op, 'weightDecay', opts.weightDecay ?? (decoupled ? 0.01 : 0), nonNegative, 'a finite number >= 0');
  const gscale = finite(op, 'gradScale', opts.gradScale ?? 1);
  return { lr, step, b1, b2, eps, wd, decoupled, gscale };
}

/**
 * A checked Adam step, ready to launch: everything is refused before anything is written, so
 * that the Adam class can check every parameter's step before it runs the first.
 * @internal
 */
export function prepareAdamStep(
  op: string, param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamStepOptions, names: StepNames = ADAM_NAMES,
): () => Promise<void> {
  const opts = optionsOf(op, options, '{ lr, step, ... }');
  const copy: unknown = opts.copy;
  checkTensors(op, [[names.param, param], [names.grad, grad], [names.state[0]!, m], [names.state[1]!, v], ...(copy === undefined ? [] : [[names.copy, copy] as const])]);
  const { lr, step, b1, b2, eps, wd, decoupled, gscale } = adamSettings(op, opts);
  const n = param.size;
  const bc1 = 1 - b1 ** step;
  const bc2 = 1 - b2 ** step;
  return async () => {
    if (n === 0) return;
    await adamKernel.launch(
      {
        grid: [Math.ceil(n / MULTI_STORE_BLOCK)], BLOCK: MULTI_STORE_BLOCK, DECOUPLED: decoupled, HAS_WD: wd !== 0, HAS_COPY: opts.copy !== undefined,
        EVEN: n % MULTI_STORE_BLOCK === 0, runtime: param.runtime,
      },
      param, grad, m, v, opts.copy ?? param, n, b1, 1 - b1, b2, 1 - b2, eps, wd, 1 - lr * wd, lr / bc1, 1 / Math.sqrt(bc2), gscale,
    );
  };
}

/** One Adam (or AdamW with `decoupled`) step, in place on param, m and v (four separate tensors). */
export async function adamStep(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, opts: AdamStepOptions): Promise<void> {
  await prepareAdamStep('adamStep', param, grad, m, v, opts)();
}

/** The hyper-parameters of an SGD step, checked (the SGD class checks its own once, up front). */
export function sgdSettings(op: string, opts: Omit<SgdStepOptions, 'copy'>): {
  lr: number; momentum: number; dampening: number; nesterov: boolean; wd: number; first: boolean; gscale: number;
} {
  const lr = learningRate(op, opts.lr);
  const momentum = finite(op, 'momentum', opts.momentum ?? 0, nonNegative, 'a finite number >= 0');
  const dampening = finite(op, 'dampening', opts.dampening ?? 0);
  const nesterov = flag(op, 'nesterov', opts.nesterov);
  const wd = finite(op, 'weightDecay', opts.weightDecay ?? 0, nonNegative, 'a finite number >= 0');
  const first = flag(op, 'firstStep', opts.firstStep);
  const gscale = finite(op, 'gradScale', opts.gradScale ?? 1);
  if (nesterov && (momentum === 0 || dampening !== 0)) fail(op, 'Nesterov momentum needs momentum > 0 and dampening 0');
  return { lr, momentum, dampening, nesterov, wd, first, gscale };
}

/** A checked SGD step, ready to launch (see prepareAdamStep). @internal */
export function prepareSgdStep(
  op: string, param: Tensor, grad: Tensor, buf: Tensor | undefined, options: SgdStepOptions, names: StepNames = SGD_NAMES,
): () => Promise<void> {
  const opts = optionsOf(op, options, '{ lr, ... }');
  const copy: unknown = opts.copy;
  checkTensors(op, [
    [names.param, param], [names.grad, grad],
    ...(buf === undefined ? [] : [[names.state[0]!, buf] as const]), ...(copy === undefined ? [] : [[names.copy, copy] as const]),
  ]);
  const { lr, momentum, dampening, nesterov, wd, first, gscale } = sgdSettings(op, opts);
  if (momentum !== 0 && !buf) fail(op, `momentum needs a buffer tensor (${names.state[0]})`);
  const n = param.size;
  return async () => {
    if (n === 0) return;
    await sgdKernel.launch(
      {
        grid: [Math.ceil(n / MULTI_STORE_BLOCK)], BLOCK: MULTI_STORE_BLOCK, MOMENTUM: momentum !== 0, NESTEROV: nesterov, FIRST: first,
        HAS_WD: wd !== 0, HAS_COPY: opts.copy !== undefined, EVEN: n % MULTI_STORE_BLOCK === 0, runtime: param.runtime,
      },
      param, grad, buf ?? param, opts.copy ?? param, n, lr, momentum, 1 - dampening, wd, gscale,
    );
  };
}

/** One SGD step (momentum, dampening, Nesterov, weight decay as in PyTorch), in place; param, grad, buf and copy separate tensors. */
export async function sgdStep(param: Tensor, grad: Tensor, buf: Tensor | undefined, opts: SgdStepOptions): Promise<void> {
  await prepareSgdStep('sgdStep', param, grad, buf, opts)();
}

/**
 * No two of `named` share memory, in O(n log n) (a step over hundreds of tensors checks them
 * all): sorted by runtime and then by where they start, a tensor that overlaps any later one
 * overlaps the next.
 * @internal
 */
export function checkAllDisjoint(op: string, named: readonly (readonly [string, Tensor])[]): void {
  const runtimes = [...new Set(named.map(([, t]) => t.runtime))];
  const sorted = named.filter(([, t]) => t.byteLength > 0)
    .sort(([, a], [, b]) => runtimes.indexOf(a.runtime) - runtimes.indexOf(b.runtime) || a.byteOffset - b.byteOffset);
  for (let i = 1; i < sorted.length; i++) {
    const [prev, a] = sorted[i - 1]!, [name, b] = sorted[i]!;
    if (overlaps(a, b)) fail(op, `${name} must not overlap ${prev}${a === b ? ' (the same tensor twice)' : ''}`);
  }
}

/**
 * Multiply each gradient by `inv` in place and say whether any result is inf or NaN as stored
 * (an f16 or bf16 gradient overflows its dtype long before f32 does), in one pass over each tensor.
 */
export async function unscaleGrads(grads: readonly Tensor[], inv: number): Promise<boolean> {
  const op = 'unscaleGrads';
  const list: unknown = grads;
  if (!Array.isArray(list)) fail(op, `grads must be an array of tensors, got ${describe(list)}`);
  finite(op, 'inv', inv);
  if (grads.length === 0) return false;
  const rt = liveRuntime(op, 'grads[0]', floatTensor(op, 'grads[0]', grads[0]));
  for (const [i, g] of grads.entries()) floatTensor(op, `grads[${i}]`, g, rt);
  // A gradient listed twice (or inside another) would be unscaled twice.
  checkAllDisjoint(op, grads.map((g, i) => [`grads[${i}]`, g] as const));
  let found = false;
  for (const g of grads) {
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
