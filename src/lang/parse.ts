/**
 * @fileoverview Parsing kernel source with acorn and the checks that need no constexpr values:
 * syntax, the signature, constructs outside the language, names that exist nowhere. All
 * problems are collected; nothing from the source is ever run.
 */
import * as acorn from 'acorn';
import type { Diagnostic } from '../errors.js';
import { KernelCompileError } from '../errors.js';
import type { Loc } from '../ir/ir.js';
import { MAX_NESTING_DEPTH, MAX_SOURCE_LENGTH } from '../ir/limits.js';
import { BUILTIN_NAMES } from './builtins.js';

export type ParamKind = 'ptr' | 'i32' | 'f32' | 'constexpr';
export type Signature = Readonly<Record<string, ParamKind>>;
export type ConstexprValue = number | boolean | string;
export interface HelperSource { readonly source: string; readonly name?: string }
// eslint-disable-next-line @typescript-eslint/no-unsafe-function-type
export type KernelSourceLike = string | Function | HelperSource;

export interface ParseOptions {
  readonly signature: Signature;
  /** Other kernels callable by name from this one; inlined at each call. */
  readonly helpers?: Readonly<Record<string, KernelSourceLike>>;
}

/** A parsed function (kernel or helper). */
export interface ParsedFunction {
  readonly name: string;
  readonly source: string;
  readonly params: readonly string[];
  /** Where each parameter is written (for E_PARAM). */
  readonly paramLocs: readonly Loc[];
  /** Where the function starts. */
  readonly loc: Loc;
  readonly body: acorn.BlockStatement;
}

export interface ParsedKernel {
  readonly name: string;
  readonly source: string;
  readonly params: readonly { name: string; kind: ParamKind }[];
  readonly helperSources: readonly string[];
  /** @internal */
  readonly fn: ParsedFunction;
  /** @internal */
  readonly helpers: ReadonlyMap<string, ParsedFunction>;
}

const KINDS = new Set(['ptr', 'i32', 'f32', 'constexpr']);

/** A parsed kernel's helper sources by name (what code frames of places in a helper are drawn from). */
export function helperSources(k: ParsedKernel): Readonly<Record<string, string>> {
  return Object.fromEntries([...k.helpers].map(([name, f]) => [name, f.source]));
}

/** Node types that are not part of the kernel language, with what to say. */
const UNSUPPORTED: Record<string, string> = {
  WhileStatement: "'while' loops are not supported; use for (let i = a; i < b; i += s)",
  DoWhileStatement: "'do' loops are not supported; use for (let i = a; i < b; i += s)",
  BreakStatement: "'break' is not supported (loops run their full range; use masks)",
  ContinueStatement: "'continue' is not supported (use masks or where(...))",
  SwitchStatement: "'switch' is not supported; use if/else",
  TryStatement: "'try' is not supported",
  ThrowStatement: "'throw' is not supported",
  LabeledStatement: 'labels are not supported',
  WithStatement: "'with' is not supported",
  DebuggerStatement: "'debugger' is not supported",
  ForInStatement: "'for...in' is not supported",
  ClassDeclaration: 'classes are not supported',
  ClassExpression: 'classes are not supported',
  FunctionDeclaration: 'nested functions are not supported; pass helpers with { helpers }',
  FunctionExpression: 'function expressions are not supported; pass helpers with { helpers }',
  ArrowFunctionExpression: 'arrow functions are not supported; pass helpers with { helpers }',
  ThisExpression: "'this' is not part of the kernel language",
  NewExpression: "'new' is not part of the kernel language",
  MemberExpression: "member access is not part of the kernel language (write exp(x), not Math.exp(x))",
  ChainExpression: 'optional chaining is not part of the kernel language',
  ObjectExpression: 'object literals are not part of the kernel language',
  TemplateLiteral: 'template literals are not part of the kernel language',
  TaggedTemplateExpression: 'tagged templates are not part of the kernel language',
  SpreadElement: 'spread is not part of the kernel language',
  RestElement: 'rest parameters are not part of the kernel language',
  SequenceExpression: 'the comma operator is not supported',
  AwaitExpression: "'await' is not part of the kernel language",
  YieldExpression: "'yield' is not part of the kernel language",
  ImportExpression: "'import' is not part of the kernel language",
  MetaProperty: 'meta properties are not part of the kernel language',
  ObjectPattern: 'destructuring is not supported',
  ArrayPattern: 'destructuring is not supported',
  AssignmentPattern: 'default parameter values are not supported',
};

const GLOBAL_CONSTS = new Set(['Infinity', 'NaN']);

/** `__proto__` is the one name an object key can never safely be; kernels may not use it. */
const RESERVED_NAME = "'__proto__' cannot be a name in a kernel";

/**
 * Links of a left-deep binary chain (a + b + c + ...) that count as one level of nesting: the
 * specialiser folds such a chain in a loop, and the parse-time walks recurse one frame a link,
 * so a sum of up to MAX_NESTING_DEPTH · CHAIN_LINKS_PER_LEVEL (4096) terms compiles.
 */
const CHAIN_LINKS_PER_LEVEL = 16;

/** The first node nested more than `limit` deep, if any (iterative: the tree may be deep). */
function tooDeep(root: acorn.Node, limit: number): acorn.Node | undefined {
  // Depth in 1/CHAIN_LINKS_PER_LEVEL levels: a binary expression's left operand is one link deeper.
  const stack: [acorn.Node, number][] = [[root, 0]];
  while (stack.length) {
    const [node, depth] = stack.pop()!;
    if (depth > limit * CHAIN_LINKS_PER_LEVEL) return node;
    for (const key of Object.keys(node)) {
      if (key === 'loc' || key === 'type') continue;
      const v = (node as unknown as Record<string, unknown>)[key];
      const step = node.type === 'BinaryExpression' && key === 'left' ? 1 : CHAIN_LINKS_PER_LEVEL;
      for (const c of Array.isArray(v) ? v : [v]) {
        if (c && typeof c === 'object' && typeof (c as acorn.Node).type === 'string') stack.push([c as acorn.Node, depth + step]);
      }
    }
  }
  return undefined;
}

/** Source text of a kernel-like input. */
export function sourceOf(x: KernelSourceLike, what: string): string {
  if (typeof x === 'string') return x;
  if (typeof x === 'function') return x.toString();
  if (x && typeof x === 'object' && typeof (x as HelperSource).source === 'string') return (x as HelperSource).source;
  throw new TypeError(`${what}: expected a function, its source text, or a kernel`);
}

/** Parse one function and check its body; diagnostics go to `diags`. */
export function parseFunction(source: string, diags: Diagnostic[], knownNames: ReadonlySet<string>, helper?: string): ParsedFunction | undefined {
  if (source.length > MAX_SOURCE_LENGTH) {
    const before = source.slice(0, MAX_SOURCE_LENGTH).split('\n');
    diags.push({
      code: 'E_LIMIT',
      message: `kernel source is ${source.length} characters; the limit (MAX_SOURCE_LENGTH) is ${MAX_SOURCE_LENGTH}`,
      line: before.length,
      column: before[before.length - 1]!.length + 1,
    });
    return undefined;
  }
  // A helper's nodes carry its name (loc.source), so later errors and faults frame its own source.
  const opts: acorn.Options = { ecmaVersion: 2022, sourceType: 'module', locations: true, ...(helper ? { sourceFile: helper } : {}) };
  let fn: acorn.FunctionDeclaration | acorn.FunctionExpression | undefined;
  let program: acorn.Program | undefined;
  try {
    // `fn.toString()` of an anonymous function is `function (...) {...}`, which is not a valid
    // statement: parse a leading `function` as an expression, positions staying source-relative.
    const first = firstToken(source);
    if (first?.type === acorn.tokTypes._function) {
      const e = acorn.parseExpressionAt(source, first.start, opts);
      const rest = firstToken(source, e.end);
      if (rest && rest.type !== acorn.tokTypes.eof) {
        diags.push(diag({ loc: { start: rest.loc!.start } } as acorn.Node, 'E_UNSUPPORTED', 'kernel source must be exactly one function: function name(params) { ... }'));
        return undefined;
      }
      if (e.type === 'FunctionExpression') fn = e;
    } else {
      program = acorn.parse(source, opts);
    }
  } catch (err) {
    const e = err as SyntaxError & { loc?: { line: number; column: number } };
    if (err instanceof RangeError || /stack space/.test(e.message)) {
      // acorn's own recursion ran out of stack: far deeper than MAX_NESTING_DEPTH.
      diags.push({ code: 'E_LIMIT', message: `the source nests deeper than the limit (MAX_NESTING_DEPTH) of ${MAX_NESTING_DEPTH}`, line: e.loc?.line ?? 1, column: (e.loc?.column ?? 0) + 1 });
      return undefined;
    }
    diags.push({ code: 'E_SYNTAX', message: e.message.replace(/ \(\d+:\d+\)$/, ''), line: e.loc?.line ?? 0, column: (e.loc?.column ?? -1) + 1 });
    return undefined;
  }
  if (!fn) {
    const stmts = program?.body ?? [];
    const only = stmts.length === 1 ? stmts[0] : undefined;
    const at = stmts[0] ?? program;
    const arrow = only?.type === 'ExpressionStatement' && only.expression.type === 'ArrowFunctionExpression';
    if (at) diags.push(diag(at, 'E_UNSUPPORTED', arrow ? 'a kernel must be a plain function, not an arrow function: function name(params) { ... }' : 'kernel source must be exactly one function: function name(params) { ... }'));
    return undefined;
  }
  if (fn.async || fn.generator) diags.push(diag(fn, 'E_UNSUPPORTED', 'a kernel cannot be async or a generator'));
  const params: string[] = [];
  const paramLocs: Loc[] = [];
  for (const p of fn.params) {
    if (p.type === 'Identifier' && p.name === '__proto__') diags.push(diag(p, 'E_UNSUPPORTED', RESERVED_NAME));
    else if (p.type === 'Identifier') {
      params.push(p.name);
      paramLocs.push(locOf(p));
    } else {
      diags.push(diag(p, 'E_UNSUPPORTED', UNSUPPORTED[p.type] ?? 'parameters must be plain names'));
      // n = 3 still names n: the signature's entry for it is no second error.
      if (p.type === 'AssignmentPattern' && p.left.type === 'Identifier') {
        params.push(p.left.name);
        paramLocs.push(locOf(p.left));
      }
    }
  }
  const deep = tooDeep(fn.body, MAX_NESTING_DEPTH);
  if (deep) {
    // Report it alone: every later walk (and the specialiser) recurses as deep as the source.
    diags.push(diag(deep, 'E_LIMIT', `the source nests deeper than the limit (MAX_NESTING_DEPTH) of ${MAX_NESTING_DEPTH} (a chain a + b + c ... counts a level per ${CHAIN_LINKS_PER_LEVEL} terms)`));
    return undefined;
  }
  const declared = new Set<string>(params);
  collectDeclared(fn.body, declared);
  checkNode(fn.body, diags, (name) => declared.has(name) || knownNames.has(name) || GLOBAL_CONSTS.has(name), [...declared]);
  return { name: fn.id?.name ?? 'kernel', source, params, paramLocs, loc: locOf(fn), body: fn.body };
}

/** The first token at or after `from` (comments skipped), or undefined on a tokenizer error. */
function firstToken(source: string, from = 0): acorn.Token | undefined {
  try {
    const t = acorn.tokenizer(source.slice(0, from).replace(/[^\n]/g, ' ') + source.slice(from), { ecmaVersion: 2022, locations: true });
    return t.getToken();
  } catch {
    return undefined;
  }
}

function locOf(n: acorn.Node): Loc {
  return { line: n.loc?.start.line ?? 0, column: (n.loc?.start.column ?? 0) + 1 };
}

/** Parse a kernel and its helpers; throws KernelCompileError with every problem found. */
export function parseKernel(fnOrSource: KernelSourceLike, opts: ParseOptions): ParsedKernel {
  const source = sourceOf(fnOrSource, 'jit');
  const diags: Diagnostic[] = [];
  const helperSrc = opts.helpers ?? {};
  const known = new Set<string>([...BUILTIN_NAMES, ...Object.keys(helperSrc)]);
  const fn = parseFunction(source, diags, known);
  const name = fn?.name ?? 'kernel';
  const helpers = new Map<string, ParsedFunction>();
  const helperSources: string[] = [];
  for (const [hname, h] of Object.entries(helperSrc)) {
    const hs = sourceOf(h, `helper '${hname}'`);
    helperSources.push(`${hname}=${hs}`);
    const hd: Diagnostic[] = [];
    const parsed = parseFunction(hs, hd, known, hname);
    if (hd.length) throw new KernelCompileError(`${name} (helper ${hname})`, hd, hs);
    if (parsed) helpers.set(hname, parsed);
  }
  const params: { name: string; kind: ParamKind }[] = [];
  if (fn) {
    const sig = opts.signature;
    const at = (i: number): Loc => fn.paramLocs[i] ?? fn.loc;
    const perr = (l: Loc, message: string): void => void diags.push({ code: 'E_PARAM', message, line: l.line, column: l.column });
    fn.params.forEach((p, i) => {
      const kind = Object.prototype.hasOwnProperty.call(sig, p) ? sig[p] : undefined;
      if (kind === undefined) perr(at(i), `parameter '${p}' is missing from the signature (give it ptr, i32, f32 or constexpr)`);
      else if (!KINDS.has(kind)) perr(at(i), `signature: '${p}' has kind '${String(kind)}'; expected ptr, i32, f32 or constexpr`);
      else params.push({ name: p, kind });
      if (known.has(p)) perr(at(i), `parameter '${p}' shadows a builtin or helper of the same name`);
      if (fn.params.indexOf(p) !== i) perr(at(i), `parameter '${p}' is declared twice`);
    });
    for (const k of Object.keys(sig)) {
      if (!fn.params.includes(k)) perr(fn.loc, `the signature names '${k}', which is not a parameter of ${name}`);
    }
  }
  if (diags.length) throw new KernelCompileError(name, sortDiags(diags), source);
  return { name, source, params, helperSources, fn: fn!, helpers };
}

export function sortDiags(d: Diagnostic[]): Diagnostic[] {
  return [...d].sort((a, b) => a.line - b.line || a.column - b.column);
}

export function diag(node: acorn.Node, code: string, message: string): Diagnostic {
  const loc = node.loc?.start;
  return { code, message, line: loc?.line ?? 0, column: (loc?.column ?? 0) + 1 };
}

function collectDeclared(node: acorn.Node, out: Set<string>): void {
  walk(node, (n) => {
    if (n.type === 'VariableDeclarator') {
      const id = (n as acorn.VariableDeclarator).id;
      if (id.type === 'Identifier') out.add(id.name);
    }
  });
}

/** Report unsupported node types and names defined nowhere. */
function checkNode(body: acorn.Node, diags: Diagnostic[], isKnown: (name: string) => boolean, declared: readonly string[]): void {
  walk(body, (n, parent) => {
    const why = UNSUPPORTED[n.type];
    if (why) {
      diags.push(diag(n, 'E_UNSUPPORTED', why));
      return false;
    }
    if (n.type === 'VariableDeclaration' && (n as acorn.VariableDeclaration).kind === 'var') {
      diags.push(diag(n, 'E_UNSUPPORTED', "'var' is not supported; use const or let"));
    }
    if (n.type === 'UnaryExpression') {
      const op = (n as acorn.UnaryExpression).operator;
      if (op === 'typeof' || op === 'delete' || op === 'void') diags.push(diag(n, 'E_UNSUPPORTED', `'${op}' is not part of the kernel language`));
    }
    if (n.type === 'BinaryExpression') {
      const op = (n as acorn.BinaryExpression).operator;
      if (op === 'in' || op === 'instanceof' || op === '**') diags.push(diag(n, 'E_UNSUPPORTED', `'${op}' is not part of the kernel language`));
    }
    if (n.type === 'LogicalExpression' && (n as acorn.LogicalExpression).operator === '??') {
      diags.push(diag(n, 'E_UNSUPPORTED', "'??' is not part of the kernel language"));
    }
    if (n.type === 'AssignmentExpression') {
      const op = (n as acorn.AssignmentExpression).operator;
      if (op === '&&=' || op === '||=' || op === '??=') diags.push(diag(n, 'E_UNSUPPORTED', `'${op}' is not supported`));
    }
    if (n.type === 'Literal') {
      const lit = n as acorn.Literal;
      if ('regex' in lit && lit.regex) diags.push(diag(n, 'E_UNSUPPORTED', 'regular expressions are not part of the kernel language'));
      else if (lit.value === null) diags.push(diag(n, 'E_UNSUPPORTED', "'null' is not part of the kernel language"));
      else if (typeof lit.value === 'bigint') diags.push(diag(n, 'E_UNSUPPORTED', 'BigInt literals are not part of the kernel language'));
    }
    if (n.type === 'Identifier' && parent && !isPropertyName(n, parent)) {
      const name = (n as acorn.Identifier).name;
      if (name === '__proto__') diags.push(diag(n, 'E_UNSUPPORTED', RESERVED_NAME));
      else if (!isKnown(name)) diags.push(diag(n, 'E_UNKNOWN_NAME', unknownMessage(name, declared)));
    }
    return true;
  });
}

function isPropertyName(n: acorn.Node, parent: acorn.Node): boolean {
  return parent.type === 'MemberExpression' && (parent as acorn.MemberExpression).property === n && !(parent as acorn.MemberExpression).computed;
}

/** Names of the JavaScript world a kernel might reach for: named as such in the error. */
const JS_GLOBALS = new Set([
  'Math', 'console', 'globalThis', 'window', 'self', 'global', 'process', 'eval', 'Function', 'require', 'module', 'exports',
  'arguments', 'undefined', 'Object', 'Array', 'Reflect', 'Proxy', 'Symbol', 'WebAssembly', 'Atomics', 'SharedArrayBuffer',
  'ArrayBuffer', 'Float32Array', 'Int32Array', 'Buffer', 'fetch', 'setTimeout', 'setInterval', 'queueMicrotask', 'structuredClone',
  'Worker', 'postMessage', 'importScripts', 'Deno', 'Bun', '__dirname', '__filename', 'constructor', 'prototype', 'toString', 'valueOf',
  'hasOwnProperty',
]);

/** "unknown name" with the closest builtins as a hint. */
export function unknownMessage(name: string, extra: readonly string[] = []): string {
  if (BUILTIN_NAMES.includes(name)) return `'${name}' is a builtin function, not a variable: call it as ${name}(...)`;
  const all = [...BUILTIN_NAMES, ...extra];
  // A name of one or two letters is a single edit from every other short name: only a case slip counts.
  const within = name.length <= 2 ? 0 : Math.max(1, Math.floor(name.length / 3));
  const close = all.filter((b) => b !== name && editDistance(b.toLowerCase(), name.toLowerCase()) <= within);
  const hint = close.length ? `; did you mean ${close.slice(0, 3).map((c) => `'${c}'`).join(' or ')}?` : '';
  if (JS_GLOBALS.has(name)) {
    return `'${name}' is not available in kernels (kernels cannot reach JavaScript)`;
  }
  return `unknown name '${name}'${hint}`;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return d[a.length]![b.length]!;
}

/** Pre-order walk over an acorn tree; `visit` returning false skips the children. */
export function walk(node: acorn.Node, visit: (n: acorn.Node, parent: acorn.Node | undefined) => boolean | void, parent?: acorn.Node): void {
  if (visit(node, parent) === false) return;
  for (const key of Object.keys(node)) {
    if (key === 'loc' || key === 'start' || key === 'end' || key === 'type') continue;
    const v = (node as unknown as Record<string, unknown>)[key];
    if (Array.isArray(v)) {
      for (const c of v) if (c && typeof c === 'object' && typeof (c as acorn.Node).type === 'string') walk(c as acorn.Node, visit, node);
    } else if (v && typeof v === 'object' && typeof (v as acorn.Node).type === 'string') {
      walk(v as acorn.Node, visit, node);
    }
  }
}
