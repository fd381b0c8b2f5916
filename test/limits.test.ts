/**
 * @fileoverview Compile limits: every way a small source can ask for unbounded compile work
 * (deep nesting, unrolling, inlining, huge tiles, huge IR, huge code, long compiles) ends in a
 * KernelCompileError with code E_LIMIT that names the limit and points at the source.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { KernelCompileError } from '../src/errors.js';
import {
  DEFAULT_LIMITS, MAX_CODE_BYTES, MAX_COMPILE_MS, MAX_INLINE_DEPTH, MAX_IR_VALUES, MAX_NESTING_DEPTH, MAX_SCRATCH_BYTES,
  MAX_SOURCE_LENGTH, MAX_TILE_ELEMENTS, MAX_UNROLL,
} from '../src/index.js';
import { jit } from '../src/kernel.js';
import { Runtime } from '../src/runtime/runtime.js';
import { compile, compileError } from './util/lang.js';

/** 1-based line:column of the `nth` occurrence of `needle` in `src`. */
function at(src: string, needle: string, nth = 0): string {
  let i = -1;
  for (let k = 0; k <= nth; k++) {
    i = src.indexOf(needle, i + 1);
    if (i < 0) throw new Error(`'${needle}' not in source`);
  }
  const before = src.slice(0, i).split('\n');
  return `${before.length}:${before[before.length - 1]!.length + 1}`;
}

function expectLimit(e: KernelCompileError, limit: string, where: string): void {
  expect(e.code).toBe('E_LIMIT');
  expect(e.diagnostics).toHaveLength(1);
  expect(e.diagnostics[0]!.message).toContain(limit);
  expect(`${e.line}:${e.column}`).toBe(where);
  expect(e.message).toContain(`E_LIMIT at`);
}

const P = { Out: 'ptr' } as const;

describe('front-end limits', () => {
  test('the limits are exported with their documented values', () => {
    expect({ MAX_SOURCE_LENGTH, MAX_NESTING_DEPTH, MAX_UNROLL, MAX_INLINE_DEPTH, MAX_TILE_ELEMENTS, MAX_IR_VALUES, MAX_SCRATCH_BYTES, MAX_CODE_BYTES, MAX_COMPILE_MS }).toEqual({
      MAX_SOURCE_LENGTH: 1 << 20, MAX_NESTING_DEPTH: 256, MAX_UNROLL: 4096, MAX_INLINE_DEPTH: 16, MAX_TILE_ELEMENTS: 65536,
      MAX_IR_VALUES: 65536, MAX_SCRATCH_BYTES: 16 << 20, MAX_CODE_BYTES: 1 << 20, MAX_COMPILE_MS: 30_000,
    });
    expect(DEFAULT_LIMITS).toEqual({ maxCodeBytes: MAX_CODE_BYTES, maxCompileMs: MAX_COMPILE_MS, maxIrValues: MAX_IR_VALUES });
  });

  test('MAX_SOURCE_LENGTH: the error points at the first character past the limit', () => {
    const pad = `// ${'x'.repeat(100)}\n`.repeat(Math.ceil(MAX_SOURCE_LENGTH / 104) + 1);
    const src = `function k(Out) {\n${pad}  store(Out, 0, 1.0);\n}`;
    const e = compileError(src, P);
    const before = src.slice(0, MAX_SOURCE_LENGTH).split('\n');
    expectLimit(e, 'MAX_SOURCE_LENGTH', `${before.length}:${before[before.length - 1]!.length + 1}`);
  });

  test('MAX_NESTING_DEPTH: a long expression chain, deep blocks, and nesting that would overflow the parser', () => {
    // A flat chain counts a level per 16 terms.
    const terms = MAX_NESTING_DEPTH * 16 + 10;
    const chain = `function k(Out, n) {\n  store(Out, 0, n${' + n'.repeat(terms)});\n}`;
    const e1 = compileError(chain, { Out: 'ptr', n: 'i32' });
    expect(e1.code).toBe('E_LIMIT');
    expect(e1.message).toContain('MAX_NESTING_DEPTH');
    expect(e1.line).toBe(2);
    const blocks = `function k(Out) {\n  ${'{'.repeat(300)}\n  store(Out, 0, 1.0);\n  ${'}'.repeat(300)}\n}`;
    expect(compileError(blocks, P).code).toBe('E_LIMIT');
    // Deep enough that the parser itself runs out of stack: still a coded error, not a crash.
    const parens = `function k(Out) {\n  store(Out, 0, ${'('.repeat(50_000)}1.0${')'.repeat(50_000)});\n}`;
    const e3 = compileError(parens, P);
    expect(e3.code).toBe('E_LIMIT');
    expect(e3.line).toBe(2);
    // Below the limit compiles: a 4000-term sum (a chain nested as deep as the limit refuses).
    const ok = compile(`function k(Out, n) {\n  store(Out, 0, n${' + n'.repeat(3999)});\n}`, { Out: 'ptr', n: 'i32' });
    expect(ok.numValues).toBeGreaterThan(4000);
    // ... but nesting on the right, n + (n + (n + ...)), counts a level a term.
    const nested = `function k(Out, n) {\n  store(Out, 0, ${'n + ('.repeat(MAX_NESTING_DEPTH)}n${')'.repeat(MAX_NESTING_DEPTH)});\n}`;
    expect(compileError(nested, { Out: 'ptr', n: 'i32' }).code).toBe('E_LIMIT');
  });

  test('MAX_UNROLL counts nested staticRange loops together', () => {
    const src = 'function k(Out) {\n  for (const i of staticRange(64)) {\n    for (const j of staticRange(65)) { store(Out, i * 65 + j, 1.0); }\n  }\n}';
    // Every iteration counts, outer ones too: 64 + 64 * 65 > 4096, and the inner loop's
    // iteration that crosses the limit is blamed.
    expectLimit(compileError(src, P), 'MAX_UNROLL', at(src, 'for', 1));
    // 63 + 63 * 64 = 4095 fits.
    compile('function k(Out) {\n  for (const i of staticRange(63)) {\n    for (const j of staticRange(64)) { store(Out, i * 64 + j, 1.0); }\n  }\n}', P);
  });

  test('MAX_INLINE_DEPTH: a chain of helpers inlined inside each other', () => {
    const helpers: Record<string, string> = {};
    const n = MAX_INLINE_DEPTH + 2;
    for (let i = 0; i < n; i++) helpers[`h${i}`] = i === n - 1 ? `function h${i}(x) { return x; }` : `function h${i}(x) { return h${i + 1}(x) + 1.0; }`;
    const src = 'function k(Out) {\n  store(Out, 0, h0(1.0));\n}';
    const e = compileError(src, P, { helpers });
    expect(e.code).toBe('E_LIMIT');
    expect(e.message).toContain('MAX_INLINE_DEPTH');
    expect(`${e.line}:${e.column}`).toBe(at(src, 'h0('));
  });

  test('MAX_TILE_ELEMENTS: made directly, and by broadcasting two legal tiles', () => {
    const src1 = 'function k(Out) {\n  const z = zeros([512, 256]);\n}';
    expectLimit(compileError(src1, P), 'MAX_TILE_ELEMENTS', at(src1, 'zeros'));
    const src2 = 'function k(Out) {\n  const a = expandDims(arange(512), 1);\n  const b = expandDims(arange(256), 0);\n  const z = a + b;\n}';
    expectLimit(compileError(src2, P), 'MAX_TILE_ELEMENTS', at(src2, 'a + b'));
    compile('function k(Out) {\n  const z = zeros([256, 256]);\n}', P);
  });

  test('MAX_IR_VALUES: the default, and a lower limit per kernel', () => {
    // 4096 unrolled iterations of a body of ~20 values each.
    const src = 'function k(Out, n) {\n  let x = n;\n  for (const i of staticRange(4096)) {\n    const y = ((x * 3 + i) ^ (x >> 2)) + ((x & 7) | (i << 1)) - (x % 5) + ((x - i) * (x + 1));\n    x = ((y * 5 + i) ^ (y >> 3)) + ((y & 9) | (i << 2)) - (y % 7) + ((y - i) * (y + 3));\n  }\n  store(Out, 0, x);\n}';
    const e = compileError(src, { Out: 'ptr', n: 'i32' });
    expect(e.code).toBe('E_LIMIT');
    expect(e.diagnostics).toHaveLength(1);
    expect(e.message).toContain('MAX_IR_VALUES');
    expect([4, 5]).toContain(e.line);
    const small = 'function k(Out, n) {\n  let x = n;\n  for (const i of staticRange(64)) {\n    x = x * 3 + i;\n  }\n  store(Out, 0, x);\n}';
    const k = jit(small, { signature: { Out: 'ptr', n: 'i32' }, limits: { maxIrValues: 50 } });
    let thrown: unknown;
    try {
      k.specialisedIR({ grid: [1] }, rtTensor(), 1);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(KernelCompileError);
    expect((thrown as KernelCompileError).message).toContain('MAX_IR_VALUES');
    expect((thrown as KernelCompileError).line).toBe(4);
  });

  test('limits given to jit are checked', () => {
    expect(() => jit('function k(Out) {}', { signature: P, limits: { maxCodeBytes: 0 } })).toThrow(/positive/);
    expect(() => jit('function k(Out) {}', { signature: P, limits: { nope: 1 } as never })).toThrow(/unknown limit 'nope'/);
  });
});

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.create({ threads: 0 });
});
afterAll(() => rt.dispose());
function rtTensor(n = 16): ReturnType<Runtime['empty']> {
  return rt.empty([n]);
}

async function launchError(p: Promise<unknown>): Promise<KernelCompileError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof KernelCompileError) return err;
    throw err;
  }
  expect.fail('expected a KernelCompileError');
}

describe('code-generation limits (at launch)', () => {
  test('MAX_SCRATCH_BYTES: blamed on the tile that crosses it', async () => {
    const src = `function k(X, Out) {
  const r = expandDims(arange(256), 1) * 256 + expandDims(arange(256), 0);
  let acc = zeros([256, 256]);
  for (const i of staticRange(80)) {
    acc = trans(acc + load(X, r + i));
  }
  store(Out, r, acc);
}`;
    const k = jit(src, { signature: { X: 'ptr', Out: 'ptr' } });
    const x = rtTensor(1 << 16);
    const e = await launchError(k.launch({ grid: [1] }, x, x));
    expect(e.code).toBe('E_LIMIT');
    expect(e.message).toContain('MAX_SCRATCH_BYTES');
    expect(e.line).toBe(5);
    expect(k.compileCount).toBe(0);
    x.free();
  });

  const expChain = (n: number): string => `function k(X, Out) {\n  let x = load(X, arange(16));\n  for (const i of staticRange(${n})) {\n    x = exp(x) * 0.5;\n  }\n  store(Out, arange(16), x);\n}`;

  test('MAX_CODE_BYTES: the default stops a kernel whose code would take the optimiser minutes', async () => {
    const k = jit(expChain(4000), { signature: { X: 'ptr', Out: 'ptr' } });
    const x = rtTensor();
    const t0 = performance.now();
    const e = await launchError(k.launch({ grid: [1] }, x, x));
    expect(e.code).toBe('E_LIMIT');
    expect(e.message).toMatch(/generates \d+ bytes of WebAssembly before optimisation; the limit \(MAX_CODE_BYTES\) is 1048576/);
    expect(`${e.line}:${e.column}`).toBe('1:1');
    expect(e.message).toContain('> 1 | function k(X, Out) {');
    expect(performance.now() - t0).toBeGreaterThan(0);
    x.free();
  });

  test('MAX_CODE_BYTES lowered per kernel; the same kernel compiles under the default', async () => {
    const x = rtTensor();
    const strict = jit(expChain(8), { signature: { X: 'ptr', Out: 'ptr' }, limits: { maxCodeBytes: 1000 } });
    const e = await launchError(strict.launch({ grid: [1] }, x, x));
    expect(e.message).toContain('MAX_CODE_BYTES) is 1000');
    await expect(strict.wat({ grid: [1] }, x, x)).rejects.toThrow(/MAX_CODE_BYTES/);
    const relaxed = jit(expChain(8), { signature: { X: 'ptr', Out: 'ptr' } });
    x.write(new Float32Array(16).fill(0));
    await relaxed.launch({ grid: [1] }, x, x);
    expect(relaxed.compileCount).toBe(1);
    x.free();
  });

  test('MAX_COMPILE_MS: a compile over its budget is stopped between stages', async () => {
    const k = jit(expChain(100), { signature: { X: 'ptr', Out: 'ptr' }, limits: { maxCompileMs: 1 } });
    const x = rtTensor();
    const e = await launchError(k.launch({ grid: [1] }, x, x));
    expect(e.code).toBe('E_LIMIT');
    expect(e.message).toMatch(/longer than its budget \(MAX_COMPILE_MS\) of 1 ms, stopped after (lowering|optimisation)/);
    expect(k.compileCount).toBe(0);
    x.free();
  });
});
