/**
 * @fileoverview The reference interpreter's whole-tile ops on hand-built IR: 2-D broadcasting,
 * reshape, transpose, reductions along each axis and to a scalar, dot with and without an
 * accumulator against a naive matmul, and a tiled 256^3 matmul with a K loop.
 */
import { describe, expect, test } from 'vitest';
import { interpret } from '../src/interp/index.js';
import type { ReduceFn, Value } from '../src/ir/ir.js';
import { IRB, layout } from './util/irb.js';

const fr = Math.fround;

/** Offsets r * cols + c of a row-major [rows, cols] tile. */
function grid2(b: IRB, rows: number, cols: number): Value {
  const r = b.reshape(b.arange(rows), [rows, 1]);
  const c = b.reshape(b.arange(cols), [1, cols]);
  return b.bin('add', b.bin('mul', r, b.i32(cols)), c);
}

/** Runs a one-program kernel built by `body` over f32 inputs; returns each tensor afterwards. */
function run1(inputs: readonly (readonly number[])[], outLen: number, body: (b: IRB, ins: number[], out: number) => void): number[] {
  const b = new IRB('tiles');
  const ins = inputs.map((_, i) => b.tensor(`In${i}`));
  const out = b.tensor('Out');
  body(b, ins, out);
  const mem = layout([...inputs.map((data) => ({ dtype: 'f32' as const, data })), { dtype: 'f32', data: new Array<number>(outLen).fill(-1) }]);
  interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
  expect(mem.guardsIntact()).toBe(true);
  return Array.from(mem.read(inputs.length));
}

const seq = (n: number, f: (i: number) => number = (i) => i): number[] => Array.from({ length: n }, (_, i) => fr(f(i)));

describe('layout ops', () => {
  test('[4,1] + [1,8] broadcasts to [4,8]; a scalar and an [8] row broadcast too', () => {
    const col = [1, 2, 3, 4], row = seq(8, (j) => 10 * j);
    const got = run1([col, row], 32, (b, [C, R], out) => {
      const c = b.load(C!, b.reshape(b.arange(4), [4, 1]));
      const r = b.load(R!, b.reshape(b.arange(8), [1, 8]));
      const r1 = b.load(R!, b.arange(8)); // [8] right-aligns against [4,8]
      const s = b.bin('add', b.bin('add', c, r), b.bin('mul', r1, b.const(0.5)));
      b.store(out, grid2(b, 4, 8), b.bin('add', s, b.const(1000)));
    });
    const want: number[] = [];
    for (let i = 0; i < 4; i++) for (let j = 0; j < 8; j++) want.push(col[i]! + row[j]! + row[j]! * 0.5 + 1000);
    expect(got).toEqual(want);
  });

  test('reshape keeps row-major order: [32] -> [4,8] -> [2,16] -> [32]', () => {
    const xs = seq(32, (i) => i * i - 7);
    const got = run1([xs], 32, (b, [X], out) => {
      const t = b.reshape(b.reshape(b.load(X!, grid2(b, 4, 8)), [2, 16]), [32]);
      b.store(out, b.arange(32), t);
    });
    expect(got).toEqual(xs);
  });

  test('trans of [4,8] is [8,4] with out[j][i] = in[i][j]', () => {
    const xs = seq(32, (i) => i + 0.25);
    const got = run1([xs], 32, (b, [X], out) => {
      b.store(out, grid2(b, 8, 4), b.trans(b.load(X!, grid2(b, 4, 8))));
    });
    const want: number[] = [];
    for (let j = 0; j < 8; j++) for (let i = 0; i < 4; i++) want.push(xs[i * 8 + j]!);
    expect(got).toEqual(want);
  });

  test('arange with a start, numPrograms and a 1-element tile', () => {
    const b = new IRB('ar');
    const Out = b.tensor('Out', 'i32');
    b.store(Out, b.arange(8), b.bin('add', b.arange(8, 5), b.nprog(0)));
    b.store(Out, b.arange(1, 8), b.bc(b.nprog(1), [1]));
    const mem = layout([{ dtype: 'i32', data: new Array<number>(9).fill(0) }]);
    interpret(b.kernel(), [1, 3, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(0))).toEqual([6, 7, 8, 9, 10, 11, 12, 13, 3]);
  });
});

describe('reduce', () => {
  const R = 4, C = 8;
  const xs = seq(R * C, (i) => Math.sin(i * 1.3) * 10 + 0.1);
  const ref = (fn: ReduceFn, v: number[]): number => fn === 'sum' ? fr(v.reduce((a, x) => a + x, 0)) : fn === 'max' ? Math.max(...v) : Math.min(...v);
  const rowOf = (i: number): number[] => xs.slice(i * C, i * C + C);
  const colOf = (j: number): number[] => Array.from({ length: R }, (_, i) => xs[i * C + j]!);

  test.each(['sum', 'max', 'min'] as const)('%s along axis 0, axis 1 and of a 1-D tile to a scalar', (fn) => {
    const got = run1([xs], C + R + 1, (b, [X], out) => {
      const t = b.load(X!, grid2(b, R, C));
      b.store(out, b.arange(C), b.reduce(fn, t, 0));
      b.store(out, b.arange(R, C), b.reduce(fn, t, 1));
      const flat = b.reshape(t, [R * C]);
      b.store(out, b.i32(C + R), b.reduce(fn, flat, 0));
    });
    const want = [...seq(C).map((j) => ref(fn, colOf(j))), ...seq(R).map((i) => ref(fn, rowOf(i))), ref(fn, xs)];
    expect(got).toEqual(want);
  });

  test('sum accumulates in f64 and rounds once', () => {
    // In f32 step by step, 2^24 + 1 + 1 + ... stays 2^24; in f64 the ones add up.
    const v = [2 ** 24, ...Array<number>(15).fill(1)];
    expect(run1([v], 1, (b, [X], out) => b.store(out, b.i32(0), b.reduce('sum', b.load(X!, b.arange(16)), 0)))).toEqual([2 ** 24 + 16]);
  });

  test('max/min propagate NaN', () => {
    const v = [1, 2, NaN, 4];
    const got = run1([v], 2, (b, [X], out) => {
      const t = b.load(X!, b.arange(4));
      b.store(out, b.i32(0), b.reduce('max', t, 0));
      b.store(out, b.i32(1), b.reduce('min', t, 0));
    });
    expect(got).toEqual([NaN, NaN]);
  });

  test('i32 sum wraps; i32 max/min', () => {
    const b = new IRB('isum');
    const X = b.tensor('X', 'i32'), Out = b.tensor('Out', 'i32');
    const t = b.load(X, b.arange(4));
    b.store(Out, b.i32(0), b.reduce('sum', t, 0));
    b.store(Out, b.i32(1), b.reduce('max', t, 0));
    b.store(Out, b.i32(2), b.reduce('min', t, 0));
    const mem = layout([{ dtype: 'i32', data: [2147483647, 2147483647, 5, -2147483648] }, { dtype: 'i32', data: [0, 0, 0] }]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(1))).toEqual([(2147483647 * 2 + 5 - 2147483648) | 0, 2147483647, -2147483648]);
  });
});

/** Naive matmul: each element's products summed in f64, plus acc, rounded once. */
function matmul(a: readonly number[], b: readonly number[], M: number, K: number, N: number, acc?: readonly number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k]! * b[k * N + j]!;
      out.push(fr(s + (acc ? acc[i * N + j]! : 0)));
    }
  }
  return out;
}

describe('dot', () => {
  test.each([[1, 1, 1], [4, 8, 2], [16, 4, 32], [2, 64, 8]])('[%i,%i] @ [%i-col] with and without acc', (M, K, N) => {
    const a = seq(M * K, (i) => Math.sin(i) * 2), bm = seq(K * N, (i) => Math.cos(i * 0.7));
    const acc = seq(M * N, (i) => i * 0.01 - 1);
    const got = run1([a, bm, acc], 2 * M * N, (b, [A, B, Acc], out) => {
      const ta = b.load(A!, grid2(b, M, K)), tb = b.load(B!, grid2(b, K, N));
      const offs = grid2(b, M, N);
      b.store(out, offs, b.dot(ta, tb));
      b.store(out, b.bin('add', offs, b.i32(M * N)), b.dot(ta, tb, b.load(Acc!, offs)));
    });
    expect(got).toEqual([...matmul(a, bm, M, K, N), ...matmul(a, bm, M, K, N, acc)]);
  });

  test('accumulates in f64: cancellation that f32 steps would lose', () => {
    const a = [1e8, 1, -1e8, 1], bm = [1, 1, 1, 1];
    const got = run1([a, bm], 1, (b, [A, B], out) => {
      b.store(out, b.i32(0), b.reshape(b.dot(b.load(A!, b.reshape(b.arange(4), [1, 4])), b.load(B!, b.reshape(b.arange(4), [4, 1]))), []));
    });
    expect(got).toEqual([2]);
  });

  test('a 256^3 matmul in 64x64 tiles with a K loop carrying the accumulator', () => {
    const S = 256, T = 64;
    const b = new IRB('matmul');
    const A = b.tensor('A'), B = b.tensor('B'), Cm = b.tensor('C');
    const rows = b.bin('add', b.bin('mul', b.pid(0), b.i32(T)), b.reshape(b.arange(T), [T, 1]));
    const cols = b.bin('add', b.bin('mul', b.pid(1), b.i32(T)), b.reshape(b.arange(T), [1, T]));
    const kk = b.arange(T);
    const zero = b.bc(b.const(0), [T, T]);
    const [acc] = b.for(b.i32(0), b.i32(S), b.i32(T), [zero], (k, [c]) => {
      const ak = b.bin('add', k, b.reshape(kk, [1, T]));
      const bk = b.bin('add', k, b.reshape(kk, [T, 1]));
      const ta = b.load(A, b.bin('add', b.bin('mul', rows, b.i32(S)), ak));
      const tb = b.load(B, b.bin('add', b.bin('mul', bk, b.i32(S)), cols));
      return [b.dot(ta, tb, c)];
    });
    b.store(Cm, b.bin('add', b.bin('mul', rows, b.i32(S)), cols), acc!);
    const a = seq(S * S, (i) => ((i * 7919) % 1000) / 500 - 1), bm = seq(S * S, (i) => ((i * 104729) % 997) / 498 - 1);
    const mem = layout([{ dtype: 'f32', data: a }, { dtype: 'f32', data: bm }, { dtype: 'f32', data: new Array<number>(S * S).fill(0) }]);
    interpret(b.kernel(), [S / T, S / T, 1], mem.args, mem.memory);
    const got = mem.read(2);
    // Each K block is rounded to f32 when it is carried, so compare with a tolerance.
    const want = new Float64Array(S * S);
    for (let i = 0; i < S; i++) for (let k = 0; k < S; k++) {
      const aik = a[i * S + k]!;
      for (let j = 0; j < S; j++) want[i * S + j]! += aik * bm[k * S + j]!;
    }
    let worst = 0;
    for (let i = 0; i < S * S; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
    expect(worst).toBeLessThan(1e-5);
    expect(mem.guardsIntact()).toBe(true);
  });
});
