/**
 * @fileoverview Specialisation: one walk of the kernel's AST with its constexpr values bound.
 * Constexpr expressions fold as JS values, constexpr `if`s and `staticRange` loops disappear,
 * helpers inline, and everything that depends on run-time data becomes IR (src/ir/ir.ts).
 */
import type * as acorn from 'acorn';
import { KernelCompileError } from '../errors.js';
import type {
  CarriedV, DType, ForI, IfI, Instr, IvV, KernelIR, ParamIR, ResultV, Shape, StorageDType, Value,
} from '../ir/ir.js';
import { MAX_INLINE_DEPTH, MAX_UNROLL } from '../ir/limits.js';
import { verify } from '../ir/verify.js';
import { BUILTINS } from './builtins.js';
import { binaryOp, unaryOp } from './operators.js';

const STORAGE = new Set<string>(['f32', 'f16', 'bf16', 'i32']);
import { sortDiags, unknownMessage, walk, type ConstexprValue, type ParsedFunction, type ParsedKernel } from './parse.js';
import { broadcastShapes, Builder, ceDtype, describe, loc, outsideI32, POISON, promote, Reported, sameShape, type Val } from './values.js';

export interface SpecializeInput {
  readonly constexprs: Readonly<Record<string, ConstexprValue>>;
  readonly tensorDtypes: Readonly<Record<string, StorageDType>>;
  readonly scalarDivisibility?: Readonly<Record<string, number>>;
  /** IR values allowed (default MAX_IR_VALUES). */
  readonly maxIrValues?: number;
}

export { MAX_UNROLL };

interface Binding {
  val: Val;
  readonly isConst: boolean;
}

class Scope {
  readonly vars = new Map<string, Binding>();
  constructor(readonly parent?: Scope) {}
  lookup(name: string): Binding | undefined {
    return this.vars.get(name) ?? this.parent?.lookup(name);
  }
}

/** What ends a walk early: a kernel `return;` or a helper's `return expr`. */
type Flow = { kind: 'next' } | { kind: 'return'; value?: Val };

export function specialize(k: ParsedKernel, input: SpecializeInput): KernelIR {
  return new Specializer(k, input).run();
}

export class Specializer {
  readonly b: Builder = new Builder();
  private readonly params: ParamIR[] = [];
  private unrolled = 0;
  private inlineStack: string[] = [];
  private helperDepth = 0;
  /** Run-time ifs and loops around the current statement, within the current helper. */
  private runtimeDepth = 0;

  constructor(readonly k: ParsedKernel, readonly input: SpecializeInput) {}

  run(): KernelIR {
    if (this.input.maxIrValues !== undefined) this.b.maxValues = this.input.maxIrValues;
    const root = new Scope();
    for (const p of this.k.params) {
      if (p.kind === 'constexpr') {
        const has = Object.prototype.hasOwnProperty.call(this.input.constexprs, p.name);
        const v = has ? this.input.constexprs[p.name] : undefined;
        if (!has) {
          this.paramError(`constexpr '${p.name}' has no value`);
          root.vars.set(p.name, { val: POISON, isConst: true });
        } else if (typeof v !== 'number' && typeof v !== 'boolean' && typeof v !== 'string') {
          this.paramError(`constexpr '${p.name}' must be a number, boolean or string, got ${typeof v}`);
          root.vars.set(p.name, { val: POISON, isConst: true });
        } else root.vars.set(p.name, { val: { kind: 'ce', v }, isConst: true });
      } else if (p.kind === 'ptr') {
        const dtype = this.input.tensorDtypes[p.name];
        if (!dtype) this.paramError(`tensor '${p.name}' has no dtype`);
        else if (!STORAGE.has(dtype)) this.paramError(`tensor '${p.name}' has dtype '${String(dtype)}'; expected f32, f16, bf16 or i32`);
        const index = this.params.length;
        this.params.push({ kind: 'tensor', name: p.name, dtype: dtype ?? 'f32' });
        root.vars.set(p.name, { val: { kind: 'tensor', index, name: p.name }, isConst: true });
      } else {
        const index = this.params.length;
        this.params.push({ kind: 'scalar', name: p.name, dtype: p.kind });
        const div = this.input.scalarDivisibility?.[p.name];
        const i = this.k.fn.params.indexOf(p.name);
        const at = this.k.fn.paramLocs[i] ?? this.k.fn.loc;
        // The parameter's own position, so errors and printed IR point at its declaration.
        const where = { loc: { start: { line: at.line, column: at.column - 1 } } } as acorn.Node;
        const v = this.b.emit(where, { op: 'arg', index, dtype: p.kind, shape: [], ...(div ? { divisibility: div } : {}) });
        root.vars.set(p.name, { val: { kind: 'ir', v }, isConst: true });
      }
    }
    const kindOf = new Map(this.k.params.map((p) => [p.name, p.kind] as const));
    for (const name of Object.keys(this.input.constexprs)) {
      if (kindOf.get(name) !== 'constexpr') this.paramError(`'${name}' is not a constexpr parameter of ${this.k.name}`);
    }
    for (const name of Object.keys(this.input.tensorDtypes)) {
      if (kindOf.get(name) !== 'ptr') this.paramError(`'${name}' is not a ptr parameter of ${this.k.name}`);
    }
    for (const [name, d] of Object.entries(this.input.scalarDivisibility ?? {})) {
      if (kindOf.get(name) !== 'i32') this.paramError(`divisibility given for '${name}', which is not an i32 parameter of ${this.k.name}`);
      else if (d !== 1 && d !== 4 && d !== 16) this.paramError(`divisibility of '${name}' must be 16, 4 or 1, got ${d}`);
    }
    if (this.b.diags.length === 0) this.block(this.k.fn.body.body, new Scope(root), false);
    if (this.b.diags.length) throw new KernelCompileError(this.k.name, sortDiags(this.b.diags), this.k.source);
    const ir: KernelIR = { name: this.k.name, params: this.params, body: this.b.block, numValues: this.b.numValues };
    verify(ir);
    return ir;
  }

  /** A specialisation input that does not fit the kernel: reported at the kernel's head. */
  private paramError(message: string): void {
    const at = this.k.fn.loc;
    this.b.diags.push({ code: 'E_PARAM', message, line: at.line, column: at.column });
  }

  // ---- statements -------------------------------------------------------------------------

  /** Walk statements; returns 'return' if one ended the program (or helper). */
  private block(stmts: readonly acorn.Statement[], scope: Scope, inHelper: boolean): Flow {
    for (const s of stmts) {
      if (this.b.stopped) return { kind: 'return' };
      let flow: Flow = { kind: 'next' };
      try {
        flow = this.stmt(s, scope, inHelper);
      } catch (err) {
        if (!(err instanceof Reported)) throw err;
      }
      if (flow.kind === 'return' || this.b.stopped) return this.b.stopped ? { kind: 'return' } : flow;
    }
    return { kind: 'next' };
  }

  private stmt(s: acorn.Statement, scope: Scope, inHelper: boolean): Flow {
    switch (s.type) {
      case 'VariableDeclaration': {
        for (const d of s.declarations) {
          if (d.id.type !== 'Identifier') this.b.fail(d, 'E_UNSUPPORTED', 'destructuring is not supported');
          const name = d.id.name;
          if (scope.vars.has(name)) this.b.fail(d.id, 'E_ASSIGN', `'${name}' is already declared in this block`);
          if (!d.init) this.b.fail(d, 'E_UNSUPPORTED', `'${name}' needs an initial value`);
          let val: Val = POISON;
          try {
            val = this.expr(d.init, scope);
          } finally {
            scope.vars.set(name, { val, isConst: s.kind === 'const' });
          }
        }
        return { kind: 'next' };
      }
      case 'ExpressionStatement':
        if (s.expression.type === 'CallExpression') this.call(s.expression, scope, true);
        else this.expr(s.expression, scope);
        return { kind: 'next' };
      case 'BlockStatement':
        return this.block(s.body, new Scope(scope), inHelper);
      case 'EmptyStatement':
        return { kind: 'next' };
      case 'IfStatement':
        return this.ifStmt(s, scope, inHelper);
      case 'ForStatement':
        this.forStmt(s, scope, inHelper);
        return { kind: 'next' };
      case 'ForOfStatement':
        return this.staticFor(s, scope, inHelper);
      case 'ReturnStatement': {
        if (inHelper) {
          if (this.runtimeDepth > 0) {
            this.b.fail(s, 'E_UNSUPPORTED', 'a helper can return only at its top level or inside constexpr ifs (choose values with where(...) at run time)');
          }
          return s.argument ? { kind: 'return', value: this.expr(s.argument, scope) } : { kind: 'return' };
        }
        if (s.argument) this.b.fail(s, 'E_RETURN', 'a kernel returns nothing: write results with store(...)');
        this.b.block.push({ op: 'return', loc: loc(s) });
        return { kind: 'return' };
      }
      default:
        this.b.fail(s, 'E_UNSUPPORTED', `${s.type} is not part of the kernel language`);
    }
  }

  private ifStmt(s: acorn.IfStatement, scope: Scope, inHelper: boolean): Flow {
    const cond = this.expr(s.test, scope);
    if (cond.kind === 'poison') return { kind: 'next' };
    if (cond.kind === 'ce') {
      const branch = cond.v ? s.consequent : s.alternate;
      return branch ? this.block([branch], new Scope(scope), inHelper) : { kind: 'next' };
    }
    if (cond.kind !== 'ir' || cond.v.shape.length !== 0 || cond.v.dtype !== 'bool') {
      this.b.fail(s.test, 'E_TYPE', `an if condition must be a bool scalar or a constexpr, got ${describe(cond)} (compare it, or use where(...) for tiles)`);
    }
    const assigned = assignedOuter(s, scope);
    const outer = this.b.block;
    const before = new Map(assigned.map((n) => [n, scope.lookup(n)!.val] as const));
    const runBranch = (stmt: acorn.Statement | null | undefined): { block: Instr[]; vals: Map<string, Val>; returned: boolean } => {
      this.b.block = [];
      const inner = new Scope(scope);
      let returned = false;
      this.runtimeDepth++;
      try {
        if (stmt) returned = this.block([stmt], inner, inHelper).kind === 'return';
      } finally {
        this.runtimeDepth--;
      }
      const vals = new Map(assigned.map((n) => [n, scope.lookup(n)!.val] as const));
      for (const [n, v] of before) scope.lookup(n)!.val = v;
      return { block: this.b.block, vals, returned };
    };
    const t = runBranch(s.consequent);
    const e = runBranch(s.alternate);
    this.b.block = outer;
    // Merge: each assigned variable becomes a result of the if.
    const thenYields: Value[] = [];
    const elseYields: Value[] = [];
    const results: ResultV[] = [];
    const names: string[] = [];
    for (const n of assigned) {
      const tv = t.vals.get(n)!;
      const ev = e.vals.get(n)!;
      if (tv.kind === 'poison' || ev.kind === 'poison') {
        scope.lookup(n)!.val = POISON;
        continue;
      }
      const ty = this.joinType(s, n, [tv, ev]);
      if (!ty) {
        scope.lookup(n)!.val = POISON;
        continue;
      }
      names.push(n);
      thenYields.push(this.coerceInto(t.block, s, tv, ty));
      elseYields.push(this.coerceInto(e.block, s, ev, ty));
      results.push(this.b.detached<ResultV>(s, { op: 'result', dtype: ty.dtype, shape: ty.shape }));
    }
    const ins: IfI = { op: 'if', loc: loc(s), cond: (cond as { v: Value }).v, then: t.block, else: e.block, thenYields, elseYields, results };
    this.b.block.push(ins);
    names.forEach((n, i) => (scope.lookup(n)!.val = { kind: 'ir', v: results[i]! }));
    return { kind: 'next' };
  }

  /** The common type of a variable's values at a join, or undefined after reporting. */
  private joinType(node: acorn.Node, name: string, vals: Val[]): { dtype: DType; shape: Shape } | undefined {
    const irs = vals.filter((v): v is Val & { kind: 'ir' } => v.kind === 'ir').map((v) => v.v);
    for (const v of vals) {
      if (v.kind !== 'ir' && v.kind !== 'ce') {
        this.b.report(node, 'E_TYPE', `'${name}' holds ${describe(v)} on one path; only numbers, bools and tiles can change at run time`);
        return undefined;
      }
      if (v.kind === 'ce' && typeof v.v === 'string') {
        this.b.report(node, 'E_TYPE', `'${name}' holds a string; strings must stay constexpr`);
        return undefined;
      }
    }
    // Like Triton, a variable keeps one type across the paths that meet here: no implicit
    // broadcast or conversion, so a tile that silently grows or truncates is an error.
    let dtype: DType | undefined;
    let shape: Shape | undefined;
    for (const v of irs) {
      if (dtype && dtype !== v.dtype) {
        this.b.report(node, 'E_TYPE', `'${name}' is ${dtype} on one path and ${v.dtype} on another; cast one of them`);
        return undefined;
      }
      dtype = v.dtype;
      if (shape && !sameShape(shape, v.shape)) {
        this.b.report(node, 'E_SHAPE', `'${name}' has shapes [${shape.join(', ')}] and [${v.shape.join(', ')}] on different paths`);
        return undefined;
      }
      shape = v.shape;
    }
    const ces = vals.filter((v): v is Val & { kind: 'ce' } => v.kind === 'ce');
    if (shape?.length && ces.length) {
      this.b.report(node, 'E_SHAPE', `'${name}' is a scalar constant on one path and a [${shape.join(', ')}] tile on another; start it with full(...) or zeros(...)`);
      return undefined;
    }
    const isFloat = (v: Val & { kind: 'ce' }): boolean => typeof v.v === 'number' && (v.float === true || !Number.isInteger(v.v));
    dtype ??= ces.some((v) => typeof v.v === 'boolean') ? 'bool' : ces.some(isFloat) ? 'f32' : 'i32';
    for (const v of ces) {
      const fits = dtype === 'bool' ? typeof v.v === 'boolean' : typeof v.v === 'number' && (dtype === 'f32' || !isFloat(v));
      if (!fits) {
        this.b.report(node, 'E_TYPE', `'${name}' is ${dtype} on one path and ${describe(v)} on another; give both the same type`);
        return undefined;
      }
    }
    return { dtype, shape: shape ?? [] };
  }

  /** `v` as an IR value of type `ty`, emitted into `block`. */
  private coerceInto(block: Instr[], node: acorn.Node, v: Val, ty: { dtype: DType; shape: Shape }): Value {
    const saved = this.b.block;
    this.b.block = block;
    try {
      let x = this.toIR(v, node, ty.dtype);
      if (x.dtype !== ty.dtype) x = this.b.cast(node, x, ty.dtype);
      return this.b.broadcast(node, x, ty.shape);
    } finally {
      this.b.block = saved;
    }
  }

  private forStmt(s: acorn.ForStatement, scope: Scope, inHelper: boolean): void {
    const bad = (): never => this.b.fail(s, 'E_UNSUPPORTED', 'for loops must look like for (let i = start; i < end; i += step) (also <=, >, >=, i++, i--, i -= step)');
    const init = s.init;
    if (!init || init.type !== 'VariableDeclaration' || init.kind !== 'let' || init.declarations.length !== 1) bad();
    const decl = (init as acorn.VariableDeclaration).declarations[0]!;
    if (decl.id.type !== 'Identifier' || !decl.init) bad();
    const iv = (decl.id as acorn.Identifier).name;
    const test = s.test;
    if (!test || test.type !== 'BinaryExpression' || test.left.type !== 'Identifier' || test.left.name !== iv || !['<', '<=', '>', '>='].includes(test.operator)) bad();
    const t = test as acorn.BinaryExpression;
    const upd = s.update;
    let stepNode: acorn.Expression | undefined;
    let stepSign = 1;
    if (upd?.type === 'UpdateExpression' && upd.argument.type === 'Identifier' && upd.argument.name === iv) stepSign = upd.operator === '++' ? 1 : -1;
    else if (upd?.type === 'AssignmentExpression' && upd.left.type === 'Identifier' && upd.left.name === iv && (upd.operator === '+=' || upd.operator === '-=')) {
      stepNode = upd.right;
      stepSign = upd.operator === '+=' ? 1 : -1;
    } else if (upd?.type === 'AssignmentExpression' && upd.left.type === 'Identifier' && upd.left.name === iv && upd.operator === '='
      && upd.right.type === 'BinaryExpression' && upd.right.operator === '+' && upd.right.left.type === 'Identifier' && upd.right.left.name === iv) {
      stepNode = upd.right.right as acorn.Expression;
    } else bad();
    const descending = t.operator === '>' || t.operator === '>=';
    if (descending !== (stepSign < 0)) this.b.fail(upd!, 'E_UNSUPPORTED', `a loop compared with '${t.operator}' must ${descending ? 'count down' : 'count up'}`);

    const i32 = (v: Val, node: acorn.Node): Value => {
      const x = this.toIR(v, node, 'i32');
      if (x.dtype !== 'i32' || x.shape.length) this.b.fail(node, 'E_TYPE', `loop bounds and steps must be i32 scalars, got ${describe(v)}`);
      return x;
    };
    const start = i32(this.expr(decl.init!, scope), decl.init!);
    let end = i32(this.expr(t.right as acorn.Expression, scope), t.right);
    if (t.operator === '<=' || t.operator === '>=') end = this.b.binary(t, 'add', end, this.b.constant(t, descending ? -1 : 1, 'i32'), 'i32');
    let step: Value;
    if (stepNode) {
      const sv = this.expr(stepNode, scope);
      // JavaScript would loop forever; a constexpr step that cannot advance is refused here (a
      // run-time step of 0 or of the wrong sign runs no iteration).
      if (sv.kind === 'ce' && typeof sv.v === 'number' && sv.v <= 0) {
        this.b.fail(stepNode, 'E_CONSTEXPR', `the loop step must be positive, got ${sv.v}${sv.v < 0 && stepSign > 0 ? ` (to count down, write ${iv} -= ${-sv.v} and compare with '>' or '>=')` : ''}`);
      }
      step = i32(sv, stepNode);
      if (stepSign < 0) step = this.b.unary(stepNode, 'neg', step);
    } else step = this.b.constant(upd!, stepSign, 'i32');

    // Outer variables assigned in the body are loop-carried.
    const assigned = assignedOuter(s.body, scope).filter((n) => n !== iv);
    const inits: Value[] = [];
    const carried: CarriedV[] = [];
    const names: string[] = [];
    for (const n of assigned) {
      const bnd = scope.lookup(n)!;
      const ty = this.joinType(s, n, [bnd.val]);
      if (!ty) continue;
      names.push(n);
      inits.push(this.coerceInto(this.b.block, s, bnd.val, ty));
      carried.push(this.b.detached<CarriedV>(s, { op: 'carried', dtype: ty.dtype, shape: ty.shape }));
    }
    const ivNode = this.b.detached<IvV>(decl, { op: 'iv', dtype: 'i32', shape: [] });
    const outer = this.b.block;
    this.b.block = [];
    const before = names.map((n) => scope.lookup(n)!.val);
    names.forEach((n, i) => (scope.lookup(n)!.val = { kind: 'ir', v: carried[i]! }));
    const bodyScope = new Scope(scope);
    bodyScope.vars.set(iv, { val: { kind: 'ir', v: ivNode }, isConst: true });
    this.runtimeDepth++;
    try {
      this.block([s.body], bodyScope, inHelper);
    } finally {
      this.runtimeDepth--;
    }
    const yields: Value[] = [];
    names.forEach((n, i) => {
      const v = scope.lookup(n)!.val;
      const c = carried[i]!;
      if (v.kind === 'poison') {
        yields.push(c);
        return;
      }
      try {
        const x = v.kind === 'ir' ? v.v : undefined;
        if (x && x.dtype !== c.dtype) this.b.fail(s, 'E_TYPE', `'${n}' is ${c.dtype} before the loop and ${x.dtype} after an iteration; cast it`);
        if (x && !sameShape(x.shape, c.shape)) {
          this.b.fail(s, 'E_SHAPE', `'${n}' is [${c.shape.join(', ')}] before the loop and [${x.shape.join(', ')}] after an iteration`);
        }
        // Constants assigned in the body must fit the carried type as well.
        if (!x && !this.joinType(s, n, [{ kind: 'ir', v: c }, v])) throw new Reported('reported');
        yields.push(this.coerceInto(this.b.block, s, v, c));
      } catch (err) {
        if (!(err instanceof Reported)) throw err;
        yields.push(c);
      }
    });
    const body = this.b.block;
    this.b.block = outer;
    void before;
    const results = carried.map((c) => this.b.detached<ResultV>(s, { op: 'result', dtype: c.dtype, shape: c.shape }));
    const ins: ForI = { op: 'for', loc: loc(s), iv: ivNode, start, end, step, descending, inits, carried, body, yields, results };
    this.b.block.push(ins);
    names.forEach((n, i) => (scope.lookup(n)!.val = { kind: 'ir', v: results[i]! }));
  }

  private staticFor(s: acorn.ForOfStatement, scope: Scope, inHelper: boolean): Flow {
    const left = s.left;
    if (left.type !== 'VariableDeclaration' || left.declarations.length !== 1 || left.declarations[0]!.id.type !== 'Identifier') {
      this.b.fail(s, 'E_UNSUPPORTED', 'use for (const i of staticRange(n)) for compile-time loops');
    }
    const name = ((left as acorn.VariableDeclaration).declarations[0]!.id as acorn.Identifier).name;
    const r = s.right;
    if (r.type !== 'CallExpression' || r.callee.type !== 'Identifier' || r.callee.name !== 'staticRange') {
      this.b.fail(r, 'E_UNSUPPORTED', 'for...of only iterates staticRange(...) (a compile-time loop)');
    }
    const args = (r as acorn.CallExpression).arguments.map((a) => this.ceNumber(a as acorn.Expression, scope, 'staticRange bounds'));
    if (args.length < 1 || args.length > 3) this.b.fail(r, 'E_ARITY', 'staticRange(end), staticRange(start, end) or staticRange(start, end, step)');
    const [start, end, step] = args.length === 1 ? [0, args[0]!, 1] : [args[0]!, args[1]!, args[2] ?? 1];
    if (step === 0 || !Number.isInteger(start) || !Number.isInteger(end) || !Number.isInteger(step)) this.b.fail(r, 'E_CONSTEXPR', 'staticRange bounds must be integers and the step non-zero');
    for (let i = start; step > 0 ? i < end : i > end; i += step) {
      if (++this.unrolled > MAX_UNROLL) {
        this.b.stopped = true;
        this.b.fail(s, 'E_LIMIT', `staticRange loops unroll more than ${MAX_UNROLL} iterations in total (limit MAX_UNROLL)`);
      }
      const body = new Scope(scope);
      body.vars.set(name, { val: { kind: 'ce', v: i }, isConst: true });
      const flow = this.block([s.body], body, inHelper);
      if (flow.kind === 'return') return flow;
    }
    return { kind: 'next' };
  }

  // ---- expressions ------------------------------------------------------------------------

  expr(node: acorn.Expression | acorn.SpreadElement | acorn.PrivateIdentifier | acorn.Super, scope: Scope): Val {
    switch (node.type) {
      case 'Literal': {
        const v = node.value;
        if (typeof v === 'number') return { kind: 'ce', v, float: /[.eE]/.test(node.raw ?? '') && !/^0[xXbBoO]/.test(node.raw ?? '') };
        if (typeof v === 'boolean' || typeof v === 'string') return { kind: 'ce', v };
        return this.b.fail(node, 'E_UNSUPPORTED', 'this literal is not part of the kernel language');
      }
      case 'Identifier': {
        const bnd = scope.lookup(node.name);
        if (bnd) return bnd.val;
        if (node.name === 'Infinity') return { kind: 'ce', v: Infinity, float: true };
        if (node.name === 'NaN') return { kind: 'ce', v: NaN, float: true };
        if (this.k.helpers.has(node.name) || BUILTINS.has(node.name) || node.name === 'staticRange') {
          return this.b.fail(node, 'E_TYPE', `'${node.name}' is a function: call it, e.g. ${node.name}(...)`);
        }
        return this.b.fail(node, 'E_UNKNOWN_NAME', unknownMessage(node.name, scopeNames(scope)));
      }
      case 'ArrayExpression': {
        const dims = node.elements.map((el) => {
          if (!el || el.type === 'SpreadElement') return this.b.fail(node, 'E_UNSUPPORTED', 'shape literals hold constexpr integers');
          return this.ceNumber(el, scope, 'shape dims');
        });
        return { kind: 'shape', v: dims };
      }
      case 'UnaryExpression':
        return unaryOp(this, node, this.expr(node.argument, scope));
      case 'BinaryExpression': {
        // A left-deep chain (a + b + c + ...) folds in a loop, left to right as JS evaluates
        // it, so a long sum costs no stack per term.
        const chain: acorn.BinaryExpression[] = [node];
        while (chain[chain.length - 1]!.left.type === 'BinaryExpression') chain.push(chain[chain.length - 1]!.left as acorn.BinaryExpression);
        let acc = this.expr(chain[chain.length - 1]!.left as acorn.Expression, scope);
        for (let i = chain.length - 1; i >= 0; i--) acc = binaryOp(this, chain[i]!, chain[i]!.operator, acc, this.expr(chain[i]!.right, scope));
        return acc;
      }
      case 'LogicalExpression': {
        const a = this.expr(node.left, scope);
        if (a.kind === 'ce' && typeof a.v === 'boolean') {
          // Constexpr short-circuit, like JS.
          if (node.operator === '&&' && !a.v) return a;
          if (node.operator === '||' && a.v) return a;
          const b = this.expr(node.right, scope);
          return b;
        }
        if (node.operator === '??') this.b.fail(node, 'E_UNSUPPORTED', "'??' is not part of the kernel language");
        return binaryOp(this, node, node.operator, a, this.expr(node.right, scope));
      }
      case 'ConditionalExpression': {
        const c = this.expr(node.test, scope);
        if (c.kind === 'ce') return this.expr(c.v ? node.consequent : node.alternate, scope);
        const a = this.expr(node.consequent, scope);
        const b = this.expr(node.alternate, scope);
        return this.where(node, c, a, b);
      }
      case 'CallExpression':
        return this.call(node, scope);
      case 'AssignmentExpression':
        return this.assign(node, scope);
      case 'UpdateExpression': {
        if (node.argument.type !== 'Identifier') this.b.fail(node, 'E_UNSUPPORTED', `${node.operator} applies to a variable`);
        const name = (node.argument as acorn.Identifier).name;
        const bnd = this.binding(node.argument, name, scope);
        const old = bnd.val;
        const okCe = old.kind === 'ce' && typeof old.v === 'number';
        const okIr = old.kind === 'ir' && old.v.dtype === 'i32' && old.v.shape.length === 0;
        if (!okCe && !okIr && old.kind !== 'poison') this.b.fail(node, 'E_TYPE', `'${node.operator}' applies to i32 scalars, '${name}' is ${describe(old)}`);
        const nv = binaryOp(this, node, node.operator === '++' ? '+' : '-', old, { kind: 'ce', v: 1 });
        bnd.val = nv;
        return node.prefix ? nv : old;
      }
      default:
        return this.b.fail(node, 'E_UNSUPPORTED', `${node.type} is not part of the kernel language`);
    }
  }

  private binding(node: acorn.Node, name: string, scope: Scope): Binding {
    const bnd = scope.lookup(name);
    if (!bnd) this.b.fail(node, 'E_UNKNOWN_NAME', unknownMessage(name, scopeNames(scope)));
    if (bnd.isConst) this.b.fail(node, 'E_ASSIGN', `cannot assign to '${name}': it is a const, a parameter or a loop variable`);
    return bnd;
  }

  private assign(node: acorn.AssignmentExpression, scope: Scope): Val {
    if (node.left.type !== 'Identifier') this.b.fail(node.left, 'E_UNSUPPORTED', 'only variables can be assigned (tiles are values; write memory with store)');
    const name = node.left.name;
    const bnd = this.binding(node.left, name, scope);
    const rhs = this.expr(node.right, scope);
    let v = rhs;
    if (node.operator !== '=') {
      const op = node.operator.slice(0, -1);
      if (op === '&&' || op === '||' || op === '??') this.b.fail(node, 'E_UNSUPPORTED', `'${node.operator}' is not supported`);
      v = binaryOp(this, node, op, bnd.val, rhs);
    }
    bnd.val = v;
    return v;
  }

  /** A builtin or helper call; `asStatement` when its value is not used. */
  private call(node: acorn.CallExpression, scope: Scope, asStatement = false): Val {
    if (node.callee.type !== 'Identifier') this.b.fail(node.callee, 'E_UNSUPPORTED', 'only builtins and helpers can be called');
    const name = node.callee.name;
    const local = scope.lookup(name);
    if (local) this.b.fail(node.callee, 'E_TYPE', `'${name}' is a variable, not a function`);
    const helper = this.k.helpers.get(name);
    const args = node.arguments.map((a) => {
      if (a.type === 'SpreadElement') this.b.fail(a, 'E_UNSUPPORTED', 'spread is not part of the kernel language');
      return this.expr(a, scope);
    });
    if (helper) return this.inline(node, name, helper, args, asStatement);
    if (name === 'staticRange') this.b.fail(node, 'E_UNSUPPORTED', 'staticRange(...) is only valid in for (const i of staticRange(...))');
    const bi = BUILTINS.get(name);
    if (!bi) return this.b.fail(node.callee, 'E_UNKNOWN_NAME', unknownMessage(name, scopeNames(scope)));
    if (args.length < bi.min || args.length > bi.max) {
      this.b.fail(node, 'E_ARITY', `${name} takes ${bi.min === bi.max ? bi.min : `${bi.min} to ${bi.max}`} arguments: ${bi.usage}`);
    }
    // store's POISON result means "no value": used, it would silently drop what is built on it.
    if (name === 'store' && !asStatement) return this.b.fail(node, 'E_RETURN', 'store(...) returns no value, but its result is used: call it as a statement');
    if (args.some((a) => a.kind === 'poison')) return POISON;
    return bi.fn(this, node, args);
  }

  private inline(node: acorn.CallExpression, key: string, h: ParsedFunction, args: Val[], asStatement: boolean): Val {
    if (this.inlineStack.includes(key)) {
      this.b.fail(node, 'E_UNSUPPORTED', `helper '${key}' is called recursively (${[...this.inlineStack, key].join(' -> ')}); recursion is not supported`);
    }
    if (this.helperDepth >= MAX_INLINE_DEPTH) this.b.fail(node, 'E_LIMIT', `helpers nest more than ${MAX_INLINE_DEPTH} deep (limit MAX_INLINE_DEPTH)`);
    if (args.length !== h.params.length) this.b.fail(node, 'E_ARITY', `helper '${h.name}' takes ${h.params.length} arguments, got ${args.length}`);
    const scope = new Scope();
    h.params.forEach((p, i) => scope.vars.set(p, { val: args[i]!, isConst: true }));
    this.inlineStack.push(key);
    this.helperDepth++;
    const savedDepth = this.runtimeDepth;
    this.runtimeDepth = 0;
    const before = this.b.diags.length;
    let flow: Flow;
    try {
      flow = this.block(h.body.body, new Scope(scope), true);
    } finally {
      this.inlineStack.pop();
      this.helperDepth--;
      this.runtimeDepth = savedDepth;
    }
    if (this.b.diags.length > before) {
      // Errors inside a helper are reported at the call too, so the kernel's frame shows it.
      const inner = this.b.diags.splice(before);
      this.b.fail(node, inner[0]!.code, `in helper '${h.name}' (its line ${inner[0]!.line}:${inner[0]!.column}): ${inner[0]!.message}`);
    }
    if (this.b.stopped) throw new Reported('stopped');
    if (flow.kind === 'return' && flow.value) return flow.value;
    if (asStatement) return POISON;
    return this.b.fail(node, 'E_RETURN', `helper '${key}' returns no value, but its result is used`);
  }

  // ---- typing helpers used by builtins ---------------------------------------------------

  /** A constexpr number, or an error naming `what`. */
  ceNumber(node: acorn.Expression, scope: Scope, what: string): number {
    const v = this.expr(node, scope);
    return this.asCeNumber(node, v, what);
  }

  asCeNumber(node: acorn.Node, v: Val, what: string): number {
    if (v.kind === 'ce' && typeof v.v === 'number') return v.v;
    if (v.kind === 'poison') throw new Reported('poison');
    return this.b.fail(node, 'E_CONSTEXPR', `${what} must be constexpr numbers, got ${describe(v)}`);
  }

  /** `v` as an IR value; constexprs become constants (typed against `like`). */
  toIR(v: Val, node: acorn.Node, like?: DType): Value {
    switch (v.kind) {
      case 'ir': return v.v;
      case 'ce': {
        const dt = ceDtype(v.v, v.float, like);
        if (!dt) this.b.fail(node, 'E_TYPE', `${describe(v)} cannot be used as a number`);
        if (dt === 'i32' && outsideI32(v.v as number)) {
          this.b.fail(node, 'E_CONSTEXPR', `the integer constant ${v.v as number} is outside i32 (-2^31 .. 2^31-1), the kernels' integer type (a float literal such as 1.0 in the expression makes it f32)`);
        }
        return this.b.constant(node, v.v as number, dt);
      }
      case 'poison': throw new Reported('poison');
      case 'tensor': return this.b.fail(node, 'E_TYPE', `tensor '${v.name}' is a pointer: read it with load(${v.name}, offsets)`);
      case 'shape': return this.b.fail(node, 'E_TYPE', `a shape literal [${v.v.join(', ')}] is only valid as a shape argument`);
    }
  }

  /** Numeric operands promoted to a common dtype and broadcast to a common shape. */
  operands(node: acorn.Node, vals: Val[], dtype?: DType): Value[] {
    const irDts = vals.filter((v): v is Val & { kind: 'ir' } => v.kind === 'ir').map((v) => v.v.dtype);
    let target: DType | undefined = dtype;
    if (!target) {
      target = irDts.reduce<DType | undefined>((acc, d) => (acc ? promote(acc, d) : d === 'bool' ? 'i32' : d), undefined);
      for (const v of vals) {
        if (v.kind === 'ce' && typeof v.v === 'number' && ceDtype(v.v, v.float, target) === 'f32') target = 'f32';
      }
      target ??= 'i32';
    }
    const irs = vals.map((v) => {
      const x = this.toIR(v, node, target);
      return x.dtype === target ? x : this.b.cast(node, x, target!);
    });
    return this.broadcastAll(node, irs);
  }

  broadcastAll(node: acorn.Node, irs: Value[]): Value[] {
    let shape: Shape = [];
    for (const x of irs) {
      const c = broadcastShapes(shape, x.shape);
      if (!c) this.b.fail(node, 'E_SHAPE', `cannot broadcast ${irs.map((y) => `[${y.shape.join(', ')}]`).join(' with ')}`);
      shape = c;
    }
    return irs.map((x) => this.b.broadcast(node, x, shape));
  }

  where(node: acorn.Node, c: Val, a: Val, b: Val): Val {
    if (c.kind === 'ce') return c.v ? a : b;
    const cond = this.toIR(c, node);
    if (cond.dtype !== 'bool') this.b.fail(node, 'E_TYPE', `a condition must be bool, got ${describe(c)}`);
    const [x, y] = this.operands(node, [a, b]);
    const [cc, xx, yy] = this.broadcastAll(node, [cond, x!, y!]);
    return { kind: 'ir', v: this.b.emit(node, { op: 'where', cond: cc!, a: xx!, b: yy!, dtype: xx!.dtype, shape: xx!.shape }) };
  }
}


function scopeNames(scope: Scope): string[] {
  const out: string[] = [];
  for (let s: Scope | undefined = scope; s; s = s.parent) out.push(...s.vars.keys());
  return out;
}

/** Variables declared outside `node` that it assigns (they become carried values or results). */
function assignedOuter(node: acorn.Node, scope: Scope): string[] {
  const declaredInside = new Set<string>();
  const assigned: string[] = [];
  walk(node, (n) => {
    if (n.type === 'VariableDeclarator' && (n as acorn.VariableDeclarator).id.type === 'Identifier') {
      declaredInside.add(((n as acorn.VariableDeclarator).id as acorn.Identifier).name);
    }
    let target: acorn.Node | undefined;
    if (n.type === 'AssignmentExpression') target = (n as acorn.AssignmentExpression).left;
    if (n.type === 'UpdateExpression') target = (n as acorn.UpdateExpression).argument;
    if (target?.type === 'Identifier') {
      const name = (target as acorn.Identifier).name;
      if (!assigned.includes(name)) assigned.push(name);
    }
  });
  // A name declared inside shadows the outer one only within its block; being conservative
  // here costs at most an unused carried value, never a wrong result.
  return assigned.filter((n) => {
    const b = scope.lookup(n);
    return b !== undefined && !b.isConst && !(declaredInside.has(n) && !scope.lookup(n));
  });
}
