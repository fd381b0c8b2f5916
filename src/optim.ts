/**
 * @fileoverview Optimisers that own their state (PyTorch-style `step()` over a parameter list)
 * and a dynamic loss scaler for mixed-precision training. Each step is one fused kernel per
 * parameter tensor (src/ops/optim.ts).
 */
import { describe, fail, finite, floatTensor, liveRuntime, optionsOf, sameShape } from './ops/common.js';
import { adamSettings, checkAllDisjoint, learningRate, prepareAdamStep, prepareSgdStep, sgdSettings, unscaleGrads, type StepNames } from './ops/optim.js';
import type { Tensor } from './runtime/tensor.js';

/** Per-step extras: `gradScale` multiplies every gradient as it is read (1 / the loss scale, say). */
export interface StepOptions {
  /** Multiply every gradient by this on the way in (default 1). */
  readonly gradScale?: number;
}

/** Hyper-parameters of Adam and AdamW. */
export interface AdamOptions {
  readonly lr?: number;
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
  readonly weightDecay?: number;
  /**
   * f16/bf16 copies of the (f32 master) parameters, refreshed by each step: the weights the
   * forward and backward compute with.
   */
  readonly copies?: readonly Tensor[];
}

/**
 * The parameters: a non-empty array of live float tensors, none sharing memory with another
 * (one updated twice per step, with two states, would be silently wrong).
 */
function checkParams(op: string, params: unknown): asserts params is readonly Tensor[] {
  if (!Array.isArray(params) || params.length === 0) fail(op, `params must be a non-empty array of tensors, got ${describe(params)}`);
  for (const [i, p] of params.entries()) {
    floatTensor(op, `params[${i}]`, p);
    liveRuntime(op, `params[${i}]`, p as Tensor);
  }
  checkAllDisjoint(op, (params as Tensor[]).map((p, i) => [`params[${i}]`, p] as const));
}

/** The gradients of a step: an array with one per parameter (each is checked by its step). */
function checkGrads(op: string, params: readonly Tensor[], grads: unknown, copies?: readonly Tensor[]): asserts grads is readonly Tensor[] {
  if (!Array.isArray(grads)) fail(op, `grads must be an array of tensors (one per parameter), got ${describe(grads)}`);
  if (grads.length !== params.length) fail(op, `${params.length} parameters but ${grads.length} gradients`);
  for (const [i, g] of grads.entries()) floatTensor(op, `grads[${i}]`, g, params[i]!.runtime);
  // The step writes the parameters and copies as it goes: a gradient over another parameter's
  // (or copy's) memory would be read after that one was updated.
  checkAllDisjoint(op, [
    ...params.map((p, i) => [`params[${i}]`, p] as const), ...(copies ?? []).map((c, i) => [`copies[${i}]`, c] as const),
    ...(grads as Tensor[]).map((g, i) => [`grads[${i}]`, g] as const),
  ]);
}

/** The half copies: one per parameter, each of its parameter's runtime and shape. */
function checkCopies(op: string, params: readonly Tensor[], copies: unknown): void {
  if (copies === undefined) return;
  if (!Array.isArray(copies)) fail(op, `copies must be an array of tensors (one per parameter), got ${describe(copies)}`);
  if (copies.length !== params.length) fail(op, `${params.length} parameters but ${copies.length} copies`);
  for (const [i, c] of copies.entries()) {
    const t = floatTensor(op, `copies[${i}]`, c, params[i]!.runtime);
    sameShape(op, `copies[${i}]`, t.shape, params[i]!.shape);
  }
  // Each step writes every copy: one over another parameter (or copy) would overwrite it.
  checkAllDisjoint(op, [...params.map((p, i) => [`params[${i}]`, p] as const), ...(copies as Tensor[]).map((c, i) => [`copies[${i}]`, c] as const)]);
}

/** The step's names for parameter i's tensors, as the caller knows them. */
function namesAt(i: number, state: readonly string[]): StepNames {
  return { param: `params[${i}]`, grad: `grads[${i}]`, copy: `copies[${i}]`, state: state.map((s) => `${s}[${i}]`) };
}

/** Adam (weight decay added to the gradient, as in PyTorch's Adam). */
export class Adam {
  /** Steps taken so far. */
  stepCount = 0;
  readonly m: Tensor[];
  readonly v: Tensor[];
  protected readonly decoupled: boolean = false;
  readonly opts: AdamOptions;
  private rate: number;

  private disposed = false;
  /** What errors call each parameter's tensors (made once, not per step). */
  private readonly names: readonly StepNames[];

  constructor(readonly params: readonly Tensor[], options?: AdamOptions) {
    const name = new.target.name;
    checkParams(name, params);
    const opts = optionsOf(name, options);
    checkCopies(name, params, opts.copies);
    this.opts = opts;
    this.rate = opts.lr ?? 1e-3;
    // The hyper-parameters are checked once here, so that a bad one is refused before any step.
    adamSettings(name, { lr: this.lr, step: 1, beta1: opts.beta1, beta2: opts.beta2, eps: opts.eps, weightDecay: opts.weightDecay });
    this.names = params.map((_, i) => namesAt(i, ['m', 'v']));
    this.m = params.map((p) => p.runtime.zeros(p.shape, 'f32'));
    this.v = params.map((p) => p.runtime.zeros(p.shape, 'f32'));
  }

  /** The learning rate of the next step; set it between steps for a schedule (the state is kept). */
  get lr(): number {
    return this.rate;
  }

  set lr(v: number) {
    this.rate = learningRate(this.constructor.name, v);
  }

  /**
   * Apply one step with these gradients (one per parameter, same shapes). Every parameter's step
   * is checked before the first runs, so that a bad gradient leaves all of them as they were.
   */
  async step(grads: readonly Tensor[], options?: StepOptions): Promise<void> {
    const op = `${this.constructor.name}.step`;
    if (this.disposed) throw new Error(`${op}: this optimiser was disposed`);
    const opts = optionsOf(op, options);
    checkGrads(op, this.params, grads, this.opts.copies);
    const step = this.stepCount + 1;
    const o = this.opts;
    const runs = this.params.map((p, i) => prepareAdamStep(op, p, grads[i]!, this.m[i]!, this.v[i]!, {
      lr: this.lr, step, beta1: o.beta1, beta2: o.beta2, eps: o.eps,
      weightDecay: o.weightDecay ?? (this.decoupled ? 0.01 : 0), decoupled: this.decoupled,
      gradScale: opts.gradScale, copy: o.copies?.[i],
    }, this.names[i]));
    for (const run of runs) await run();
    this.stepCount = step;
  }

  /** Free the state tensors; later steps are refused. */
  dispose(): void {
    this.disposed = true;
    for (const t of [...this.m, ...this.v]) if (!t.isFreed) t.free();
  }
}

/** AdamW: decoupled weight decay (default 0.01), p ← p·(1 - lr·wd) before the Adam update. */
export class AdamW extends Adam {
  protected override readonly decoupled: boolean = true;
}

/** Hyper-parameters of SGD. */
export interface SgdOptions {
  readonly lr: number;
  readonly momentum?: number;
  readonly dampening?: number;
  readonly nesterov?: boolean;
  readonly weightDecay?: number;
  readonly copies?: readonly Tensor[];
}

/** SGD with optional momentum (PyTorch semantics: the first step's buffer is the gradient). */
export class SGD {
  stepCount = 0;
  readonly buffers: (Tensor | undefined)[];

  private disposed = false;
  /** What errors call each parameter's tensors (made once, not per step). */
  private readonly names: readonly StepNames[];
  private rate: number;

  constructor(readonly params: readonly Tensor[], readonly opts: SgdOptions) {
    checkParams('SGD', params);
    optionsOf('SGD', opts, '{ lr, ... }');
    if (opts.lr === undefined) fail('SGD', 'lr is required');
    this.rate = opts.lr;
    // Checked once here, so that a bad hyper-parameter is refused before any step.
    sgdSettings('SGD', { lr: opts.lr, momentum: opts.momentum, dampening: opts.dampening, nesterov: opts.nesterov, weightDecay: opts.weightDecay });
    checkCopies('SGD', params, opts.copies);
    this.names = params.map((_, i) => namesAt(i, ['buffers']));
    const mom = opts.momentum ?? 0;
    this.buffers = params.map((p) => (mom !== 0 ? p.runtime.empty(p.shape, 'f32') : undefined));
  }

  /** The learning rate of the next step; set it between steps for a schedule (the momentum is kept). */
  get lr(): number {
    return this.rate;
  }

  set lr(v: number) {
    this.rate = learningRate('SGD', v);
  }

  /** Apply one step (every parameter's checked before the first runs, as in Adam). */
  async step(grads: readonly Tensor[], options?: StepOptions): Promise<void> {
    const op = 'SGD.step';
    if (this.disposed) throw new Error(`${op}: this optimiser was disposed`);
    const opts = optionsOf(op, options);
    checkGrads(op, this.params, grads, this.opts.copies);
    const o = this.opts;
    const runs = this.params.map((p, i) => prepareSgdStep(op, p, grads[i]!, this.buffers[i], {
      lr: this.rate, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.weightDecay,
      firstStep: this.stepCount === 0, gradScale: opts.gradScale, copy: o.copies?.[i],
    }, this.names[i]));
    for (const run of runs) await run();
    this.stepCount++;
  }

  /** Free the momentum buffers; later steps are refused. */
  dispose(): void {
    this.disposed = true;
    for (const t of this.buffers) if (t && !t.isFreed) t.free();
  }
}

/** Settings of the dynamic loss scaler (PyTorch GradScaler's defaults). */
export interface LossScalerOptions {
  readonly initScale?: number;
  readonly growthFactor?: number;
  readonly backoffFactor?: number;
  /** Clean steps in a row before the scale grows. */
  readonly growthInterval?: number;
}

/**
 * Dynamic loss scaling: multiply the loss (its gradient seed) by `scale`, then `step` unscales
 * the gradients and checks them for inf/NaN in one pass; an overflow skips the optimiser step and
 * backs the scale off, `growthInterval` clean steps in a row grow it.
 */
export class LossScaler {
  scale: number;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  /** Clean steps since the last change of scale. */
  growthTracker = 0;
  /** Steps skipped for overflow so far. */
  skipped = 0;

  constructor(options?: LossScalerOptions) {
    const op = 'LossScaler';
    const opts = optionsOf(op, options);
    // typeof-checked (by `finite`): a string would pass `> 1` and then be multiplied in.
    this.scale = finite(op, 'initScale', opts.initScale ?? 2 ** 16, (x) => x > 0, 'a finite number > 0');
    this.growthFactor = finite(op, 'growthFactor', opts.growthFactor ?? 2, (x) => x > 1, 'a finite number > 1');
    this.backoffFactor = finite(op, 'backoffFactor', opts.backoffFactor ?? 0.5, (x) => x > 0 && x < 1, 'in (0, 1)');
    this.growthInterval = finite(op, 'growthInterval', opts.growthInterval ?? 2000, (x) => Number.isInteger(x) && x >= 1, 'an integer >= 1');
  }

  /** The scaled loss value (or gradient seed). */
  scaleLoss(loss: number): number {
    return loss * this.scale;
  }

  /**
   * Unscale `grads` in place, and run `apply` (the optimiser step) unless one of them holds
   * inf/NaN; then update the scale. Returns whether the step was applied.
   */
  async step(grads: readonly Tensor[], apply: () => Promise<void> | void): Promise<boolean> {
    if (typeof apply !== 'function') fail('LossScaler.step', `apply must be a function (the optimiser step), got ${describe(apply)}`);
    const overflow = await unscaleGrads(grads, 1 / this.scale);
    if (!overflow) await apply();
    this.update(overflow);
    return !overflow;
  }

  /** Advance the state machine after a step that did (or did not) overflow. */
  update(overflow: boolean): void {
    if (typeof overflow !== 'boolean') fail('LossScaler.update', `overflow must be a boolean, got ${describe(overflow)}`);
    if (overflow) {
      this.scale *= this.backoffFactor;
      this.growthTracker = 0;
      this.skipped++;
    } else if (++this.growthTracker >= this.growthInterval) {
      this.scale *= this.growthFactor;
      this.growthTracker = 0;
    }
  }
}
