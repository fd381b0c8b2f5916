/**
 * @fileoverview Layer norm and RMS norm over the last axis (M rows of N), forward and backward.
 * Statistics are f32 whatever the storage dtype, never E[x²] - E[x]². SINGLE (R whole rows per
 * program in one tile): a corrected two-pass, the mean m, then the sums of x - m and of the
 * corrected deviations' squares. Streamed (one row per program in BN-wide chunks): a two-pass
 * shifted by the mean of the row's first KB elements, redone as a true two-pass when that shift
 * is far off, so in both the element order costs no digits. A row whose sum of squares
 * overflows or underflows (|x| past ~1e19 or below ~1e-19, or eps 0 and tiny x) is redone
 * scaled by a power of two, so the whole finite f32 range normalises. Mean and 1/std are saved
 * per row, unscaled, for the backward. Weight and bias gradients are column sums: per-program
 * partial sums over a slab of rows, then `colsum` (templates/reduce.ts).
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

/**
 * A sum of squares at or above this (2^-100) and finite is exact to f32's precision: squares
 * that fall below 2^-126 round to 2^-150 each, N·2^-150 of it at most. Below it (or Inf/NaN,
 * or an all-zero row) the forward redoes the row scaled.
 */
const SUMSQ_MIN = 2 ** -100;
/** eps·s² at or past this (2^110) outweighs any scaled variance (< 2^82) beyond f32's precision. */
const EPS_HUGE = 2 ** 110;
/** The least normal f32: eps·s² above it is exact. */
const NORMAL_MIN = 2 ** -126;
/** Elements whose mean shifts a streamed row (its first KB): see the kernel. */
const KB = 256;
/** A number as a float literal of the kernel language (exact: the shortest round-trip form). */
const lit = (v: number): string => v.toExponential();

/**
 * A power of two s with a·s in [2^-29, 2^40) for a = max|x| in [2^-149, 2^128), built from exact
 * constants (no exp2/log2, whose results are not promised to be powers of two): squares of the
 * scaled row neither overflow nor lose digits to underflow. s is in [2^-96, 2^120], so 1/s is
 * exact too. NaN gives 1; 0 gives 2^120 (harmless: the row stays 0).
 */
const UNIT_SCALE = `function unitScale(a) {
  const s1 = where(a >= ${lit(2 ** 40)}, ${lit(2 ** -64)}, where(a < ${lit(2 ** -20)}, ${lit(2 ** 60)}, 1.0));
  const a1 = a * s1;
  return s1 * where(a1 >= ${lit(2 ** 40)}, ${lit(2 ** -32)}, where(a1 < ${lit(2 ** -20)}, ${lit(2 ** 60)}, 1.0));
}`;

/**
 * Whether 1/sqrt(var + eps) is best taken in the scaled units, as s·rsqrt(q + eps·s²) (q the
 * scaled variance, es = eps·s²): unless eps·s² overflows or dominates (EPS_HUGE), or is inexact
 * (below NORMAL_MIN) while the variance is too small to hide it. Otherwise rsqrt(q/s² + eps).
 */
const SCALED_RSTD = `function scaledRstd(q, es, eps) {
  return es < ${lit(EPS_HUGE)} && (es >= ${lit(NORMAL_MIN)} || q >= ${lit(SUMSQ_MIN)} || eps == 0.0);
}`;

/**
 * A SINGLE tile's output: y = (((x·s - mu) - d) · f1 · f2) · weight + bias, with s and f2 only
 * when SCALED (the plain form is ((x - mu) - d) · rstd; RMS norm has no mu and d). Per-row
 * factors are [R].
 */
const STORE_TILE = `function storeTile(X, W, B, Y, offs, m, cols, mc, s, mu, d, f1, f2, RMS, SCALED, HAS_W, HAS_B, EVEN) {
  let x = ld(X, offs, m, 0.0, EVEN);
  if (SCALED) { x = x * expandDims(s, 1); }
  let y = x;
  if (!RMS) { y = (x - expandDims(mu, 1)) - expandDims(d, 1); }
  y = y * expandDims(f1, 1);
  if (SCALED) { y = y * expandDims(f2, 1); }
  if (HAS_W) { y = y * expandDims(ld(W, cols, mc, 0.0, EVEN), 0); }
  if (HAS_B) { y = y + expandDims(ld(B, cols, mc, 0.0, EVEN), 0); }
  st(Y, offs, y, m, EVEN);
}`;

/**
 * The streamed row's output pass: y = (((x·s - mu) - d) · f1 · f2) · weight + bias, the scale
 * and f2 only when SCALED (the plain pass is ((x - mu) - d) · rstd).
 */
const STORE_ROW = `function storeRow(X, W, B, Y, base, N, s, mu, d, f1, f2, BN, RMS, SCALED, HAS_W, HAS_B) {
  for (let c = 0; c < N; c += BN) {
    const cols = c + arange(BN);
    const m = cols < N;
    let x = load(X, base + cols, m, 0.0);
    if (SCALED) { x = x * s; }
    let y = x;
    if (!RMS) { y = (x - mu) - d; }
    y = y * f1;
    if (SCALED) { y = y * f2; }
    if (HAS_W) { y = y * load(W, cols, m, 0.0); }
    if (HAS_B) { y = y + load(B, cols, m, 0.0); }
    store(Y, base + cols, y, m);
  }
}`;

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
    // Two passes in f32, the second corrected by the mean of x - mu (the rounding of mu):
    // x - mu is exact or nearly so for data clustered about the mean, whatever comes first.
    let mu = zeros([R]);
    let d = zeros([R]);
    let v = zeros([R]);
    if (RMS) {
      v = sum(x * x, 1);
    } else {
      mu = sum(x, 1) / nf;
      const xk = wh(m, x - expandDims(mu, 1), 0.0, EVEN);
      d = sum(xk, 1) / nf;
      const xc = wh(m, xk - expandDims(d, 1), 0.0, EVEN);
      v = sum(xc * xc, 1);
    }
    // The tile's rows are all fine (what real data gives), or the tile is redone scaled.
    const ok = (v >= ${lit(SUMSQ_MIN)} && v < Infinity) || !mr;
    if (min(cast(ok, 'i32'), 0) == 1) {
      const rstd = rsqrt(v / nf + eps);
      st(Rstd, rows, rstd, mr, EVEN);
      if (!RMS) { st(Mean, rows, mu + d, mr, EVEN); }
      // x is loaded again after the statistics' stores: one live across a store (or into a
      // branch) would be copied to scratch first.
      storeTile(X, W, B, Y, offs, m, cols, mc, 1.0, mu, d, rstd, 1.0, RMS, false, HAS_W, HAS_B, EVEN);
    } else {
      // The same statistics of x·s, s a power of two (exact) that brings max|x| near 1.
      const s = unitScale(max(abs(ld(X, offs, m, 0.0, EVEN)), 1));
      const xs = ld(X, offs, m, 0.0, EVEN) * expandDims(s, 1);
      let ms = zeros([R]);
      let ds = zeros([R]);
      let vs = zeros([R]);
      if (RMS) {
        vs = sum(xs * xs, 1);
      } else {
        ms = sum(xs, 1) / nf;
        const xk = wh(m, xs - expandDims(ms, 1), 0.0, EVEN);
        ds = sum(xk, 1) / nf;
        const xc = wh(m, xk - expandDims(ds, 1), 0.0, EVEN);
        vs = sum(xc * xc, 1);
      }
      const inv = 1.0 / s;
      const q = vs / nf;
      const es = eps * s * s;
      const sc = scaledRstd(q, es, eps);
      const rq = rsqrt(q + es);
      const rb = rsqrt(q * inv * inv + eps);
      st(Rstd, rows, where(sc, rq * s, rb), mr, EVEN);
      if (!RMS) { st(Mean, rows, (ms + ds) * inv, mr, EVEN); }
      // xhat = xc·rq in the scaled units, or (xc/s)·rstd.
      storeTile(X, W, B, Y, offs, m, cols, mc, s, ms, ds, where(sc, rq, inv), where(sc, 1.0, rb), RMS, true, HAS_W, HAS_B, EVEN);
    }
  } else {
    const row = programId(0);
    const base = row * N;
    // Three passes, as a shifted two-pass: sum(x - k), then sum(((x - k) - d)²), then y (a
    // fourth, the plain two-pass's sum(x) first, measured +15% instructions at 1024x4096).
    // The shift k is the mean of the row's first KB elements: x - k keeps the digits of data
    // clustered far from 0, and whatever the order k is off the row's mean by at most
    // sqrt(N/KB) standard deviations (the first element alone: sqrt(N)). A row whose k is off
    // by more than a quarter of one takes the slow path, a true two-pass: d, a sum of N values
    // near k - mean, would round by up to an ulp of the outputs (N = 20000: 2^-24 at a half).
    let k = 0.0;
    if (!RMS) {
      const kc = arange(${KB});
      k = sum(load(X, base + kc, kc < N, 0.0), 0) / cast(minimum(N, ${KB}), 'f32');
    }
    let s1 = 0.0;
    for (let c = 0; c < N; c += BN) {
      const cols = c + arange(BN);
      const m = cols < N;
      const x = load(X, base + cols, m, 0.0);
      if (RMS) { s1 = s1 + sum(x * x, 0); } else { s1 = s1 + sum(where(m, x - k, 0.0), 0); }
    }
    let d = 0.0;
    let v = s1;
    if (!RMS) {
      d = s1 / nf;
      v = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const m = cols < N;
        const xc = where(m, (load(X, base + cols, m, 0.0) - k) - d, 0.0);
        v = v + sum(xc * xc, 0);
      }
    }
    if (v >= ${lit(SUMSQ_MIN)} && v < Infinity && 16.0 * d * d * nf <= v) {
      const rstd = rsqrt(v / nf + eps);
      store(Rstd, row, rstd);
      if (!RMS) { store(Mean, row, k + d); }
      storeRow(X, W, B, Y, base, N, 1.0, k, d, rstd, 1.0, BN, RMS, false, HAS_W, HAS_B);
    } else {
      // x·s (s from max|x|, see unitScale), shifted by its own mean: a true two-pass.
      let a = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        a = maximum(a, max(abs(load(X, base + cols, cols < N, 0.0)), 0));
      }
      const s = unitScale(a);
      let ss = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const xs = load(X, base + cols, cols < N, 0.0) * s;
        if (RMS) { ss = ss + sum(xs * xs, 0); } else { ss = ss + sum(xs, 0); }
      }
      let ks = 0.0;
      let ds = 0.0;
      let vs = ss;
      if (!RMS) {
        ks = ss / nf;
        for (let c = 0; c < N; c += BN) {
          const cols = c + arange(BN);
          const m = cols < N;
          ds = ds + sum(where(m, load(X, base + cols, m, 0.0) * s - ks, 0.0), 0);
        }
        ds = ds / nf;
        vs = 0.0;
        for (let c = 0; c < N; c += BN) {
          const cols = c + arange(BN);
          const m = cols < N;
          const xc = where(m, (load(X, base + cols, m, 0.0) * s - ks) - ds, 0.0);
          vs = vs + sum(xc * xc, 0);
        }
      }
      const q = vs / nf;
      const es = eps * s * s;
      const inv = 1.0 / s;
      const sc = scaledRstd(q, es, eps);
      const rq = rsqrt(q + es);
      const rb = rsqrt(q * inv * inv + eps);
      store(Rstd, row, where(sc, rq * s, rb));
      if (!RMS) { store(Mean, row, (ks + ds) * inv); }
      storeRow(X, W, B, Y, base, N, s, ks, ds, where(sc, rq, inv), where(sc, 1.0, rb), BN, RMS, true, HAS_W, HAS_B);
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
  helpers: { ...MASKED_HELPERS, unitScale: UNIT_SCALE, scaledRstd: SCALED_RSTD, storeTile: STORE_TILE, storeRow: STORE_ROW },
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

