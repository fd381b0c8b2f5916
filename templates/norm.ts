/**
 * @fileoverview Layer norm and RMS norm over the last axis (M rows of N), forward and backward.
 * Statistics are f32 whatever the storage dtype; the variance is the mean of squared deviations
 * from the mean (two passes over the row, never E[x²] - E[x]²). The forward saves mean and
 * 1/std per row for the backward. SINGLE: R whole rows per program in one tile; otherwise one row
 * per program in BN-wide chunks. Weight and bias gradients are column sums: per-program partial
 * sums over a slab of rows, then `colsum` (templates/reduce.ts).
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

export const NORM_FWD_SOURCE = `function normFwd(X, W, B, Y, Mean, Rstd, M, N, eps, R, BN, RMS, HAS_W, HAS_B, SINGLE, EVEN) {
  const nf = cast(N, 'f32');
  if (SINGLE) {
    const rows = programId(0) * R + arange(R);
    const cols = arange(BN);
    const mr = rows < M;
    const mc = cols < N;
    const offs = expandDims(rows, 1) * N + expandDims(cols, 0);
    const m = expandDims(mr, 1) && expandDims(mc, 0);
    const x = ld(X, offs, m, 0.0, EVEN);
    let xhat = x;
    if (RMS) {
      const rstd = rsqrt(sum(x * x, 1) / nf + eps);
      st(Rstd, rows, rstd, mr, EVEN);
      xhat = x * expandDims(rstd, 1);
    } else {
      // Shifted by the row's first element: x - k is exact for data clustered far from 0, so the
      // mean's correction d and the deviations (x - k) - d keep their precision.
      const k = ld(X, rows * N, mr, 0.0, EVEN);
      const xk = wh(m, x - expandDims(k, 1), 0.0, EVEN);
      const d = sum(xk, 1) / nf;
      const xc = wh(m, xk - expandDims(d, 1), 0.0, EVEN);
      const rstd = rsqrt(sum(xc * xc, 1) / nf + eps);
      st(Mean, rows, k + d, mr, EVEN);
      st(Rstd, rows, rstd, mr, EVEN);
      xhat = xc * expandDims(rstd, 1);
    }
    let y = xhat;
    if (HAS_W) { y = y * expandDims(ld(W, cols, mc, 0.0, EVEN), 0); }
    if (HAS_B) { y = y + expandDims(ld(B, cols, mc, 0.0, EVEN), 0); }
    st(Y, offs, y, m, EVEN);
  } else {
    const row = programId(0);
    const base = row * N;
    // Shifted by the row's first element (see above); k = 0 for RMS norm.
    let k = 0.0;
    if (!RMS) { k = load(X, base); }
    let s = 0.0;
    for (let c = 0; c < N; c += BN) {
      const cols = c + arange(BN);
      const m = cols < N;
      const x = load(X, base + cols, m, 0.0);
      if (RMS) { s = s + sum(x * x, 0); } else { s = s + sum(where(m, x - k, 0.0), 0); }
    }
    let d = 0.0;
    let rstd = 0.0;
    if (RMS) {
      rstd = rsqrt(s / nf + eps);
    } else {
      d = s / nf;
      let v = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const m = cols < N;
        const xc = where(m, (load(X, base + cols, m, 0.0) - k) - d, 0.0);
        v = v + sum(xc * xc, 0);
      }
      rstd = rsqrt(v / nf + eps);
      store(Mean, row, k + d);
    }
    store(Rstd, row, rstd);
    for (let c = 0; c < N; c += BN) {
      const cols = c + arange(BN);
      const m = cols < N;
      let y = ((load(X, base + cols, m, 0.0) - k) - d) * rstd;
      if (HAS_W) { y = y * load(W, cols, m, 0.0); }
      if (HAS_B) { y = y + load(B, cols, m, 0.0); }
      store(Y, base + cols, y, m);
    }
  }
}`;

export const NORM_BWD_SOURCE = `function normBwd(X, W, Dy, Mean, Rstd, Dx, Res, M, N, R, BN, RMS, HAS_W, HAS_RES, SINGLE, EVEN) {
  const nf = cast(N, 'f32');
  if (SINGLE) {
    const rows = programId(0) * R + arange(R);
    const cols = arange(BN);
    const mr = rows < M;
    const mc = cols < N;
    const offs = expandDims(rows, 1) * N + expandDims(cols, 0);
    const m = expandDims(mr, 1) && expandDims(mc, 0);
    const x = ld(X, offs, m, 0.0, EVEN);
    const rstd = expandDims(ld(Rstd, rows, mr, 0.0, EVEN), 1);
    let xhat = x * rstd;
    if (!RMS) { xhat = wh(m, (x - expandDims(ld(Mean, rows, mr, 0.0, EVEN), 1)) * rstd, 0.0, EVEN); }
    let g = ld(Dy, offs, m, 0.0, EVEN);
    if (HAS_W) { g = g * expandDims(ld(W, cols, mc, 0.0, EVEN), 0); }
    const c2 = expandDims(sum(g * xhat, 1) / nf, 1);
    let dx = rstd * (g - xhat * c2);
    if (!RMS) { dx = rstd * (g - expandDims(sum(g, 1) / nf, 1) - xhat * c2); }
    // The gradient of a residual connection around the norm joins here.
    if (HAS_RES) { dx = dx + ld(Res, offs, m, 0.0, EVEN); }
    st(Dx, offs, dx, m, EVEN);
  } else {
    const row = programId(0);
    const base = row * N;
    const rstd = load(Rstd, row);
    let mean = 0.0;
    if (!RMS) { mean = load(Mean, row); }
    let s1 = 0.0;
    let s2 = 0.0;
    for (let c = 0; c < N; c += BN) {
      const cols = c + arange(BN);
      const m = cols < N;
      const xhat = where(m, (load(X, base + cols, m, 0.0) - mean) * rstd, 0.0);
      let g = load(Dy, base + cols, m, 0.0);
      if (HAS_W) { g = g * load(W, cols, m, 0.0); }
      s1 = s1 + sum(g, 0);
      s2 = s2 + sum(g * xhat, 0);
    }
    const c1 = s1 / nf;
    const c2 = s2 / nf;
    for (let c = 0; c < N; c += BN) {
      const cols = c + arange(BN);
      const m = cols < N;
      const xhat = (load(X, base + cols, m, 0.0) - mean) * rstd;
      let g = load(Dy, base + cols, m, 0.0);
      if (HAS_W) { g = g * load(W, cols, m, 0.0); }
      let dx = rstd * (g - xhat * c2);
      if (!RMS) { dx = rstd * (g - c1 - xhat * c2); }
      if (HAS_RES) { dx = dx + load(Res, base + cols, m, 0.0); }
      store(Dx, base + cols, dx, m);
    }
  }
}`;

/** Partial column sums of dy·x̂ (and dy) over slab programId(1) of `rowsPer` rows. */
export const NORM_GRAD_SOURCE = `function normGrad(X, Dy, Mean, Rstd, Pw, Pb, M, N, rowsPer, BR, BN, RMS, HAS_B, EVEN) {
  const cols = programId(0) * BN + arange(BN);
  const mc = cols < N;
  const r0 = programId(1) * rowsPer;
  const r1 = minimum(M, r0 + rowsPer);
  // Loop-carried [BR, BN] partials, reduced once at the end (as sumRows).
  let aw = zeros([BR, BN]);
  let ab = zeros([BR, BN]);
  for (let r = r0; r < r1; r += BR) {
    const rows = r + arange(BR);
    const mr = rows < r1;
    const m = expandDims(mr, 1) && expandDims(mc, 0);
    const offs = expandDims(rows, 1) * N + expandDims(cols, 0);
    const dy = ld(Dy, offs, m, 0.0, EVEN);
    let xc = ld(X, offs, m, 0.0, EVEN);
    if (!RMS) { xc = xc - expandDims(ld(Mean, rows, mr, 0.0, EVEN), 1); }
    aw = aw + dy * xc * expandDims(ld(Rstd, rows, mr, 0.0, EVEN), 1);
    if (HAS_B) { ab = ab + dy; }
  }
  st(Pw, programId(1) * N + cols, sum(aw, 0), mc, EVEN);
  if (HAS_B) { st(Pb, programId(1) * N + cols, sum(ab, 0), mc, EVEN); }
}`;

export const normFwdKernel = jit(NORM_FWD_SOURCE, {
  signature: {
    X: 'ptr', W: 'ptr', B: 'ptr', Y: 'ptr', Mean: 'ptr', Rstd: 'ptr', M: 'i32', N: 'i32', eps: 'f32',
    R: 'constexpr', BN: 'constexpr', RMS: 'constexpr', HAS_W: 'constexpr', HAS_B: 'constexpr', SINGLE: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

export const normBwdKernel = jit(NORM_BWD_SOURCE, {
  signature: {
    X: 'ptr', W: 'ptr', Dy: 'ptr', Mean: 'ptr', Rstd: 'ptr', Dx: 'ptr', Res: 'ptr', M: 'i32', N: 'i32',
    R: 'constexpr', BN: 'constexpr', RMS: 'constexpr', HAS_W: 'constexpr', HAS_RES: 'constexpr', SINGLE: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

export const normGradKernel = jit(NORM_GRAD_SOURCE, {
  signature: {
    X: 'ptr', Dy: 'ptr', Mean: 'ptr', Rstd: 'ptr', Pw: 'ptr', Pb: 'ptr', M: 'i32', N: 'i32', rowsPer: 'i32',
    BR: 'constexpr', BN: 'constexpr', RMS: 'constexpr', HAS_B: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

