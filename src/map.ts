/**
 * @fileoverview `jit.map`: a scalar function of several inputs becomes a fused elementwise
 * kernel over tensors of one shape (numbers pass as f32 scalars), parallel over the pool.
 */
import * as acorn from 'acorn';
import { ELEMENTWISE_BLOCK } from '../templates/activation.js';
import { jit, Kernel } from './kernel.js';
import { sourceOf, type KernelSourceLike, type ParamKind } from './lang/parse.js';
import { FLOAT_DTYPES, floatTensor, output } from './ops/common.js';
import { Tensor } from './runtime/tensor.js';

/** Options of a call to a mapped function, given as the last argument. */
export interface MapCallOptions {
  /** Write here instead of allocating (same shape as the inputs). */
  readonly out?: Tensor;
  /** Storage dtype of a fresh output (default: the first tensor's). */
  readonly dtype?: 'f32' | 'f16' | 'bf16';
}

/** A mapped elementwise function: call it with tensors (one shape) and numbers. */
export interface MapFunction {
  (...args: (Tensor | number | MapCallOptions)[]): Promise<Tensor>;
  /** The scalar function's source as a kernel-language helper. */
  readonly helperSource: string;
  /** The generated kernel for a pattern of tensor ('t') and number ('s') arguments, e.g. 'tts'. */
  kernelFor(pattern: string): Kernel;
}

/** Options of `jit.map`. */
export interface MapOptions {
  /** Name used in errors and compile logs (default: the function's name, or 'map'). */
  readonly name?: string;
}

/** `(a, b) => expr` or `(a) => { ... }` as `function name(a, b) { return expr; }`; functions as they are. */
function helperFrom(fn: KernelSourceLike, name: string): { source: string; arity: number } {
  const src = sourceOf(fn, 'jit.map').trim();
  let node: acorn.Expression;
  try {
    node = acorn.parseExpressionAt(src, 0, { ecmaVersion: 2022 });
  } catch (e) {
    throw new TypeError(`jit.map: the function does not parse: ${(e as Error).message}`);
  }
  if (node.type === 'FunctionExpression') return { source: src, arity: node.params.length };
  if (node.type !== 'ArrowFunctionExpression') throw new TypeError('jit.map: expected a function or an arrow function, e.g. (x, y) => x * sigmoid(y)');
  if (node.async) throw new TypeError('jit.map: the function cannot be async');
  const params = node.params.map((p) => {
    if (p.type !== 'Identifier') throw new TypeError('jit.map: parameters must be plain names');
    return p.name;
  });
  const body = src.slice(node.body.start, node.body.end);
  const wrapped = node.body.type === 'BlockStatement' ? body : `{ return ${body}; }`;
  return { source: `function ${name}(${params.join(', ')}) ${wrapped}`, arity: params.length };
}

/**
 * Turn a scalar function into an elementwise kernel.
 * @example
 * const swiglu = jit.map((a, b) => a * sigmoid(a) * b);
 * const y = await swiglu(x1, x2);                 // tensors of one shape
 * const z = await jit.map((x, s) => x * s)(x1, 0.5); // numbers are f32 scalars
 */
export function map(fn: KernelSourceLike, opts: MapOptions = {}): MapFunction {
  const fnName = typeof fn === 'function' && fn.name && /^[A-Za-z_$][\w$]*$/.test(fn.name) ? fn.name : 'map';
  const name = opts.name ?? fnName;
  const { source: helperSource, arity } = helperFrom(fn, 'f');
  const kernels = new Map<string, Kernel>();
  const kernelFor = (pattern: string): Kernel => {
    let k = kernels.get(pattern);
    if (k) return k;
    const params = [...pattern].map((_, i) => `I${i}`);
    const sig: Record<string, ParamKind> = { Out: 'ptr', n: 'i32', BLOCK: 'constexpr', EVEN: 'constexpr' };
    params.forEach((p, i) => (sig[p] = pattern[i] === 't' ? 'ptr' : 'f32'));
    const args = (masked: boolean): string => params.map((p, i) => (pattern[i] === 't' ? `load(${p}, i${masked ? ', m' : ''})` : p)).join(', ');
    const src = `function ${name}(${[...params, 'Out', 'n', 'BLOCK', 'EVEN'].join(', ')}) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  if (EVEN) {
    store(Out, i, f(${args(false)}));
  } else {
    const m = i < n;
    store(Out, i, f(${args(true)}), m);
  }
}`;
    k = jit(src, { signature: sig, helpers: { f: helperSource }, name });
    kernels.set(pattern, k);
    return k;
  };
  const call = async (...all: (Tensor | number | MapCallOptions)[]): Promise<Tensor> => {
    const last = all[all.length - 1];
    const hasOpts = all.length > 0 && !(last instanceof Tensor) && typeof last === 'object' && last !== null;
    const callOpts = (hasOpts ? last : {}) as MapCallOptions;
    const inputs = (hasOpts ? all.slice(0, -1) : all) as unknown[];
    if (inputs.length !== arity) throw new TypeError(`${name}: takes ${arity} inputs, got ${inputs.length}`);
    let first: Tensor | undefined;
    inputs.forEach((v, i) => {
      if (v instanceof Tensor) {
        floatTensor(name, `input ${i}`, v, first?.runtime);
        if (!first) first = v;
        else {
          if (v.shape.length !== first.shape.length || v.shape.some((d, j) => d !== first!.shape[j])) {
            throw new TypeError(`${name}: input ${i} has shape [${v.shape.join(', ')}], expected [${first.shape.join(', ')}] like the first tensor (no broadcasting)`);
          }
        }
      } else if (typeof v !== 'number') throw new TypeError(`${name}: input ${i} must be a Tensor or a number, got ${v === null ? 'null' : typeof v}`);
    });
    if (!first) throw new TypeError(`${name}: needs at least one tensor input`);
    const rt = first.runtime;
    const dtype = callOpts.dtype ?? first.dtype;
    if (!(FLOAT_DTYPES as readonly string[]).includes(dtype)) throw new TypeError(`${name}: dtype must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(dtype)}`);
    const out = output(name, rt, first.shape, dtype, callOpts.out);
    const n = first.size;
    if (n === 0) return out;
    const pattern = inputs.map((v) => (v instanceof Tensor ? 't' : 's')).join('');
    const B = ELEMENTWISE_BLOCK;
    await kernelFor(pattern).launch({ grid: [Math.ceil(n / B)], BLOCK: B, EVEN: n % B === 0, runtime: rt }, ...(inputs as (Tensor | number)[]), out, n);
    return out;
  };
  return Object.assign(call, { helperSource, kernelFor });
}
