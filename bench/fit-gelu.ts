/**
 * @fileoverview `npm run fit:gelu`: fits the rational gates of the fused GELU builtins in
 * codegen/math.ts, and the exact GELU's derivative (GELU_GRAD_FIT), and prints their
 * coefficients. A gate is t(x) = erf(x/√2) (exact GELU) or
 * tanh(√(2/π)(x + 0.044715x³)) (its tanh form); GELU is then x/2 + |x|/2 · t(|x|). The gate is
 * x·P(x²)/Q(x²) on [0, X0], fitted for the smallest largest *absolute* error (GELU needs t to
 * 2^-24 absolute, not relative: h + |h|·t rounds like h there), by linearised least squares
 * reweighted towards minimax (Lawson), with Q's weights from the previous iterate
 * (Sanathanan-Koerner). The fit is pinned to 1 + PIN at X0, so that in f32 the quotient
 * x²·(P/2)/Q reaches |x|/2 at X0 and `min(·, |x|/2)` saturates it exactly: GELU is then exactly
 * x above X0 and exactly 0 below -X0. The printed errors simulate the f32 evaluation (Horner,
 * with and without FMA) and count the points past X0 that fail to saturate;
 * test/math.test.ts measures the real code.
 */
import { erf64, geluGrad64 } from '../src/util/erf.js';

const fr = Math.fround;

/** Least squares by Householder QR. */
function solve(A: number[][], b: number[]): number[] {
  const m = A.length, n = A[0]!.length;
  const a = A.map((r) => r.slice()), y = b.slice();
  for (let k = 0; k < n; k++) {
    let norm = 0;
    for (let i = k; i < m; i++) norm += a[i]![k]! ** 2;
    norm = Math.sqrt(norm) * (a[k]![k]! > 0 ? -1 : 1);
    const v = new Array<number>(m).fill(0);
    for (let i = k; i < m; i++) v[i] = a[i]![k]!;
    v[k]! -= norm;
    let vv = 0;
    for (let i = k; i < m; i++) vv += v[i]! ** 2;
    if (vv === 0) continue;
    for (let j = k; j < n; j++) {
      let d = 0;
      for (let i = k; i < m; i++) d += v[i]! * a[i]![j]!;
      d = (2 * d) / vv;
      for (let i = k; i < m; i++) a[i]![j]! -= d * v[i]!;
    }
    let d = 0;
    for (let i = k; i < m; i++) d += v[i]! * y[i]!;
    d = (2 * d) / vv;
    for (let i = k; i < m; i++) y[i]! -= d * v[i]!;
  }
  const x = new Array<number>(n).fill(0);
  for (let k = n - 1; k >= 0; k--) {
    let s = y[k]!;
    for (let j = k + 1; j < n; j++) s -= a[k]![j]! * x[j]!;
    x[k] = s / a[k]![k]!;
  }
  return x;
}

const horner = (c: readonly number[], t: number): number => c.reduceRight((acc, ck) => acc * t + ck, 0);

/** Where the fit is pinned at X0: one unit of 2^-24 above 1, so that the f32 GELU saturates there (the printed count of unsaturated points must be 0). */
const PIN = 2 ** -24;

export interface Gate {
  /** Coefficients of P and Q in s = x² (lowest first, f32 values); Q[0] = 1. */
  readonly P: number[];
  readonly Q: number[];
  /** Largest |x·P/Q - t| of the f64 fit over [0, X0], before rounding to f32. */
  readonly fitError: number;
}

/** The [dp/dq] gate for `t` on [0, X0]. */
export function fitGate(t: (x: number) => number, X0: number, dp: number, dq: number): Gate {
  const S = X0 * X0;
  const N = 4000;
  const xs = Array.from({ length: N }, (_, i) => (X0 * (i + 0.5)) / N);
  xs.push(X0);
  const u = xs.map((x) => (x * x) / S); // fitted in u = s/S in [0, 1], rescaled at the end
  const ts = xs.map((x, i) => (i === N ? 1 + PIN : t(x)));
  let lam: number[] = xs.map((_, i) => (i === N ? 1e8 : 1));
  const qPrev = xs.map(() => 1);
  let best: { err: number; P: number[]; Q: number[] } | undefined;
  for (let it = 0; it < 80; it++) {
    const A: number[][] = [];
    const b: number[] = [];
    xs.forEach((x, i) => {
      const w = Math.sqrt(lam[i]!) / qPrev[i]!;
      const row: number[] = [];
      for (let k = 0; k <= dp; k++) row.push(w * x * u[i]! ** k);
      for (let k = 1; k <= dq; k++) row.push(-w * ts[i]! * u[i]! ** k);
      A.push(row);
      b.push(w * ts[i]!);
    });
    const c = solve(A, b);
    const P = c.slice(0, dp + 1), Q = [1, ...c.slice(dp + 1)];
    let err = 0;
    let pole = false;
    const errs = xs.map((x, i) => {
      const q = horner(Q, u[i]!);
      if (!(q > 0)) pole = true;
      qPrev[i] = q;
      const e = Math.abs((x * horner(P, u[i]!)) / q - ts[i]!);
      if (i < N) err = Math.max(err, e);
      return e;
    });
    if (pole) break;
    if (!best || err < best.err) best = { err, P, Q };
    let sum = 0;
    lam = lam.map((l, i) => (i === N ? l : (sum += l * errs[i]!, l * errs[i]!)));
    lam = lam.map((l, i) => (i === N ? l : (l / sum) * N));
  }
  if (!best) throw new Error('fit-gelu: the fit has a pole in [0, X0]');
  return { P: best.P.map((c, k) => fr(c / S ** k)), Q: best.Q.map((c, k) => fr(c / S ** k)), fitError: best.err };
}

/** Horner in f32, each step one fused multiply-add (fma) or a rounded multiply and add. */
function polyF32(c: readonly number[], s: number, fma: boolean): number {
  let acc = c[c.length - 1]!;
  for (let k = c.length - 2; k >= 0; k--) acc = fma ? fr(acc * s + c[k]!) : fr(fr(acc * s) + c[k]!);
  return acc;
}

/** The f32 GELU of codegen/math.ts, simulated: h + min(x²·(P/2)(s)/Q(s), |h|) with h = x/2, Horner fused or not. */
export function geluF32(g: Gate, X0: number, x: number, fma: boolean): number {
  const poly = (c: readonly number[], s: number): number => polyF32(c, s, fma);
  const x2 = fr(x * x);
  const s = Math.min(x2, fr(X0 * X0));
  const q = fr(fr(x2 * poly(g.P.map((c) => c / 2), s)) / poly(g.Q, s));
  const h = fr(0.5 * x);
  return fr(h + Math.min(q, Math.abs(h)));
}

/** The gates, their ranges and the functions they approximate. */
export const GATES = {
  gelu: { t: (x: number) => erf64(x * Math.SQRT1_2), X0: 5.6, dp: 5, dq: 5 },
  // codegen/math.ts raises the fitted P[4] one f32 ulp, so that GELU(-X0) is exactly 0.
  geluTanh: { t: (x: number) => Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)), X0: 5, dp: 4, dq: 5 },
} as const;

/**
 * GELU's derivative, fitted the same way: 2·gelu'(x) - 1 = erf(x/√2) + x·√(2/π)·e^(-x²/2) is
 * odd and tends to ±1, so it is x·P(x²)/Q(x²) on [0, X0] like a gate; gelu' = 1/2 + x·(P/2)/Q,
 * and exactly 1 or 0 past X0 (vGeluGrad in codegen/math.ts).
 */
export const GELU_GRAD_FIT = { t: (x: number) => erf64(x * Math.SQRT1_2) + x * Math.sqrt(2 / Math.PI) * Math.exp((-x * x) / 2), X0: 6, dp: 7, dq: 6 } as const;

/** vGeluGrad's f32 evaluation, simulated (Horner fused or not). */
export function geluGradF32(g: Gate, X0: number, x: number, fma: boolean): number {
  if (Math.abs(x) >= X0) return x > 0 ? 1 : 0;
  const poly = (c: readonly number[], s: number): number => polyF32(c, s, fma);
  const s = fr(x * x);
  return fr(0.5 + fr(fr(x * poly(g.P.map((c) => c / 2), s)) / poly(g.Q, s)));
}

function ulp(y: number): number {
  const a = Math.abs(y);
  return a < 2 ** -126 ? 2 ** -149 : 2 ** (Math.floor(Math.log2(a)) - 23);
}

if (process.argv[1]?.endsWith('fit-gelu.js')) {
  for (const [name, { t, X0, dp, dq }] of Object.entries(GATES)) {
    const g = fitGate(t, X0, dp, dq);
    const report: string[] = [];
    for (const fma of [true, false]) {
      let pos = 0, neg = 0;
      for (let i = 0; i <= 400000; i++) {
        const x = fr(-8 + (16 * i) / 400000);
        const want = 0.5 * x * (1 + t(x));
        const got = geluF32(g, X0, x, fma);
        if (x >= 0) pos = Math.max(pos, Math.abs(got - want) / ulp(want));
        else neg = Math.max(neg, Math.abs(got - want) / (-x * 2 ** -24));
      }
      report.push(`${fma ? 'fma' : 'mul+add'}: x >= 0 ${pos.toFixed(2)} ulp, x < 0 ${neg.toFixed(2)}·2^-24·|x|`);
    }
    // Past ±X0 GELU must be exactly x and exactly 0: every f32 in [X0, 1.5·X0], then a log sweep to 1e30.
    const unsaturated = (fma: boolean): number => {
      let bad = 0;
      const check = (z: number): void => { if (geluF32(g, X0, z, fma) !== z || geluF32(g, X0, -z, fma) !== 0) bad++; };
      for (let z = fr(X0); z < 1.5 * X0; z = fr(z + ulp(z))) check(z);
      for (let y = 1.5 * X0; y < 1e30; y *= 1.001) check(fr(y));
      return bad;
    };
    report.push(`not saturated past X0: fma ${unsaturated(true)}, mul+add ${unsaturated(false)} (must be 0)`);
    console.log(`// ${name}: [${dp}/${dq}] on [0, ${X0}], fit error ${(g.fitError / 2 ** -24).toFixed(2)}·2^-24; ${report.join('; ')}`);
    console.log(`const ${name.toUpperCase()}_P = [${g.P.join(', ')}];`);
    console.log(`const ${name.toUpperCase()}_Q = [${g.Q.join(', ')}];`);
  }
  const { t, X0, dp, dq } = GELU_GRAD_FIT;
  const g = fitGate(t, X0, dp, dq);
  const worst = (fma: boolean): string => {
    let w = 0;
    for (let i = 0; i <= 800000; i++) {
      const x = fr(-10 + (20 * i) / 800000);
      w = Math.max(w, Math.abs(geluGradF32(g, X0, x, fma) - geluGrad64(x)) / 2 ** -24);
    }
    return w.toFixed(2);
  };
  console.log(`// geluGrad: [${dp}/${dq}] on [0, ${X0}], fit error ${(g.fitError / 2 ** -24).toFixed(2)}·2^-24 (of 2·gelu' - 1); f32 gelu' within fma ${worst(true)}, mul+add ${worst(false)}·2^-24 over [-10, 10]`);
  console.log(`const GELU_GRAD_P = [${g.P.join(', ')}];`);
  console.log(`const GELU_GRAD_Q = [${g.Q.join(', ')}];`);
}
