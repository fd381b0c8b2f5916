/**
 * @fileoverview The reference interpreter's control flow and faults on hand-built IR: loops
 * with carried tiles (ascending, descending, zero trip, bad steps, near 2^31), ifs with
 * results, early returns, program order and numPrograms, load-after-store, out-of-bounds
 * errors that write nothing, and argument checks.
 */
import { describe, expect, test } from 'vitest';
import { KernelRuntimeError } from '../src/errors.js';
import { interpret, type InterpArg } from '../src/interp/index.js';
import type { KernelIR } from '../src/ir/ir.js';
import { IRB, layout, type Layout } from './util/irb.js';

const fr = Math.fround;
const zeros = (n: number): number[] => new Array<number>(n).fill(0);
const tensor = (byteOffset: number, length: number): InterpArg => ({ kind: 'tensor', byteOffset, length });

/** Runs `ir` and returns the error it threw (fails if none). */
function fault(ir: KernelIR, grid: [number, number, number], mem: Layout): KernelRuntimeError {
  try {
    interpret(ir, grid, mem.args, mem.memory);
  } catch (e) {
    expect(e).toBeInstanceOf(KernelRuntimeError);
    return e as KernelRuntimeError;
  }
  return expect.fail('expected a KernelRuntimeError');
}

describe('for', () => {
  test('a carried tile sums X block by block; each program sums its own row', () => {
    const BLOCK = 16, n = 100, rows = 3;
    const b = new IRB('rowsum');
    const X = b.tensor('X'), Out = b.tensor('Out');
    const nn = b.scalar('n');
    const row = b.bin('mul', b.pid(0), nn);
    const [acc, count] = b.for(b.i32(0), nn, b.i32(BLOCK), [b.bc(b.const(0), [BLOCK]), b.i32(0)], (k, [a, c]) => {
      const i = b.bin('add', k, b.arange(BLOCK));
      const m = b.bin('lt', i, nn);
      return [b.bin('add', a!, b.load(X, b.bin('add', row, i), m)), b.bin('add', c!, b.i32(1))];
    });
    b.store(Out, b.bin('mul', b.pid(0), b.i32(2)), b.reduce('sum', acc!, 0));
    b.store(Out, b.bin('add', b.bin('mul', b.pid(0), b.i32(2)), b.i32(1)), b.cast(count!, 'f32'));
    const xs = Array.from({ length: n * rows }, (_, i) => fr(Math.sin(i)));
    const mem = layout([{ dtype: 'f32', data: xs }, { dtype: 'f32', data: zeros(2 * rows) }, n]);
    interpret(b.kernel(), [rows, 1, 1], mem.args, mem.memory);
    // Lane l sums X[row + l], X[row + l + 16], ... in f32 steps; then the lanes sum in f64.
    const want: number[] = [];
    for (let r = 0; r < rows; r++) {
      const lanes = zeros(BLOCK);
      for (let k = 0; k < n; k += BLOCK) for (let l = 0; l < BLOCK; l++) lanes[l] = fr(lanes[l]! + (k + l < n ? xs[r * n + k + l]! : 0));
      want.push(fr(lanes.reduce((s, v) => s + v, 0)), Math.ceil(n / BLOCK));
    }
    expect(Array.from(mem.read(1))).toEqual(want);
  });

  /** Records the induction variables of a loop, in order, and the trip count after it. */
  function trace(start: number, end: number, step: number, descending: boolean): number[] {
    const b = new IRB('trace');
    const Log = b.tensor('Log', 'i32');
    const [s, e, st] = [b.scalar('start'), b.scalar('end'), b.scalar('step')];
    const [n] = b.for(s, e, st, [b.i32(0)], (iv, [c]) => {
      b.store(Log, b.bin('add', c!, b.i32(1)), iv);
      return [b.bin('add', c!, b.i32(1))];
    }, descending);
    b.store(Log, b.i32(0), n!);
    const mem = layout([{ dtype: 'i32', data: zeros(16) }, start, end, step]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    const log = Array.from(mem.read(0));
    return log.slice(1, 1 + log[0]!);
  }

  test.each([
    ['ascending', 0, 10, 3, false, [0, 3, 6, 9]],
    ['descending', 10, 0, -3, true, [10, 7, 4, 1]],
    ['descending to a negative end', 2, -5, -2, true, [2, 0, -2, -4]],
    ['zero trip (start == end)', 5, 5, 1, false, []],
    ['zero trip (start past end)', 7, 3, 1, false, []],
    ['descending zero trip', 3, 7, -1, true, []],
    ['zero step', 0, 10, 0, false, []],
    ['wrongly signed step (ascending, negative)', 0, 10, -1, false, []],
    ['wrongly signed step (descending, positive)', 10, 0, 1, true, []],
    ['stops at 2^31 instead of wrapping', 2147483642, 2147483647, 2, false, [2147483642, 2147483644, 2147483646]],
    ['stops at -2^31 instead of wrapping', -2147483643, -2147483648, -2, true, [-2147483643, -2147483645, -2147483647]],
  ] as const)('%s', (_, start, end, step, descending, want) => {
    expect(trace(start, end, step, descending)).toEqual(want);
  });

  test('a loop with no iteration yields its inits; nested loops see the outer iv', () => {
    const b = new IRB('nest');
    const Out = b.tensor('Out', 'i32');
    const [untouched] = b.for(b.i32(3), b.i32(3), b.i32(1), [b.i32(42)], (_iv, [c]) => [b.bin('add', c!, b.i32(1))]);
    const [total] = b.for(b.i32(0), b.i32(4), b.i32(1), [b.i32(0)], (i, [t]) => {
      const [inner] = b.for(b.i32(0), i, b.i32(1), [t!], (j, [u]) => [b.bin('add', u!, b.bin('add', b.bin('mul', i, b.i32(10)), j))]);
      return [inner!];
    });
    b.store(Out, b.i32(0), untouched!);
    b.store(Out, b.i32(1), total!);
    const mem = layout([{ dtype: 'i32', data: [0, 0] }]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    // Pairs (i, j) with j < i < 4: sum of 10 i + j.
    expect(Array.from(mem.read(0))).toEqual([42, 10 * (1 + 2 + 2 + 3 + 3 + 3) + (0 + 0 + 1 + 0 + 1 + 2)]);
  });

  test('a yield that is another carried value swaps them each iteration', () => {
    const b = new IRB('swap');
    const Out = b.tensor('Out', 'i32');
    const [x, y] = b.for(b.i32(0), b.i32(3), b.i32(1), [b.i32(1), b.i32(2)], (_iv, [p, q]) => [q!, p!]);
    b.store(Out, b.i32(0), x!);
    b.store(Out, b.i32(1), y!);
    const mem = layout([{ dtype: 'i32', data: [0, 0] }]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(0))).toEqual([2, 1]);
  });
});

describe('if and return', () => {
  test('if with results picks the branch per program', () => {
    const b = new IRB('branch');
    const X = b.tensor('X'), Out = b.tensor('Out');
    const p = b.pid(0);
    const i = b.bin('add', b.bin('mul', p, b.i32(4)), b.arange(4));
    const x = b.load(X, i);
    const even = b.bin('eq', b.bin('rem', p, b.i32(2)), b.i32(0));
    const [y, tag] = b.if(even, () => [b.bin('mul', x, b.const(2)), b.const(1)], () => [b.bin('add', x, b.const(100)), b.const(-1)]);
    b.store(Out, i, b.bin('mul', y!, tag!));
    const xs = Array.from({ length: 12 }, (_, k) => k + 0.5);
    const mem = layout([{ dtype: 'f32', data: xs }, { dtype: 'f32', data: zeros(12) }]);
    interpret(b.kernel(), [3, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(1))).toEqual(xs.map((x, k) => (Math.floor(k / 4) % 2 === 0 ? x * 2 : -(x + 100))));
  });

  test('return ends the program from inside a loop and an if; earlier stores stay', () => {
    const b = new IRB('early');
    const Out = b.tensor('Out', 'i32');
    const p = b.pid(0);
    const base = b.bin('mul', p, b.i32(8));
    b.store(Out, base, b.i32(-1));
    b.for(b.i32(1), b.i32(8), b.i32(1), [], (iv) => {
      b.if(b.bin('eq', iv, b.bin('add', p, b.i32(2))), () => {
        b.ret();
        return [];
      });
      b.store(Out, b.bin('add', base, iv), iv);
      return [];
    });
    b.store(Out, base, b.i32(99)); // only reached by programs whose loop ran out
    const mem = layout([{ dtype: 'i32', data: zeros(32) }]);
    interpret(b.kernel(), [4, 1, 1], mem.args, mem.memory);
    const want: number[] = [];
    for (let q = 0; q < 4; q++) for (let k = 0; k < 8; k++) want.push(k === 0 ? -1 : k < q + 2 ? k : 0);
    expect(Array.from(mem.read(0))).toEqual(want);
  });

  test('a top-level return skips the rest of that program only', () => {
    const b = new IRB('skip');
    const Out = b.tensor('Out', 'i32');
    const p = b.pid(0);
    b.if(b.bin('ge', p, b.i32(2)), () => {
      b.ret();
      return [];
    });
    b.store(Out, p, b.bin('add', p, b.i32(10)));
    const mem = layout([{ dtype: 'i32', data: zeros(4) }]);
    interpret(b.kernel(), [4, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(0))).toEqual([10, 11, 0, 0]);
  });
});

describe('memory order and grid', () => {
  test('programs run p0 fastest, then p1, then p2; a load sees earlier stores', () => {
    const b = new IRB('order');
    const Log = b.tensor('Log', 'i32'), Cnt = b.tensor('Cnt', 'i32');
    const zero = b.i32(0);
    const n = b.load(Cnt, zero);
    const id = b.bin('add', b.pid(0), b.bin('add', b.bin('mul', b.pid(1), b.i32(10)), b.bin('mul', b.pid(2), b.i32(100))));
    const sizes = b.bin('add', b.nprog(0), b.bin('add', b.bin('mul', b.nprog(1), b.i32(10)), b.bin('mul', b.nprog(2), b.i32(100))));
    b.store(Log, n, b.bin('add', b.bin('mul', sizes, b.i32(1000)), id));
    b.store(Cnt, zero, b.bin('add', n, b.i32(1)));
    const mem = layout([{ dtype: 'i32', data: zeros(12) }, { dtype: 'i32', data: [0] }]);
    interpret(b.kernel(), [3, 2, 2], mem.args, mem.memory);
    const want: number[] = [];
    for (let p2 = 0; p2 < 2; p2++) for (let p1 = 0; p1 < 2; p1++) for (let p0 = 0; p0 < 3; p0++) want.push(223000 + p0 + 10 * p1 + 100 * p2);
    expect(Array.from(mem.read(0))).toEqual(want);
    expect(Array.from(mem.read(1))).toEqual([12]);
  });

  test('an empty grid runs nothing; a SharedArrayBuffer works like an ArrayBuffer', () => {
    const b = new IRB('fill');
    const Out = b.tensor('Out');
    b.store(Out, b.arange(4), b.bc(b.const(7), [4]));
    const ir = b.kernel();
    const mem = layout([{ dtype: 'f32', data: zeros(4) }], true);
    interpret(ir, [0, 5, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(0))).toEqual([0, 0, 0, 0]);
    interpret(ir, [1, 1, 1], mem.args, mem.memory);
    expect(mem.memory).toBeInstanceOf(SharedArrayBuffer);
    expect(Array.from(mem.read(0))).toEqual([7, 7, 7, 7]);
  });

  test('masked-off lanes neither read nor write, even out of bounds; `other` fills them', () => {
    const b = new IRB('masked');
    const X = b.tensor('X'), Out = b.tensor('Out');
    const i = b.bin('sub', b.arange(8), b.i32(2)); // -2 .. 5; X and Out have 4 elements
    const m = b.bin('and', b.bin('ge', i, b.i32(0)), b.bin('lt', i, b.i32(4)));
    const x = b.load(X, i, m, b.bc(b.const(-9), [8]));
    b.store(Out, b.bin('and', b.arange(8), b.i32(3)), x, b.bin('lt', b.arange(8), b.i32(4)));
    const mem = layout([{ dtype: 'f32', data: [1, 2, 3, 4] }, { dtype: 'f32', data: zeros(4) }]);
    interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory);
    expect(Array.from(mem.read(1))).toEqual([-9, -9, 1, 2]);
    expect(mem.guardsIntact()).toBe(true);
  });
});

describe('faults', () => {
  test('an out-of-bounds store names kernel, program, position, offset and length, and writes nothing', () => {
    const b = new IRB('writer');
    const Out = b.tensor('Out');
    const p = b.pid(0);
    const i = b.bin('add', b.bin('mul', p, b.i32(4)), b.arange(4));
    const v = b.cast(i, 'f32');
    b.at(12, 5);
    b.store(Out, i, b.bin('add', v, b.const(1))); // the const and add also sit at 12:5
    const mem = layout([{ dtype: 'f32', data: zeros(10) }]);
    const e = fault(b.kernel(), [3, 1, 1], mem);
    expect(e.message).toBe("kernel 'writer' program (2, 0, 0) at 12:5: store to tensor 'Out' at offset 10 (lane 2), outside [0, 10): the tensor has 10 elements");
    expect(e.programId).toEqual([2, 0, 0]);
    // Programs 0 and 1 wrote; program 2's in-bounds lanes (8, 9) were not written.
    expect(Array.from(mem.read(0))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 0, 0]);
    expect(mem.guardsIntact()).toBe(true);
  });

  test('an out-of-bounds load (negative offset) is reported with its position and name', () => {
    const b = new IRB('reader');
    const X = b.tensor('Xs', 'f16'), Out = b.tensor('Out');
    const offs = b.bin('sub', b.arange(4), b.bc(b.pid(1), [4]));
    b.at(3, 14);
    const x = b.load(X, offs);
    b.at();
    b.store(Out, b.arange(4), x);
    const mem = layout([{ dtype: 'f16', data: [0x3c00, 0x4000, 0x4200, 0x4400] }, { dtype: 'f32', data: zeros(4) }]);
    const e = fault(b.kernel(), [1, 2, 1], mem);
    expect(e.message).toBe("kernel 'reader' program (0, 1, 0) at 3:14: load from tensor 'Xs' at offset -1 (lane 0), outside [0, 4): the tensor has 4 elements");
    expect(Array.from(mem.read(1))).toEqual([1, 2, 3, 4]);
  });

  test('errors use the kernelName option when given', () => {
    const b = new IRB('ir-name');
    const Out = b.tensor('Out');
    b.store(Out, b.i32(5), b.const(1));
    const mem = layout([{ dtype: 'f32', data: zeros(2) }]);
    expect(() => interpret(b.kernel(), [1, 1, 1], mem.args, mem.memory, { kernelName: 'userName' })).toThrow(/^kernel 'userName' program \(0, 0, 0\)/);
  });
});

describe('argument checks', () => {
  const b = new IRB('args');
  const X = b.tensor('X', 'f32'), H = b.tensor('H', 'bf16');
  const n = b.scalar('n'), s = b.scalar('s', 'f32');
  b.store(X, b.i32(0), b.bin('add', b.load(H, b.i32(0)), b.bin('add', s, b.cast(n, 'f32'))));
  const ir = b.kernel();
  const mem = (): Layout => layout([{ dtype: 'f32', data: [0, 0, 0, 0] }, { dtype: 'bf16', data: [0x3f80, 0] }, 2, 0.5]);

  test('good arguments run', () => {
    const m = mem();
    interpret(ir, [1, 1, 1], m.args, m.memory);
    expect(Array.from(m.read(0))).toEqual([3.5, 0, 0, 0]);
  });

  test.each([
    ['too few arguments', (a: Layout['args']) => a.slice(0, 3), /interpret 'args': expected 4 arguments \(X, H, n, s\), got 3/],
    ['a number for a tensor', (a: Layout['args']) => [5, ...a.slice(1)], /argument 0 \('X'\) must be a tensor/],
    ['a tensor for a scalar', (a: Layout['args']) => [a[0]!, a[1]!, a[0]!, a[3]!], /argument 2 \('n'\) must be a i32 number, got a tensor/],
    ['a fractional i32', (a: Layout['args']) => [a[0]!, a[1]!, 2.5, a[3]!], /argument 2 \('n'\) must be an i32 integer, got 2.5/],
    ['an i32 out of range', (a: Layout['args']) => [a[0]!, a[1]!, 2 ** 31, a[3]!], /must be an i32 integer/],
    ['a misaligned f32 tensor', (a: Layout['args']) => [tensor(34, 2), ...a.slice(1)], /argument 0 \('X'\): byteOffset 34 is not aligned to 4 bytes for f32/],
    ['a misaligned bf16 tensor', (a: Layout['args']) => [a[0]!, tensor(33, 2), ...a.slice(2)], /byteOffset 33 is not aligned to 2 bytes for bf16/],
    ['a tensor past the buffer', (a: Layout['args']) => [tensor(32, 1e6), ...a.slice(1)], /1000000 f32 elements at byte 32 end at byte 4000032, past the buffer's \d+ bytes/],
    ['a negative length', (a: Layout['args']) => [tensor(32, -1), ...a.slice(1)], /length -1 is not a non-negative integer/],
  ] as const)('%s is a clear error', (_, edit, msg) => {
    const m = mem();
    expect(() => interpret(ir, [1, 1, 1], edit(m.args), m.memory)).toThrow(msg);
  });

  test('a bad grid is a clear error', () => {
    const m = mem();
    expect(() => interpret(ir, [1, -1, 1], m.args, m.memory)).toThrow(/grid \[1, -1, 1\] must hold three non-negative integers/);
    expect(() => interpret(ir, [1.5, 1, 1], m.args, m.memory)).toThrow(/grid/);
  });

  test('f32 scalars may be NaN or infinite', () => {
    const m = layout([{ dtype: 'f32', data: [0] }, { dtype: 'bf16', data: [0] }, 0, -Infinity]);
    interpret(ir, [1, 1, 1], m.args, m.memory);
    expect(Array.from(m.read(0))).toEqual([-Infinity]);
  });
});
