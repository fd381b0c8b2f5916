/**
 * @fileoverview Test data and comparisons shared by the op tests: seeded inputs, the largest
 * error (NaN counts as infinite), and an elementwise tolerance check that names the first miss.
 */
import { expect } from 'vitest';

/** n values in [-scale, scale) from a seeded linear congruential generator. */
export function rand(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => (((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1) * scale);
}

/** max |got - want|; Infinity if any difference is NaN. */
export function maxErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i]! - want[i]!);
    e = Number.isNaN(d) ? Infinity : Math.max(e, d);
  }
  return e;
}

/** Every |got - want| <= abs + rel·|want|, else a failure naming the element. */
export function close(got: ArrayLike<number>, want: ArrayLike<number>, rel: number, abs: number, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= abs + rel * Math.abs(want[i]!))) expect.fail(`${what}[${i}]: got ${got[i]}, want ${want[i]} (err ${err.toExponential(2)})`);
  }
}
