/**
 * @fileoverview Operators of the kernel language: constexpr operands fold as JavaScript values,
 * run-time operands are promoted (weak integer literals, bool arithmetic as i32), broadcast
 * explicitly, and become unary/binary IR nodes.
 */
import type * as acorn from 'acorn';
import type { BinaryFn, DType } from '../ir/ir.js';
import type { Specializer } from './specialize.js';
import { describe, POISON, type Val } from './values.js';

/** Unary `- + ! ~` on a value. */
export function unaryOp(sp: Specializer, node: acorn.UnaryExpression, a: Val): Val {
  if (a.kind === 'poison') return a;
  const op = node.operator;
  if (a.kind === 'ce') {
    const v = a.v;
    if (op === '-' && typeof v === 'number') {
      // An i32 negates with wrap-around at run time (-(-2^31) is -2^31); so does its constexpr.
      const i32 = a.float !== true && Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31;
      return { kind: 'ce', v: i32 ? -v | 0 : -v, float: a.float };
    }
    if (op === '+' && typeof v === 'number') return a;
    if (op === '!' && typeof v === 'boolean') return { kind: 'ce', v: !v };
    if (op === '~' && typeof v === 'number' && Number.isInteger(v)) return { kind: 'ce', v: ~v };
    sp.b.fail(node, 'E_TYPE', `'${op}' does not apply to ${describe(a)}`);
  }
  const x = sp.toIR(a, node);
  if (op === '+') {
    if (x.dtype === 'bool') sp.b.fail(node, 'E_TYPE', "unary '+' does not apply to bool");
    return a;
  }
  if (op === '-') {
    if (x.dtype === 'bool') sp.b.fail(node, 'E_TYPE', "unary '-' does not apply to bool (cast it first)");
    return { kind: 'ir', v: sp.b.unary(node, 'neg', x) };
  }
  if (op === '!') {
    if (x.dtype !== 'bool') sp.b.fail(node, 'E_TYPE', `'!' applies to bool values, got ${describe(a)}`);
    return { kind: 'ir', v: sp.b.unary(node, 'not', x) };
  }
  if (op === '~') {
    if (x.dtype !== 'i32') sp.b.fail(node, 'E_TYPE', `'~' applies to i32 values, got ${describe(a)}`);
    return { kind: 'ir', v: sp.b.unary(node, 'not', x) };
  }
  return sp.b.fail(node, 'E_UNSUPPORTED', `'${op}' is not part of the kernel language`);
}

/** Binary and logical operators on two values. */
export function binaryOp(sp: Specializer, node: acorn.Node, op: string, a: Val, b: Val): Val {
  if (a.kind === 'poison' || b.kind === 'poison') return POISON;
  if (a.kind === 'ce' && b.kind === 'ce') return foldBinary(sp, node, op, a, b);
  const fn = BINOPS[op];
  if (!fn) return sp.b.fail(node, 'E_UNSUPPORTED', `operator '${op}' is not part of the kernel language`);
  const irA = a.kind === 'ir' ? a.v : undefined;
  const irB = b.kind === 'ir' ? b.v : undefined;
  const dts = [irA?.dtype, irB?.dtype].filter((d): d is DType => d !== undefined);
  for (const v of [a, b]) if (v.kind !== 'ir' && v.kind !== 'ce') sp.toIR(v, node);
  if (op === '&&' || op === '||') {
    const [x, y] = sp.broadcastAll(node, [sp.toIR(a, node, 'bool'), sp.toIR(b, node, 'bool')]);
    if (x!.dtype !== 'bool' || y!.dtype !== 'bool') sp.b.fail(node, 'E_TYPE', `'${op}' applies to bool values, got ${describe(a)} and ${describe(b)}`);
    return { kind: 'ir', v: sp.b.binary(node, fn, x!, y!, 'bool') };
  }
  if (op === '&' || op === '|' || op === '^') {
    if (dts.every((d) => d === 'bool') && [a, b].every((v) => v.kind === 'ir' || (v.kind === 'ce' && typeof v.v === 'boolean'))) {
      const [x, y] = sp.broadcastAll(node, [sp.toIR(a, node, 'bool'), sp.toIR(b, node, 'bool')]);
      return { kind: 'ir', v: sp.b.binary(node, fn, x!, y!, 'bool') };
    }
  }
  if (['&', '|', '^', '<<', '>>', '>>>'].includes(op)) {
    const [x, y] = sp.operands(node, [a, b]);
    if (x!.dtype !== 'i32') sp.b.fail(node, 'E_TYPE', `'${op}' applies to i32 values, got ${describe(a)} and ${describe(b)}`);
    return { kind: 'ir', v: sp.b.binary(node, fn, x!, y!, 'i32') };
  }
  const [x, y] = sp.operands(node, [a, b]);
  if (op === '/' && x!.dtype === 'i32') {
    if (a.kind === 'ir' && b.kind === 'ir') {
      sp.b.fail(node, 'E_TYPE', "'/' of two integers: JavaScript '/' is real division; use idiv(a, b) for integer division, or cast(a, 'f32') for real division");
    }
    // An integer and a constexpr: real division, as in JavaScript.
    return { kind: 'ir', v: sp.b.binary(node, 'div', sp.b.cast(node, x!, 'f32'), sp.b.cast(node, y!, 'f32'), 'f32') };
  }
  const cmp = ['<', '<=', '>', '>=', '==', '===', '!=', '!=='].includes(op);
  if (!cmp && x!.dtype === 'bool') sp.b.fail(node, 'E_TYPE', `'${op}' does not apply to bool values`);
  return { kind: 'ir', v: sp.b.binary(node, fn, x!, y!, cmp ? 'bool' : x!.dtype) };
}

const BINOPS: Record<string, BinaryFn> = {
  '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '%': 'rem',
  '<': 'lt', '<=': 'le', '>': 'gt', '>=': 'ge', '==': 'eq', '===': 'eq', '!=': 'ne', '!==': 'ne',
  '&&': 'and', '||': 'or', '&': 'and', '|': 'or', '^': 'xor', '<<': 'shl', '>>': 'shr', '>>>': 'shru',
};

function foldBinary(sp: Specializer, node: acorn.Node, op: string, a: Val & { kind: 'ce' }, b: Val & { kind: 'ce' }): Val {
  const x = a.v;
  const y = b.v;
  const float = a.float || b.float;
  if (op === '==' || op === '===') return { kind: 'ce', v: x === y };
  if (op === '!=' || op === '!==') return { kind: 'ce', v: x !== y };
  if (typeof x === 'boolean' && typeof y === 'boolean') {
    if (op === '&&' || op === '&') return { kind: 'ce', v: x && y };
    if (op === '||' || op === '|') return { kind: 'ce', v: x || y };
    if (op === '^') return { kind: 'ce', v: x !== y };
  }
  if (typeof x !== 'number' || typeof y !== 'number') return sp.b.fail(node, 'E_TYPE', `'${op}' does not apply to ${describe(a)} and ${describe(b)}`);
  const num = (v: number): Val => ({ kind: 'ce', v, float });
  switch (op) {
    case '+': return num(x + y);
    case '-': return num(x - y);
    case '*': return num(x * y);
    case '/': return { kind: 'ce', v: x / y, float: float || !Number.isInteger(x / y) };
    case '%': return num(x % y);
    case '<': return { kind: 'ce', v: x < y };
    case '<=': return { kind: 'ce', v: x <= y };
    case '>': return { kind: 'ce', v: x > y };
    case '>=': return { kind: 'ce', v: x >= y };
    case '&': return num(x & y);
    case '|': return num(x | y);
    case '^': return num(x ^ y);
    case '<<': return num(x << y);
    case '>>': return num(x >> y);
    // Kernel integers are i32, so the unsigned shift's result is read back as i32, as at run time.
    case '>>>': return num((x >>> y) | 0);
    default: return sp.b.fail(node, 'E_TYPE', `'${op}' does not apply to constexpr numbers`);
  }
}
