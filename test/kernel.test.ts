/**
 * @fileoverview The kernel object: specialisation keys (what recompiles and what does not),
 * compile reasons, launch argument validation, `wat`/`ir`, and the disk cache across processes.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { cdiv, jit, KernelCompileError } from '../src/index.js';
import { ModuleCache } from '../src/runtime/cache.js';
import { Runtime } from '../src/runtime/runtime.js';
import { HAS_RELAXED } from './util/wasmharness.js';

const SRC = `function scale(X, Out, s, n, BLOCK, DOUBLE) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  let y = load(X, i, m) * s;
  if (DOUBLE) { y = y * 2.0; }
  store(Out, i, y, m);
}`;
const SIG = { X: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', BLOCK: 'constexpr', DOUBLE: 'constexpr' } as const;

const rtP = Runtime.create({ threads: 0 });
afterAll(async () => (await rtP).dispose());

describe('specialisation and the compile cache', () => {
  test('only source, constexprs, dtypes and divisibility change the key', async () => {
    const rt = await rtP;
    const k = jit(SRC, { signature: SIG });
    const x = rt.tensor(Float32Array.from({ length: 40 }, (_, i) => i), [40]);
    const out = rt.empty([40]);
    await k.launch({ grid: [3], BLOCK: 16, DOUBLE: false }, x, out, 2, 40);
    expect(Array.from(out.toArray()).slice(0, 4)).toEqual([0, 2, 4, 6]);
    expect(k.compileCount).toBe(1);
    expect(k.compileLog[0]!.reason).toBe('first launch');
    // Different scalar values, same divisibility class, different grid: no recompile.
    await k.launch({ grid: [5], BLOCK: 16, DOUBLE: false }, x, out, 3, 36);
    expect(k.compileCount).toBe(1);
    // A constexpr changes the code.
    await k.launch({ grid: [3], BLOCK: 16, DOUBLE: true }, x, out, 2, 40);
    expect(k.compileCount).toBe(2);
    expect(k.compileLog[1]!.reason).toContain('constexpr DOUBLE: false -> true');
    expect(out.toArray()[3]).toBe(12);
    // n = 37 is not a multiple of 4: the divisibility hint changes.
    await k.launch({ grid: [3], BLOCK: 16, DOUBLE: true }, x, out, 2, 37);
    expect(k.compileCount).toBe(3);
    expect(k.compileLog[2]!.reason).toContain('divisibility of n');
    // A tensor dtype changes the code.
    const xh = rt.tensor(Float32Array.from({ length: 40 }, (_, i) => i), [40], 'bf16');
    await k.launch({ grid: [3], BLOCK: 16, DOUBLE: true }, xh, out, 2, 40);
    expect(k.compileCount).toBe(4);
    expect(k.compileLog[3]!.reason).toContain('dtype of X: f32 -> bf16');
    // The same source in another kernel object shares nothing in memory but the same key.
    const k2 = jit(SRC, { signature: SIG });
    await k2.launch({ grid: [3], BLOCK: 16, DOUBLE: false }, x, out, 2, 40);
    expect(k2.compileLog[0]!.key).toBe(k.compileLog[0]!.key);
    const k3 = jit(SRC.replace('2.0', '3.0'), { signature: SIG });
    await k3.launch({ grid: [3], BLOCK: 16, DOUBLE: true }, x, out, 2, 40);
    expect(k3.compileLog[0]!.key).not.toBe(k.compileLog[1]!.key);
    expect(out.toArray()[3]).toBe(18);
  });

  test('wat and ir show the specialisation', async () => {
    const rt = await rtP;
    const k = jit(SRC, { signature: SIG });
    const x = rt.empty([8]);
    const wat = await k.wat({ grid: [1], BLOCK: 8, DOUBLE: true }, x, x, 1, 8);
    expect(wat).toContain('(export "run"');
    expect(wat).toContain('(import "env" "memory"');
    const ir = await k.ir({ grid: [1], BLOCK: 8, DOUBLE: true }, x, x, 1, 8);
    expect(ir).toContain('store');
  });

  test("an unrolled copy reads and writes at copy 0's address plus a static offset, tails included", async () => {
    const rt = await rtP;
    const k = jit(`function dbl(X, Out, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i, load(X, i, i < n) * 2.0, i < n);
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } });
    const n = 61;
    const x = rt.tensor(Float32Array.from({ length: 64 }, (_, i) => i + 1), [64]);
    const out = rt.tensor(new Float32Array(64).fill(-1), [64]);
    const wat = await k.wat({ grid: [1], BLOCK: 64 }, x, out, n);
    // Copy 1 of the two-way unrolled loop: the whole vector and its masked tail lanes.
    expect(wat).toMatch(/v128\.load offset=16\b/);
    expect(wat).toMatch(/v128\.store offset=16\b/);
    expect(wat).toMatch(/f32\.store offset=28\b/);
    await k.launch({ grid: [1], BLOCK: 64 }, x, out, n);
    const got = out.toArray();
    for (let i = 0; i < 64; i++) expect(got[i]).toBe(i < n ? 2 * (i + 1) : -1);
  });
});

describe('addresses of contiguous accesses', () => {
  test('rows at a run-time stride: the part without the column is hoisted, the column scaled once for all four loads', async () => {
    const rt = await rtP;
    const k = jit(`function rows4(X, Out, N, BN) {
  const cols = programId(0) * BN + arange(BN);
  const r = programId(1) * 4;
  const y = load(X, r * N + cols) + load(X, (r + 1) * N + cols) + load(X, (r + 2) * N + cols) + 2.0 * load(X, (r + 3) * N + cols);
  store(Out, programId(1) * N + cols, y);
}`, { signature: { X: 'ptr', Out: 'ptr', N: 'i32', BN: 'constexpr' } });
    const N = 512;
    const x = rt.tensor(Float32Array.from({ length: 8 * N }, (_, i) => (i % 97) - 40), [8 * N]);
    const out = rt.tensor(new Float32Array(2 * N).fill(-1), [2 * N]);
    const opts = { grid: [2, 2], BN: 256 };
    const wat = await k.wat(opts, x, out, N);
    const inner = wat.slice(wat.indexOf('(loop $in'));
    const body = inner.slice(0, inner.indexOf('(br_if $in'));
    // One shift (the column's) in the loop; each access adds it to its hoisted row base.
    expect(body.match(/\(i32\.shl/g)?.length).toBe(1);
    await k.launch(opts, x, out, N);
    const xs = x.toArray(), got = out.toArray();
    for (let p = 0; p < 2; p++) for (let c = 0; c < N; c++) {
      const at = (j: number): number => xs[(4 * p + j) * N + c]!;
      expect(got[p * N + c]).toBe(at(0) + at(1) + at(2) + 2 * at(3));
    }
  });
});

describe('address and fusion corner cases', () => {
  test("a 1-D access inside a column-major nest does not read the 2-D access's column local", async () => {
    // sum over axis 0 walks columns outside, rows inside: b's address is at the column level,
    // x's in the row loop; both share the column term.
    const rt = await rtP;
    const k = jit(`function k(X, B, Out, k0) {
  const rows = arange(8);
  const cols = arange(8);
  const x = load(X, expandDims(rows, 1) * 8 + expandDims(cols, 0));
  const b = load(B, cols + k0);
  store(Out, cols, sum(x + expandDims(b, 0), 0));
}`, { signature: { X: 'ptr', B: 'ptr', Out: 'ptr', k0: 'i32' } });
    const X = rt.tensor(Float32Array.from({ length: 64 }, (_, i) => i % 3), [64]);
    const B = rt.tensor(Float32Array.from({ length: 16 }, (_, i) => i), [16]);
    const O = rt.empty([8]);
    await k.launch({ grid: [1] }, X, B, O, 4);
    const xs = X.toArray();
    const want = Array.from({ length: 8 }, (_, c) => Array.from({ length: 8 }, (_, r) => xs[r * 8 + c]! + c + 4).reduce((a, b) => a + b));
    expect(Array.from(O.toArray())).toEqual(want);
  });

  test("a masked load's other value reads its own lanes in every unrolled copy", async () => {
    const rt = await rtP;
    const k = jit(`function k(X, Y, Out, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i, load(X, i, i < n, load(Y, i)));
}`, { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } });
    for (const n of [1, 3, 13, 61]) {
      const X = rt.tensor(Float32Array.from({ length: 128 }, (_, j) => j), [128]);
      const Y = rt.tensor(Float32Array.from({ length: 192 }, (_, j) => 1000 + j), [192]);
      const O = rt.empty([128]);
      await k.launch({ grid: [2], BLOCK: 64 }, X, Y, O, n);
      expect(Array.from(O.toArray())).toEqual(Array.from({ length: 128 }, (_, j) => (j < n ? j : 1000 + j)));
    }
  });

  test('fpFusion leaves a product used twice unfused, so one value rounds the same in every loop', async () => {
    if (!HAS_RELAXED) return;
    const rt = await rtP;
    // p = a·a rounds up by ~65472 (a near 2^20), c = -fround(a·a): x = p + c is 0 unfused and
    // about -65472 fused. x feeds a row max and, in another loop, exp(x - max): fused in one
    // loop and not in the other, the shift would be far from <= 0.
    let a = 0;
    for (let j = 1; j < 5000 && !a; j++) {
      const t = Math.fround(2 ** 20 * (1 + j * 2 ** -23));
      if (t * t - Math.fround(t * t) < -1000) a = t;
    }
    const k = jit(`function k(A, C, Out) {
  const offs = expandDims(arange(4), 1) * 4 + expandDims(arange(4), 0);
  const p = load(A, offs) * load(A, offs);
  const x = p + load(C, offs);
  store(Out, offs, p * 0.0 + exp(x - expandDims(max(x, 1, false, false), 1), true));
}`, { signature: { A: 'ptr', C: 'ptr', Out: 'ptr' }, fpFusion: true });
    const A = rt.tensor(new Float32Array(16).fill(a), [16]);
    const C = rt.tensor(new Float32Array(16).fill(-Math.fround(a * a)), [16]);
    const O = rt.empty([16]);
    await k.launch({ grid: [1], relaxedSimd: true }, A, C, O);
    expect(Array.from(O.toArray())).toEqual(new Array(16).fill(1));
  });
});

describe('rows of up to eight vectors', () => {
  const SRC2 = `function rows(X, Out, R, C, BR, BC, MASKED) {
  const r = programId(0) * BR + arange(BR);
  const c = arange(BC);
  const offs = expandDims(r, 1) * C + expandDims(c, 0);
  if (MASKED) {
    const m = expandDims(r < R, 1) && expandDims(c < C, 0);
    store(Out, offs, exp(load(X, offs, m, 0.0)) + 1.0, m);
  } else {
    store(Out, offs, exp(load(X, offs)) + 1.0);
  }
}`;
  const SIG2 = { X: 'ptr', Out: 'ptr', R: 'i32', C: 'i32', BR: 'constexpr', BC: 'constexpr', MASKED: 'constexpr' } as const;

  test.each([
    { R: 16, C: 32, BC: 32, MASKED: false },
    { R: 16, C: 8, BC: 8, MASKED: false },
    { R: 13, C: 30, BC: 32, MASKED: true },
    { R: 13, C: 12, BC: 16, MASKED: true },
  ])('[8, $BC] tiles over $R x $C (masked: $MASKED): unmasked rows unrolled whole, no inner loop; results right', async ({ R, C, BC, MASKED }) => {
    const rt = await rtP;
    const k = jit(SRC2, { signature: SIG2 });
    const n = R * C;
    const x = rt.tensor(Float32Array.from({ length: n + 8 }, (_, i) => Math.sin(i)), [n + 8]);
    const out = rt.tensor(new Float32Array(n + 8).fill(-7), [n + 8]);
    const opts = { grid: [2], BR: 8, BC, MASKED };
    const wat = await k.wat(opts, x, out, R, C);
    // Unmasked, the row's last vector is at copy 0's address plus (BC/4 - 1)·16 bytes and the
    // only loops left are the rows' and the programs'. Masked rows keep the split loops, two
    // copies an iteration.
    expect(wat.includes(`offset=${(BC / 4 - 1) * 16} `)).toBe(!MASKED);
    expect(/\(loop \$in/.test(wat)).toBe(MASKED);
    await k.launch(opts, x, out, R, C);
    const got = out.toArray();
    const xs = x.toArray();
    for (let i = 0; i < n + 8; i++) {
      const want = i < n ? Math.fround(Math.exp(xs[i]!) + 1) : -7;
      expect(Math.abs(got[i]! - want), `element ${i}`).toBeLessThanOrEqual(i < n ? 4e-7 * want : 0);
    }
  });
});

describe('fpFusion', () => {
  const FMA_SRC = `function fma(X, Y, Z, Out, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  store(Out, i, load(X, i, m) * load(Y, i, m) + load(Z, i, m), m);
}`;
  const FMA_SIG = { X: 'ptr', Y: 'ptr', Z: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } as const;
  // x·y = 1 + 2^-11 + 2^-24 exactly: rounded to f32 it is 1 + 2^-11 (a tie, to even), so
  // x·y + z is 0 with two roundings and 2^-24 with one.
  const x = 1 + 2 ** -12;
  const n = 37;

  test.each([
    { fpFusion: true, relaxedSimd: true, fused: true },
    { fpFusion: false, relaxedSimd: true, fused: false },
    { fpFusion: true, relaxedSimd: false, fused: false },
  ])('fpFusion $fpFusion, relaxed SIMD $relaxedSimd: a * b + c fused: $fused', async ({ fpFusion, relaxedSimd, fused }) => {
    if (relaxedSimd && !HAS_RELAXED) return;
    const rt = await rtP;
    const k = jit(FMA_SRC, { signature: FMA_SIG, fpFusion });
    const t = (v: number): ReturnType<typeof rt.tensor> => rt.tensor(new Float32Array(40).fill(v), [40]);
    const out = rt.tensor(new Float32Array(40).fill(-1), [40]);
    const args = [t(x), t(x), t(-(1 + 2 ** -11)), out, n] as const;
    const wat = await k.wat({ grid: [1], BLOCK: 64, relaxedSimd }, ...args);
    expect(wat.includes('f32x4.relaxed_madd')).toBe(fused);
    await k.launch({ grid: [1], BLOCK: 64, relaxedSimd }, ...args);
    const got = out.toArray();
    // The masked tail vector too; past n nothing is written.
    for (let i = 0; i < 40; i++) expect(got[i], `lane ${i}`).toBe(i >= n ? -1 : fused ? 2 ** -24 : 0);
  });

  test('fpFusion is part of the specialisation: the same source compiles once per setting', async () => {
    const a = jit(FMA_SRC, { signature: FMA_SIG, fpFusion: true });
    const b = jit(FMA_SRC, { signature: FMA_SIG });
    expect(a.hash).not.toBe(b.hash);
  });
});

describe('launch validation', () => {
  test('bad arguments give clear errors and change nothing', async () => {
    const rt = await rtP;
    const k = jit(SRC, { signature: SIG });
    const x = rt.tensor(new Float32Array([1, 2, 3, 4]), [4]);
    const out = rt.tensor(new Float32Array([9, 9, 9, 9]), [4]);
    await expect(k.launch({ grid: [1], BLOCK: 4 } as never, x, out, 1, 4)).rejects.toThrow(/constexpr 'DOUBLE' is missing/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLe: true } as never, x, out, 1, 4)).rejects.toThrow(/'DOUBLE' is missing .*\(unknown option: 'DOUBLe'\)/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false, BOGUS: 1 }, x, out, 1, 4)).rejects.toThrow(/unknown launch option 'BOGUS'/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false }, x, out, 1)).rejects.toThrow(/expected 4 arguments/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false }, x, 3 as never, 1, 4)).rejects.toThrow(/'Out' must be a Tensor/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false }, x, out, 1, 4.5)).rejects.toThrow(/'n' must be an i32 integer/);
    await expect(k.launch({ grid: [-1], BLOCK: 4, DOUBLE: false }, x, out, 1, 4)).rejects.toThrow(/grid\[0\]/);
    await expect(k.launch({ grid: [] as number[], BLOCK: 4, DOUBLE: false }, x, out, 1, 4)).rejects.toThrow(/grid must be/);
    expect(Array.from(out.toArray())).toEqual([9, 9, 9, 9]);
  });

  test('a tensor freed while its launch is pending: the launch rejects and writes nothing (the block may be another tensor\'s)', async () => {
    for (const threads of [0, 2] as const) {
      const rt = await Runtime.create({ threads, inlineBelowBytes: 0 });
      const k = jit(SRC, { signature: SIG });
      const n = 4096;
      const x = rt.tensor(new Float32Array(n).fill(1), [n]);
      let out = rt.empty([n]);
      await k.launch({ grid: [n / 4], BLOCK: 4, DOUBLE: false }, x, out, 3, n);
      const pending = k.launch({ grid: [n / 4], BLOCK: 4, DOUBLE: false }, x, out, 3, n);
      out.free();
      out = rt.tensor(new Float32Array(n).fill(42), [n]); // takes the freed block
      await expect(pending).rejects.toThrow(/^scale: tensor 'Out' was freed before the launch ran/);
      expect(out.toArray().every((v) => v === 42)).toBe(true);
      const gone = rt.empty([n]);
      gone.free();
      await expect(k.launch({ grid: [n / 4], BLOCK: 4, DOUBLE: false }, x, gone, 3, n)).rejects.toThrow(/^scale: tensor 'Out' was freed$/);
      rt.dispose();
    }
    const rt = await rtP;
    const k = jit(SRC, { signature: SIG });
    const x = rt.tensor(new Float32Array(4), [4]);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false, runtime: {} as never }, x, x, 1, 4)).rejects.toThrow(/launch option 'runtime' must be a Runtime/);
    await expect(k.launch({ grid: [1], BLOCK: 4, DOUBLE: false, relaxedSimd: 'no' as never }, x, x, 1, 4)).rejects.toThrow(/^scale: launch option 'relaxedSimd' must be a boolean, got /);
  });

  test('launches run in the order they were issued, even when an earlier one has to compile first', async () => {
    for (const threads of [0, 2] as const) {
      const rt = await Runtime.create({ threads, inlineBelowBytes: 0 });
      const fill = jit(`function fill(Out, v, n, BLOCK) {
        const i = programId(0) * BLOCK + arange(BLOCK);
        store(Out, i, zeros([BLOCK]) + v, i < n);
      }`, { signature: { Out: 'ptr', v: 'f32', n: 'i32', BLOCK: 'constexpr' } });
      const copy = jit(SRC, { signature: SIG });
      const n = 1000;
      const t = rt.tensor(new Float32Array(n).fill(1), [n]), u = rt.empty([n]);
      await copy.launch({ grid: [4], BLOCK: 256, DOUBLE: false }, t, u, 1, n); // compiled
      // The fill's first launch compiles; the copy after it must still see its result.
      const a = fill.launch({ grid: [8], BLOCK: 128 }, t, 7, n);
      const b = copy.launch({ grid: [4], BLOCK: 256, DOUBLE: false }, t, u, 1, n);
      const bad = fill.launch({ grid: [1], BLOCK: 3 } as never, t, 7, n).catch((e: unknown) => e); // a failure in between
      const c = copy.launch({ grid: [4], BLOCK: 256, DOUBLE: true }, u, t, 1, n);
      await Promise.all([a, b, c]);
      expect(await bad).toBeInstanceOf(Error);
      expect([u.toArray()[0], u.toArray()[999], t.toArray()[0]]).toEqual([7, 7, 14]);
      rt.dispose();
    }
  });

  test('cdiv sizes grids as the language\'s cdiv does, and refuses what is not a size', () => {
    expect([cdiv(1000, 256), cdiv(1024, 256), cdiv(0, 8), cdiv(1, 1), cdiv(2 ** 31 - 1, 2)]).toEqual([4, 4, 0, 1, 2 ** 30]);
    expect(() => cdiv(10, 0)).toThrow(new RangeError('cdiv: expected integers a and b > 0, got 10 and 0'));
    expect(() => cdiv(1.5, 2)).toThrow(RangeError);
  });

  test('a kernel that does not compile throws KernelCompileError at jit() or at first launch', async () => {
    const rt = await rtP;
    expect(() => jit(`function k(X) { while (true) {} }`, { signature: { X: 'ptr' } })).toThrow(KernelCompileError);
    const k = jit(`function k(X, B) { store(X, arange(B), 1.0); }`, { signature: { X: 'ptr', B: 'constexpr' } });
    const x = rt.empty([8]);
    await expect(k.launch({ grid: [1], B: 3 }, x)).rejects.toThrow(KernelCompileError);
  });
});

describe('disk cache', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tilejit-cache-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('a second process reuses the disk cache without loading binaryen', () => {
    const script = join(dir, 'run.mjs');
    const entry = new URL('../src/index.ts', import.meta.url).pathname;
    writeFileSync(script, `
      const { jit, Runtime } = await import(${JSON.stringify(entry)});
      const k = jit(${JSON.stringify(SRC)}, { signature: ${JSON.stringify(SIG)} });
      const rt = await Runtime.create({ threads: 0 });
      const x = rt.tensor(new Float32Array([1, 2, 3]), [3]);
      const out = rt.empty([3]);
      await k.launch({ grid: [1], BLOCK: 4, DOUBLE: false }, x, out, 2, 3);
      const { compilerLoaded } = await import(${JSON.stringify(new URL('../src/kernel.ts', import.meta.url).pathname)});
      console.log(JSON.stringify({ out: Array.from(out.toArray()), fromDisk: k.compileLog[0].fromDisk, binaryen: compilerLoaded() }));
    `);
    const run = (): { out: number[]; fromDisk: boolean; binaryen: boolean } => {
      const text = execFileSync(process.execPath, ['--import', 'tsx', script], {
        env: { ...process.env, TILEJIT_CACHE_DIR: dir },
        encoding: 'utf8',
        timeout: 120_000,
      });
      return JSON.parse(text.trim().split('\n').pop()!);
    };
    const first = run();
    expect(first).toEqual({ out: [2, 4, 6], fromDisk: false, binaryen: true });
    const second = run();
    expect(second).toEqual({ out: [2, 4, 6], fromDisk: true, binaryen: false });
    // An entry whose checksum holds but whose module (or metadata) does not is discarded and
    // rebuilt, not a CompileError on every launch in every process.
    const entries = readdirSync(dir).filter((f) => f.endsWith('.tjc'));
    expect(entries).toHaveLength(1);
    const key = entries[0]!.replace(/\.tjc$/, '');
    const good = new ModuleCache(dir).get(key)!;
    for (const [bytes, meta] of [[new Uint8Array([0, 97, 115, 109, 65, 65, 65, 65]), good.meta], [good.bytes, { name: 'x' }]] as const) {
      new ModuleCache(dir).put(key, bytes, meta);
      expect(run()).toEqual({ out: [2, 4, 6], fromDisk: false, binaryen: true });
      expect(run()).toEqual({ out: [2, 4, 6], fromDisk: true, binaryen: false });
    }
  }, 60_000);
});
