/**
 * @fileoverview Vector math on f32x4 with stated error bounds (MATH_ULP, checked over dense
 * sweeps by test/math.test.ts, with FMA on and off). Range reduction + short polynomials, no
 * per-lane code. NaN in gives NaN out; infinities and -0 behave like `Math.*`.
 */
import binaryen from 'binaryen';
import { erf64, erfc64 } from '../src/util/erf.js';
import type { Emit, Ref } from './emit.js';

/**
 * Promised max error in ulp of the f32 result against the exact value, with or without FMA:
 * exp/exp2 over the whole finite range (subnormal results in ulps of 2^-149), expFtz/exp2Ftz (exp(x, true), exp2(x, true)) from their cutoffs up, log/log2 for
 * positive normal and subnormal x, rsqrt for x > 0. tanh, sigmoid and erf are bounded relative
 * to the result everywhere, near 0 and in sigmoid's subnormal tail included, so no absolute
 * bound is needed. Measured worst cases (FMA on or off; MATH_WORST=1 prints them in
 * test/math.test.ts): exp 1.13, exp2 1.2, log 0.8, log2 1.3, tanh 2.9, sigmoid 2.2, rsqrt 1.5;
 * erf 1.20 with FMA, 1.40 without, over every f32 with |x| in [2^-6, 8) (test/math.test.ts
 * sweeps [0.25, 1), where the worst cases were, bit pattern by bit pattern).
 */
export const MATH_ULP = {
  exp: 2, expFtz: 2, exp2: 2, exp2Ftz: 2, log: 2, log2: 2, tanh: 4, sigmoid: 4, erf: 4, rsqrt: 2,
} as const satisfies Readonly<Record<'exp' | 'expFtz' | 'exp2' | 'exp2Ftz' | 'log' | 'log2' | 'tanh' | 'sigmoid' | 'erf' | 'rsqrt', number>>;

const v128 = binaryen.v128;
const ERF_SMALL_DEG = 6;
const ERFC_DEG = 11;
const f = (e: Emit, c: number): Ref => e.m.f32x4.splat(e.m.f32.const(c));
const i = (e: Emit, c: number): Ref => e.m.i32x4.splat(e.m.i32.const(c | 0));

/** Horner: c[0] + x*(c[1] + x*(c[2] + ...)); `x` is a getter (a local), evaluated per use. */
function poly(e: Emit, x: () => Ref, c: readonly number[]): Ref {
  let acc = f(e, c[c.length - 1]!);
  for (let k = c.length - 2; k >= 0; k--) acc = e.madd(acc, x(), f(e, c[k]!));
  return acc;
}

/**
 * Estrin's scheme: the same polynomial as Horner with a dependency depth of log2(n)
 * multiply-adds instead of n - 1. Vector math here is latency-bound (measured: a GELU chain
 * runs at ~1.5 ops/cycle with Horner), so shorter chains are faster even with a few more ops.
 */
function estrin(e: Emit, x: () => Ref, c: readonly number[]): Ref {
  const m = e.m;
  let terms = c.map((k) => f(e, k));
  let pw = x;
  const pre: Ref[] = [];
  while (terms.length > 1) {
    const next: Ref[] = [];
    for (let j = 0; j + 1 < terms.length; j += 2) next.push(e.madd(terms[j + 1]!, pw(), terms[j]!));
    if (terms.length % 2) next.push(terms[terms.length - 1]!);
    terms = next;
    if (terms.length > 1) {
      // x^2, x^4, ...: each square reads the previous local, so the sets run in this order.
      const sq = e.bind(v128, m.f32x4.mul(pw(), pw()));
      pre.push(sq.set);
      pw = sq.get;
    }
  }
  return m.block(null, [...pre, terms[0]!], v128);
}

/**
 * Round x·k to an integer n without f32x4.nearest / trunc_sat (both are long sequences on
 * x64): adding 1.5·2^23 + bias leaves n + bias in the low mantissa bits, rounded to even by
 * the adder. Returns n as f32 and the sum t (its bits are 0x4b400000 + n + bias); valid for
 * |x·k| + bias < 2^22.
 */
function roundMagic(e: Emit, x: () => Ref, k: number, bias: number): { pre: Ref[]; nf: () => Ref; t: () => Ref } {
  const m = e.m;
  const MAGIC = 1.5 * 2 ** 23 + bias;
  const t = e.bind(v128, k === 1 ? m.f32x4.add(x(), f(e, MAGIC)) : e.madd(x(), f(e, k), f(e, MAGIC)));
  const nf = e.bind(v128, m.f32x4.sub(t.get(), f(e, MAGIC)));
  return { pre: [t.set, nf.set], nf: nf.get, t: t.get };
}

/**
 * p * 2^n for n in [-150, 129] in two exact steps 2^floor(n/2) · 2^ceil(n/2), so subnormal
 * results round once and overflow gives Inf. t is roundMagic's sum with bias 254, so L = n + 254
 * sits in its low bits: (t >> 1) << 23 is floor(n/2) + 127 in the exponent field (the shift
 * drops t's high bits), and (t - (t >> 1)) << 23 is ceil(n/2) + 127.
 */
function scale2(e: Emit, p: Ref, t: () => Ref): Ref {
  const m = e.m;
  const h = e.bind(v128, m.i32x4.shr_u(t(), m.i32.const(1)));
  const lo = m.i32x4.shl(h.get(), m.i32.const(23));
  const hi = m.i32x4.shl(m.i32x4.sub(t(), h.get()), m.i32.const(23));
  return m.block(null, [h.set, m.f32x4.mul(m.f32x4.mul(p, lo), hi)], v128);
}

/**
 * p · 2^(n-1) in one exact multiply, for n in [-125, 128]: t is roundMagic's sum with bias 126,
 * so t << 23 is 2^(n-1) (the shift drops t's high bits); at n = -126 it is +0. The flushing
 * exps' scale.
 */
function scale1(e: Emit, p: Ref, t: () => Ref): Ref {
  return e.m.f32x4.mul(p, e.m.i32x4.shl(t(), e.m.i32.const(23)));
}

/** Clamp with pmin/pmax (single instructions; a NaN in `x` passes through). */
function clamp(e: Emit, x: Ref, lo: number, hi: number): Ref {
  return e.m.f32x4.pmin(e.m.f32x4.pmax(x, f(e, lo)), f(e, hi));
}

/** (e^r - 1) / r on |r| <= ln2/2 (+ rounding slack), degree 5 (truncation error < 0.05 ulp of e^r). */
const EXPM1_R = fitPoly((r) => (r === 0 ? 1 : Math.expm1(r) / r), -0.35, 0.35, 5);
/** 2^r on |r| <= 1/2, degree 6. */
const EXP2_R = fitPoly((r) => 2 ** r, -0.5, 0.5, 6);

/**
 * x with the lanes below `below` (whose result is 0) replaced by +0, and those lanes as a mask
 * to clear the result with. Why: x86 runs a multiply that underflows (a subnormal or flushed
 * result) through a microcode assist of ~150 cycles, and WebAssembly may not flush; computed
 * from -Infinity or -200, e^x's last scaling multiply underflows in every such lane.
 * exp(-Infinity) is common: masked-off softmax lanes, attention's masked scores (measured:
 * softmax over 8192 rows of 384 in 512-wide tiles 0.8 -> 1.8 GB/s; exp of -Infinity lanes
 * 147 -> 12 cycles a vector). Lanes whose result is
 * truly subnormal still take the assist; they are rare. NaN compares false and stays.
 */
function zeroBelow(e: Emit, x: () => Ref, below: number): { pre: Ref[]; x: () => Ref; clear: (r: Ref) => Ref } {
  const m = e.m;
  const lo = e.bind(v128, m.f32x4.lt(x(), f(e, below)));
  const xs = e.bind(v128, m.v128.andnot(x(), lo.get()));
  return { pre: [lo.set, xs.set], x: xs.get, clear: (r) => m.v128.andnot(r, lo.get()) };
}

/** e^x, ≤ 2 ulp; overflow to +Inf above 88.72, gradual underflow to 0 below -103.97. */
export function vExp(e: Emit, x: Ref): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  const z = zeroBelow(e, X.get, -104);
  // The clamp keeps n <= 129; the arithmetic then overflows on its own.
  const xc = e.bind(v128, m.f32x4.pmin(z.x(), f(e, 89)));
  const { pre, r, t } = lnReduce(e, xc.get, 254);
  // e^r = 1 + r·q(r): the last multiply-add rounds once and q's own error shrinks by |r| <= 0.35.
  // Horner: this is throughput-bound code, where fewer ops beat a shorter chain.
  const p = e.madd(r(), poly(e, r, EXPM1_R), f(e, 1));
  return m.block(null, [X.set, ...z.pre, xc.set, ...pre, z.clear(scale2(e, p, t))], v128);
}

/**
 * x = n·ln2 + r with n = round(x·log2 e) (roundMagic's sum `t` holding n + bias in its low
 * bits) and r by Cody-Waite: ln2 = HI + LO with HI exact in 9 bits, so n·HI is exact.
 */
function lnReduce(e: Emit, x: () => Ref, bias: number): { pre: Ref[]; r: () => Ref; t: () => Ref } {
  const n = roundMagic(e, x, Math.LOG2E, bias);
  const HI = 0.693359375;
  const LO = Math.LN2 - HI;
  const r = e.bind(v128, e.madd(n.nf(), f(e, -LO), e.madd(n.nf(), f(e, -HI), x())));
  return { pre: [...n.pre, r.set], r: r.get, t: n.t };
}

/** 2(e^r - 1)/r: the flushing exp's quotient, scaled by 2 (exact) for its single 2^(n-1) step. */
const EXPM1_R2 = EXPM1_R.map((c) => 2 * c);
/** 2·2^r, for vExp2Ftz's 2^(n-1) step. */
const EXP2_R2 = EXP2_R.map((c) => 2 * c);

/**
 * e^x with tiny results flushed, ≤ 2 ulp: +0 below EXP_FTZ_BELOW (results under 1.7e-38, the
 * normal range's bottom third and the subnormals), overflow to +Inf above 88.72. The scale is
 * one exact multiply by 2^(n-1), built with one shift, against the full exp's two half steps
 * that keep gradual underflow: three fewer FP-port ops a vector (softmax, attention: their
 * arguments are <= 0 and what they flush is below any sum's ulp). No mask either: x is clamped
 * to -87.5 from below, and wherever n = -126 (x below the cutoff, -Infinity included) the
 * shifted exponent field is 0, so the scale is +0 and the multiply gives +0 without an
 * underflow (two ops fewer than zeroBelow's compare and two selections; NaN passes the clamp).
 */
export function vExpFtz(e: Emit, x: Ref, nonPositive = false): Ref {
  const m = e.m;
  // n <= 128, so 2^(n-1) stays finite; 2e^r · 2^127 overflows on its own past 88.72. An
  // argument known to be <= 0 or NaN (x - max(x), see codegen/tile.ts) needs no upper clamp.
  const xc = e.bind(v128, nonPositive ? m.f32x4.pmax(x, f(e, -87.5)) : clamp(e, x, -87.5, 88.75));
  const { pre, r, t } = lnReduce(e, xc.get, 126);
  const p2 = e.madd(r(), poly(e, r, EXPM1_R2), f(e, 2));
  return m.block(null, [xc.set, ...pre, scale1(e, p2, t)], v128);
}

/** 2^x, ≤ 2 ulp; +Inf from 128, gradual underflow to 0 below -150. */
export function vExp2(e: Emit, x: Ref): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  const z = zeroBelow(e, X.get, -151);
  const xc = e.bind(v128, m.f32x4.pmin(z.x(), f(e, 129)));
  const n = roundMagic(e, xc.get, 1, 254);
  // r in [-0.5, 0.5] exactly.
  const r = e.bind(v128, m.f32x4.sub(xc.get(), n.nf()));
  // Horner here: Estrin's extra rounding measured worse in exp2's subnormal range.
  const p = poly(e, r.get, EXP2_R);
  return m.block(null, [X.set, ...z.pre, xc.set, ...n.pre, r.set, z.clear(scale2(e, p, n.t))], v128);
}

/** 2^x with tiny results flushed (exp2(x, true)), ≤ 2 ulp: +0 below EXP2_FTZ_BELOW, as vExpFtz (clamped to -126 from below); +Inf from 128. */
export function vExp2Ftz(e: Emit, x: Ref): Ref {
  const m = e.m;
  // n <= 128: 2·2^r · 2^127 overflows on its own from 128.
  const xc = e.bind(v128, clamp(e, x, -126, 128.5));
  const n = roundMagic(e, xc.get, 1, 126);
  const r = e.bind(v128, m.f32x4.sub(xc.get(), n.nf()));
  const p2 = poly(e, r.get, EXP2_R2);
  return m.block(null, [xc.set, ...n.pre, r.set, scale1(e, p2, n.t)], v128);
}

/**
 * (ln(1+f) - f + f²/2) / f³ on f in [sqrt(1/2) - 1, sqrt(2) - 1], fitted in f64 at load time
 * (truncation error < 0.07 ulp of the log).
 */
const LOG1P_G = fitPoly((t) => {
  if (Math.abs(t) < 1e-3) {
    let s = 0;
    for (let n = 3; n < 12; n++) s += ((n % 2 ? 1 : -1) * t ** (n - 3)) / n;
    return s;
  }
  return (Math.log1p(t) - t + (t * t) / 2) / (t * t * t);
}, Math.SQRT1_2 - 1, Math.SQRT2 - 1, 8);

/**
 * Natural log split as x = (1 + f) * 2^k with 1 + f in [sqrt(1/2), sqrt(2)): returns k, f (exact)
 * and the correction c with ln(1+f) = f + c, bound to locals, and the special-case fix-up
 * (0 -> -Inf, <0 -> NaN, Inf -> Inf, NaN -> NaN). No division: c = f²(f·g(f) - 1/2).
 */
function logParts(e: Emit, x: Ref): { pre: Ref[]; k: () => Ref; f: () => Ref; c: () => Ref; fix: (r: Ref) => Ref } {
  const m = e.m;
  const X = e.bind(v128, x);
  // Subnormals: scale by 2^23 first so the exponent field is meaningful.
  const tiny = e.bind(v128, m.f32x4.lt(X.get(), f(e, 2 ** -126)));
  const xs = e.bind(v128, m.v128.bitselect(m.f32x4.mul(X.get(), f(e, 2 ** 23)), X.get(), tiny.get()));
  const bits = xs.get;
  const kRaw = m.i32x4.sub(m.i32x4.shr_u(bits(), m.i32.const(23)), i(e, 127));
  const mant0 = e.bind(v128, m.v128.or(m.v128.and(bits(), i(e, 0x7fffff)), i(e, 0x3f800000)));
  const big = e.bind(v128, m.f32x4.gt(mant0.get(), f(e, Math.SQRT2)));
  const mant = m.v128.bitselect(m.f32x4.mul(mant0.get(), f(e, 0.5)), mant0.get(), big.get());
  // k = exponent (+1 if mant was halved, -23 for scaled subnormals); big is -1 (all ones) when set.
  const kInt = m.i32x4.sub(m.i32x4.sub(kRaw, big.get()), m.v128.and(tiny.get(), i(e, 23)));
  const k = e.bind(v128, m.f32x4.convert_i32x4_s(kInt));
  // mant - 1 is exact (Sterbenz), so the only roundings are in the small correction and the sums.
  const fv = e.bind(v128, m.f32x4.sub(mant, f(e, 1)));
  const f2 = e.bind(v128, m.f32x4.mul(fv.get(), fv.get()));
  const inner = e.madd(fv.get(), poly(e, fv.get, LOG1P_G), f(e, -0.5));
  const c = e.bind(v128, m.f32x4.mul(f2.get(), inner));
  const fix = (r: Ref): Ref => {
    const zero = m.f32x4.eq(X.get(), f(e, 0));
    const neg = m.f32x4.lt(X.get(), f(e, 0));
    const inf = m.f32x4.eq(X.get(), f(e, Infinity));
    let out = m.v128.bitselect(f(e, -Infinity), r, zero);
    out = m.v128.bitselect(f(e, NaN), out, neg);
    out = m.v128.bitselect(f(e, Infinity), out, inf);
    // NaN inputs: every compare above was false; hand the NaN itself back.
    return m.v128.bitselect(X.get(), out, m.f32x4.ne(X.get(), X.get()));
  };
  return { pre: [X.set, tiny.set, xs.set, mant0.set, big.set, k.set, fv.set, f2.set, c.set], k: k.get, f: fv.get, c: c.get, fix };
}

/** ln x, ≤ 2 ulp for positive normal and subnormal x (measured 0.92). */
export function vLog(e: Emit, x: Ref): Ref {
  const m = e.m;
  const p = logParts(e, x);
  const HI = 0.693359375;
  const LO = Math.LN2 - HI;
  // k*HI is exact (k has at most 8 bits); the rounding errors go into the small terms.
  const r = e.madd(p.k(), f(e, HI), m.f32x4.add(p.f(), e.madd(p.k(), f(e, LO), p.c())));
  return m.block(null, [...p.pre, p.fix(r)], v128);
}

/** log2 x, ≤ 2 ulp for positive normal and subnormal x. */
export function vLog2(e: Emit, x: Ref): Ref {
  const m = e.m;
  const p = logParts(e, x);
  // log2(1+f) = f + (f·(log2e - 1) + c·log2e): f is exact, so only the correction rounds
  // before the last two sums.
  const lo = e.madd(p.f(), f(e, Math.LOG2E - 1), m.f32x4.mul(p.c(), f(e, Math.LOG2E)));
  const r = m.f32x4.add(p.k(), m.f32x4.add(p.f(), lo));
  return m.block(null, [...p.pre, p.fix(r)], v128);
}

/** Sign bit of `x` copied onto non-negative `mag`. */
function withSign(e: Emit, mag: Ref, x: Ref): Ref {
  return e.m.v128.or(mag, e.m.v128.and(x, i(e, 0x80000000)));
}

/** Coefficients of (e^r - 1) / r = sum r^k / (k+1)!, for |r| <= ln2/2. */
const EXPM1_OVER_R = [1, 1 / 2, 1 / 6, 1 / 24, 1 / 120, 1 / 720, 1 / 5040, 1 / 40320];

/**
 * tanh x = -expm1(-2|x|) / (2 + expm1(-2|x|)) with its sign: one branch, no cancellation, so
 * it is accurate from the subnormal range up (≤ 4 ulp); ±1 beyond |x| = 10; tanh(-0) = -0.
 */
export function vTanh(e: Emit, x: Ref): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  // pmin keeps a NaN (it is the first operand); tanh(10) already rounds to 1 in f32.
  const u = e.bind(v128, m.f32x4.mul(m.f32x4.pmin(e.fabs(X.get()), f(e, 10)), f(e, -2)));
  const n = roundMagic(e, u.get, Math.LOG2E, 127);
  const HI = 0.693359375;
  const LO = Math.LN2 - HI;
  const r = e.bind(v128, e.madd(n.nf(), f(e, -LO), e.madd(n.nf(), f(e, -HI), u.get())));
  const q = m.f32x4.mul(r.get(), estrin(e, r.get, EXPM1_OVER_R));
  // expm1(u) = 2^n (1 + q) - 1 = 2^n q + (2^n - 1); n >= -29, so 2^n is a normal f32, and
  // t's low bits hold n + 127: shifted up they are 2^n's exponent field (the rest drops off).
  const s2 = e.bind(v128, m.i32x4.shl(n.t(), m.i32.const(23)));
  const em = e.bind(v128, e.madd(s2.get(), q, m.f32x4.sub(s2.get(), f(e, 1))));
  // em <= 0; abs (not neg) so that x = +0 gives +0, not -0.
  const t = m.f32x4.div(e.fabs(em.get()), m.f32x4.add(em.get(), f(e, 2)));
  return m.block(null, [X.set, u.set, ...n.pre, r.set, s2.set, em.set, withSign(e, t, X.get())], v128);
}

/** 1 / (1 + e^-x), ≤ 4 ulp down to the subnormal tail (x < -87 never overflows e^-x); 0 at -Inf, 1 at +Inf. */
export function vSigmoid(e: Emit, x: Ref): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  // t = e^-|x| <= 1: sigmoid is 1/(1+t) for x >= 0 and t/(1+t) below.
  const t = e.bind(v128, vExp(e, e.fneg(e.fabs(X.get()))));
  const num = m.v128.bitselect(f(e, 1), t.get(), m.f32x4.ge(X.get(), f(e, 0)));
  const r = m.f32x4.div(num, m.f32x4.add(f(e, 1), t.get()));
  // NaN: ge is false, so t/(1+t) = NaN already.
  return m.block(null, [X.set, t.set, r], v128);
}

/**
 * erf(x)/x - 1 as a polynomial q in s = x² on [0, 1] (fitted in f64 at load time; degree 6
 * truncates at 0.02 ulp of erf, 0.17 with its coefficients rounded to f32; degree 5 at 0.63).
 * erf x = x + x·q: q lies in [-0.16, 0.13], so its roundings are 2^-26-sized instead of the
 * 2^-24 of erf(x)/x ≈ 1.1 itself, and the last multiply-add rounds once (twice without FMA).
 */
const ERF_SMALL = fitPoly((s2) => (s2 === 0 ? 2 / Math.sqrt(Math.PI) - 1 : erf64(Math.sqrt(s2)) / Math.sqrt(s2) - 1), 0, 1, ERF_SMALL_DEG);

/** erfc(x)·e^{x²} on [1, 4] as a polynomial in t = (x - 2.5) / 1.5 in [-1, 1]. */
const ERFC_G = fitPoly((t) => {
  const x = 2.5 + 1.5 * t;
  return erfc64(x) * Math.exp(x * x);
}, -1, 1, ERFC_DEG);

/** erf x, ≤ 4 ulp; ±1 beyond |x| = 4; erf(-0) = -0. */
export function vErf(e: Emit, x: Ref): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  const ax = e.bind(v128, e.fabs(X.get()));
  const x2 = e.bind(v128, m.f32x4.mul(X.get(), X.get()));
  // |x| < 1: x + x·q(x²). The former x·(erf(x)/x), degree 8, rounded at the scale of a value
  // near 1.05 four times, each nearly a result ulp where erf is just below 0.5: 4.25 ulp at
  // x = 0.4739. Now 1.4 at most, in 9 ops with FMA (from 12) and 16 without (from 20).
  const small = e.madd(X.get(), estrin(e, x2.get, ERF_SMALL), X.get());
  // 1 <= |x| < 4: 1 - e^{-x²} g(t). e^{-x²} g <= erfc(1) = 0.16 there, so g's error shrinks
  // sixfold in the result and a short polynomial does.
  const t = e.bind(v128, m.f32x4.mul(m.f32x4.sub(m.f32x4.pmin(ax.get(), f(e, 4)), f(e, 2.5)), f(e, 1 / 1.5)));
  const g = estrin(e, t.get, ERFC_G);
  const mid = m.f32x4.sub(f(e, 1), m.f32x4.mul(vExp(e, e.fneg(x2.get())), g));
  const midOrOne = m.v128.bitselect(f(e, 1), mid, m.f32x4.ge(ax.get(), f(e, 4)));
  const out = m.v128.bitselect(small, withSign(e, midOrOne, X.get()), m.f32x4.lt(ax.get(), f(e, 1)));
  // NaN: every compare is false, so `mid` (NaN) is chosen and the sign OR keeps it NaN.
  return m.block(null, [X.set, ax.set, x2.set, t.set, out], v128);
}

/**
 * GELU's gates t (GELU = x/2 · (1 + t)): erf(x/√2) and tanh(√(2/π)(x + 0.044715x³)) as
 * x·P(x²)/Q(x²) on [0, X0], fitted for absolute error by `npm run fit:gelu` (bench/fit-gelu.ts,
 * which also prints the f32 errors); pinned just above 1 at X0, so that GELU saturates there.
 */
const GELU_GATES = {
  gelu: {
    X0: 5.6,
    P: [0.7978849411010742, 0.0615285262465477, 0.008943610824644566, 0.0002708646934479475, 0.000011897945114469621, 4.811858289599513e-8],
    Q: [1, 0.24378357827663422, 0.02683640643954277, 0.001696024788543582, 0.00006203575321706012, 0.000001206056026603619],
  },
  // [4/5], as many Horner steps as the [5/4] before it (4.18 at x = -2.4133 without FMA):
  // fitGate(t, 5, 4, 5) (`npm run fit:gelu` with dp 4, dq 5), its P[4] (9.302866601501592e-6)
  // raised one f32 ulp, without which the f32 quotient at x = -X0 fell one unit short of |h|
  // (GELU(-5) gave -2.4e-7, not 0).
  geluTanh: {
    X0: 5,
    P: [0.797883927822113, 0.07745618373155594, 0.007621262222528458, 0.0003623760712798685, 0.000009302867510996293],
    Q: [1, 0.26456353068351746, 0.02830118127167225, 0.0015380524564534426, 0.00007768676005071029, 4.390282697386283e-7],
  },
} as const;

/**
 * Promised error of the fused GELUs (both forms, FMA or not): within `ulp` ulp of the exact
 * value for x >= 0; for x < 0, where GELU is the small difference x/2 - |x|/2·t, within
 * `absNeg`·2^-24·|x| (as the f32 formula x/2·(1 + t) itself is) plus the result's rounding.
 * Exactly x above X0, exactly 0 below -X0; GELU(-Infinity) is NaN, as that formula gives.
 * Measured over every f32 with |x| in [2^-7, X0], with FMA / without: exact ([5/5] gate)
 * 3.22 / 3.62 ulp and 3.25 / 3.68 (x < 0); tanh form ([4/5]) 3.72 / 3.68 ulp and 3.73 / 3.71.
 * (The sparser sweep these figures once came from gave 2.4-3.3 and missed the tanh form's 4.18
 * at x = -2.4133 with its former [5/4] gate.)
 */
export const GELU_BOUND = { ulp: 4, absNeg: 4 } as const;

/**
 * h + min(x²·(P/2)(s)/Q(s), |h|) with h = x/2 and s = min(x², X0²), which is x/2 + |x|/2 ·
 * min(t, 1) for the gate t = |x|·P/Q: GELU in 15-16 FP ops (10-11 of them Horner steps) and no
 * exp. The loop is bound by the two FP ports (measured: ~7.5 cycles a vector for the tanh
 * form's 15), so each op dropped counts; folding |h| into the numerator saved the gate's clamp
 * to 1, its |x| and the final multiply-add (1t: 10.8 -> 12.2 GB/s). Past X0 the clamped s keeps
 * the quotient at its value at X0 times (x/X0)² >= |h|, so the min saturates it without
 * clamping x; NaN passes through.
 */
function geluFused(e: Emit, x: Ref, gate: (typeof GELU_GATES)[keyof typeof GELU_GATES]): Ref {
  const m = e.m;
  const X = e.bind(v128, x);
  const x2 = e.bind(v128, m.f32x4.mul(X.get(), X.get()));
  const s = e.bind(v128, m.f32x4.pmin(x2.get(), f(e, Math.fround(gate.X0 * gate.X0))));
  // |h|·t = x²·(P/2)(s)/Q(s); halving P's coefficients is exact.
  const q = m.f32x4.div(m.f32x4.mul(x2.get(), poly(e, s.get, gate.P.map((c) => c / 2))), poly(e, s.get, gate.Q));
  const h = e.bind(v128, m.f32x4.mul(X.get(), f(e, 0.5)));
  return m.block(null, [X.set, x2.set, s.set, h.set, m.f32x4.add(h.get(), m.f32x4.pmin(q, e.fabs(h.get())))], v128);
}

/**
 * Promised absolute error of the fused GELU derivatives (both forms, FMA or not; the
 * derivative lies in [-0.17, 1.13]): `abs`·2^-24. Measured with FMA / without: exact form
 * 3.4 / 4.5 (test/math.test.ts; `npm run fit:gelu`'s dense f32 simulation: 3.8 / 4.7), tanh
 * form 3.5 / 3.5.
 */
export const GELU_GRAD_BOUND = { abs: 6 } as const;

/**
 * GELU's derivative Φ(x) + x·φ(x) as 1/2 + x·P(x²)/(2·Q(x²)) on |x| < X0: the odd function
 * 2·gelu'(x) - 1 = erf(x/√2) + x·√(2/π)·e^(-x²/2) as a [7/6] rational, fitted by `npm run fit:gelu`
 * (bench/fit-gelu.ts) like the gates. Past X0, gelu' is 1 or 0 within 0.6·2^-24.
 */
const GELU_GRAD_RATIONAL = {
  X0: 6,
  P: [1.5957691669464111, -0.0389845110476017, 0.027259960770606995, 0.0005164730828255415, 0.00006422840669983998, 0.0000020917154870403465, 2.4694582378970154e-8, -5.596008725849977e-11],
  Q: [1, 0.308903306722641, 0.045051030814647675, 0.004076618701219559, 0.00025187229039147496, 0.000010498853043827694, 3.4063421594510146e-7],
};

/**
 * Φ(x) + x·φ(x) within GELU_GRAD_BOUND: the rational above, with no exp (GELU's backward over
 * 4M f32, side by side, 2 threads: 5.1 -> 2.8 ms against the gate and an exp; one thread 5.9 ->
 * 3.5), then exactly 1 or 0 where |x| >= X0
 * (±Infinity included; there the quotient may be Inf/Inf, which the select drops); NaN
 * passes through, as every compare is false for it.
 */
export function vGeluGrad(e: Emit, x: Ref): Ref {
  const m = e.m;
  const g = GELU_GRAD_RATIONAL;
  const X = e.bind(v128, x);
  const s = e.bind(v128, m.f32x4.mul(X.get(), X.get()));
  // Halving P's coefficients is exact.
  const inner = m.f32x4.add(f(e, 0.5), m.f32x4.div(m.f32x4.mul(X.get(), poly(e, s.get, g.P.map((c) => c / 2))), poly(e, s.get, g.Q)));
  const far = m.f32x4.ge(e.fabs(X.get()), f(e, g.X0));
  const step = m.v128.and(m.f32x4.gt(X.get(), f(e, 0)), f(e, 1));
  return m.block(null, [X.set, s.set, m.v128.bitselect(step, inner, far)], v128);
}

/**
 * d/dx of GELU's tanh form, within GELU_GRAD_BOUND: with z = 2u(x), S = σ(z) = (1 + t)/2 and
 * 1 - t² = 4S(1 - S), it is S + 2x·u'(x)·E·D² for E = e^-|z|, D = 1/(1 + E), S = D or E·D
 * by z's sign. Not from the rational gate: near |x| = 5 the second term multiplies 1 - t² by
 * ~10, so t's few 2^-24 would become ~100; E keeps 1 - S relatively exact.
 */
export function vGeluTanhGrad(e: Emit, x: Ref): Ref {
  const m = e.m;
  const c = 0.7978845608028654, b = 0.044715;
  // Past |x| = 20, E = 0 and S is exactly 0 or 1: the clamp keeps ±Inf from giving Inf·0.
  const xc = e.bind(v128, clamp(e, x, -20, 20));
  const x2 = e.bind(v128, m.f32x4.mul(xc.get(), xc.get()));
  const z = e.bind(v128, m.f32x4.mul(xc.get(), e.madd(x2.get(), f(e, 2 * c * b), f(e, 2 * c))));
  const E = e.bind(v128, vExpFtz(e, e.fneg(e.fabs(z.get()))));
  const D = e.bind(v128, m.f32x4.div(f(e, 1), m.f32x4.add(E.get(), f(e, 1))));
  const ED = e.bind(v128, m.f32x4.mul(E.get(), D.get()));
  const S = m.v128.bitselect(D.get(), ED.get(), m.f32x4.ge(z.get(), f(e, 0)));
  // 2x·u'(x) = xc · (2c + 6cb·x²).
  const k = m.f32x4.mul(xc.get(), e.madd(x2.get(), f(e, 6 * c * b), f(e, 2 * c)));
  return m.block(null, [xc.set, x2.set, z.set, E.set, D.set, ED.set, e.madd(m.f32x4.mul(k, ED.get()), D.get(), S)], v128);
}

/** GELU, x·Φ(x), within GELU_BOUND. */
export function vGelu(e: Emit, x: Ref): Ref {
  return geluFused(e, x, GELU_GATES.gelu);
}

/** GELU's tanh form, x/2 · (1 + tanh(√(2/π)(x + 0.044715x³))), within GELU_BOUND. */
export function vGeluTanh(e: Emit, x: Ref): Ref {
  return geluFused(e, x, GELU_GATES.geluTanh);
}

/** 1 / sqrt(x), ≤ 2 ulp (one correctly rounded sqrt and one division). */
export function vRsqrt(e: Emit, x: Ref): Ref {
  return e.m.f32x4.div(f(e, 1), e.m.f32x4.sqrt(x));
}

/** Chebyshev coefficients of `fn` on [a, b] (degree n-1), by interpolation at Chebyshev nodes. */
function chebyshev(fn: (x: number) => number, a: number, b: number, n: number): number[] {
  const N = 48;
  const vals = Array.from({ length: N }, (_, k) => fn((a + b) / 2 + ((b - a) / 2) * Math.cos((Math.PI * (k + 0.5)) / N)));
  return Array.from({ length: n }, (_, j) => {
    let s = 0;
    for (let k = 0; k < N; k++) s += vals[k]! * Math.cos((j * Math.PI * (k + 0.5)) / N);
    return (2 * s) / N;
  });
}

/**
 * Monomial coefficients (lowest first) of the degree-`deg` Chebyshev interpolant of `fn` on
 * [a, b]; near-minimax, and in monomial form so Horner can evaluate it without rescaling.
 */
function fitPoly(fn: (x: number) => number, a: number, b: number, deg: number): number[] {
  const c = chebyshev(fn, a, b, deg + 1);
  c[0] = c[0]! / 2;
  // T_j(t) as monomials in t, then t = al*x + be expanded.
  const T: number[][] = [[1], [0, 1]];
  for (let j = 2; j <= deg; j++) {
    const n = new Array<number>(j + 1).fill(0);
    T[j - 1]!.forEach((v, q) => (n[q + 1]! += 2 * v));
    T[j - 2]!.forEach((v, q) => (n[q]! -= v));
    T.push(n);
  }
  const inT = new Array<number>(deg + 1).fill(0);
  c.forEach((cj, j) => T[j]!.forEach((v, q) => (inT[q]! += cj * v)));
  const al = 2 / (b - a);
  const be = -(a + b) / (b - a);
  const out = new Array<number>(deg + 1).fill(0);
  let pw = [1];
  for (let q = 0; q <= deg; q++) {
    pw.forEach((v, k) => (out[k]! += inT[q]! * v));
    const n = new Array<number>(pw.length + 1).fill(0);
    pw.forEach((v, k) => {
      n[k]! += v * be;
      n[k + 1]! += v * al;
    });
    pw = n;
  }
  return out;
}
