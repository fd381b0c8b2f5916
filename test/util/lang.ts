/**
 * @fileoverview Test helpers for the front end: compile a kernel source for one specialisation,
 * collect its diagnostics, and run the resulting IR through the reference interpreter over
 * plain typed arrays.
 */
import { expect } from 'vitest';
import { KernelCompileError, type Diagnostic } from '../../src/errors.js';
import { interpret, type InterpArg } from '../../src/interp/index.js';
import type { KernelIR, StorageDType } from '../../src/ir/ir.js';
import { parseKernel, specialize, type ConstexprValue, type ParseOptions, type Signature } from '../../src/lang/index.js';

export interface CompileOpts {
  readonly constexprs?: Record<string, ConstexprValue>;
  readonly dtypes?: Record<string, StorageDType>;
  readonly helpers?: ParseOptions['helpers'];
  readonly divisibility?: Record<string, number>;
}

/** Parse and specialise; every ptr param defaults to f32. */
export function compile(source: string, signature: Signature, o: CompileOpts = {}): KernelIR {
  const k = parseKernel(source, { signature, ...(o.helpers ? { helpers: o.helpers } : {}) });
  const tensorDtypes: Record<string, StorageDType> = {};
  for (const p of k.params) if (p.kind === 'ptr') tensorDtypes[p.name] = o.dtypes?.[p.name] ?? 'f32';
  return specialize(k, {
    constexprs: o.constexprs ?? {},
    tensorDtypes,
    ...(o.divisibility ? { scalarDivisibility: o.divisibility } : {}),
  });
}

/** The KernelCompileError a compile throws (fails the test if it compiles). */
export function compileError(source: string, signature: Signature, o: CompileOpts = {}): KernelCompileError {
  try {
    compile(source, signature, o);
  } catch (err) {
    if (err instanceof KernelCompileError) return err;
    throw err;
  }
  expect.fail('expected a KernelCompileError');
}

/** Diagnostics as `CODE@line:column` strings, for compact assertions. */
export function diagKeys(e: KernelCompileError): string[] {
  return e.diagnostics.map((d: Diagnostic) => `${d.code}@${d.line}:${d.column}`);
}

/** A tensor argument for `run`: f32 or i32 data. */
export type RunArg = Float32Array | Int32Array | number;

/**
 * Run `ir` over `grid` with tensors laid out back to back in one buffer (f32 / i32 storage
 * only); returns the tensors' contents afterwards, in argument order.
 */
export function run(ir: KernelIR, grid: readonly number[], args: readonly RunArg[]): (Float32Array | Int32Array)[] {
  let bytes = 0;
  const layout = args.map((a) => {
    if (typeof a === 'number') return undefined;
    const at = bytes;
    bytes += a.length * 4 + 16;
    return at;
  });
  const memory = new ArrayBuffer(bytes + 16);
  const iargs: InterpArg[] = args.map((a, i) => {
    if (typeof a === 'number') return a;
    const at = layout[i]!;
    (a instanceof Float32Array ? new Float32Array(memory, at, a.length) : new Int32Array(memory, at, a.length)).set(a);
    return { kind: 'tensor', byteOffset: at, length: a.length };
  });
  interpret(ir, [grid[0] ?? 1, grid[1] ?? 1, grid[2] ?? 1], iargs, memory);
  const out: (Float32Array | Int32Array)[] = [];
  args.forEach((a, i) => {
    if (typeof a === 'number') return;
    const at = layout[i]!;
    out.push(a instanceof Float32Array ? new Float32Array(memory.slice(at, at + a.length * 4)) : new Int32Array(memory.slice(at, at + a.length * 4)));
  });
  return out;
}

/** Deterministic pseudo-random f32 data in [-1, 1). */
export function randomF32(n: number, seed = 1): Float32Array {
  let s = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  });
}

/** Assert every element is within atol + rtol * |expected|. */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, atol = 1e-5, rtol = 1e-5): void {
  expect(actual.length).toBe(expected.length);
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i]!;
    const e = expected[i]!;
    if (!(Math.abs(a - e) <= atol + rtol * Math.abs(e))) expect.fail(`element ${i}: got ${a}, expected ${e}`);
  }
}
