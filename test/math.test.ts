/**
 * @fileoverview The vector math's promised error bounds (MATH_ULP), over dense sweeps of f32
 * inputs, with relaxed FMA on and off, plus special values exactly like Math.*.
 */
import { describe, expect, test } from 'vitest';
import { erf64 } from '../src/util/erf.js';
import { MATH_ULP, vErf, vExp, vExp2, vLog, vLog2, vRsqrt, vSigmoid, vTanh } from '../codegen/math.js';
import { bitsOf, floatOf, HAS_RELAXED, ulpError, vectorMap } from './util/wasmharness.js';
import type { Emit, Ref } from '../codegen/emit.js';

type Fn = (e: Emit, x: Ref) => Ref;

/** Every `step`-th f32 bit pattern with lo <= x <= hi (both signs as the range asks). */
function sweep(lo: number, hi: number, step: number): Float32Array {
  const out: number[] = [];
  const add = (a: number, b: number): void => {
    // a, b >= 0 magnitudes; walk bit patterns.
    for (let bits = bitsOf(a); bits <= bitsOf(b); bits += step) out.push(floatOf(bits));
  };
  if (lo < 0) {
    add(0, Math.min(-lo, Math.abs(hi) > 0 && hi < 0 ? -lo : -lo));
    const n = out.length;
    for (let k = 0; k < n; k++) out[k] = -out[k]!;
  }
  if (hi > 0) add(Math.max(0, lo), hi);
  return Float32Array.from(out.filter((x) => x >= lo && x <= hi));
}

const CASES: { name: keyof typeof MATH_ULP; fn: Fn; ref: (x: number) => number; lo: number; hi: number; specials: [number, number][] }[] = [
  { name: 'exp', fn: vExp, ref: Math.exp, lo: -104, hi: 89, specials: [[Infinity, Infinity], [-Infinity, 0], [0, 1], [-0, 1], [89, Infinity], [-104, 0]] },
  { name: 'exp2', fn: vExp2, ref: (x) => 2 ** x, lo: -151, hi: 129, specials: [[Infinity, Infinity], [-Infinity, 0], [0, 1], [3, 8], [-149, 2 ** -149], [128, Infinity]] },
  { name: 'log', fn: vLog, ref: Math.log, lo: 0, hi: 3.4e38, specials: [[0, -Infinity], [-0, -Infinity], [-1, NaN], [Infinity, Infinity], [1, 0], [-Infinity, NaN]] },
  { name: 'log2', fn: vLog2, ref: Math.log2, lo: 0, hi: 3.4e38, specials: [[0, -Infinity], [-2, NaN], [Infinity, Infinity], [1, 0], [8, 3], [2 ** -149, -149]] },
  { name: 'tanh', fn: vTanh, ref: Math.tanh, lo: -12, hi: 12, specials: [[Infinity, 1], [-Infinity, -1], [0, 0], [-0, -0], [20, 1], [-20, -1]] },
  { name: 'sigmoid', fn: vSigmoid, ref: (x) => 1 / (1 + Math.exp(-x)), lo: -100, hi: 40, specials: [[Infinity, 1], [-Infinity, 0], [0, 0.5]] },
  { name: 'erf', fn: vErf, ref: erf64, lo: -6, hi: 6, specials: [[Infinity, 1], [-Infinity, -1], [0, 0], [-0, -0], [10, 1], [-10, -1]] },
  { name: 'rsqrt', fn: vRsqrt, ref: (x) => 1 / Math.sqrt(x), lo: 0, hi: 3.4e38, specials: [[0, Infinity], [Infinity, 0], [-1, NaN], [4, 0.5]] },
];

const targets = HAS_RELAXED ? [true, false] : [false];

describe.each(targets.map((relaxed) => ({ relaxed })))('vector math (relaxed FMA: $relaxed)', ({ relaxed }) => {
  test.each(CASES)('$name stays within its stated ulp bound', ({ name, fn, ref, lo, hi, specials }) => {
    const run = vectorMap(fn, relaxed);
    const xs = sweep(lo, hi, 997);
    const out = run(new Uint32Array(xs.buffer));
    let worst = 0;
    let at = 0;
    for (let k = 0; k < xs.length; k++) {
      const exact = ref(xs[k]!);
      // Past the f32 range the right answer is the rounded one (Inf).
      const want = Number.isFinite(Math.fround(exact)) ? exact : Math.fround(exact);
      // Results that are subnormal: the exact value is measured on the subnormal grid.
      const err = ulpError(floatOf(out[k]!), want);
      if (err > worst) {
        worst = err;
        at = xs[k]!;
      }
    }
    expect(worst, `${name}: worst ${worst.toFixed(2)} ulp at x = ${at}`).toBeLessThanOrEqual(MATH_ULP[name]);
    const sx = Float32Array.from([...specials.map((s) => s[0]), NaN]);
    const so = run(new Uint32Array(sx.buffer));
    specials.forEach(([x, want], k) => {
      const got = floatOf(so[k]!);
      if (Number.isNaN(want)) expect(got, `${name}(${x})`).toBeNaN();
      else expect(Object.is(got, want) || Math.abs(got - want) <= Math.abs(want) * 2 ** -22, `${name}(${x}) = ${got}, want ${want}`).toBe(true);
    });
    expect(floatOf(so[specials.length]!), `${name}(NaN)`).toBeNaN();
  });
});
