/**
 * @fileoverview `ops.activation`, `ops.activationBackward`, `ops.cast`: elementwise kernels
 * over whole contiguous tensors, parallel over the runtime's pool.
 */
import { ACTIVATIONS, activationKernel, ELEMENTWISE_BLOCK, type Activation } from '../../templates/activation.js';
import type { StorageDType } from '../ir/ir.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, FLOAT_DTYPES, floatTensor, liveRuntime, oneOf, optionsOf, overlaps, sameMemory, sameShape } from './common.js';

export type { Activation };

/** Options of the elementwise ops. */
export interface ElementwiseOptions {
  /** Write here instead of allocating (same shape; any float dtype). */
  readonly out?: Tensor;
  /** Storage dtype of a fresh output (default: the input's). */
  readonly dtype?: StorageDType;
}

/**
 * The output of an op shaped like x, its options checked: `opts.out` (x's runtime and shape,
 * any float dtype; it may be one of `inputs` itself, for in place, since each element is read
 * before it is written, but not overlap one otherwise) or a fresh tensor of `dtype` (`opts.dtype`,
 * default x's). The inputs were checked by the caller.
 * @internal
 */
export function elementwiseOutput(
  op: string, x: Tensor, inputs: readonly (readonly [string, Tensor])[], options: ElementwiseOptions | undefined, dtype?: StorageDType,
): Tensor {
  liveRuntime(op, inputs[0]?.[0] ?? 'x', x);
  const opts = optionsOf(op, options);
  const want = dtype ?? (opts.dtype === undefined ? undefined : oneOf(op, 'dtype', opts.dtype, FLOAT_DTYPES));
  if (opts.out === undefined) return x.runtime.empty(x.shape, want ?? x.dtype);
  const out = floatTensor(op, 'out', opts.out, x.runtime);
  sameShape(op, 'out', out.shape, x.shape);
  if (want !== undefined && out.dtype !== want) fail(op, `out has dtype ${out.dtype}, expected ${want}`);
  for (const [name, t] of inputs) {
    if (!sameMemory(out, t) && overlaps(out, t)) fail(op, `out must not overlap ${name} (it may be ${name} itself, in place)`);
  }
  return out;
}

async function run(op: string, act: Activation, x: Tensor, dy: Tensor | undefined, opts: ElementwiseOptions | undefined, dtype?: StorageDType): Promise<Tensor> {
  const n = x.size;
  if (n > 2 ** 31 - ELEMENTWISE_BLOCK) fail(op, `x has ${n} elements; at most ${2 ** 31 - ELEMENTWISE_BLOCK} are supported`);
  const out = elementwiseOutput(op, x, dy ? [['x', x], ['dy', dy]] : [['x', x]], opts, dtype);
  if (n === 0) return out;
  const B = ELEMENTWISE_BLOCK;
  await activationKernel.launch(
    { grid: [Math.ceil(n / B)], BLOCK: B, ACT: act, BWD: dy !== undefined, EVEN: n % B === 0, runtime: x.runtime },
    x, dy ?? x, out, n,
  );
  return out;
}

/**
 * y = f(x) for f one of relu, gelu (exact, erf), gelu_tanh (tanh approximation), tanh,
 * sigmoid, silu. Computed in f32 whatever the storage dtype.
 */
export async function activation(name: Activation, x: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  const op = 'activation';
  oneOf(op, 'name', name, ACTIVATIONS);
  floatTensor(op, 'x', x);
  return run(op, name, x, undefined, opts);
}

/** Options of `ops.gelu`. */
export interface GeluOptions extends ElementwiseOptions {
  /** 'none' (the default): x·Φ(x) with the exact erf; 'tanh': the tanh approximation. */
  readonly approximate?: 'none' | 'tanh';
}

/** GELU, exact or (`approximate: 'tanh'`) the tanh form, as torch.nn.functional.gelu: `activation('gelu' | 'gelu_tanh', x)`. */
export async function gelu(x: Tensor, options?: GeluOptions): Promise<Tensor> {
  const op = 'gelu';
  const opts = optionsOf(op, options);
  const approximate = opts.approximate === undefined ? 'none' : oneOf(op, 'approximate', opts.approximate, ['none', 'tanh'] as const);
  floatTensor(op, 'x', x);
  return run(op, approximate === 'tanh' ? 'gelu_tanh' : 'gelu', x, undefined, opts);
}

/** dx = dy · f'(x), with x the forward's input. */
export async function activationBackward(name: Activation, dy: Tensor, x: Tensor, opts?: ElementwiseOptions): Promise<Tensor> {
  const op = 'activationBackward';
  oneOf(op, 'name', name, ACTIVATIONS);
  floatTensor(op, 'x', x);
  floatTensor(op, 'dy', dy, x.runtime);
  sameShape(op, 'dy', dy.shape, x.shape);
  return run(op, name, x, dy, opts);
}

/** A copy of x stored as `dtype` (f32 <-> f16 / bf16, round to nearest even). */
export async function cast(x: Tensor, dtype: StorageDType, opts?: { out?: Tensor }): Promise<Tensor> {
  const op = 'cast';
  floatTensor(op, 'x', x);
  oneOf(op, 'dtype', dtype, FLOAT_DTYPES);
  return run(op, 'identity', x, undefined, opts, dtype);
}
