/**
 * @fileoverview Elementwise op emitters: one registry entry per IR function, each able to emit
 * a scalar form (one element in an i32/f32 local) and a vector form (four lanes along the last
 * axis in a v128). Conventions: scalar bool is i32 0/1; vector bool is an i32x4 mask of 0/-1.
 */
import binaryen from 'binaryen';
import type { BinaryFn, DType, UnaryFn } from '../src/ir/ir.js';
import type { Emit, Ref } from './emit.js';
import { vErf, vExp, vExpFtz, vExp2, vExp2Ftz, vGelu, vGeluGrad, vGeluTanh, vGeluTanhGrad, vLog, vLog2, vRsqrt, vSigmoid, vTanh } from './math.js';

export type Mode = 'v' | 's';

/** The wasm type of a value of `dtype` in `mode`. */
export function wasmType(dtype: DType, mode: Mode): number {
  if (mode === 'v') return binaryen.v128;
  return dtype === 'f32' ? binaryen.f32 : binaryen.i32;
}

/** Evaluate `x` once (it may be an arbitrary expression) and hand back a getter. */
function once(e: Emit, type: number, x: Ref): { pre: Ref; get: () => Ref } {
  const b = e.bind(type, x);
  return { pre: b.set, get: b.get };
}

/** Wrap a vector math function so it also serves one scalar (splat, compute, take lane 0). */
function scalarViaVector(e: Emit, f: (e: Emit, x: Ref) => Ref, x: Ref): Ref {
  return e.m.f32x4.extract_lane(f(e, e.m.f32x4.splat(x)), 0);
}

const VMATH: Partial<Record<UnaryFn, (e: Emit, x: Ref) => Ref>> = {
  exp: vExp, expFtz: vExpFtz, exp2: vExp2, exp2Ftz: vExp2Ftz, log: vLog, log2: vLog2, tanh: vTanh, sigmoid: vSigmoid, erf: vErf, rsqrt: vRsqrt, gelu: vGelu, geluTanh: vGeluTanh, geluGrad: vGeluGrad, geluTanhGrad: vGeluTanhGrad,
};

/** Unary op on a value of dtype `dt` (the operand's dtype; the result has the same dtype). */
export function emitUnary(e: Emit, fn: UnaryFn, dt: DType, mode: Mode, x: Ref): Ref {
  const m = e.m;
  const vm = VMATH[fn];
  if (vm) return mode === 'v' ? vm(e, x) : scalarViaVector(e, vm, x);
  if (dt === 'f32') {
    const t = mode === 'v' ? m.f32x4 : m.f32;
    switch (fn) {
      case 'neg': return mode === 'v' ? e.fneg(x) : t.neg(x);
      case 'abs': return mode === 'v' ? e.fabs(x) : t.abs(x);
      case 'floor': return t.floor(x);
      case 'ceil': return t.ceil(x);
      case 'sqrt': return t.sqrt(x);
      default: break;
    }
  } else if (dt === 'i32') {
    if (mode === 'v') {
      switch (fn) {
        case 'neg': return m.i32x4.neg(x);
        case 'abs': return m.i32x4.abs(x);
        case 'not': return m.v128.not(x);
        default: break;
      }
    } else {
      switch (fn) {
        case 'neg': return m.i32.sub(m.i32.const(0), x);
        case 'not': return m.i32.xor(x, m.i32.const(-1));
        case 'abs': {
          const a = once(e, binaryen.i32, x);
          return m.block(null, [a.pre, m.select(m.i32.lt_s(a.get(), m.i32.const(0)), m.i32.sub(m.i32.const(0), a.get()), a.get())], binaryen.i32);
        }
        default: break;
      }
    }
  } else if (fn === 'not') {
    return mode === 'v' ? m.v128.not(x) : m.i32.eqz(x);
  }
  throw new Error(`codegen: unary ${fn} on ${dt} is not supported`);
}

type Bin = (e: Emit, a: Ref, b: Ref) => Ref;

/** Lane-by-lane fallback for i32 ops with no SIMD form (div, rem, per-lane shifts). */
function perLaneI32(e: Emit, a: Ref, b: Ref, op: (x: Ref, y: Ref) => Ref): Ref {
  const m = e.m;
  const A = once(e, binaryen.v128, a);
  const B = once(e, binaryen.v128, b);
  let r = m.i32x4.splat(op(m.i32x4.extract_lane(A.get(), 0), m.i32x4.extract_lane(B.get(), 0)));
  for (let l = 1; l < 4; l++) r = m.i32x4.replace_lane(r, l, op(m.i32x4.extract_lane(A.get(), l), m.i32x4.extract_lane(B.get(), l)));
  return m.block(null, [A.pre, B.pre, r], binaryen.v128);
}

/** f32 remainder with JS `%` semantics, computed in f64 (exact for |x/y| < 2^52). */
function fmodScalar(e: Emit, a: Ref, b: Ref): Ref {
  const m = e.m;
  const x = once(e, binaryen.f64, m.f64.promote(a));
  const y = once(e, binaryen.f64, m.f64.promote(b));
  const q = m.f64.trunc(m.f64.div(x.get(), y.get()));
  // Infinite divisor keeps x (JS: 5 % Infinity === 5); the f64 formula would give NaN.
  const r = m.select(
    m.f64.eq(m.f64.abs(y.get()), m.f64.const(Infinity)),
    x.get(),
    m.f64.copysign(m.f64.sub(x.get(), m.f64.mul(q, y.get())), x.get()),
  );
  return m.block(null, [x.pre, y.pre, m.f32.demote(r)], binaryen.f32);
}

function fmodVector(e: Emit, a: Ref, b: Ref): Ref {
  const m = e.m;
  const A = once(e, binaryen.v128, a);
  const B = once(e, binaryen.v128, b);
  let r = m.f32x4.splat(fmodScalar(e, m.f32x4.extract_lane(A.get(), 0), m.f32x4.extract_lane(B.get(), 0)));
  for (let l = 1; l < 4; l++) {
    r = m.f32x4.replace_lane(r, l, fmodScalar(e, m.f32x4.extract_lane(A.get(), l), m.f32x4.extract_lane(B.get(), l)));
  }
  return m.block(null, [A.pre, B.pre, r], binaryen.v128);
}

/** Scalar bool results are 0/1: comparisons already give that. */
const F32S: Partial<Record<BinaryFn, Bin>> = {
  add: (e, a, b) => e.m.f32.add(a, b), sub: (e, a, b) => e.m.f32.sub(a, b),
  mul: (e, a, b) => e.m.f32.mul(a, b), div: (e, a, b) => e.m.f32.div(a, b),
  min: (e, a, b) => e.m.f32.min(a, b), max: (e, a, b) => e.m.f32.max(a, b), rem: fmodScalar,
  lt: (e, a, b) => e.m.f32.lt(a, b), le: (e, a, b) => e.m.f32.le(a, b), gt: (e, a, b) => e.m.f32.gt(a, b),
  ge: (e, a, b) => e.m.f32.ge(a, b), eq: (e, a, b) => e.m.f32.eq(a, b), ne: (e, a, b) => e.m.f32.ne(a, b),
};
const F32V: Partial<Record<BinaryFn, Bin>> = {
  add: (e, a, b) => e.m.f32x4.add(a, b), sub: (e, a, b) => e.m.f32x4.sub(a, b),
  mul: (e, a, b) => e.m.f32x4.mul(a, b), div: (e, a, b) => e.m.f32x4.div(a, b),
  min: (e, a, b) => e.m.f32x4.min(a, b), max: (e, a, b) => e.m.f32x4.max(a, b), rem: fmodVector,
  lt: (e, a, b) => e.m.f32x4.lt(a, b), le: (e, a, b) => e.m.f32x4.le(a, b), gt: (e, a, b) => e.m.f32x4.gt(a, b),
  ge: (e, a, b) => e.m.f32x4.ge(a, b), eq: (e, a, b) => e.m.f32x4.eq(a, b), ne: (e, a, b) => e.m.f32x4.ne(a, b),
};
const I32S: Partial<Record<BinaryFn, Bin>> = {
  add: (e, a, b) => e.m.i32.add(a, b), sub: (e, a, b) => e.m.i32.sub(a, b), mul: (e, a, b) => e.m.i32.mul(a, b),
  div: divI32, rem: (e, a, b) => e.m.i32.rem_s(a, b),
  min: (e, a, b) => minMaxI32(e, a, b, 'min'), max: (e, a, b) => minMaxI32(e, a, b, 'max'),
  and: (e, a, b) => e.m.i32.and(a, b), or: (e, a, b) => e.m.i32.or(a, b), xor: (e, a, b) => e.m.i32.xor(a, b),
  shl: (e, a, b) => e.m.i32.shl(a, b), shr: (e, a, b) => e.m.i32.shr_s(a, b), shru: (e, a, b) => e.m.i32.shr_u(a, b),
  lt: (e, a, b) => e.m.i32.lt_s(a, b), le: (e, a, b) => e.m.i32.le_s(a, b), gt: (e, a, b) => e.m.i32.gt_s(a, b),
  ge: (e, a, b) => e.m.i32.ge_s(a, b), eq: (e, a, b) => e.m.i32.eq(a, b), ne: (e, a, b) => e.m.i32.ne(a, b),
};
const I32V: Partial<Record<BinaryFn, Bin>> = {
  add: (e, a, b) => e.m.i32x4.add(a, b), sub: (e, a, b) => e.m.i32x4.sub(a, b), mul: (e, a, b) => e.m.i32x4.mul(a, b),
  div: (e, a, b) => perLaneI32(e, a, b, (x, y) => divI32(e, x, y)),
  rem: (e, a, b) => perLaneI32(e, a, b, (x, y) => e.m.i32.rem_s(x, y)),
  min: (e, a, b) => e.m.i32x4.min_s(a, b), max: (e, a, b) => e.m.i32x4.max_s(a, b),
  and: (e, a, b) => e.m.v128.and(a, b), or: (e, a, b) => e.m.v128.or(a, b), xor: (e, a, b) => e.m.v128.xor(a, b),
  shl: (e, a, b) => perLaneI32(e, a, b, (x, y) => e.m.i32.shl(x, y)),
  shr: (e, a, b) => perLaneI32(e, a, b, (x, y) => e.m.i32.shr_s(x, y)),
  shru: (e, a, b) => perLaneI32(e, a, b, (x, y) => e.m.i32.shr_u(x, y)),
  lt: (e, a, b) => e.m.i32x4.lt_s(a, b), le: (e, a, b) => e.m.i32x4.le_s(a, b), gt: (e, a, b) => e.m.i32x4.gt_s(a, b),
  ge: (e, a, b) => e.m.i32x4.ge_s(a, b), eq: (e, a, b) => e.m.i32x4.eq(a, b), ne: (e, a, b) => e.m.i32x4.ne(a, b),
};
const BOOLS: Partial<Record<BinaryFn, Bin>> = {
  and: (e, a, b) => e.m.i32.and(a, b), or: (e, a, b) => e.m.i32.or(a, b), xor: (e, a, b) => e.m.i32.xor(a, b),
  eq: (e, a, b) => e.m.i32.eq(a, b), ne: (e, a, b) => e.m.i32.ne(a, b),
};
const BOOLV: Partial<Record<BinaryFn, Bin>> = {
  and: (e, a, b) => e.m.v128.and(a, b), or: (e, a, b) => e.m.v128.or(a, b), xor: (e, a, b) => e.m.v128.xor(a, b),
  eq: (e, a, b) => e.m.i32x4.eq(a, b), ne: (e, a, b) => e.m.i32x4.ne(a, b),
};

/**
 * i32 division truncating toward zero; x / 0 traps (like the interpreter's error), and
 * -2^31 / -1 wraps to -2^31 as in the interpreter instead of trapping as i32.div_s would.
 */
function divI32(e: Emit, a: Ref, b: Ref): Ref {
  const m = e.m;
  const A = once(e, binaryen.i32, a);
  const B = once(e, binaryen.i32, b);
  const minusOne = (): Ref => m.i32.eq(B.get(), m.i32.const(-1));
  const q = m.i32.div_s(A.get(), m.select(minusOne(), m.i32.const(1), B.get()));
  return m.block(null, [A.pre, B.pre, m.select(minusOne(), m.i32.sub(m.i32.const(0), A.get()), q)], binaryen.i32);
}

function minMaxI32(e: Emit, a: Ref, b: Ref, which: 'min' | 'max'): Ref {
  const m = e.m;
  const A = once(e, binaryen.i32, a);
  const B = once(e, binaryen.i32, b);
  const pickA = which === 'min' ? m.i32.lt_s(A.get(), B.get()) : m.i32.gt_s(A.get(), B.get());
  return m.block(null, [A.pre, B.pre, m.select(pickA, A.get(), B.get())], binaryen.i32);
}

/**
 * Binary op whose operands have dtype `dt`. For i32 shifts in vector form with a lane-invariant
 * count, pass `scalarCount` to use the single SIMD shift instead of four scalar ones.
 */
export function emitBinary(e: Emit, fn: BinaryFn, dt: DType, mode: Mode, a: Ref, b: Ref, scalarCount?: Ref): Ref {
  if (scalarCount !== undefined && mode === 'v' && dt === 'i32') {
    if (fn === 'shl') return e.m.i32x4.shl(a, scalarCount);
    if (fn === 'shr') return e.m.i32x4.shr_s(a, scalarCount);
    if (fn === 'shru') return e.m.i32x4.shr_u(a, scalarCount);
  }
  const table = dt === 'f32' ? (mode === 'v' ? F32V : F32S) : dt === 'i32' ? (mode === 'v' ? I32V : I32S) : mode === 'v' ? BOOLV : BOOLS;
  const f = table[fn];
  if (!f) throw new Error(`codegen: binary ${fn} on ${dt} is not supported`);
  return f(e, a, b);
}

/**
 * f32 `min`/`max` of `x` and the constant `k`, or undefined when the general form is needed.
 * wasm's f32x4.min/max propagate NaN and order -0 below +0, which V8 expands to about eight
 * instructions on x64; against a constant, pmin/pmax (one instruction) give the same result:
 * `pmax(x, k)` is `x < k ? k : x`, so a NaN x comes back as itself, and only max(-0, +0) differs
 * (pmax keeps -0; adding +0 turns it into +0 and changes nothing else). min against -0 and a NaN
 * constant keep the general form.
 */
export function emitMinMaxConst(e: Emit, fn: 'min' | 'max', mode: Mode, x: Ref, k: number): Ref | undefined {
  if (Number.isNaN(k) || (fn === 'min' && Object.is(k, -0))) return undefined;
  const m = e.m;
  const plusZero = fn === 'max' && Object.is(k, 0);
  if (mode === 'v') {
    const K = (): Ref => m.f32x4.splat(m.f32.const(k));
    const r = fn === 'max' ? m.f32x4.pmax(x, K()) : m.f32x4.pmin(x, K());
    return plusZero ? m.f32x4.add(r, K()) : r;
  }
  const X = once(e, binaryen.f32, x);
  const K = (): Ref => m.f32.const(k);
  const pick = m.select(fn === 'max' ? m.f32.lt(X.get(), K()) : m.f32.lt(K(), X.get()), K(), X.get());
  return m.block(null, [X.pre, plusZero ? m.f32.add(pick, K()) : pick], binaryen.f32);
}

/** Conversion between compute dtypes. */
export function emitCast(e: Emit, from: DType, to: DType, mode: Mode, x: Ref): Ref {
  const m = e.m;
  if (from === to) return x;
  if (mode === 'v') {
    if (from === 'f32' && to === 'i32') return m.i32x4.trunc_sat_f32x4_s(x);
    if (from === 'i32' && to === 'f32') return m.f32x4.convert_i32x4_s(x);
    if (from === 'bool') {
      const ones = m.v128.and(x, m.i32x4.splat(m.i32.const(1)));
      return to === 'i32' ? ones : m.f32x4.convert_i32x4_s(ones);
    }
    // number -> bool: != 0
    return from === 'f32' ? m.f32x4.ne(x, m.f32x4.splat(m.f32.const(0))) : m.i32x4.ne(x, m.i32x4.splat(m.i32.const(0)));
  }
  if (from === 'f32' && to === 'i32') return m.i32.trunc_s_sat.f32(x);
  if (from === 'i32' && to === 'f32') return m.f32.convert_s.i32(x);
  if (from === 'bool') return to === 'i32' ? x : m.f32.convert_s.i32(x);
  return from === 'f32' ? m.f32.ne(x, m.f32.const(0)) : m.i32.ne(x, m.i32.const(0));
}

/** Splat a scalar into four lanes (a scalar bool 0/1 becomes a 0/-1 mask). */
export function emitSplat(e: Emit, dt: DType, x: Ref): Ref {
  const m = e.m;
  if (dt === 'f32') return m.f32x4.splat(x);
  if (dt === 'bool') return m.i32x4.splat(m.i32.sub(m.i32.const(0), x));
  return m.i32x4.splat(x);
}

/** cond ? a : b, where `cond` is a bool of the same mode. */
export function emitWhere(e: Emit, mode: Mode, cond: Ref, a: Ref, b: Ref): Ref {
  return mode === 'v' ? e.m.v128.bitselect(a, b, cond) : e.m.select(cond, a, b);
}

/** A constant of `dt` in `mode`. */
export function emitConst(e: Emit, dt: DType, mode: Mode, value: number): Ref {
  const m = e.m;
  const s = dt === 'f32' ? m.f32.const(value) : m.i32.const(value | 0);
  return mode === 'v' ? emitSplat(e, dt, s) : s;
}
