/**
 * @fileoverview The fuzz property shared by the short run in `npm test` and the long run of
 * `npm run fuzz`: a random program, compiled (with or without relaxed SIMD) and interpreted,
 * agrees element by element. A failure throws with the kernel's source, so fast-check's shrunk
 * counterexample prints a minimal kernel.
 */
import fc from 'fast-check';
import { detectFeatures } from '../../src/runtime/features.js';
import type { Runtime } from '../../src/runtime/runtime.js';
import { checkProgram } from './check.js';
import { program, type Program } from './gen.js';

/** A readable account of a program: its source, launch and argument sizes. */
export function describeProgram(p: Program): string {
  const args = p.args.map((a) => (typeof a === 'number' ? String(a) : `${a.dtype}[${a.size}]`)).join(', ');
  return `${p.src}\nlaunch ${JSON.stringify(p.launch)} args (${args}) seed ${p.seed}`;
}

export function fuzzProperty(rt: Runtime): fc.IAsyncProperty<[Program, boolean]> {
  const relaxed = detectFeatures().relaxedSimd ? fc.boolean() : fc.constant(false);
  return fc.asyncProperty(program, relaxed, async (p, relaxedSimd) => {
    const bad = await checkProgram(rt, p, relaxedSimd);
    if (bad) throw new Error(`${bad} (relaxed SIMD: ${relaxedSimd})\n${describeProgram(p)}`);
  });
}
