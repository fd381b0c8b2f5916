/**
 * @fileoverview Runs one generated program compiled and through the reference interpreter on
 * the same inputs and compares every element of the output (written lanes and untouched ones).
 */
import { KernelCompileError } from '../../src/errors.js';
import { jit, type KernelArg } from '../../src/kernel.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import type { Tensor } from '../../src/runtime/tensor.js';
import type { Program, Storage } from './gen.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

function data(n: number, dtype: Storage, r: () => number): Float32Array | Int32Array {
  if (dtype === 'i32') {
    // Mostly small values, some anywhere in the i32 range (overflow must wrap the same way).
    return Int32Array.from({ length: n }, () => (r() < 0.1 ? (r() * 2 ** 32) | 0 : Math.floor((r() - 0.5) * 200)));
  }
  return Float32Array.from({ length: n }, () => (r() - 0.5) * 4);
}

function args(rt: Runtime, p: Program): KernelArg[] {
  const r = rng(p.seed);
  return p.args.map((a) => (typeof a === 'number' ? a : rt.tensor(data(a.size, a.dtype, r), [a.size], a.dtype)));
}

/** A description of the first mismatch, or undefined when compiled and interpreted agree. */
export async function checkProgram(rt: Runtime, p: Program, relaxedSimd: boolean): Promise<string | undefined> {
  const k = jit(p.src, { signature: p.signature });
  const a1 = args(rt, p);
  const a2 = args(rt, p);
  try {
    const opts = { ...p.launch, runtime: rt, relaxedSimd };
    let compiledError: unknown;
    let interpError: unknown;
    try {
      await k.launch(opts, ...a1);
    } catch (err) {
      if (err instanceof KernelCompileError) throw err;
      compiledError = err;
    }
    try {
      await k.interpret(opts, ...a2);
    } catch (err) {
      interpError = err;
    }
    if (compiledError || interpError) {
      if (compiledError && interpError) return undefined;
      return `compiled ${compiledError ? `failed: ${String(compiledError)}` : 'ran'}, interpreter ${interpError ? `failed: ${String(interpError)}` : 'ran'}`;
    }
    const got = (a1[p.out] as Tensor).toArray();
    const want = (a2[p.out] as Tensor).toArray();
    let scale = 0;
    for (const w of want) if (Number.isFinite(w)) scale = Math.max(scale, Math.abs(w));
    const tol = p.tol * (1 + scale);
    for (let i = 0; i < want.length; i++) {
      const g = got[i]!;
      const w = want[i]!;
      if (Object.is(g, w) || g === w) continue;
      if (Number.isNaN(w) && Number.isNaN(g)) continue;
      if (p.tol > 0 && Math.abs(g - w) <= tol) continue;
      return `out[${i}]: compiled ${g}, interpreter ${w} (tolerance ${tol})`;
    }
    return undefined;
  } finally {
    for (const x of [...a1, ...a2]) if (typeof x !== 'number') x.free();
  }
}
