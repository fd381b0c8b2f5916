/**
 * @fileoverview The front end's values and the IR builder: constexprs are plain JS values,
 * run-time values are IR nodes. Typing (promotion, weak integer literals) and numpy
 * broadcasting live here, so every builtin and operator shares one set of rules.
 */
import type * as acorn from 'acorn';
import type { Diagnostic } from '../errors.js';
import { MAX_IR_VALUES, MAX_TILE_ELEMENTS } from '../ir/limits.js';
import { numel, type BinaryFn, type DType, type Instr, type Loc, type Shape, type UnaryFn, type Value } from '../ir/ir.js';

/** A value while specialising. `float` marks numeric literals written with '.' or an exponent. */
export type Val =
  | { readonly kind: 'ce'; readonly v: number | boolean | string; readonly float?: boolean }
  | { readonly kind: 'shape'; readonly v: readonly number[] }
  | { readonly kind: 'ir'; readonly v: Value }
  | { readonly kind: 'tensor'; readonly index: number; readonly name: string }
  | { readonly kind: 'poison' };

export const POISON: Val = { kind: 'poison' };

/** A value node's fields before it gets an id and a location (distributes over the union). */
export type Fields<T extends Value = Value> = T extends Value ? Omit<T, 'id' | 'loc'> : never;

/** Thrown inside the walker to abandon an expression after reporting it. */
export class Reported extends Error {}

/** The IR builder: ids, the current block, locations, diagnostics. */
export class Builder {
  private nextId = 0;
  block: Instr[] = [];
  readonly diags: Diagnostic[] = [];
  /** Constants already placed in a block (keyed by the block array itself). */
  private readonly consts = new WeakMap<Instr[], Map<string, Value>>();

  get numValues(): number {
    return this.nextId;
  }

  id(): number {
    return this.nextId++;
  }

  /** Report at `node` and abandon the current expression. */
  fail(node: acorn.Node, code: string, message: string): never {
    this.report(node, code, message);
    throw new Reported(message);
  }

  report(node: acorn.Node, code: string, message: string): void {
    const l = loc(node);
    this.diags.push({ code, message, line: l.line, column: l.column });
  }

  /** IR values this specialisation may create (MAX_IR_VALUES unless the kernel lowers it). */
  maxValues = MAX_IR_VALUES;
  /** Set once a limit that makes going on pointless was crossed: the walk stops. */
  stopped = false;

  /** Create a value node and place it in the current block. */
  emit<T extends Value = Value>(node: acorn.Node, fields: Fields<T>): T {
    this.countValue(node);
    const v = { ...fields, id: this.id(), loc: loc(node) } as unknown as T;
    this.block.push(v);
    return v;
  }

  /** A node that is defined by its parent instruction (iv, carried, result). */
  detached<T extends Value = Value>(node: acorn.Node, fields: Fields<T>): T {
    this.countValue(node);
    return { ...fields, id: this.id(), loc: loc(node) } as unknown as T;
  }

  private countValue(node: acorn.Node): void {
    if (this.nextId < this.maxValues || this.stopped) return;
    this.stopped = true;
    this.fail(node, 'E_LIMIT', `the kernel grows past ${this.maxValues} IR values here (limit MAX_IR_VALUES), after unrolling and inlining; unroll less or use a run-time loop`);
  }

  checkShape(node: acorn.Node, shape: Shape): void {
    if (shape.length > 2) this.fail(node, 'E_SHAPE', `tiles have at most 2 dims, got [${shape.join(', ')}]`);
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 1 || (d & (d - 1)) !== 0) this.fail(node, 'E_SHAPE', `tile dims must be powers of two, got [${shape.join(', ')}]`);
    }
    if (numel(shape) > MAX_TILE_ELEMENTS) this.fail(node, 'E_LIMIT', `a tile of [${shape.join(', ')}] has ${numel(shape)} elements; the limit (MAX_TILE_ELEMENTS) is ${MAX_TILE_ELEMENTS}`);
  }

  /** A scalar constant; one node per (value, dtype) in each block, reused while it is current. */
  constant(node: acorn.Node, value: number, dtype: DType): Value {
    const v = dtype === 'f32' ? Math.fround(value) : dtype === 'bool' ? (value ? 1 : 0) : value | 0;
    let cache = this.consts.get(this.block);
    if (!cache) this.consts.set(this.block, (cache = new Map()));
    // Object.is keeps 0 and -0 apart; NaN finds NaN.
    const key = `${dtype}:${Object.is(v, -0) ? '-0' : String(v)}`;
    const hit = cache.get(key);
    if (hit) return hit;
    const c = this.emit(node, { op: 'const', value: v, dtype, shape: [] });
    cache.set(key, c);
    return c;
  }

  /** Broadcast `v` to `shape` (numpy rules; it must be compatible). */
  broadcast(node: acorn.Node, v: Value, shape: Shape): Value {
    if (sameShape(v.shape, shape)) return v;
    const common = broadcastShapes(v.shape, shape);
    if (!common || !sameShape(common, shape)) this.fail(node, 'E_SHAPE', `cannot broadcast [${v.shape.join(', ')}] to [${shape.join(', ')}]`);
    this.checkShape(node, shape);
    return this.emit(node, { op: 'broadcast', src: v, dtype: v.dtype, shape });
  }

  reshape(node: acorn.Node, v: Value, shape: Shape): Value {
    if (sameShape(v.shape, shape)) return v;
    if (numel(v.shape) !== numel(shape)) this.fail(node, 'E_SHAPE', `cannot reshape [${v.shape.join(', ')}] (${numel(v.shape)} elements) to [${shape.join(', ')}]`);
    this.checkShape(node, shape);
    return this.emit(node, { op: 'reshape', src: v, dtype: v.dtype, shape });
  }

  cast(node: acorn.Node, v: Value, dtype: DType): Value {
    if (v.dtype === dtype) return v;
    return this.emit(node, { op: 'cast', src: v, dtype, shape: v.shape });
  }

  unary(node: acorn.Node, fn: UnaryFn, v: Value): Value {
    return this.emit(node, { op: 'unary', fn, src: v, dtype: v.dtype, shape: v.shape });
  }

  binary(node: acorn.Node, fn: BinaryFn, a: Value, b: Value, dtype: DType): Value {
    return this.emit(node, { op: 'binary', fn, a, b, dtype, shape: a.shape });
  }
}

export function loc(node: acorn.Node): Loc {
  const s = node.loc?.start;
  const helper = node.loc?.source ?? undefined;
  return { line: s?.line ?? 0, column: (s?.column ?? 0) + 1, ...(helper ? { helper } : {}) };
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** numpy broadcast of two shapes, or undefined if incompatible. */
export function broadcastShapes(a: Shape, b: Shape): number[] | undefined {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) return undefined;
    out.push(Math.max(x, y));
  }
  return out;
}

/** Describe a value for messages. */
export function describe(v: Val): string {
  switch (v.kind) {
    case 'ce': return `constexpr ${JSON.stringify(v.v)}`;
    case 'shape': return `shape [${v.v.join(', ')}]`;
    case 'ir': return v.v.shape.length ? `${v.v.dtype} tile [${v.v.shape.join(', ')}]` : `${v.v.dtype} scalar`;
    case 'tensor': return `tensor '${v.name}'`;
    case 'poison': return 'an invalid value';
  }
}

/** The dtype a constexpr takes when it meets a run-time value of dtype `other`. */
export function ceDtype(v: number | boolean | string, float: boolean | undefined, other: DType | undefined): DType | undefined {
  if (typeof v === 'boolean') return 'bool';
  if (typeof v !== 'number') return undefined;
  if (float || !Number.isInteger(v)) return 'f32';
  // Weak integer: takes the other side's type (bool arithmetic goes through i32). One outside
  // i32 is still an integer: Specializer.toIR refuses it rather than turn index math into f32.
  return other === 'f32' ? 'f32' : 'i32';
}

/** True for an integer constexpr that i32, the kernels' integer type, cannot hold. */
export function outsideI32(v: number): boolean {
  return Number.isInteger(v) && (v < -2147483648 || v > 2147483647);
}

/** Result dtype of arithmetic between two dtypes (bool promotes to i32). */
export function promote(a: DType, b: DType): DType {
  if (a === 'f32' || b === 'f32') return 'f32';
  return 'i32';
}
