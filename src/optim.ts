/**
 * @fileoverview Optimisers that own their state (PyTorch-style `step()` over a parameter list)
 * and a dynamic loss scaler for mixed-precision training. Each step is one fused kernel per
 * parameter tensor (src/ops/optim.ts).
 */
import { adamStep, sgdStep, unscaleGrads } from './ops/optim.js';
import type { Tensor } from './runtime/tensor.js';

/** Per-step extras: gradients already unscaled by `gradScale`, half copies to refresh. */
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

function checkGrads(name: string, params: readonly Tensor[], grads: readonly Tensor[]): void {
  if (grads.length !== params.length) throw new TypeError(`${name}.step: ${params.length} parameters but ${grads.length} gradients`);
}

function checkCopies(name: string, params: readonly Tensor[], copies: readonly Tensor[] | undefined): void {
  if (copies && copies.length !== params.length) throw new TypeError(`${name}: ${params.length} parameters but ${copies.length} copies`);
}

/** Adam (weight decay added to the gradient, as in PyTorch's Adam). */
export class Adam {
  /** Steps taken so far. */
  stepCount = 0;
  readonly m: Tensor[];
  readonly v: Tensor[];
  protected readonly decoupled: boolean = false;
  readonly lr: number;
  readonly opts: AdamOptions;

  constructor(readonly params: readonly Tensor[], opts: AdamOptions = {}) {
    const name = new.target.name;
    if (!Array.isArray(params) || params.length === 0) throw new TypeError(`${name}: params must be a non-empty array of tensors`);
    checkCopies(name, params, opts.copies);
    this.opts = opts;
    this.lr = opts.lr ?? 1e-3;
    this.m = params.map((p) => p.runtime.zeros(p.shape, 'f32'));
    this.v = params.map((p) => p.runtime.zeros(p.shape, 'f32'));
  }

  /** Apply one step with these gradients (one per parameter, same shapes). */
  async step(grads: readonly Tensor[], opts: StepOptions = {}): Promise<void> {
    checkGrads(this.constructor.name, this.params, grads);
    const step = this.stepCount + 1;
    const o = this.opts;
    for (const [i, p] of this.params.entries()) {
      await adamStep(p, grads[i]!, this.m[i]!, this.v[i]!, {
        lr: this.lr, step, beta1: o.beta1, beta2: o.beta2, eps: o.eps,
        weightDecay: o.weightDecay ?? (this.decoupled ? 0.01 : 0), decoupled: this.decoupled,
        gradScale: opts.gradScale, copy: o.copies?.[i],
      });
    }
    this.stepCount = step;
  }

  /** Free the state tensors. */
  dispose(): void {
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

  constructor(readonly params: readonly Tensor[], readonly opts: SgdOptions) {
    if (!Array.isArray(params) || params.length === 0) throw new TypeError('SGD: params must be a non-empty array of tensors');
    if (typeof opts?.lr !== 'number') throw new TypeError('SGD: lr is required');
    checkCopies('SGD', params, opts.copies);
    const mom = opts.momentum ?? 0;
    this.buffers = params.map((p) => (mom !== 0 ? p.runtime.empty(p.shape, 'f32') : undefined));
  }

  async step(grads: readonly Tensor[], opts: StepOptions = {}): Promise<void> {
    checkGrads('SGD', this.params, grads);
    const o = this.opts;
    for (const [i, p] of this.params.entries()) {
      await sgdStep(p, grads[i]!, this.buffers[i], {
        lr: o.lr, momentum: o.momentum, dampening: o.dampening, nesterov: o.nesterov, weightDecay: o.weightDecay,
        firstStep: this.stepCount === 0, gradScale: opts.gradScale, copy: o.copies?.[i],
      });
    }
    this.stepCount++;
  }

  dispose(): void {
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

  constructor(opts: LossScalerOptions = {}) {
    this.scale = opts.initScale ?? 2 ** 16;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    if (!(this.scale > 0 && Number.isFinite(this.scale))) throw new TypeError(`LossScaler: initScale must be a finite number > 0, got ${this.scale}`);
    if (!(this.growthFactor > 1)) throw new TypeError(`LossScaler: growthFactor must be > 1, got ${this.growthFactor}`);
    if (!(this.backoffFactor > 0 && this.backoffFactor < 1)) throw new TypeError(`LossScaler: backoffFactor must be in (0, 1), got ${this.backoffFactor}`);
    if (!(Number.isInteger(this.growthInterval) && this.growthInterval >= 1)) throw new TypeError(`LossScaler: growthInterval must be an integer >= 1, got ${this.growthInterval}`);
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
    const overflow = await unscaleGrads(grads, 1 / this.scale);
    if (!overflow) await apply();
    this.update(overflow);
    return !overflow;
  }

  /** Advance the state machine after a step that did (or did not) overflow. */
  update(overflow: boolean): void {
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
