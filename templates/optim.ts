/**
 * @fileoverview Fused, in-place optimiser steps over flat parameter tensors: one pass reads
 * parameter, gradient and state and writes parameter and state back (and optionally a
 * half-precision copy of the parameter for compute). Gradients are multiplied by `gscale` on
 * the way in (unscaling a loss-scaled gradient costs nothing extra).
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

/**
 * Adam / AdamW (DECOUPLED). The host computes the scalars in f64: c1 = 1 - b1, c2 = 1 - b2,
 * decay = 1 - lr·wd, stepSize = lr / (1 - b1^t), invBc2 = 1 / sqrt(1 - b2^t).
 */
export const ADAM_SOURCE = `function adam(P, G, M1, V, Copy, n, b1, c1, b2, c2, eps, wd, decay, stepSize, invBc2, gscale,
    BLOCK, DECOUPLED, HAS_WD, HAS_COPY, EVEN) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  let p = ld(P, i, m, 0.0, EVEN);
  let g = ld(G, i, m, 0.0, EVEN) * gscale;
  if (HAS_WD) {
    if (DECOUPLED) { p = p * decay; } else { g = g + wd * p; }
  }
  const m1 = b1 * ld(M1, i, m, 0.0, EVEN) + c1 * g;
  const v = b2 * ld(V, i, m, 0.0, EVEN) + c2 * g * g;
  p = p - stepSize * m1 / (sqrt(v) * invBc2 + eps);
  st(M1, i, m1, m, EVEN);
  st(V, i, v, m, EVEN);
  st(P, i, p, m, EVEN);
  if (HAS_COPY) { st(Copy, i, p, m, EVEN); }
}`;

/** SGD with optional momentum (FIRST: the buffer starts as the gradient); c = 1 - dampening. */
export const SGD_SOURCE = `function sgd(P, G, Buf, Copy, n, lr, momentum, c, wd, gscale,
    BLOCK, MOMENTUM, NESTEROV, FIRST, HAS_WD, HAS_COPY, EVEN) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  let p = ld(P, i, m, 0.0, EVEN);
  let g = ld(G, i, m, 0.0, EVEN) * gscale;
  if (HAS_WD) { g = g + wd * p; }
  if (MOMENTUM) {
    let b = g;
    if (!FIRST) { b = momentum * ld(Buf, i, m, 0.0, EVEN) + c * g; }
    st(Buf, i, b, m, EVEN);
    if (NESTEROV) { g = g + momentum * b; } else { g = b; }
  }
  p = p - lr * g;
  st(P, i, p, m, EVEN);
  if (HAS_COPY) { st(Copy, i, p, m, EVEN); }
}`;

/**
 * g *= inv in place; Flag[pid] = how many of the program's results are stored as inf or NaN.
 * `big` is the least magnitude that G's dtype rounds to inf (Infinity for f32): an f16 result
 * of 80000 is finite in f32 but stored as inf, so the test is on |g| against it, not on g.
 */
export const UNSCALE_SOURCE = `function unscale(G, Flag, n, inv, big, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  const g = load(G, i, m, 0.0) * inv;
  store(G, i, g, m);
  // NaN fails every compare, so it is counted with the overflows.
  store(Flag, programId(0), sum(where(abs(g) < big, 0.0, 1.0), 0));
}`;

export const adamKernel = jit(ADAM_SOURCE, {
  signature: {
    P: 'ptr', G: 'ptr', M1: 'ptr', V: 'ptr', Copy: 'ptr', n: 'i32',
    b1: 'f32', c1: 'f32', b2: 'f32', c2: 'f32', eps: 'f32', wd: 'f32', decay: 'f32', stepSize: 'f32', invBc2: 'f32', gscale: 'f32',
    BLOCK: 'constexpr', DECOUPLED: 'constexpr', HAS_WD: 'constexpr', HAS_COPY: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

export const sgdKernel = jit(SGD_SOURCE, {
  signature: {
    P: 'ptr', G: 'ptr', Buf: 'ptr', Copy: 'ptr', n: 'i32', lr: 'f32', momentum: 'f32', c: 'f32', wd: 'f32', gscale: 'f32',
    BLOCK: 'constexpr', MOMENTUM: 'constexpr', NESTEROV: 'constexpr', FIRST: 'constexpr', HAS_WD: 'constexpr', HAS_COPY: 'constexpr',
    EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

export const unscaleKernel = jit(UNSCALE_SOURCE, { signature: { G: 'ptr', Flag: 'ptr', n: 'i32', inv: 'f32', big: 'f32', BLOCK: 'constexpr' } });
