/**
 * @fileoverview Bad kernels: each is rejected with a coded error at the right line:column, a
 * code frame with a caret, and every error of a kernel is reported at once.
 */
import { describe, expect, test } from 'vitest';
import { codeFrame, KernelCompileError } from '../src/errors.js';
import { parseKernel, specialize, type Signature } from '../src/lang/index.js';

interface Bad {
  name: string;
  src: string;
  sig: Signature;
  ce?: Record<string, number | boolean | string>;
  code: string;
  line: number;
  column: number;
  message?: RegExp;
}

const P = { X: 'ptr', n: 'i32', B: 'constexpr' } as const;

/** Compile (parse + specialise with f32 tensors); return the error thrown, if any. */
function compileError(src: string, sig: Signature, ce: Record<string, number | boolean | string> = {}): KernelCompileError | undefined {
  try {
    const k = parseKernel(src, { signature: sig });
    const tensorDtypes = Object.fromEntries(Object.entries(sig).filter(([, v]) => v === 'ptr').map(([k2]) => [k2, 'f32' as const]));
    specialize(k, { constexprs: ce, tensorDtypes });
    return undefined;
  } catch (err) {
    if (err instanceof KernelCompileError) return err;
    throw err;
  }
}

const BAD: Bad[] = [
  { name: 'syntax error', src: 'function k(X, n, B) {\n  const x = ;\n}', sig: P, code: 'E_SYNTAX', line: 2, column: 13 },
  { name: 'while loop', src: 'function k(X, n, B) {\n  while (n > 0) {}\n}', sig: P, code: 'E_UNSUPPORTED', line: 2, column: 3, message: /while/ },
  { name: 'break', src: 'function k(X, n, B) {\n  for (let i = 0; i < n; i++) {\n    break;\n  }\n}', sig: P, code: 'E_UNSUPPORTED', line: 3, column: 5 },
  { name: 'member access (Math.exp)', src: 'function k(X, n, B) {\n  const y = Math.exp(1.0);\n}', sig: P, code: 'E_UNSUPPORTED', line: 2, column: 13, message: /exp\(x\)/ },
  { name: 'unknown name with a hint', src: 'function k(X, n, B) {\n  const i = arnge(B);\n}', sig: P, code: 'E_UNKNOWN_NAME', line: 2, column: 13, message: /arange/ },
  { name: 'a builtin assigned', src: 'function k(X, n, B) {\n  exp = 3;\n}', sig: P, ce: { B: 4 }, code: 'E_UNKNOWN_NAME', line: 2, column: 3, message: /^'exp' is a builtin function, not a variable/ },
  { name: 'an unknown one-letter name: no far-fetched hint', src: 'function k(X, n, B) {\n  const y = q + 1;\n}', sig: P, code: 'E_UNKNOWN_NAME', line: 2, column: 13, message: /^unknown name 'q'$/ },
  { name: 'this', src: 'function k(X, n, B) {\n  const t = this;\n}', sig: P, code: 'E_UNSUPPORTED', line: 2, column: 13 },
  { name: 'arrow function inside', src: 'function k(X, n, B) {\n  const f = (a) => a;\n}', sig: P, code: 'E_UNSUPPORTED', line: 2, column: 13 },
  { name: 'var', src: 'function k(X, n, B) {\n  var x = 1;\n}', sig: P, code: 'E_UNSUPPORTED', line: 2, column: 3 },
  { name: 'arange of a non power of two', src: 'function k(X, n, B) {\n  store(X, arange(B), 1.0);\n}', sig: P, ce: { B: 3 }, code: 'E_SHAPE', line: 2, column: 12, message: /power of two/ },
  { name: 'arange of a run-time value', src: 'function k(X, n, B) {\n  const i = arange(n);\n}', sig: P, ce: { B: 4 }, code: 'E_CONSTEXPR', line: 2, column: 20 },
  { name: 'incompatible broadcast', src: 'function k(X, n, B) {\n  const a = arange(8) + arange(4);\n}', sig: P, ce: { B: 4 }, code: 'E_SHAPE', line: 2, column: 13, message: /\[8\].*\[4\]/ },
  { name: 'a folded integer outside i32', src: 'function k(X, n, B) {\n  store(X, arange(4), arange(4) * (B * B) + n);\n}', sig: P, ce: { B: 65536 }, code: 'E_CONSTEXPR', line: 2, column: 23, message: /4294967296 is outside i32/ },
  { name: 'an integer literal outside i32 beside an i32 tile', src: 'function k(X, n, B) {\n  const j = arange(4) + 3000000000;\n}', sig: P, ce: { B: 4 }, code: 'E_CONSTEXPR', line: 2, column: 13, message: /outside i32/ },
  { name: 'a loop step of 0', src: 'function k(X, n, B) {\n  for (let j = 0; j < n; j += B) {}\n}', sig: P, ce: { B: 0 }, code: 'E_CONSTEXPR', line: 2, column: 31, message: /step must be positive, got 0/ },
  { name: 'a negative step counting up', src: 'function k(X, n, B) {\n  for (let j = 0; j < n; j += -1) {}\n}', sig: P, ce: { B: 4 }, code: 'E_CONSTEXPR', line: 2, column: 31, message: /write j -= 1/ },
  { name: 'integer division with /', src: 'function k(X, n, B) {\n  const q = programId(0) / n;\n}', sig: P, ce: { B: 4 }, code: 'E_TYPE', line: 2, column: 13, message: /idiv/ },
  { name: 'assignment to a const', src: 'function k(X, n, B) {\n  const a = 1;\n  a = 2;\n}', sig: P, ce: { B: 4 }, code: 'E_ASSIGN', line: 3, column: 3 },
  { name: 'tensor used as a value', src: 'function k(X, n, B) {\n  const y = X + 1.0;\n}', sig: P, ce: { B: 4 }, code: 'E_TYPE', line: 2, column: 13, message: /load\(X/ },
  { name: 'dot with mismatched inner dims', src: 'function k(X, n, B) {\n  const c = dot(zeros([4, 8]), zeros([4, 4]));\n}', sig: P, ce: { B: 4 }, code: 'E_SHAPE', line: 2, column: 13, message: /inner dims/ },
  { name: 'wrong arity', src: 'function k(X, n, B) {\n  store(X, 0);\n}', sig: P, ce: { B: 4 }, code: 'E_ARITY', line: 2, column: 3, message: /store\(ptr, offsets, value, mask\?\)/ },
  { name: 'return a value from a kernel', src: 'function k(X, n, B) {\n  return 1;\n}', sig: P, ce: { B: 4 }, code: 'E_RETURN', line: 2, column: 3 },
  { name: 'a tile as an if condition', src: 'function k(X, n, B) {\n  if (arange(4) < 2) { store(X, 0, 1.0); }\n}', sig: P, ce: { B: 4 }, code: 'E_TYPE', line: 2, column: 7, message: /where/ },
  { name: 'tile too large', src: 'function k(X, n, B) {\n  const z = zeros([1024, 1024]);\n}', sig: P, ce: { B: 4 }, code: 'E_LIMIT', line: 2, column: 13 },
  { name: 'loop-carried dtype change', src: 'function k(X, n, B) {\n  let s = 0;\n  for (let i = 0; i < n; i++) {\n    s = s + 0.5;\n  }\n}', sig: P, ce: { B: 4 }, code: 'E_TYPE', line: 3, column: 3, message: /'s' is i32 before the loop and f32/ },
  { name: 'load from a scalar parameter', src: 'function k(X, n, B) {\n  const v = load(n, 0);\n}', sig: P, ce: { B: 4 }, code: 'E_TYPE', line: 2, column: 18 },
  { name: 'staticRange bound not constexpr', src: 'function k(X, n, B) {\n  for (const i of staticRange(n)) {}\n}', sig: P, ce: { B: 4 }, code: 'E_CONSTEXPR', line: 2, column: 31 },
  { name: 'escape through globals', src: 'function k(X, n, B) {\n  const p = process;\n}', sig: P, code: 'E_UNKNOWN_NAME', line: 2, column: 13, message: /cannot reach JavaScript/ },
];

describe('bad kernels are rejected with a code, a place and a code frame', () => {
  test.each(BAD)('$name -> $code at $line:$column', ({ src, sig, ce, code, line, column, message }) => {
    const err = compileError(src, sig, ce);
    expect(err, 'expected a KernelCompileError').toBeInstanceOf(KernelCompileError);
    const d = err!.diagnostics[0]!;
    expect({ code: d.code, line: d.line, column: d.column }).toEqual({ code, line, column });
    if (message) expect(d.message).toMatch(message);
    // The code frame shows the line and a caret under the column.
    const frame = err!.message.split('\n');
    const at = frame.findIndex((l) => l.startsWith(`> ${line} |`));
    expect(at, err!.message).toBeGreaterThan(0);
    const caret = frame[at + 1]!;
    expect(caret.indexOf('^') - caret.indexOf('|') - 2).toBe(column - 1);
  });

  test('a kernel with three problems reports all three', () => {
    const err = compileError('function k(X, n, B) {\n  while (true) {}\n  const a = Math.sqrt(2);\n  const b = nope + 1;\n}', P);
    expect(err?.diagnostics.map((d) => `${d.code}@${d.line}`)).toEqual(['E_UNSUPPORTED@2', 'E_UNSUPPORTED@3', 'E_UNKNOWN_NAME@4']);
  });

  test('a default parameter value is one error, not also a signature mismatch', () => {
    const err = compileError('function k(X, n = 3, B) {}', { X: 'ptr', n: 'i32', B: 'constexpr' }, { B: 4 });
    expect(err?.diagnostics.map((d) => d.code)).toEqual(['E_UNSUPPORTED']);
    expect(err?.diagnostics[0]?.message).toMatch(/default parameter values/);
  });

  test('type errors found while specialising are all reported', () => {
    const err = compileError('function k(X, n, B) {\n  const q = n / n;\n  const z = arange(3);\n}', P, { B: 4 });
    expect(err?.diagnostics.map((d) => d.code)).toEqual(['E_TYPE', 'E_SHAPE']);
  });

  test('signature problems name the parameter', () => {
    expect(compileError('function k(X, n, B) {}', { X: 'ptr', n: 'i32' })?.diagnostics[0]).toMatchObject({ code: 'E_PARAM', message: expect.stringMatching(/'B'/) });
    expect(compileError('function k(X, n, B) {}', P, {})?.diagnostics[0]).toMatchObject({ code: 'E_PARAM', message: expect.stringMatching(/'B'/) });
  });
});

describe('code frames', () => {
  test('a long line shows a window around the column, the caret under it', () => {
    const line = `${'a'.repeat(3000)}XYZ${'b'.repeat(3000)}`;
    const frame = codeFrame(`first\n${line}\nlast`, { line: 2, column: 3001 });
    expect(frame.length).toBeLessThan(600);
    const rows = frame.split('\n');
    const at = rows.findIndex((r) => r.startsWith('> 2 |'));
    expect(rows[at]).toMatch(/^> 2 \| …a+XYZb+…$/);
    expect(rows[at]!.indexOf('XYZ')).toBe(rows[at + 1]!.indexOf('^'));
  });
  test('tabs before the column stay tabs on the caret line', () => {
    const frame = codeFrame('function k() {\n\t\tconst x = nope;\n}', { line: 2, column: 13 });
    const rows = frame.split('\n');
    const caret = rows[rows.findIndex((r) => r.startsWith('> 2 |')) + 1]!;
    expect(caret.slice(caret.indexOf('|') + 2)).toBe('\t\t          ^');
  });
});
