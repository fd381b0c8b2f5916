/**
 * @fileoverview The front end on bad kernels: each error has its code and the line:column of
 * the culprit, a kernel with several problems reports all of them, and the message shows the
 * source with a caret.
 */
import { describe, expect, test } from 'vitest';
import type { Signature } from '../src/lang/index.js';
import { compileError, diagKeys, type CompileOpts } from './util/lang.js';

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

interface Case {
  readonly name: string;
  readonly src: string;
  readonly sig: Signature;
  readonly code: string;
  /** The text the error points at (its first character). */
  readonly where: string;
  readonly nth?: number;
  readonly opts?: CompileOpts;
  readonly message?: RegExp;
}

const P = { Out: 'ptr' } as const;
const PN = { Out: 'ptr', n: 'i32' } as const;
const PB = { Out: 'ptr', BLOCK: 'constexpr' } as const;

const CASES: Case[] = [
  {
    name: 'syntax error', code: 'E_SYNTAX', sig: P, where: ';',
    src: 'function k(Out) {\n  const x = (1 + ;\n}', message: /Unexpected token/,
  },
  {
    name: 'while loop', code: 'E_UNSUPPORTED', sig: PN, where: 'while',
    src: 'function k(Out, n) {\n  let i = 0;\n  while (i < n) { i++; }\n}', message: /while/,
  },
  {
    name: 'break', code: 'E_UNSUPPORTED', sig: PN, where: 'break',
    src: 'function k(Out, n) {\n  for (let i = 0; i < n; i++) {\n    break;\n  }\n}',
  },
  {
    name: 'Math.exp', code: 'E_UNSUPPORTED', sig: P, where: 'Math',
    src: 'function k(Out) {\n  store(Out, 0, Math.exp(1.0));\n}', message: /exp\(x\)/,
  },
  {
    name: 'arrow function inside', code: 'E_UNSUPPORTED', sig: P, where: '(x) =>',
    src: 'function k(Out) {\n  const f = (x) => x;\n}', message: /arrow/,
  },
  {
    name: 'object literal', code: 'E_UNSUPPORTED', sig: P, where: '{ a: 1 }',
    src: 'function k(Out) {\n  const o = { a: 1 };\n}',
  },
  {
    name: 'var', code: 'E_UNSUPPORTED', sig: P, where: 'var',
    src: 'function k(Out) {\n  var x = 1;\n}', message: /const or let/,
  },
  {
    name: 'typeof', code: 'E_UNSUPPORTED', sig: P, where: 'typeof',
    src: 'function k(Out) {\n  const t = typeof Out;\n}',
  },
  {
    name: 'arrow function kernel', code: 'E_UNSUPPORTED', sig: P, where: '(Out)',
    src: '(Out) => { store(Out, 0, 1.0); }', message: /arrow/,
  },
  {
    name: 'unknown name with a suggestion', code: 'E_UNKNOWN_NAME', sig: P, where: 'arang',
    src: 'function k(Out) {\n  const i = arang(4);\n}', message: /did you mean 'arange'/,
  },
  {
    name: 'name used outside its block', code: 'E_UNKNOWN_NAME', sig: PN, where: 'y', nth: 1,
    src: 'function k(Out, n) {\n  { const y = 1; }\n  store(Out, 0, y * 1.0);\n}',
  },
  {
    name: 'wrong number of arguments', code: 'E_ARITY', sig: P, where: 'arange(',
    src: 'function k(Out) {\n  const i = arange(0, 4, 1);\n}', message: /arange/,
  },
  {
    name: 'tensor in arithmetic', code: 'E_TYPE', sig: { Out: 'ptr', X: 'ptr' }, where: 'X + 1',
    src: 'function k(Out, X) {\n  store(Out, 0, X + 1);\n}', message: /load\(X/,
  },
  {
    name: 'integer division with /', code: 'E_TYPE', sig: { Out: 'ptr', n: 'i32', m: 'i32' }, where: 'n / m',
    src: 'function k(Out, n, m) {\n  store(Out, 0, n / m);\n}', message: /idiv/,
  },
  {
    name: 'tile condition in if', code: 'E_TYPE', sig: PN, where: 'arange(4) < n',
    src: 'function k(Out, n) {\n  if (arange(4) < n) { store(Out, 0, 1.0); }\n}', message: /where/,
  },
  {
    name: 'loop changes a carried dtype', code: 'E_TYPE', sig: PN, where: 'for',
    src: 'function k(Out, n) {\n  let s = 0;\n  for (let i = 0; i < n; i++) { s = s + 0.5; }\n  store(Out, 0, s);\n}', message: /cast/,
  },
  {
    name: 'incompatible shapes', code: 'E_SHAPE', sig: P, where: 'arange(4) + arange(8)',
    src: 'function k(Out) {\n  const z = arange(4) + arange(8);\n}', message: /\[4\].*\[8\]/,
  },
  {
    name: 'loop-carried tile grows', code: 'E_SHAPE', sig: PN, where: 'for',
    src: 'function k(Out, n) {\n  let acc = zeros([4]);\n  for (let i = 0; i < n; i++) {\n    acc = acc + zeros([2, 4]);\n  }\n}',
  },
  {
    name: 'stored value bigger than the offsets', code: 'E_SHAPE', sig: P, where: 'zeros([8])',
    src: 'function k(Out) {\n  store(Out, arange(4), zeros([8]));\n}', message: /\[8\].*\[4\]/,
  },
  {
    name: 'arange length not a power of two', code: 'E_SHAPE', sig: P, where: 'arange(',
    src: 'function k(Out) {\n  const i = arange(0, 6);\n}', message: /power of two/,
  },
  {
    name: 'dot inner dims', code: 'E_SHAPE', sig: P, where: 'dot(',
    src: 'function k(Out) {\n  const d = dot(zeros([4, 8]), zeros([4, 8]));\n}',
  },
  {
    name: 'run-time shape', code: 'E_CONSTEXPR', sig: PN, where: 'n);',
    src: 'function k(Out, n) {\n  const i = arange(n);\n}', message: /constexpr/,
  },
  {
    name: 'run-time staticRange bound', code: 'E_CONSTEXPR', sig: PN, where: 'n))',
    src: 'function k(Out, n) {\n  for (const i of staticRange(n)) { store(Out, i, 1.0); }\n}',
  },
  {
    name: 'propagateNan must be a constexpr boolean', code: 'E_CONSTEXPR', sig: PN, where: 'n > 0)', message: /propagateNan/,
    src: 'function k(Out, n) {\n  store(Out, 0, max(arange(8) * 1.0, 0, false, n > 0));\n}',
  },
  {
    name: 'flushTiny must be a constexpr boolean', code: 'E_CONSTEXPR', sig: PN, where: 'n > 0)', message: /flushTiny/,
    src: 'function k(Out, n) {\n  store(Out, 0, exp2(1.0, n > 0));\n}',
  },
  {
    name: 'log takes no flushTiny', code: 'E_ARITY', sig: P, where: 'log(',
    src: 'function k(Out) {\n  store(Out, 0, log(2.0, true));\n}',
  },
  {
    name: 'sum takes no propagateNan', code: 'E_ARITY', sig: P, where: 'sum(',
    src: 'function k(Out) {\n  store(Out, 0, sum(arange(8) * 1.0, 0, false, false));\n}',
  },
  {
    name: 'dtype must be a constexpr string', code: 'E_CONSTEXPR', sig: P, where: "'f64'",
    src: "function k(Out) {\n  store(Out, 0, cast(1.5 * arange(2), 'f64'));\n}",
  },
  {
    name: 'assigning a const', code: 'E_ASSIGN', sig: P, where: 'x',
    nth: 1, src: 'function k(Out) {\n  const x = 1;\n  x = 2;\n}',
  },
  {
    name: 'assigning the loop variable', code: 'E_ASSIGN', sig: PN, where: 'i = 3',
    src: 'function k(Out, n) {\n  for (let i = 0; i < n; i++) {\n    i = 3;\n  }\n}',
  },
  {
    name: 'return with a value in a kernel', code: 'E_RETURN', sig: P, where: 'return',
    src: 'function k(Out) {\n  return 1;\n}',
  },
  {
    name: 'helper without a return value used as a value', code: 'E_RETURN', sig: P, where: 'h(',
    src: 'function k(Out) {\n  store(Out, 0, h(1.0));\n}',
    opts: { helpers: { h: 'function h(x) { const y = x; }' } },
  },
  {
    name: "store's result used as a value", code: 'E_RETURN', sig: P, where: 'store(Out, 0, 1.0)',
    src: 'function k(Out) {\n  const a = store(Out, 0, 1.0);\n  store(Out, 1, a);\n}', message: /store\(\.\.\.\) returns no value/,
  },
  {
    name: "store's result as a condition", code: 'E_RETURN', sig: P, where: 'store(Out, 3, 1.0)',
    src: 'function k(Out) {\n  if (store(Out, 3, 1.0)) { store(Out, 3, 2.0); }\n}',
  },
  {
    name: 'tile too big', code: 'E_LIMIT', sig: P, where: 'zeros(',
    src: 'function k(Out) {\n  const z = zeros([512, 256]);\n}', message: /limit/,
  },
  {
    name: 'too many unrolled iterations', code: 'E_LIMIT', sig: P, where: 'for',
    src: 'function k(Out) {\n  for (const i of staticRange(5000)) { store(Out, i, 1.0); }\n}',
  },
  {
    name: 'signature misses a parameter', code: 'E_PARAM', sig: P, where: 'n)',
    src: 'function k(Out, n) {\n  store(Out, n, 1.0);\n}', message: /'n'/,
  },
  {
    name: 'missing constexpr value', code: 'E_PARAM', sig: PB, where: 'function',
    src: 'function k(Out, BLOCK) {\n  store(Out, arange(BLOCK), 1.0);\n}', message: /BLOCK/,
  },
  {
    name: 'recursive helper', code: 'E_UNSUPPORTED', sig: P, where: 'f(',
    src: 'function k(Out) {\n  store(Out, 0, f(1.0));\n}',
    opts: { helpers: { f: 'function f(x) { return g(x); }', g: 'function g(x) { return f(x); }' } }, message: /recursi/,
  },
  {
    name: 'if branches give different shapes', code: 'E_SHAPE', sig: PN, where: 'if',
    src: 'function k(Out, n) {\n  let x = zeros([4]);\n  if (n > 0) { x = zeros([2, 4]); }\n}',
  },
  {
    name: 'if branches give different dtypes', code: 'E_TYPE', sig: PN, where: 'if',
    src: 'function k(Out, n) {\n  let x = n;\n  if (n > 0) { x = 1.5; }\n}', message: /i32.*1\.5/,
  },
  {
    name: '++ on a tile', code: 'E_TYPE', sig: P, where: 'x++',
    src: 'function k(Out) {\n  let x = zeros([4]);\n  x++;\n}', message: /i32 scalars/,
  },
  {
    name: 'helper returns inside a run-time if', code: 'E_UNSUPPORTED', sig: PN, where: 'h(',
    src: 'function k(Out, n) {\n  store(Out, 0, h(n));\n}',
    opts: { helpers: { h: 'function h(n) {\n  if (n > 0) { return 1.0; }\n  return 2.0;\n}' } }, message: /where/,
  },
  {
    name: 'load mask bigger than the offsets', code: 'E_SHAPE', sig: { Out: 'ptr', X: 'ptr' }, where: 'arange(8) < 4',
    src: 'function k(Out, X) {\n  const v = load(X, arange(4), arange(8) < 4);\n}', message: /\[8\].*\[4\]/,
  },
  {
    name: 'cdiv of a float', code: 'E_TYPE', sig: { Out: 'ptr', x: 'f32' }, where: 'cdiv',
    src: 'function k(Out, x) {\n  const c = cdiv(x, 4);\n}',
  },
  {
    name: 'switch', code: 'E_UNSUPPORTED', sig: PN, where: 'switch',
    src: 'function k(Out, n) {\n  switch (n) { default: }\n}',
  },
  {
    name: 'new', code: 'E_UNSUPPORTED', sig: P, where: 'new',
    src: 'function k(Out) {\n  const a = new Float32Array(4);\n}',
  },
  {
    name: 'template literal', code: 'E_UNSUPPORTED', sig: P, where: '`',
    src: 'function k(Out) {\n  const a = `f32`;\n}',
  },
  {
    name: 'computed member access', code: 'E_UNSUPPORTED', sig: P, where: 'Out[',
    src: 'function k(Out) {\n  const a = Out[0];\n}',
  },
  {
    name: 'regex', code: 'E_UNSUPPORTED', sig: P, where: '/a/',
    src: 'function k(Out) {\n  const r = /a/;\n}',
  },
  {
    name: 'eval cannot be reached', code: 'E_UNKNOWN_NAME', sig: P, where: 'eval',
    src: "function k(Out) {\n  eval('1');\n}", message: /cannot reach JavaScript/,
  },
  {
    name: 'array literal outside a shape argument', code: 'E_TYPE', sig: P, where: '[1, 2]',
    src: 'function k(Out) {\n  store(Out, 0, [1, 2]);\n}', message: /shape/,
  },
  {
    name: 'axis out of range', code: 'E_SHAPE', sig: P, where: '2)',
    src: 'function k(Out) {\n  const s = sum(zeros([4, 4]), 2);\n}',
  },
  {
    name: 'a builtin used as a value', code: 'E_TYPE', sig: P, where: 'exp;',
    src: 'function k(Out) {\n  const f = exp;\n}', message: /call it/,
  },
];

describe('bad kernels', () => {
  test.each(CASES)('$name → $code', (c) => {
    const e = compileError(c.src, c.sig, c.opts);
    const first = e.diagnostics[0]!;
    expect(first.code).toBe(c.code);
    expect(`${first.line}:${first.column}`).toBe(at(c.src, c.where, c.nth));
    if (c.message) expect(first.message).toMatch(c.message);
    expect(e.code).toBe(c.code);
  });

  test('a kernel with three problems reports three diagnostics, in source order', () => {
    const src = `function k(Out, n) {
  const a = arange(4) + arange(8);
  const b = n / n;
  store(Out, arange(2), zeros([4]));
  store(Out, arange(4), a + b);
}`;
    const e = compileError(src, PN);
    expect(diagKeys(e)).toEqual([
      `E_SHAPE@${at(src, 'arange(4) +')}`,
      `E_TYPE@${at(src, 'n / n')}`,
      `E_SHAPE@${at(src, 'zeros([4])')}`,
    ]);
    // The last line uses a and b, both poisoned: no cascade.
    expect(e.message).toContain('(3 errors)');
  });

  test('several unsupported constructs are all reported by parseKernel', () => {
    const src = 'function k(Out) {\n  var a = 1;\n  while (a) {}\n  const o = {};\n}';
    const e = compileError(src, P);
    expect(diagKeys(e)).toEqual([`E_UNSUPPORTED@${at(src, 'var')}`, `E_UNSUPPORTED@${at(src, 'while')}`, `E_UNSUPPORTED@${at(src, '{}', 1)}`]);
  });

  test('the message has the code, the position, the source line and a caret', () => {
    const src = 'function bad(Out) {\n  const x = 1;\n  const y = arange(3);\n}';
    const e = compileError(src, P);
    expect(e.name).toBe('KernelCompileError');
    expect(e.message).toContain('E_SHAPE at bad:3:13');
    const lines = e.message.split('\n');
    const i = lines.findIndex((l) => l.startsWith('> 3 |'));
    expect(lines[i]).toBe('> 3 |   const y = arange(3);');
    expect(lines[i + 1]).toBe('    |             ^');
  });

  test('specialisation inputs are checked', () => {
    const src = 'function k(X, s, BLOCK) {\n  store(X, arange(BLOCK), s);\n}';
    const sig = { X: 'ptr', s: 'f32', BLOCK: 'constexpr' } as const;
    const extra = compileError(src, sig, { constexprs: { BLOCK: 4, OTHER: 1 } });
    expect(extra.diagnostics.map((d) => d.code)).toEqual(['E_PARAM']);
    expect(extra.message).toContain("'OTHER'");
    const wrongKind = compileError(src, sig, { constexprs: { BLOCK: [4] as unknown as number } });
    expect(wrongKind.message).toMatch(/number, boolean or string/);
    const extraSig = compileError(src, { ...sig, Y: 'ptr' });
    expect(extraSig.diagnostics[0]!.code).toBe('E_PARAM');
    expect(extraSig.message).toContain("'Y'");
  });

  test('errors inside a helper are reported at the call with the helper line', () => {
    const src = 'function k(Out) {\n  store(Out, arange(4), h(arange(4)));\n}';
    const e = compileError(src, P, { helpers: { h: 'function h(x) {\n  return x + arange(8);\n}' } });
    expect(diagKeys(e)).toEqual([`E_SHAPE@${at(src, 'h(')}`]);
    expect(e.diagnostics[0]!.message).toMatch(/helper 'h'.*2:10/);
  });
});
