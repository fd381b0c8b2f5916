/**
 * @fileoverview Builds a tiny module around one f32x4 -> f32x4 (or bits -> bits) codegen
 * function and runs it over arrays, so math and conversions can be swept against references.
 */
import binaryen from 'binaryen';
import v8 from 'node:v8';
import { Emit, moduleFeatures, type Ref } from '../../codegen/emit.js';

v8.setFlagsFromString('--experimental-wasm-relaxed-simd');

/** Whether this engine runs relaxed SIMD (both targets are tested when it does). */
export const HAS_RELAXED = (() => {
  try {
    const m = new binaryen.Module();
    m.setFeatures(moduleFeatures({ relaxed: true }));
    const e = new Emit(m, [], { relaxed: true });
    const z = m.v128.const(new Array(16).fill(0));
    m.addFunction('f', binaryen.none, binaryen.v128, [], e.madd(z, m.v128.const(new Array(16).fill(0)), z));
    m.addFunctionExport('f', 'f');
    const ok = WebAssembly.validate(m.emitBinary());
    m.dispose();
    return ok;
  } catch {
    return false;
  }
})();

/** `out[i] = fn(in[i])` four at a time; inputs and outputs are raw 32-bit lanes. */
export function vectorMap(fn: (e: Emit, x: Ref) => Ref, relaxed: boolean): (input: Uint32Array) => Uint32Array {
  const m = new binaryen.Module();
  m.setFeatures(moduleFeatures({ relaxed }));
  m.setMemory(1, 65536, null, [], false, false, 'mem');
  m.addMemoryExport('mem', 'memory');
  const i32 = binaryen.i32;
  // run(src, dst, n): params 0..2, then locals.
  const e = new Emit(m, [i32, i32, i32], { relaxed });
  const k = e.local(i32);
  const g = (l: number): Ref => m.local.get(l, i32);
  const body = m.block(null, [
    m.local.set(k, m.i32.const(0)),
    m.loop('l', m.block(null, [
      m.v128.store(0, 16, m.i32.add(g(1), g(k)), fn(e, m.v128.load(0, 16, m.i32.add(g(0), g(k))))),
      m.local.set(k, m.i32.add(g(k), m.i32.const(16))),
      m.br('l', m.i32.lt_u(g(k), m.i32.shl(g(2), m.i32.const(4)))),
    ])),
  ]);
  m.addFunction('run', binaryen.createType([i32, i32, i32]), binaryen.none, e.vars, body);
  m.addFunctionExport('run', 'run');
  if (!m.validate()) throw new Error('harness module invalid');
  m.optimize();
  const bytes = m.emitBinary();
  m.dispose();
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  const mem = inst.exports.memory as WebAssembly.Memory;
  const run = inst.exports.run as (s: number, d: number, n: number) => void;
  return (input: Uint32Array): Uint32Array => {
    const n = Math.ceil(input.length / 4) * 4;
    const need = 64 + n * 8;
    const have = mem.buffer.byteLength;
    if (need > have) mem.grow(Math.ceil((need - have) / 65536));
    const u = new Uint32Array(mem.buffer);
    u.set(input, 16);
    run(64, 64 + n * 4, n / 4);
    return new Uint32Array(mem.buffer, 64 + n * 4, input.length).slice();
  };
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 bits <-> numbers. */
export function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0]!;
}
export function floatOf(b: number): number {
  u32[0] = b;
  return f32[0]!;
}

/** Error of f32 `got` against exact `want`, in units of the f32 ulp at `want`. */
export function ulpError(got: number, want: number): number {
  if (Number.isNaN(want)) return Number.isNaN(got) ? 0 : Infinity;
  if (got === want) return 0;
  if (!Number.isFinite(want) || !Number.isFinite(got)) return Infinity;
  const a = Math.abs(want);
  // ulp of the f32 binade containing want (subnormal ulp below 2^-126).
  const exp = a < 2 ** -126 ? -149 : Math.floor(Math.log2(a)) - 23;
  let ulp = 2 ** exp;
  if (2 ** (exp + 23) > a) ulp /= 2; // log2 rounding guard at binade edges
  return Math.abs(got - want) / ulp;
}
