/**
 * @fileoverview The reference interpreter on hand-built IR, elementwise semantics: saxpy with
 * a tail mask, every unary and binary fn (f32 rounding, i32 wrapping, shifts, rem signs,
 * min/max with NaN, division by zero), casts with saturation, f16/bf16 storage, rand.
 */
import { describe, expect, test } from 'vitest';
import { KernelRuntimeError } from '../src/errors.js';
import { interpret } from '../src/interp/index.js';
import type { BinaryFn, DType, StorageDType, UnaryFn, Value } from '../src/ir/ir.js';
import { erf64 } from '../src/util/erf.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/util/half.js';
import { randUniform } from '../src/util/rand.js';
import { IRB, layout } from './util/irb.js';

const fr = Math.fround;
const I32_MIN = -2147483648;
const I32_MAX = 2147483647;

/** Pads `xs` to a power-of-two length (>= 2) by repeating its first element. */
function pow2(xs: readonly number[]): number[] {
  let n = 2;
  while (n < xs.length) n *= 2;
  return [...xs, ...Array<number>(n - xs.length).fill(xs[0] ?? 0)];
}

/**
 * Runs Out[i] = f(X[i], Y[i]) in one program over tiles of xs.length (a power of two); a bool
 * result is stored as i32 0/1. Returns Out.
 */
function mapRun(dtype: 'f32' | 'i32', xs: readonly number[], ys: readonly number[], f: (b: IRB, x: Value, y: Value) => Value): number[] {
  const n = xs.length;
  const b = new IRB('map');
  const X = b.tensor('X', dtype), Y = b.tensor('Y', dtype);
  const probe = new IRB('probe');
  const px = probe.load(probe.tensor('X', dtype), probe.arange(n));
  const outDtype: StorageDType = f(probe, px, px).dtype === 'f32' ? 'f32' : 'i32';
  const Out = b.tensor('Out', outDtype);
  const i = b.arange(n);
  let r = f(b, b.load(X, i), b.load(Y, i));
  if (r.dtype === 'bool') r = b.cast(r, 'i32');
  b.store(Out, i, r);
  const mem = layout([{ dtype, data: xs }, { dtype, data: ys }, { dtype: outDtype, data: new Array<number>(n).fill(0) }]);
  interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
  expect(mem.guardsIntact()).toBe(true);
  return Array.from(mem.read(2));
}

describe('saxpy', () => {
  test.each([1, 5, 64, 100, 257])('n=%i with a tail mask, 64-wide blocks', (n) => {
    const BLOCK = 64;
    const b = new IRB('saxpy');
    const X = b.tensor('X'), Y = b.tensor('Y'), Out = b.tensor('Out');
    const a = b.scalar('a', 'f32'), nn = b.scalar('n');
    const i = b.bin('add', b.bin('mul', b.pid(0), b.i32(BLOCK)), b.arange(BLOCK));
    const m = b.bin('lt', i, nn);
    b.store(Out, i, b.bin('add', b.bin('mul', a, b.load(X, i, m)), b.load(Y, i, m)), m);
    const xs = Array.from({ length: n }, (_, k) => Math.sin(k) * 3);
    const ys = Array.from({ length: n }, (_, k) => Math.cos(k));
    const mem = layout([{ dtype: 'f32', data: xs }, { dtype: 'f32', data: ys }, { dtype: 'f32', data: new Array<number>(n).fill(0) }, 1.7, n]);
    interpret(b.kernel(), [Math.ceil(n / BLOCK), 1, 1], mem.args, mem.memory);
    const want = xs.map((x, k) => fr(fr(fr(1.7) * fr(x)) + fr(ys[k]!)));
    expect(Array.from(mem.read(2))).toEqual(want);
    expect(mem.guardsIntact()).toBe(true);
  });
});

describe('unary', () => {
  const xs = pow2([0, -0, 0.5, -0.5, 1, -1, 2.5, -2.5, 3.7, -3.7, 10, -10, 100, -100, 1e-3, 88.5, -104, -87.5, -86.97, -125.6, -125.4, 1e30, Infinity, -Infinity, NaN, 0.1, 0.9999]);
  const ref: Record<Exclude<UnaryFn, 'not'>, (x: number) => number> = {
    neg: (x) => -x, abs: Math.abs, floor: Math.floor, ceil: Math.ceil, sqrt: Math.sqrt,
    rsqrt: (x) => 1 / Math.sqrt(x), exp: Math.exp, expFtz: (x) => (x < Math.fround(-86.98) ? 0 : Math.exp(x)), exp2: (x) => Math.pow(2, x), exp2Ftz: (x) => (x < Math.fround(-125.49) ? 0 : Math.pow(2, x)), log: Math.log, log2: Math.log2,
    tanh: Math.tanh, sigmoid: (x) => 1 / (1 + Math.exp(-x)), erf: (x) => (Number.isFinite(x) ? erf64(x) : Math.sign(x)),
    // x·Φ(x) written out with erf: Infinity at Infinity, NaN (-Infinity · 0) at -Infinity.
    gelu: (x) => 0.5 * x * (1 + (Number.isFinite(x) ? erf64(x / Math.SQRT2) : Math.sign(x))),
    geluTanh: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
    // Their derivatives, with the limits 1 and 0 at ±Infinity.
    geluGrad: (x) => (Number.isNaN(x) ? x : !Number.isFinite(x) ? (x > 0 ? 1 : 0) : 0.5 * (1 + erf64(x / Math.SQRT2)) + x * Math.exp(-x * x / 2) / Math.sqrt(2 * Math.PI)),
    geluTanhGrad: (x) => {
      if (Number.isNaN(x) || !Number.isFinite(x)) return Number.isNaN(x) ? x : x > 0 ? 1 : 0;
      const c = Math.sqrt(2 / Math.PI), t = Math.tanh(c * (x + 0.044715 * x ** 3));
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * 0.044715 * x * x);
    },
  };
  test.each(Object.keys(ref) as (keyof typeof ref)[])('f32 %s is the f64 result rounded to f32', (fn) => {
    const got = mapRun('f32', xs.map(fr), xs.map(fr), (b, x) => b.un(fn, x));
    expect(got).toEqual(xs.map((x) => fr(ref[fn](fr(x)))));
  });

  test('erf against tabulated values (to the f32 rounding)', () => {
    const table: [number, number][] = [
      [0.1, 0.1124629160182849], [0.5, 0.5204998778130465], [1, 0.8427007929497149], [1.5, 0.9661051464753108],
      [2, 0.9953222650189527], [2.5, 0.999593047982555], [3, 0.9999779095030014], [-1, -0.8427007929497149],
      [0, 0], [6, 1], [Infinity, 1], [-Infinity, -1],
    ];
    const xs2 = pow2(table.map((t) => t[0]));
    const got = mapRun('f32', xs2, xs2, (b, x) => b.un('erf', x));
    table.forEach(([, want], i) => expect(got[i]).toBe(fr(want)));
    expect(mapRun('f32', [NaN, 1], [0, 0], (b, x) => b.un('erf', x))[0]).toBeNaN();
  });

  test('i32 neg, abs and not wrap; bool not is logical', () => {
    const v = pow2([0, 1, -1, 7, I32_MAX, I32_MIN]);
    expect(mapRun('i32', v, v, (b, x) => b.un('neg', x))).toEqual(v.map((x) => -x | 0));
    expect(mapRun('i32', v, v, (b, x) => b.un('abs', x))).toEqual(v.map((x) => Math.abs(x) | 0));
    expect(mapRun('i32', v, v, (b, x) => b.un('not', x))).toEqual(v.map((x) => ~x));
    expect(mapRun('i32', v, v, (b, x) => b.un('not', b.bin('gt', x, b.i32(0))))).toEqual(v.map((x) => (x > 0 ? 0 : 1)));
  });
});

describe('binary', () => {
  const fa = pow2([1.5, -1.5, 5.5, -5.5, 0, -0, 1e-30, 3e38, NaN, 2, Infinity, -Infinity, 0.1, 7]);
  const fb = pow2([2, 2, 2, 2, -0, 0, 1e-30, 3e38, 1, NaN, 1, Infinity, 0.2, 0]);
  const f32Ref: Partial<Record<BinaryFn, (x: number, y: number) => number>> = {
    add: (x, y) => x + y, sub: (x, y) => x - y, mul: (x, y) => x * y, div: (x, y) => x / y, rem: (x, y) => x % y,
    min: Math.min, max: Math.max,
    lt: (x, y) => +(x < y), le: (x, y) => +(x <= y), gt: (x, y) => +(x > y), ge: (x, y) => +(x >= y),
    eq: (x, y) => +(x === y), ne: (x, y) => +(x !== y),
  };
  test.each(Object.keys(f32Ref) as BinaryFn[])('f32 %s', (fn) => {
    const got = mapRun('f32', fa, fb, (b, x, y) => b.bin(fn, x, y));
    expect(got).toEqual(fa.map((x, i) => fr(f32Ref[fn]!(fr(x), fr(fb[i]!)))));
  });

  test('f32 min/max propagate NaN and order -0 below 0; rem is fmod', () => {
    expect(mapRun('f32', [NaN, 1, -0, 0], [1, NaN, 0, -0], (b, x, y) => b.bin('min', x, y)).map((v) => Object.is(v, -0) ? '-0' : v))
      .toEqual([NaN, NaN, '-0', '-0']);
    expect(mapRun('f32', [NaN, 1, -0, 0], [1, NaN, 0, -0], (b, x, y) => b.bin('max', x, y))).toEqual([NaN, NaN, 0, 0]);
    expect(mapRun('f32', [5.5, -5.5, 5.5, 1], [2, 2, -2, 0], (b, x, y) => b.bin('rem', x, y))).toEqual([1.5, -1.5, 1.5, NaN]);
  });

  const ia = pow2([I32_MAX, I32_MIN, I32_MIN, -7, 7, -7, 65536, 1, -8, -8, -1, 5, 123456789, 0x7fffffff, 3, -3]);
  const ib = pow2([1, -1, 1, 2, -2, -2, 65536, 33, 1, 33, 0, 37, -987654, 2, 31, 32]);
  const i32Ref: Partial<Record<BinaryFn, (x: number, y: number) => number>> = {
    add: (x, y) => (x + y) | 0, sub: (x, y) => (x - y) | 0, mul: Math.imul,
    and: (x, y) => x & y, or: (x, y) => x | y, xor: (x, y) => x ^ y,
    shl: (x, y) => x << y, shr: (x, y) => x >> y, shru: (x, y) => (x >>> y) | 0,
    min: Math.min, max: Math.max,
    lt: (x, y) => +(x < y), le: (x, y) => +(x <= y), gt: (x, y) => +(x > y), ge: (x, y) => +(x >= y),
    eq: (x, y) => +(x === y), ne: (x, y) => +(x !== y),
  };
  test.each(Object.keys(i32Ref) as BinaryFn[])('i32 %s', (fn) => {
    expect(mapRun('i32', ia, ib, (b, x, y) => b.bin(fn, x, y))).toEqual(ia.map((x, i) => i32Ref[fn]!(x, ib[i]!)));
  });

  test('i32 edge cases by value', () => {
    const run = (fn: BinaryFn, x: number[], y: number[]): number[] => mapRun('i32', x, y, (b, p, q) => b.bin(fn, p, q));
    expect(run('add', [I32_MAX, I32_MIN], [1, -1])).toEqual([I32_MIN, I32_MAX]);
    expect(run('mul', [65536, I32_MAX, -3, 46341], [65536, 2, 5, 46341])).toEqual([0, -2, -15, -2147479015]);
    expect(run('div', [7, -7, 7, -7, I32_MIN, 0, 1, I32_MAX], [2, 2, -2, -2, -1, 5, 3, -1])).toEqual([3, -3, -3, 3, I32_MIN, 0, 0, -I32_MAX]);
    expect(run('rem', [7, -7, 7, -7, I32_MIN, 0, 5, -5], [2, 2, -2, -2, -1, 3, 5, 5])).toEqual([1, -1, 1, -1, 0, 0, 0, 0]);
    // Shift counts are taken mod 32 (33 -> 1, -1 -> 31, 32 -> 0).
    expect(run('shl', [1, 1, 1, 3], [33, -1, 32, 0])).toEqual([2, I32_MIN, 1, 3]);
    expect(run('shr', [-8, -8, I32_MIN, 16], [1, 33, 31, 2])).toEqual([-4, -4, -1, 4]);
    expect(run('shru', [-8, -1, -1, I32_MIN], [1, 0, 31, 31])).toEqual([0x7ffffffc, -1, 1, 1]);
  });

  test('bool and/or/xor are logical', () => {
    const got = mapRun('i32', [0, 0, 1, 1], [0, 1, 0, 1], (b, x, y) => {
      const [p, q] = [b.bin('ne', x, b.i32(0)), b.bin('ne', y, b.i32(0))];
      const packed = (v: Value): Value => b.cast(v, 'i32');
      return b.bin('add', b.bin('add', packed(b.bin('and', p, q)), b.bin('mul', packed(b.bin('or', p, q)), b.i32(2))), b.bin('mul', packed(b.bin('xor', p, q)), b.i32(4)));
    });
    expect(got).toEqual([0, 2 + 4, 2 + 4, 1 + 2]);
  });

  test.each(['div', 'rem'] as const)('i32 %s by zero is a KernelRuntimeError at the op, in its program', (fn) => {
    const b = new IRB('divider');
    const Out = b.tensor('Out', 'i32');
    const p = b.pid(0);
    const [hundred, d] = [b.i32(100), b.bin('sub', p, b.i32(2))];
    b.at(7, 12);
    const q = b.bin(fn, hundred, d);
    b.at(8, 1);
    b.store(Out, p, q);
    const mem = layout([{ dtype: 'i32', data: [0, 0, 0, 0] }]);
    let err: unknown;
    try {
      interpret(b.kernel(), [4, 1, 1], mem.args, mem.memory);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KernelRuntimeError);
    const e = err as KernelRuntimeError;
    expect(e.message).toBe("kernel 'divider' program (2, 0, 0) at 7:12: integer division by zero");
    expect(e.programId).toEqual([2, 0, 0]);
    expect(e.kernelName).toBe('divider');
    // Programs 0 and 1 ran before the fault.
    expect(Array.from(mem.read(0))).toEqual(fn === 'div' ? [-50, -100, 0, 0] : [0, 0, 0, 0]);
  });

  test('f32 division by zero is IEEE', () => {
    expect(mapRun('f32', [1, -1, 0, 5], [0, 0, 0, -0], (b, x, y) => b.bin('div', x, y))).toEqual([Infinity, -Infinity, NaN, -Infinity]);
  });
});

describe('cast', () => {
  const run = (from: 'f32' | 'i32', to: DType, xs: number[]): number[] => mapRun(from, xs, xs, (b, x) => b.cast(x, to));
  test('f32 -> i32 truncates toward zero, saturates, NaN -> 0', () => {
    expect(run('f32', 'i32', pow2([3.7, -3.7, 0.5, -0.5, -0, NaN, Infinity, -Infinity, 3e9, -3e9, 2147483520, -2147483648, 2147483648, 1e-40, 16777217])))
      .toEqual(pow2([3, -3, 0, 0, 0, 0, I32_MAX, I32_MIN, I32_MAX, I32_MIN, 2147483520, I32_MIN, I32_MAX, 0, 16777216]));
  });
  test('i32 -> f32 rounds to nearest f32', () => {
    const xs = [16777217, I32_MAX, I32_MIN, -16777219, 0, 1, -1, 123456789];
    expect(run('i32', 'f32', xs)).toEqual(xs.map(fr));
  });
  test('number -> bool is != 0 (NaN is true); bool -> number is 0/1', () => {
    expect(run('f32', 'bool', [0, -0, NaN, 0.5, -1e-45, Infinity, 2, 0])).toEqual([0, 0, 1, 1, 1, 1, 1, 0]);
    expect(run('i32', 'bool', [0, 1, -1, I32_MIN])).toEqual([0, 1, 1, 1]);
    expect(mapRun('f32', [0, 2, NaN, -3], [0, 0, 0, 0], (b, x) => b.cast(b.bin('ne', x, b.const(0)), 'f32'))).toEqual([0, 1, 1, 1]);
  });
  test('where selects lane by lane', () => {
    expect(mapRun('f32', [1, -2, 3, -4], [10, 20, 30, 40], (b, x, y) => b.where(b.bin('gt', x, b.const(0)), x, y))).toEqual([1, 20, 3, 40]);
  });
});

describe('16-bit storage', () => {
  /** Every 16-bit pattern loaded from `dtype`, stored to f32 and (after a copy) back to `dtype`. */
  function roundTrip(dtype: 'f16' | 'bf16'): { asF32: Float32Array; back: Uint16Array } {
    const b = new IRB('rt');
    const H = b.tensor('H', dtype), F = b.tensor('F', 'f32'), H2 = b.tensor('H2', dtype);
    const i = b.bin('add', b.bin('mul', b.pid(0), b.i32(1024)), b.arange(1024));
    const x = b.load(H, i);
    b.store(F, i, x);
    b.store(H2, i, x);
    const bits = Array.from({ length: 65536 }, (_, k) => k);
    const mem = layout([{ dtype, data: bits }, { dtype: 'f32', data: new Array<number>(65536).fill(0) }, { dtype, data: new Array<number>(65536).fill(0) }]);
    interpret(b.kernel(), [64, 1, 1], mem.args, mem.memory);
    return { asF32: mem.read(1) as Float32Array, back: mem.read(2) as Uint16Array };
  }
  test.each([['f16', f16BitsToF32], ['bf16', bf16BitsToF32]] as const)('every %s pattern loads exactly and stores back unchanged', (dtype, toF32) => {
    const { asF32, back } = roundTrip(dtype);
    for (let h = 0; h < 65536; h++) {
      const want = toF32(h);
      if (Number.isNaN(want)) {
        expect(asF32[h]).toBeNaN();
        expect(Number.isNaN(toF32(back[h]!))).toBe(true);
      } else {
        if (!Object.is(asF32[h], want)) expect.fail(`${dtype} ${h}: loaded ${asF32[h]}, want ${want}`);
        if (back[h] !== h) expect.fail(`${dtype} ${h}: stored back as ${back[h]}`);
      }
    }
  });

  test.each([['f16', f32ToF16Bits], ['bf16', f32ToBf16Bits]] as const)('f32 stored to %s rounds to nearest even', (dtype, toBits) => {
    const xs = [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 65520, 70000, 1e-8, -2.5, 3.14159, 1e38, -0, 2 ** -24, 2 ** -25, 1 + 2 ** -7 + 2 ** -20, 0.1, 6e-5];
    const b = new IRB('narrow');
    const F = b.tensor('F'), H = b.tensor('H', dtype);
    const i = b.arange(16);
    b.store(H, i, b.load(F, i));
    const mem = layout([{ dtype: 'f32', data: xs }, { dtype, data: new Array<number>(16).fill(0) }]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(1))).toEqual(xs.map((x) => toBits(fr(x))));
    // Spot checks that do not lean on half.ts: ties go to even.
    if (dtype === 'f16') expect(Array.from(mem.read(1)).slice(0, 2)).toEqual([0x3c00, 0x3c02]);
    else expect(Array.from(mem.read(1)).slice(2, 4)).toEqual([0x3f80, 0x3f82]);
  });
});

describe('rand', () => {
  test('matches randUniform(seed, offset) lane by lane', () => {
    const b = new IRB('dropout');
    const Out = b.tensor('Out');
    const seed = b.scalar('seed');
    const i = b.bin('add', b.bin('mul', b.pid(0), b.i32(256)), b.arange(256));
    b.store(Out, i, b.rand(seed, b.bin('mul', i, b.i32(3))));
    const mem = layout([{ dtype: 'f32', data: new Array<number>(1024).fill(0) }, -12345]);
    interpret(b.kernel(), [4, 1, 1], mem.args, mem.memory);
    const got = Array.from(mem.read(0));
    expect(got).toEqual(got.map((_, k) => randUniform(-12345, 3 * k)));
    expect(got.every((u) => u >= 0 && u < 1)).toBe(true);
  });
});
