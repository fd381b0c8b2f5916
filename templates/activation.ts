/**
 * @fileoverview Elementwise activations, forward and backward, over flat tensors. One program
 * handles BLOCK elements; EVEN (n a multiple of BLOCK) drops the masks. The backward takes the
 * forward's input x and returns dx = dy · f'(x). `identity` forward is a dtype cast.
 */
import { jit } from '../src/kernel.js';

/** The activations `ops.activation` knows. */
export const ACTIVATIONS = ['relu', 'gelu', 'gelu_tanh', 'tanh', 'sigmoid', 'silu', 'identity'] as const;
export type Activation = (typeof ACTIVATIONS)[number];

/** f(x): both GELUs are the language's fused builtins (a rational gate, no exp or erf chain). */
export const ACT_FORWARD_HELPER = `function fwd(x, ACT) {
  if (ACT == 'relu') { return maximum(x, 0.0); }
  if (ACT == 'gelu') { return gelu(x); }
  if (ACT == 'gelu_tanh') { return geluTanh(x); }
  if (ACT == 'tanh') { return tanh(x); }
  if (ACT == 'sigmoid') { return sigmoid(x); }
  if (ACT == 'silu') { return x * sigmoid(x); }
  return x;
}`;

/** dy · f'(x) (a helper: the GEMM's fused activation-gradient epilogue calls it too). */
export const ACT_BACKWARD_HELPER = `function bwd(x, dy, ACT) {
  if (ACT == 'relu') { return where(x > 0.0, dy, 0.0); }
  if (ACT == 'gelu') { return dy * geluGrad(x); }
  if (ACT == 'gelu_tanh') { return dy * geluTanhGrad(x); }
  if (ACT == 'tanh') { const t = tanh(x); return dy * (1.0 - t * t); }
  if (ACT == 'sigmoid') { const s = sigmoid(x); return dy * s * (1.0 - s); }
  if (ACT == 'silu') { const s = sigmoid(x); return dy * s * (1.0 + x * (1.0 - s)); }
  return dy;
}`;

export const ACTIVATION_SOURCE = `function activation(X, Dy, Out, n, BLOCK, ACT, BWD, EVEN) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  if (EVEN) {
    const x = load(X, i);
    if (BWD) { store(Out, i, bwd(x, load(Dy, i), ACT)); } else { store(Out, i, fwd(x, ACT)); }
  } else {
    const m = i < n;
    const x = load(X, i, m);
    if (BWD) { store(Out, i, bwd(x, load(Dy, i, m), ACT), m); } else { store(Out, i, fwd(x, ACT), m); }
  }
}`;

/** The activation kernel (forward, backward, cast). */
export const activationKernel = jit(ACTIVATION_SOURCE, {
  signature: { X: 'ptr', Dy: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr', ACT: 'constexpr', BWD: 'constexpr', EVEN: 'constexpr' },
  helpers: { fwd: ACT_FORWARD_HELPER, bwd: ACT_BACKWARD_HELPER },
});

/** Elements per program: large enough to amortise the per-program cost, small enough to spread. */
export const ELEMENTWISE_BLOCK = 2048;

/**
 * Elements per program of the elementwise kernels whose values feed several stores (optimiser
 * steps, a loss with its gradient). Each store gets its own loop, and the loaded tiles
 * they share are kept in scratch: four tiles of 2048 are 32 KB, the whole L1 of some cores;
 * of 256, 4 KB. Measured side by side, one thread: Adam over 10M f32 23.5 -> 15 ms, SGD with
 * momentum 16.6 -> 8.3 ms, MSE with its gradient over 4M 4.2 -> 2.2 ms (single-store kernels
 * such as GELU: no difference).
 */
export const MULTI_STORE_BLOCK = 256;
