/**
 * @fileoverview Pointwise regression losses with their gradient in one pass: MSE, MAE (L1) and
 * Huber. With a reduction, each program writes the f32 sum of its BLOCK losses to Part[pid]
 * and the host adds the partials in f64; the gradient carries the reduction's scale.
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

export const LOSS_SOURCE = `function loss(P, T, Out, G, Part, n, delta, gscale, BLOCK, KIND, REDUCE, GRAD, EVEN) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  const d = ld(P, i, m, 0.0, EVEN) - ld(T, i, m, 0.0, EVEN);
  const ad = abs(d);
  // 0 and NaN are their own sign, so a NaN in pred or target reaches the gradient (as in PyTorch).
  const sgn = where(d > 0.0, 1.0, where(d < 0.0, -1.0, d));
  let l = d * d;
  let g = 2.0 * d;
  if (KIND == 'mae') { l = ad; g = sgn; }
  if (KIND == 'huber') {
    l = where(ad < delta, 0.5 * d * d, delta * (ad - 0.5 * delta));
    g = where(ad < delta, d, delta * sgn);
  }
  if (REDUCE) { store(Part, programId(0), sum(wh(m, l, 0.0, EVEN), 0)); } else { st(Out, i, l, m, EVEN); }
  if (GRAD) { st(G, i, g * gscale, m, EVEN); }
}`;

export const lossKernel = jit(LOSS_SOURCE, {
  signature: {
    P: 'ptr', T: 'ptr', Out: 'ptr', G: 'ptr', Part: 'ptr', n: 'i32', delta: 'f32', gscale: 'f32',
    BLOCK: 'constexpr', KIND: 'constexpr', REDUCE: 'constexpr', GRAD: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});
