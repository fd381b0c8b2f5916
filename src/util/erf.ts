/**
 * @fileoverview erf in f64, the reference for the interpreter, the templates' plain-JS
 * references and the vector erf's accuracy tests.
 */

/** GELU, x·Φ(x) = x/2 · (1 + erf(x/√2)), in f64 (NaN at -Infinity, as the formula gives). */
export function gelu64(x: number): number {
  return 0.5 * x * (1 + erf64(x * Math.SQRT1_2));
}

/** GELU's tanh approximation, x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), in f64. */
export function geluTanh64(x: number): number {
  return 0.5 * x * (1 + Math.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}

/** GELU's derivative, Φ(x) + x·φ(x), in f64: 1 at Infinity, 0 at -Infinity. */
export function geluGrad64(x: number): number {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? x : x > 0 ? 1 : 0;
  return 0.5 * (1 + erf64(x * Math.SQRT1_2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** The derivative of GELU's tanh form, in f64: 1 at Infinity, 0 at -Infinity. */
export function geluTanhGrad64(x: number): number {
  if (!Number.isFinite(x)) return Number.isNaN(x) ? x : x > 0 ? 1 : 0;
  const c = 0.7978845608028654;
  const t = Math.tanh(c * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
}

/** erf in f64, absolute error below 1e-12 (series below 2.5, continued fraction above). */
export function erf64(x: number): number {
  const ax = Math.abs(x);
  if (ax === Infinity) return Math.sign(x);
  if (ax < 2.5) {
    let term = x;
    let sum = x;
    const x2 = x * x;
    for (let n = 1; n < 80; n++) {
      term *= -x2 / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return (2 / Math.sqrt(Math.PI)) * sum;
  }
  const erfc = erfc64(ax);
  return Math.sign(x) * (1 - erfc);
}

/**
 * erfc for x >= 1 by its continued fraction (modified Lentz), to ~1e-15 relative: converges in
 * a few hundred steps at 2.5 and a few thousand at 1.
 */
export function erfc64(x: number): number {
  let f = x;
  let C = x;
  let D = 0;
  for (let n = 1; n < 5000; n++) {
    const an = n / 2;
    D = x + an * D;
    D = D === 0 ? 1e-300 : 1 / D;
    C = x + an / C;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-x * x) / (f * Math.sqrt(Math.PI));
}
