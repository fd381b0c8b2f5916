/**
 * @fileoverview max/min reductions on special values: NaN anywhere makes the result NaN, +0
 * beats -0 in max and -0 beats +0 in min, infinities order as numbers. Compiled (the pmax/pmin
 * accumulation with its fix-up) against the interpreter and against Math.max/min, for 1-D
 * tiles and both axes of 2-D tiles.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { jit, Runtime } from '../src/index.js';
import { EXP2_FTZ_BELOW, EXP_FTZ_BELOW } from '../src/ir/ir.js';

const rtP = Runtime.create({ threads: 0 });
afterAll(async () => (await rtP).dispose());

const red = (fn: 'max' | 'min', axis: 0 | 1) => jit(`function r(X, Out, R, C) {
  const x = load(X, expandDims(arange(R), 1) * C + expandDims(arange(C), 0));
  store(Out, arange(${axis === 0 ? 'C' : 'R'}), ${fn}(x, ${axis}));
}`, { signature: { X: 'ptr', Out: 'ptr', R: 'constexpr', C: 'constexpr' } });
const red1 = (fn: 'max' | 'min') => jit(`function r1(X, Out, C) {
  store(Out, 0, ${fn}(load(X, arange(C)), 0));
}`, { signature: { X: 'ptr', Out: 'ptr', C: 'constexpr' } });

const same = (a: number, b: number): boolean => Object.is(a, b);

const SPECIALS = [NaN, 0, -0, Infinity, -Infinity, 1, -1];

describe.each(['max', 'min'] as const)('%s with special values', (fn) => {
  const ref = fn === 'max' ? Math.max : Math.min;
  test('1-D tiles: every pattern of two specials planted among ordinary values', async () => {
    const rt = await rtP;
    const k = red1(fn);
    const C = 32;
    for (const a of SPECIALS) for (const b of SPECIALS) for (const at of [[0, 1], [5, 30], [31, 2]]) {
      // Ordinary values that never win: below the specials for max, above for min.
      const x = new Float32Array(C).fill(fn === 'max' ? -5 : 5);
      x[at[0]!] = a;
      x[at[1]!] = b;
      const X = rt.tensor(x, [C]), O = rt.empty([1]), I = rt.empty([1]);
      await k.launch({ grid: [1], C }, X, O);
      await k.interpret({ grid: [1], C }, X, I);
      const want = ref(...x);
      if (!same(O.toArray()[0]!, want) || !same(I.toArray()[0]!, want)) {
        expect.fail(`${fn} of ${a}, ${b} at ${at}: compiled ${O.toArray()[0]}, interpreted ${I.toArray()[0]}, want ${want}`);
      }
    }
  });

  test.each([0, 1] as const)('2-D tiles along axis %i', async (axis) => {
    const rt = await rtP;
    const [R, C] = [8, 16];
    const k = red(fn, axis);
    let s = 9;
    const x = Float32Array.from({ length: R * C }, () => SPECIALS[(s = (s * 1103515245 + 12345) >>> 0) % 11] ?? ((s % 100) - 50) / 7);
    const X = rt.tensor(x, [R, C]), n = axis === 0 ? C : R;
    const O = rt.empty([n]), I = rt.empty([n]);
    await k.launch({ grid: [1], R, C }, X, O);
    await k.interpret({ grid: [1], R, C }, X, I);
    for (let j = 0; j < n; j++) {
      const vals = axis === 0 ? Array.from({ length: R }, (_, r) => x[r * C + j]!) : Array.from(x.subarray(j * C, (j + 1) * C));
      const want = ref(...vals);
      expect(same(O.toArray()[j]!, want), `compiled [${j}] of ${vals}`).toBe(true);
      expect(same(I.toArray()[j]!, want), `interpreted [${j}] of ${vals}`).toBe(true);
    }
  });
});

describe.each(['max', 'min'] as const)('%s(x, axis, keepdims, propagateNan = false)', (fn) => {
  // NaN elements are skipped (all NaN: -Infinity for max, +Infinity for min); a zero result
  // may be either zero. The reference: Math.max/min over the non-NaN elements.
  const ref = (vals: number[]): number => {
    const kept = vals.filter((v) => !Number.isNaN(v));
    return kept.length ? (fn === 'max' ? Math.max : Math.min)(...kept) : fn === 'max' ? -Infinity : Infinity;
  };
  const agrees = (got: number, want: number): boolean => (want === 0 ? got === 0 : Object.is(got, want));
  const kern = (axis: 0 | 1, shape: '1d' | '2d') => jit(shape === '1d'
    ? `function s1(X, Out, C) { store(Out, 0, ${fn}(load(X, arange(C)), 0, false, false)); }`
    : `function s2(X, Out, R, C) {
  const x = load(X, expandDims(arange(R), 1) * C + expandDims(arange(C), 0));
  store(Out, arange(${axis === 0 ? 'C' : 'R'}), ${fn}(x, ${axis}, false, false));
}`, { signature: shape === '1d' ? { X: 'ptr', Out: 'ptr', C: 'constexpr' } : { X: 'ptr', Out: 'ptr', R: 'constexpr', C: 'constexpr' } });

  test.each([[1, '1d'], [0, '2d'], [1, '2d']] as const)('axis %i of %s tiles (widths 1, 2, 4, 32): compiled and interpreted skip NaN', async (axis, shape) => {
    const rt = await rtP;
    const k = kern(axis, shape);
    let s = 21;
    const pick = (): number => {
      s = (s * 1103515245 + 12345) >>> 0;
      return s % 3 === 0 ? NaN : (SPECIALS[s % 9] ?? ((s % 100) - 50) / 7);
    };
    for (const C of [1, 2, 4, 32]) {
      const R = shape === '1d' ? 1 : 8;
      for (let rep = 0; rep < 6; rep++) {
        // rep 0: all NaN; rep 1: NaN first then one value; then random mixes.
        const x = Float32Array.from({ length: R * C }, (_, i) => (rep === 0 ? NaN : rep === 1 ? (i === R * C - 1 ? 3 : NaN) : pick()));
        const X = rt.tensor(x, [R * C]);
        const n = shape === '1d' ? 1 : axis === 0 ? C : R;
        const O = rt.empty([n]), I = rt.empty([n]);
        const opts = shape === '1d' ? { grid: [1], C } : { grid: [1], R, C };
        await k.launch(opts, X, O);
        await k.interpret(opts, X, I);
        for (let j = 0; j < n; j++) {
          const vals = shape === '1d' ? Array.from(x) : axis === 0 ? Array.from({ length: R }, (_, r) => x[r * C + j]!) : Array.from(x.subarray(j * C, (j + 1) * C));
          const want = ref(vals);
          if (!agrees(O.toArray()[j]!, want) || !agrees(I.toArray()[j]!, want)) {
            expect.fail(`${fn} of [${vals}]: compiled ${O.toArray()[j]}, interpreted ${I.toArray()[j]}, want ${want}`);
          }
        }
      }
    }
  });
});

describe('minimum / maximum against a constant (lowered to pmin / pmax)', () => {
  // Each constant on either side, as a tile (vector lanes) and as a scalar; the zeros are the
  // cases where pmin/pmax and Math.min/max part ways without the fix-up.
  const KS = ['0.0', '-0.0', '2.5', '-1.0', 'Infinity', '-Infinity'];
  const exprs = KS.flatMap((k) => [`maximum(x, ${k})`, `minimum(x, ${k})`, `maximum(${k}, x)`, `minimum(${k}, x)`]);
  const kern = (tile: boolean) => jit(`function mm(X, Out, n) {
    ${tile ? 'const x = load(X, arange(8));' : 'const x = load(X, 0);'}
    ${exprs.map((ex, j) => `store(Out, ${j * 8} + ${tile ? 'arange(8)' : '0'}, ${ex});`).join('\n    ')}
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32' } });
  const k = (expr: string, x: number, k: number): number => {
    const f = expr.startsWith('maximum') ? Math.max : Math.min;
    return f(x, k);
  };
  const values = (s: string): number => (s === 'Infinity' ? Infinity : s === '-Infinity' ? -Infinity : Number(s));

  test.each([true, false])('tile %s: every special value, bit for bit against Math.min/max and the interpreter', async (tile) => {
    const rt = await rtP;
    const kernel = kern(tile);
    const inputs = [NaN, 0, -0, Infinity, -Infinity, 2.5, -1, 3, -7, 1e-45];
    for (let start = 0; start < inputs.length; start += tile ? 8 : 1) {
      const x = new Float32Array(8).fill(1);
      for (let j = 0; j < (tile ? 8 : 1) && start + j < inputs.length; j++) x[j] = inputs[start + j]!;
      const X = rt.tensor(x, [8]);
      const O = rt.empty([exprs.length * 8]), I = rt.empty([exprs.length * 8]);
      await kernel.launch({ grid: [1] }, X, O, 8);
      await kernel.interpret({ grid: [1] }, X, I, 8);
      const o = O.toArray(), it = I.toArray();
      exprs.forEach((ex, j) => {
        const kv = values(ex.match(/\(x, (.*)\)|\((.*), x\)/)!.slice(1).find((s) => s !== undefined)!);
        for (let l = 0; l < (tile ? 8 : 1); l++) {
          const want = k(ex, x[l]!, kv);
          if (!same(o[j * 8 + l]!, want) || !same(it[j * 8 + l]!, want)) {
            expect.fail(`${ex} at x = ${x[l]}: compiled ${o[j * 8 + l]}, interpreted ${it[j * 8 + l]}, want ${want}`);
          }
        }
      });
    }
  });
});

describe.each([
  ['exp', EXP_FTZ_BELOW, Math.exp],
  ['exp2', EXP2_FTZ_BELOW, (x: number) => 2 ** x],
] as const)('%s(x, flushTiny = true)', (fn, below, f) => {
  // +0 below the cutoff (the first f32 under it, -Infinity, -1e30), the plain function from it
  // up (the cutoff itself, overflow, NaN): compiled as tile lanes and as a scalar, interpreted,
  // and folded from constants.
  const ref = (x: number): number => Math.fround(x < below ? 0 : f(x));
  const under = (x: number): number => new Float32Array(new Uint32Array([new Uint32Array(Float32Array.of(x).buffer)[0]! + 1]).buffer)[0]!;
  const xs = [below, under(below), below + 0.5, -1e30, -Infinity, 0, 1, -1, 80, 127.9, 200, Infinity, NaN, -200, -3.5, 0.25];
  const kern = jit(`function e(X, Out) {
  const i = arange(16);
  store(Out, i, ${fn}(load(X, i), true));
  store(Out, 16 + i, ${fn}(load(X, i), false));
  for (let j = 0; j < 16; j++) { store(Out, 32 + j, ${fn}(load(X, j), true)); }
  store(Out, 48, ${fn}(${below} - 1.0, true));
  store(Out, 49, ${fn}(${below}, true));
}`, { signature: { X: 'ptr', Out: 'ptr' } });
  test('compiled and interpreted: +0 below the cutoff, the exact function from it up', async () => {
    const rt = await rtP;
    const X = rt.tensor(Float32Array.from(xs), [16]);
    for (const run of ['launch', 'interpret'] as const) {
      const O = rt.empty([50]);
      await kern[run]({ grid: [1] }, X, O);
      const got = O.toArray();
      xs.forEach((x, j) => {
        const want = ref(Math.fround(x));
        for (const at of [j, 32 + j]) {
          const ok = Object.is(got[at], want) || (Number.isFinite(want) && Math.abs(got[at]! - want) <= 2 * Math.abs(want) * 2 ** -23);
          expect(ok, `${run}: ${fn}(${x}, true) at ${at} = ${got[at]}, want ${want}`).toBe(true);
        }
      });
      expect(got[16 + 1], `${run}: ${fn} without the flag keeps the tiny result`).toBeGreaterThan(0);
      expect(got[48], `${run}: folded below the cutoff`).toBe(0);
      expect(got[49], `${run}: folded at the cutoff`).toBeGreaterThan(0);
    }
  });
});

describe('exp(x - max(x), true): the shift softmax makes, known <= 0', () => {
  // Rows of specials: +Inf and NaN give NaN rows (Inf - Inf, NaN - max), -Inf lanes give 0, an
  // all -Inf row NaN; ordinary rows span the whole flush range. The compiled code drops exp's
  // upper clamp only where the argument is x minus its own max broadcast back over the reduced
  // axis (checked on the WAT); a max broadcast over the other axis keeps it and overflows right.
  const rows = [
    [0, 1, 2, 3, -1, -50, -90, -1e30],
    [Infinity, 1, 2, 3, 4, 5, 6, 7],
    [NaN, 1, 2, 3, 4, 5, 6, 7],
    [-Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity],
    [-Infinity, 3, -Infinity, 100, 88, 12, -86.98, 1e30],
    [-5, -6, -7, -8, -9, -10, -11, -12],
    [200, 100, 50, 25, 12, 6, 3, 1],
    [0.5, 0.25, 0.125, -0.5, -0.25, 2, 4, 8],
  ];
  const ref = (x: number): number => Math.fround(x < EXP_FTZ_BELOW ? 0 : Math.exp(x));
  const kern = jit(`function shifted(X, Out, AXIS, CROSS) {
  const offs = expandDims(arange(8), 1) * 8 + expandDims(arange(8), 0);
  const x = load(X, offs);
  if (CROSS) {
    store(Out, offs, exp(x - expandDims(max(x, 1, false, false), 0), true));
  } else {
    store(Out, offs, exp(x - expandDims(max(x, AXIS, false, false), AXIS), true));
  }
}`, { signature: { X: 'ptr', Out: 'ptr', AXIS: 'constexpr', CROSS: 'constexpr' } });

  test.each([
    { AXIS: 1, CROSS: false },
    { AXIS: 0, CROSS: false },
    { AXIS: 1, CROSS: true },
  ])('max along axis $AXIS (broadcast over the other axis: $CROSS)', async ({ AXIS, CROSS }) => {
    const rt = await rtP;
    const X = rt.tensor(Float32Array.from(rows.flat()), [64]);
    const opts = { grid: [1], AXIS, CROSS };
    expect((await kern.wat(opts, X, X)).includes('f32x4.pmin'), 'the upper clamp').toBe(CROSS);
    const O = rt.empty([64]);
    await kern.launch(opts, X, O);
    const got = O.toArray();
    const xs = Float32Array.from(rows.flat());
    const mx = (i: number): number => {
      // The max skips NaN (propagateNan false); CROSS subtracts row (i % 8)'s max from element i.
      const r = CROSS ? i % 8 : AXIS === 1 ? Math.floor(i / 8) : i % 8;
      const line = CROSS || AXIS === 1 ? Array.from(xs.subarray(r * 8, r * 8 + 8)) : Array.from({ length: 8 }, (_, k) => xs[k * 8 + r]!);
      return line.filter((v) => !Number.isNaN(v)).reduce((a, b) => Math.max(a, b), -Infinity);
    };
    for (let i = 0; i < 64; i++) {
      const want = ref(Math.fround(xs[i]! - mx(i)));
      const ok = Object.is(got[i], want) || (Number.isFinite(want) && Math.abs(got[i]! - want) <= 2 * Math.abs(want) * 2 ** -23);
      expect(ok, `element ${i}: exp(${xs[i]} - ${mx(i)}) = ${got[i]}, want ${want}`).toBe(true);
    }
    if (CROSS) expect(got.some((v) => v === Infinity), 'a shift by a smaller max overflows to +Infinity').toBe(true);
  });
});
