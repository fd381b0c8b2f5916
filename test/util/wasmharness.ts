/**
 * @fileoverview Builds tiny modules around one f32x4 -> f32x4 (or bits -> bits) codegen
 * function, or the half load/store helpers, and runs them over arrays, so math and conversions
 * can be swept against references.
 */
import binaryen from 'binaryen';
import v8 from 'node:v8';
import { loadHalf4, storeHalf4 } from '../../codegen/convert.js';
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

/**
 * loadHalf4 / storeHalf4 in a loop: `load(halves)` widens u16 patterns to f32 bits, `store(bits)`
 * narrows f32 bits to u16 patterns. Both use byte offset `offset` on the address and check that
 * a store writes its 8 bytes and nothing more (the u16 after the last group keeps a sentinel).
 */
export function halfMap(
  kind: 'f16' | 'bf16',
  offset: number,
): { load: (h: Uint16Array) => Uint32Array; store: (x: Uint32Array) => { out: Uint16Array; sentinel: number } } {
  const m = new binaryen.Module();
  m.setFeatures(moduleFeatures({ relaxed: false }));
  m.setMemory(1, 65536, null, [], false, false, 'mem');
  m.addMemoryExport('mem', 'memory');
  const i32 = binaryen.i32;
  const build = (name: string, inStep: number, outStep: number, step: (e: Emit, src: Ref, dst: Ref) => Ref): void => {
    const e = new Emit(m, [i32, i32, i32], { relaxed: false });
    const k = e.local(i32);
    const g = (l: number): Ref => m.local.get(l, i32);
    const at = (base: number, size: number): Ref => m.i32.add(g(base), m.i32.mul(g(k), m.i32.const(size)));
    const body = m.block(null, [
      m.local.set(k, m.i32.const(0)),
      m.loop('l', m.block(null, [
        step(e, at(0, inStep), at(1, outStep)),
        m.local.set(k, m.i32.add(g(k), m.i32.const(1))),
        m.br('l', m.i32.lt_u(g(k), g(2))),
      ])),
    ]);
    m.addFunction(name, binaryen.createType([i32, i32, i32]), binaryen.none, e.vars, body);
    m.addFunctionExport(name, name);
  };
  // The offset is folded into the instruction, so the addresses passed in are base - offset.
  build('load', 8, 16, (e, src, dst) => m.v128.store(0, 16, dst, loadHalf4(e, src, kind, offset)));
  build('store', 16, 8, (e, src, dst) => storeHalf4(e, dst, m.v128.load(0, 16, src), kind, offset));
  if (!m.validate()) throw new Error('half harness module invalid');
  const bytes = m.emitBinary();
  m.dispose();
  const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes), {});
  const mem = inst.exports.memory as WebAssembly.Memory;
  const fn = (name: string): ((s: number, d: number, n: number) => void) => inst.exports[name] as (s: number, d: number, n: number) => void;
  const ensure = (bytes: number): void => {
    const have = mem.buffer.byteLength;
    if (bytes > have) mem.grow(Math.ceil((bytes - have) / 65536));
  };
  const BASE = 64;
  return {
    load(h) {
      const groups = Math.ceil(h.length / 4);
      const dst = BASE + groups * 8 + 64;
      ensure(dst + groups * 16);
      new Uint16Array(mem.buffer, BASE, groups * 4).fill(0).set(h);
      fn('load')(BASE - offset, dst, groups);
      return new Uint32Array(mem.buffer, dst, h.length).slice();
    },
    store(x) {
      const groups = Math.ceil(x.length / 4);
      const dst = BASE + groups * 16 + 64;
      ensure(dst + groups * 8 + 16);
      new Uint32Array(mem.buffer, BASE, groups * 4).fill(0).set(x);
      const out = new Uint16Array(mem.buffer, dst, groups * 4 + 1);
      out.fill(0xa5a5);
      fn('store')(BASE, dst - offset, groups);
      return { out: out.slice(0, x.length), sentinel: out[groups * 4]! };
    },
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

/**
 * Error of f32 `got` against exact `want`, in units of the f32 ulp at `want` (the spacing of
 * f32 values in want's binade; 2^-149 throughout the subnormal range).
 */
export function ulpError(got: number, want: number): number {
  if (Number.isNaN(want)) return Number.isNaN(got) ? 0 : Infinity;
  if (got === want) return 0;
  if (!Number.isFinite(want) || !Number.isFinite(got)) return Infinity;
  return Math.abs(got - want) / ulpAt(want);
}

/** The f32 ulp at finite `want` (as ulpError measures it). */
export function ulpAt(want: number): number {
  const a = Math.abs(want);
  const r = Math.fround(a);
  // The binade of fround(a), one lower when a rounded up onto a power of two.
  let e = (bitsOf(r) >>> 23) & 0xff;
  if (r > a && (bitsOf(r) & 0x7fffff) === 0) e -= 1;
  return 2 ** (Math.max(e, 1) - 150);
}
