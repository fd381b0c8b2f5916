/**
 * @fileoverview Untrusted kernel source: every way we know of to reach JavaScript from a kernel
 * (globals, `this`, prototypes, eval, Function, import, getters, tagged templates, ...) is
 * refused with a coded KernelCompileError pointing at the attempt, and none of them runs.
 */
import { afterEach, describe, expect, test } from 'vitest';
import { KernelCompileError } from '../src/errors.js';
import { jit } from '../src/kernel.js';
import type { Signature } from '../src/lang/index.js';
import { compileError } from './util/lang.js';

/** 1-based line:column of the first occurrence of `needle` in `src`. */
function at(src: string, needle: string): string {
  const i = src.indexOf(needle);
  if (i < 0) throw new Error(`'${needle}' not in source`);
  const before = src.slice(0, i).split('\n');
  return `${before.length}:${before[before.length - 1]!.length + 1}`;
}

interface Attempt {
  readonly name: string;
  readonly src: string;
  readonly code: string;
  /** The text the first diagnostic points at. */
  readonly where: string;
  readonly sig?: Signature;
  /** Refused only when specialised (needs values), not already by jit(). */
  readonly atSpecialise?: boolean;
}

const SIG: Signature = { Out: 'ptr', n: 'i32' };
const body = (line: string): string => `function k(Out, n) {\n  ${line}\n  store(Out, 0, 1.0);\n}`;
/** The attempt written as the kernel's second line. */
const A = (name: string, line: string, code: string, where: string, atSpecialise = false): Attempt => ({ name, src: body(line), code, where, atSpecialise });

// A side effect every attempt below would cause if any of it ever ran.
const FLAG = '__tilejitEscaped';
const SET = `globalThis.${FLAG} = 1`;

const ATTEMPTS: Attempt[] = [
  // Globals, by name and by escape sequence.
  A('globalThis', 'const g = globalThis;', 'E_UNKNOWN_NAME', 'globalThis'),
  A('globalThis, written with a unicode escape', 'const g = \\u0067lobalThis;', 'E_UNKNOWN_NAME', '\\u0067'),
  A('global', 'const g = global;', 'E_UNKNOWN_NAME', 'global'),
  A('window / self', 'const w = self;', 'E_UNKNOWN_NAME', 'self'),
  A('process', 'const p = process;', 'E_UNKNOWN_NAME', 'process'),
  A('process.exit()', 'process.exit(1);', 'E_UNSUPPORTED', 'process'),
  A('require', "require('child_process');", 'E_UNKNOWN_NAME', 'require'),
  A('module / exports', 'const m = module;', 'E_UNKNOWN_NAME', 'module'),
  A('arguments', 'const a = arguments;', 'E_UNKNOWN_NAME', 'arguments'),
  A('undefined', 'const u = undefined;', 'E_UNKNOWN_NAME', 'undefined'),
  A('WebAssembly', 'const w = WebAssembly;', 'E_UNKNOWN_NAME', 'WebAssembly'),
  A('SharedArrayBuffer', 'const s = SharedArrayBuffer;', 'E_UNKNOWN_NAME', 'SharedArrayBuffer'),
  A('Atomics', 'const s = Atomics;', 'E_UNKNOWN_NAME', 'Atomics'),
  A('Reflect.get', 'const r = Reflect.get(Out, 0);', 'E_UNSUPPORTED', 'Reflect'),
  A('Proxy', 'const p = Proxy;', 'E_UNKNOWN_NAME', 'Proxy'),
  A('Symbol.iterator', 'const s = Symbol.iterator;', 'E_UNSUPPORTED', 'Symbol'),
  A('setTimeout', 'setTimeout(n, 0);', 'E_UNKNOWN_NAME', 'setTimeout'),
  A('Math', 'const e = Math.exp(1.0);', 'E_UNSUPPORTED', 'Math'),
  // this, prototypes, constructors.
  A('this', 'const t = this;', 'E_UNSUPPORTED', 'this'),
  A('this as a function', 'this(1);', 'E_UNSUPPORTED', 'this'),
  A('__proto__ of a parameter', 'const p = Out.__proto__;', 'E_UNSUPPORTED', 'Out.'),
  A('__proto__ as a name', 'const p = __proto__;', 'E_UNSUPPORTED', '__proto__'),
  A('__proto__ declared', 'const __proto__ = 1;', 'E_UNSUPPORTED', '__proto__'),
  A('computed constructor access', "const c = Out['constructor'];", 'E_UNSUPPORTED', 'Out['),
  A('constructor of a builtin', "const f = exp.constructor('return process')();", 'E_UNSUPPORTED', 'exp.'),
  A('constructor of a string', "const f = 'f32'.constructor;", 'E_UNSUPPORTED', "'f32'."),
  A('prototype', 'const p = exp.prototype;', 'E_UNSUPPORTED', 'exp.'),
  A('constructor as a bare name', "constructor('return 1');", 'E_UNKNOWN_NAME', 'constructor'),
  A('toString as a bare name', 'const s = toString();', 'E_UNKNOWN_NAME', 'toString'),
  A('hasOwnProperty as a bare name', 'const h = hasOwnProperty;', 'E_UNKNOWN_NAME', 'hasOwnProperty'),
  A('member call on a builtin', 'exp.call(null, 1.0);', 'E_UNSUPPORTED', 'exp.'),
  A('member assignment', `${SET};`, 'E_UNSUPPORTED', 'globalThis'),
  A('optional call', 'exp?.(1.0);', 'E_UNSUPPORTED', 'exp?.'),
  // Code from strings, modules.
  A('eval', `eval('${SET}');`, 'E_UNKNOWN_NAME', 'eval'),
  A('eval, written with a unicode escape', "\\u0065val('1');", 'E_UNKNOWN_NAME', '\\u0065'),
  A('indirect eval', "(0, eval)('1');", 'E_UNSUPPORTED', '0, eval'),
  A('Function', `Function('${SET}')();`, 'E_UNKNOWN_NAME', 'Function'),
  A('new Function', `const f = new Function('${SET}');`, 'E_UNSUPPORTED', 'new'),
  A('dynamic import', "import('node:fs');", 'E_UNSUPPORTED', 'import'),
  A('import.meta', 'const u = import.meta;', 'E_UNSUPPORTED', 'import'),
  A('new.target', 'const t = new.target;', 'E_UNSUPPORTED', 'new'),
  // Objects, getters, setters, classes, functions.
  A('getter', 'const o = { get x() { return 1; } };', 'E_UNSUPPORTED', '{ get'),
  A('setter', 'const o = { set x(v) {} };', 'E_UNSUPPORTED', '{ set'),
  A('object literal with __proto__', 'const o = { __proto__: null };', 'E_UNSUPPORTED', '{ __proto__'),
  A('class with a static block', 'class C { static { n; } }', 'E_UNSUPPORTED', 'class'),
  A('class expression', 'const C = class {};', 'E_UNSUPPORTED', 'class'),
  A('new', 'const a = new Float32Array(4);', 'E_UNSUPPORTED', 'new'),
  A('arrow function (closure)', 'const f = () => n;', 'E_UNSUPPORTED', '() =>'),
  A('function expression (closure)', 'const f = function () { return n; };', 'E_UNSUPPORTED', 'function ()'),
  A('nested function declaration', 'function f() { return n; }', 'E_UNSUPPORTED', 'function f'),
  // Strings that run code.
  A('tagged template', 'const s = exp`1`;', 'E_UNSUPPORTED', 'exp`'),
  A('template literal', 'const s = `${n}`;', 'E_UNSUPPORTED', '`'),
  A('regular expression', 'const r = /a/;', 'E_UNSUPPORTED', '/a/'),
  // Statements and operators outside the language.
  A('with (strict mode refuses it)', 'with (Out) { n; }', 'E_SYNTAX', 'with'),
  A('spread in a call', 'store(Out, ...n);', 'E_UNSUPPORTED', '...'),
  A('spread in an array', 'const a = [...n];', 'E_UNSUPPORTED', '...'),
  A('destructuring', 'const { constructor: c } = n;', 'E_UNSUPPORTED', '{ constructor'),
  A('array destructuring', 'const [a] = n;', 'E_UNSUPPORTED', '[a]'),
  A('typeof', 'const t = typeof n;', 'E_UNSUPPORTED', 'typeof'),
  A('void', 'void 0;', 'E_UNSUPPORTED', 'void'),
  A('delete (strict mode refuses it)', 'delete n;', 'E_SYNTAX', 'delete'),
  A('in', "const t = 'x' in n;", 'E_UNSUPPORTED', "'x' in"),
  A('instanceof', 'const t = n instanceof n;', 'E_UNSUPPORTED', 'n instanceof'),
  A('comma operator', 'const z = (n, n);', 'E_UNSUPPORTED', 'n, n'),
  A('?? operator', 'const z = n ?? 1;', 'E_UNSUPPORTED', 'n ??'),
  A('null', 'const z = null;', 'E_UNSUPPORTED', 'null'),
  A('BigInt literal', 'const z = 1n;', 'E_UNSUPPORTED', '1n'),
  A('await', 'await n;', 'E_SYNTAX', 'await'),
  A('yield', 'yield n;', 'E_SYNTAX', 'yield'),
  A('super', 'super.x();', 'E_SYNTAX', 'super'),
  A('try / catch', 'try { n; } catch (e) { n; }', 'E_UNSUPPORTED', 'try'),
  A('throw', 'throw n;', 'E_UNSUPPORTED', 'throw'),
  A('label', 'a: for (let i = 0; i < n; i++) {}', 'E_UNSUPPORTED', 'a:'),
  A('debugger', 'debugger;', 'E_UNSUPPORTED', 'debugger'),
  A('for...in', 'for (const x in Out) {}', 'E_UNSUPPORTED', 'for'),
  A('for...of over a value', 'for (const x of Out) {}', 'E_UNSUPPORTED', 'Out)', true),
  A('var', 'var x = 1;', 'E_UNSUPPORTED', 'var'),
  // Writing what is not the kernel's own.
  A('assigning a scalar parameter', 'n = 1;', 'E_ASSIGN', 'n = 1', true),
  A('assigning a tensor parameter', 'Out = 1;', 'E_ASSIGN', 'Out = 1', true),
  A('++ on a parameter', 'n++;', 'E_ASSIGN', 'n++', true),
  A('+= on a parameter', 'n += 1;', 'E_ASSIGN', 'n += 1', true),
  A('assigning a builtin', 'exp = 1;', 'E_UNKNOWN_NAME', 'exp = 1', true),
  A('||= assignment', 'let z = n; z ||= 1;', 'E_UNSUPPORTED', 'z ||='),
  A('calling a variable', 'const f = n; f(1);', 'E_TYPE', 'f(1)', true),
  // The function itself.
  { name: 'default parameter value', src: `function k(Out, n = ${SET}) {\n  store(Out, 0, 1.0);\n}`, code: 'E_UNSUPPORTED', where: 'n =' },
  { name: 'rest parameter', src: 'function k(Out, ...n) {\n  store(Out, 0, 1.0);\n}', code: 'E_UNSUPPORTED', where: '...', sig: { Out: 'ptr' } },
  { name: 'destructured parameter', src: 'function k({ Out }) {\n  n;\n}', code: 'E_UNSUPPORTED', where: '{ Out', sig: {} },
  { name: 'parameter named __proto__', src: 'function k(Out, __proto__) {\n  store(Out, 0, 1.0);\n}', code: 'E_UNSUPPORTED', where: '__proto__', sig: { Out: 'ptr' } },
  { name: 'async kernel', src: 'async function k(Out, n) {\n  store(Out, 0, 1.0);\n}', code: 'E_UNSUPPORTED', where: 'async' },
  { name: 'generator kernel', src: 'function* k(Out, n) {\n  store(Out, 0, 1.0);\n}', code: 'E_UNSUPPORTED', where: 'function*' },
  { name: 'code after the function', src: `function k(Out, n) {\n  store(Out, 0, 1.0);\n}\n${SET};`, code: 'E_UNSUPPORTED', where: 'globalThis' },
  { name: 'code before the function', src: `${SET};\nfunction k(Out, n) {\n  store(Out, 0, 1.0);\n}`, code: 'E_UNSUPPORTED', where: 'globalThis' },
  { name: 'immediately invoked', src: `(function k(Out, n) {\n  store(Out, 0, 1.0);\n})(${SET})`, code: 'E_UNSUPPORTED', where: '(function' },
  { name: 'arrow function kernel', src: '(Out, n) => {\n  store(Out, 0, 1.0);\n}', code: 'E_UNSUPPORTED', where: '(Out' },
  { name: 'class as the kernel', src: 'class k {\n  static { globalThis.x = 1; }\n}', code: 'E_UNSUPPORTED', where: 'class' },
];

afterEach(() => {
  expect((globalThis as Record<string, unknown>)[FLAG]).toBeUndefined();
});

describe('escape attempts are refused with a coded error', () => {
  test.each(ATTEMPTS)('$name → $code', (a) => {
    const sig = a.sig ?? SIG;
    const e = compileError(a.src, sig);
    expect(e).toBeInstanceOf(KernelCompileError);
    const codes = e.diagnostics.map((d) => `${d.code}@${d.line}:${d.column}`);
    // The attempt is among the diagnostics, at its place (a signature problem may come first).
    expect(codes).toContain(`${a.code}@${at(a.src, a.where)}`);
    if (!a.atSpecialise) {
      // Refused when the kernel is made, before any value is bound.
      let thrown: unknown;
      try {
        jit(a.src, { signature: sig });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(KernelCompileError);
      expect((thrown as KernelCompileError).diagnostics.map((d) => d.code)).toContain(a.code);
    }
  });

  test('names of the JavaScript world get an error that says kernels cannot reach it', () => {
    for (const name of ['globalThis', 'process', 'require', 'eval', 'Function', 'Reflect', 'constructor', 'arguments']) {
      const e = compileError(body(`const x = ${name};`), SIG);
      expect(e.diagnostics[0]!.message).toContain('cannot reach JavaScript');
    }
  });

  test('a source function with a poisoned toString is parsed from its text, never called', () => {
    const fn = function k(Out: unknown): void {
      void Out;
    };
    // The text jit sees is what toString returns; its contents are still only parsed.
    fn.toString = () => `function k(Out) {\n  ${SET};\n}`;
    expect(() => jit(fn as unknown as string, { signature: { Out: 'ptr' } })).toThrow(KernelCompileError);
  });

  test('helpers are held to the same rules', () => {
    const src = 'function k(Out) {\n  store(Out, 0, h(1.0));\n}';
    expect(() => jit(src, { signature: { Out: 'ptr' }, helpers: { h: `function h(x) { ${SET}; return x; }` } })).toThrow(KernelCompileError);
    expect(() => jit(src, { signature: { Out: 'ptr' }, helpers: { h: 'function h(x) { return this; }' } })).toThrow(/'this'/);
  });
});
