/**
 * @fileoverview `ops.activation`, `ops.activationBackward`, `ops.cast`: elementwise kernels
 * over whole contiguous tensors, parallel over the runtime's pool.
 */
import { ACTIVATIONS, activationKernel, ELEMENTWISE_BLOCK, type Activation } from '../../templates/activation.js';
import type { StorageDType } from '../ir/ir.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, floatTensor, oneOf, output, sameShape } from './common.js';

export type { Activation };

/** Options of the elementwise ops. */
export interface ElementwiseOptions {
  /** Write here instead of allocating (same shape; any float dtype). */
  readonly out?: Tensor;
  /** Storage dtype of a fresh output (default: the input's). */
  readonly dtype?: StorageDType;
}

async function run(op: string, act: Activation, x: Tensor, dy: Tensor | undefined, opts: ElementwiseOptions): Promise<Tensor> {
  const dtype = opts.dtype ?? x.dtype;
  if (dtype === 'i32') fail(op, `dtype must be f32, f16 or bf16, got i32`);
  const out = output(op, x.runtime, x.shape, dtype, opts.out);
  const n = x.size;
  if (n === 0) return out;
  if (n > 2 ** 31 - ELEMENTWISE_BLOCK) fail(op, `x has ${n} elements; at most ${2 ** 31 - ELEMENTWISE_BLOCK} are supported`);
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
export async function activation(name: Activation, x: Tensor, opts: ElementwiseOptions = {}): Promise<Tensor> {
  const op = 'activation';
  oneOf(op, 'name', name, ACTIVATIONS);
  floatTensor(op, 'x', x);
  return run(op, name, x, undefined, opts);
}

/** dx = dy · f'(x), with x the forward's input. */
export async function activationBackward(name: Activation, dy: Tensor, x: Tensor, opts: ElementwiseOptions = {}): Promise<Tensor> {
  const op = 'activationBackward';
  oneOf(op, 'name', name, ACTIVATIONS);
  floatTensor(op, 'x', x);
  floatTensor(op, 'dy', dy, x.runtime);
  sameShape(op, 'dy', dy.shape, x.shape);
  return run(op, name, x, dy, opts);
}

/** A copy of x stored as `dtype` (f32 <-> f16 / bf16, round to nearest even). */
export async function cast(x: Tensor, dtype: StorageDType, opts: { out?: Tensor } = {}): Promise<Tensor> {
  const op = 'cast';
  floatTensor(op, 'x', x);
  oneOf(op, 'dtype', dtype, ['f32', 'f16', 'bf16'] as const);
  if (opts.out && opts.out.dtype !== dtype) fail(op, `out has dtype ${opts.out.dtype}, expected ${dtype}`);
  return run(op, 'identity', x, undefined, { dtype, ...opts });
}
