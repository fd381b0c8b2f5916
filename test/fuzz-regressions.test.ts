/**
 * @fileoverview Minimal kernels the random-program fuzzer (test/fuzz) found wrong, each kept
 * with the values it must produce, compiled and interpreted.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { jit } from '../src/kernel.js';
import { Runtime } from '../src/runtime/runtime.js';

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.create({ threads: 0 });
});
afterAll(() => rt.dispose());

describe('fuzzer finds', () => {
  test('abs of an integer constant stays an integer (it folded to a float and broke i32 expressions)', async () => {
    const k = jit(`function k(X, Out, k, n, B) {
  const i = programId(0) * B + arange(B);
  const m = i < n;
  const x = load(X, i, m);
  store(Out, i, (abs(-3) ^ k) + abs(where(i != x, i, abs(7))), m);
}`, { signature: { X: 'ptr', Out: 'ptr', k: 'i32', n: 'i32', B: 'constexpr' } });
    const x = rt.tensor(Int32Array.from([0, 5, 2, 9, 4]), [5], 'i32');
    // i != x picks i, else abs(7) = 7; (3 ^ 6) = 5.
    const want = [5 + 7, 5 + 1, 5 + 7, 5 + 3, 5 + 7];
    for (const mode of ['launch', 'interpret'] as const) {
      const out = rt.tensor(new Int32Array(5), [5], 'i32');
      await k[mode]({ grid: [2], B: 4 }, x, out, 6, 5);
      expect(Array.from(out.toArray()), mode).toEqual(want);
      out.free();
    }
    x.free();
  });

  test('a constexpr >>> gives an i32, as at run time (it folded to 2^32-1, a float)', async () => {
    const k = jit(`function k(X, Out, n, B) {
  const i = programId(0) * B + arange(B);
  const x = load(X, i, i < n);
  store(Out, i, x & abs((-1) >>> 0), i < n);
  store(Out, i + B, ((-16) >>> 2) + x * 0, i < n);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', B: 'constexpr' } });
    const x = rt.tensor(Int32Array.from([5, -7, 12, 0]), [4], 'i32');
    for (const mode of ['launch', 'interpret'] as const) {
      const out = rt.tensor(new Int32Array(8), [8], 'i32');
      await k[mode]({ grid: [1], B: 4 }, x, out, 4);
      // abs(-1 as i32) = 1; -16 >>> 2 = 0x3ffffffc.
      expect(Array.from(out.toArray()), mode).toEqual([1, 1, 0, 0, 0x3ffffffc, 0x3ffffffc, 0x3ffffffc, 0x3ffffffc]);
      out.free();
    }
    x.free();
  });

  test('abs and negation of a constexpr -2^31 wrap to -2^31 like the run-time i32 ops (they became 2^31, a float)', async () => {
    const k = jit(`function k(X, Out, n, B) {
  const i = programId(0) * B + arange(B);
  const x = load(X, i, i < n);
  store(Out, i, abs((-3) << 31) ^ x, i < n);
  store(Out, i + B, abs(x), i < n);
  store(Out, i + 2 * B, (-((-3) << 31)) ^ x, i < n);
  store(Out, i + 3 * B, -x, i < n);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', B: 'constexpr' } });
    const x = rt.tensor(Int32Array.from([0, 5, -2147483648, -7]), [4], 'i32');
    for (const mode of ['launch', 'interpret'] as const) {
      const out = rt.tensor(new Int32Array(16), [16], 'i32');
      await k[mode]({ grid: [1], B: 4 }, x, out, 4);
      const m = -2147483648;
      const xor = [m ^ 0, m ^ 5, m ^ m, m ^ -7];
      expect(Array.from(out.toArray()), mode).toEqual([...xor, 0, 5, m, 7, ...xor, 0, -5, m, 7]);
      out.free();
    }
    x.free();
  });

  test('-2^31 as a constexpr is an i32 (it was taken for a float)', async () => {
    const k = jit(`function k(X, Out, n, B) {
  const i = programId(0) * B + arange(B);
  const x = load(X, i, i < n);
  store(Out, i, ((2 << 30) & x) + (~minimum((-1) << 31, x)), i < n);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', B: 'constexpr' } });
    const x = rt.tensor(Int32Array.from([-1, 5, -2147483648, 0]), [4], 'i32');
    for (const mode of ['launch', 'interpret'] as const) {
      const out = rt.tensor(new Int32Array(4), [4], 'i32');
      await k[mode]({ grid: [1], B: 4 }, x, out, 4);
      // (-2^31 & x) + ~(-2^31) = (-2^31 & x) + 2^31-1, wrapping.
      expect(Array.from(out.toArray()), mode).toEqual([-1, 2147483647, -1, 2147483647]);
      out.free();
    }
    x.free();
  });
});
