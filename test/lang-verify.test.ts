/**
 * @fileoverview The IR verifier rejects broken IR (each invariant of ir.ts on a hand-built
 * program) and printIR shows nested blocks indented, one instruction per line.
 */
import { describe, expect, test } from 'vitest';
import type { ForI, KernelIR, Value } from '../src/ir/ir.js';
import { printIR } from '../src/ir/print.js';
import { verify } from '../src/ir/verify.js';
import { compile } from './util/lang.js';

const loc = { line: 1, column: 1 };
const params: KernelIR['params'] = [{ kind: 'tensor', name: 'X', dtype: 'f32' }, { kind: 'scalar', name: 'n', dtype: 'i32' }];
const kernel = (body: KernelIR['body'], numValues = 100): KernelIR => ({ name: 't', params, body, numValues });
const c = (id: number, value: number, dtype: Value['dtype'] = 'i32'): Value => ({ op: 'const', id, value, dtype, shape: [], loc });
const ar = (id: number, n: number): Value => ({ op: 'arange', id, start: 0, dtype: 'i32', shape: [n], loc });

describe('verify', () => {
  test('accepts a well-formed program', () => {
    const a = ar(0, 4);
    const one = c(1, 1);
    const b: Value = { op: 'broadcast', id: 2, src: one, dtype: 'i32', shape: [4], loc };
    const s: Value = { op: 'binary', id: 3, fn: 'add', a, b, dtype: 'i32', shape: [4], loc };
    const v: Value = { op: 'cast', id: 4, src: s, dtype: 'f32', shape: [4], loc };
    expect(() => verify(kernel([a, one, b, s, v, { op: 'store', loc, ptr: 0, offsets: a, value: v }], 5))).not.toThrow();
  });

  test.each([
    ['implicit broadcast', () => {
      const a = ar(0, 4);
      const one = c(1, 1);
      return kernel([a, one, { op: 'binary', id: 2, fn: 'add', a, b: one, dtype: 'i32', shape: [4], loc }]);
    }, /broadcast explicitly/],
    ['use before definition', () => {
      const a = ar(0, 4);
      const one = c(1, 1);
      return kernel([{ op: 'broadcast', id: 2, src: one, dtype: 'i32', shape: [4], loc }, a, one]);
    }, /before it is defined/],
    ['duplicate id', () => kernel([c(0, 1), c(0, 2)]), /defined twice/],
    ['id outside numValues', () => kernel([c(7, 1)], 3), /numValues/],
    ['dim not a power of two', () => kernel([ar(0, 6)]), /power of two/],
    ['mixed operand dtypes', () => {
      const a = c(0, 1);
      const b = c(1, 1, 'f32');
      return kernel([a, b, { op: 'binary', id: 2, fn: 'add', a, b, dtype: 'f32', shape: [], loc }]);
    }, /dtypes differ/],
    ['comparison that is not bool', () => {
      const a = c(0, 1);
      return kernel([a, { op: 'binary', id: 1, fn: 'lt', a, b: a, dtype: 'i32', shape: [], loc }]);
    }, /bool/],
    ['f32 stored into an i32 tensor', () => {
      const o = c(0, 0);
      const v = c(1, 1.5, 'f32');
      return { ...kernel([o, v, { op: 'store', loc, ptr: 0, offsets: o, value: v }]), params: [{ kind: 'tensor', name: 'X', dtype: 'i32' }] } as KernelIR;
    }, /takes i32/],
    ['load from a scalar param', () => {
      const o = c(0, 0);
      return kernel([o, { op: 'load', id: 1, ptr: 1, offsets: o, dtype: 'f32', shape: [], loc }]);
    }, /not a tensor/],
    ['loop-body value used after the loop', () => {
      const zero = c(0, 0);
      const inner = c(1, 5);
      const loop: ForI = {
        op: 'for', loc, iv: { op: 'iv', id: 2, dtype: 'i32', shape: [], loc }, start: zero, end: zero, step: zero,
        descending: false, inits: [], carried: [], body: [inner], yields: [], results: [],
      };
      return kernel([zero, loop, { op: 'unary', id: 3, fn: 'neg', src: inner, dtype: 'i32', shape: [], loc }]);
    }, /outside its block/],
    ['carried value changes type', () => {
      const zero = c(0, 0);
      const f = c(1, 0, 'f32');
      const loop: ForI = {
        op: 'for', loc, iv: { op: 'iv', id: 2, dtype: 'i32', shape: [], loc }, start: zero, end: zero, step: zero, descending: false,
        inits: [zero], carried: [{ op: 'carried', id: 3, dtype: 'i32', shape: [], loc }], body: [f], yields: [f],
        results: [{ op: 'result', id: 4, dtype: 'i32', shape: [], loc }],
      };
      return kernel([zero, loop]);
    }, /changes type/],
    ['dot inner dims', () => {
      const a: Value = { op: 'broadcast', id: 1, src: c(0, 0, 'f32'), dtype: 'f32', shape: [4, 8], loc };
      return kernel([(a as { src: Value }).src, a, { op: 'dot', id: 2, a, b: a, dtype: 'f32', shape: [4, 8], loc }]);
    }, /dot shapes/],
  ] as [string, () => KernelIR, RegExp][])('rejects %s', (_, build, msg) => {
    expect(() => verify(build())).toThrow(msg);
  });
});

describe('printIR', () => {
  test('one instruction per line, nested blocks indented, carried values and yields shown', () => {
    const ir = compile(`function k(X, n) {
      let acc = zeros([4]);
      for (let i = 0; i < n; i++) {
        if (i > 2) { acc = acc + 1.0; }
      }
      store(X, arange(4), acc);
    }`, { X: 'ptr', n: 'i32' });
    const text = printIR(ir);
    const lines = text.split('\n');
    expect(lines[0]).toBe('kernel k(p0 X: *f32, p1 n: i32) {');
    expect(lines.at(-1)).toBe('}');
    const forLine = lines.findIndex((l) => l.startsWith('  for '));
    expect(lines[forLine]).toMatch(/^ {2}for %\d+ = %\d+; < %\d+; \+= %\d+ carry \(%\d+: f32\[4\] = %\d+\) \{$/);
    const ifLine = lines.findIndex((l) => l.startsWith('    if '));
    expect(ifLine).toBeGreaterThan(forLine);
    expect(lines.some((l) => /^ {6}%\d+: f32\[4\] = add %\d+, %\d+$/.test(l))).toBe(true);
    expect(lines.some((l) => /^ {6}yield %\d+$/.test(l))).toBe(true);
    expect(lines.some((l) => /^ {2}\} -> %\d+$/.test(l))).toBe(true);
    expect(lines.some((l) => /^ {2}store p0\[%\d+\] = %\d+$/.test(l))).toBe(true);
    // Every value appears once on the left of an '='.
    const defs = lines.map((l) => /^\s*(%\d+):/.exec(l)?.[1]).filter(Boolean);
    expect(new Set(defs).size).toBe(defs.length);
  });
});
