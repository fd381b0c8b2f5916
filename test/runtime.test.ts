/**
 * @fileoverview The runtime: allocator reuse and out-of-memory without damage, growth with
 * live tensors, dtype round trips, scopes, dispose, traps named by program, the disk cache's
 * handling of corrupt entries and unwritable directories.
 */
import { chmodSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { jit, KernelRuntimeError } from '../src/index.js';
import { hashKey, ModuleCache } from '../src/runtime/cache.js';
import { Heap } from '../src/runtime/memory.js';
import { Runtime } from '../src/runtime/runtime.js';

describe('memory', () => {
  test('freed blocks are reused and coalesced', () => {
    const h = new Heap(1 << 16, 1 << 20);
    const a = h.alloc(1000);
    const b = h.alloc(1000);
    const c = h.alloc(1000);
    expect(a % 64).toBe(0);
    h.release(b);
    expect(h.alloc(500)).toBe(b);
    h.release(a);
    h.release(c);
    expect(() => h.release(a)).toThrow(/not a live allocation/);
  });

  test('an allocation past the maximum fails clearly and corrupts nothing', async () => {
    const rt = await Runtime.create({ threads: 0, maxMemoryBytes: 1 << 20, initialMemoryBytes: 1 << 16 });
    const data = Float32Array.from({ length: 50_000 }, (_, i) => i * 0.5);
    const t = rt.tensor(data, [50_000]);
    expect(() => rt.empty([1 << 20])).toThrow(/out of memory: cannot allocate 4194304 bytes \(\d+ bytes in use, 1048576 bytes maximum\)/);
    expect(t.toArray()).toEqual(data);
    const u = rt.empty([1000]); // still usable
    u.write(new Float32Array(1000).fill(3));
    expect(u.toArray()[999]).toBe(3);
    rt.dispose();
  });

  test('tensors stay valid while the memory grows', async () => {
    const rt = await Runtime.create({ threads: 0, initialMemoryBytes: 1 << 16 });
    const small = rt.tensor([1, 2, 3], [3]);
    const before = rt.stats().memoryBytes;
    const big = rt.zeros([1 << 20]);
    expect(rt.stats().memoryBytes).toBeGreaterThan(before);
    expect(Array.from(small.toArray())).toEqual([1, 2, 3]);
    expect(big.toArray()[12345]).toBe(0);
    rt.dispose();
  });
});

describe('tensors', () => {
  test.each(['f32', 'f16', 'bf16', 'i32'] as const)('%s round trip', async (dtype) => {
    const rt = await Runtime.create({ threads: 0 });
    const vals = dtype === 'i32' ? [1, -2, 3, 2147483647] : [1, -2.5, 0.099609375, 65504];
    const t = rt.tensor(vals, [2, 2], dtype);
    expect(t.shape).toEqual([2, 2]);
    expect(t.dtype).toBe(dtype);
    const back = Array.from(t.toArray());
    if (dtype === 'bf16') expect(back).toEqual([1, -2.5, 0.099609375, 65536]);
    else expect(back).toEqual(vals);
    rt.dispose();
  });

  test('bad shapes, dtypes and data are clear errors', async () => {
    const rt = await Runtime.create({ threads: 0 });
    expect(() => rt.tensor([1, 2, 3], [2, 2])).toThrow(/needs 4 values, got 3/);
    expect(() => rt.empty([2, -1])).toThrow(/shape\[1\] must be a non-negative integer/);
    expect(() => rt.empty([2], 'f64' as never)).toThrow(/dtype must be one of f32, f16, bf16, i32/);
    expect(() => rt.tensor([1.5], [1], 'i32')).toThrow(/not an i32 integer/);
    rt.dispose();
  });

  test('scope frees what it does not return; free is idempotent; use after free is an error', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const base = rt.stats().inUseBytes;
    let inner: ReturnType<Runtime['empty']> | undefined;
    const kept = await rt.scope(() => {
      inner = rt.empty([1000]);
      return rt.zeros([10]);
    });
    expect(inner!.isFreed).toBe(true);
    expect(kept.isFreed).toBe(false);
    kept.free();
    kept.free();
    expect(rt.stats().inUseBytes).toBe(base);
    expect(() => kept.toArray()).toThrow(/freed/);
    rt.dispose();
    rt.dispose();
    expect(() => rt.empty([1])).toThrow(/disposed/);
  });
});

describe('faults', () => {
  test('a trap names the kernel and the program, and the runtime keeps working', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const k = jit(`function trapper(Out, bad) {
      const p = programId(0);
      store(Out, p, cast(idiv(100, p - bad), 'f32'));
    }`, { signature: { Out: 'ptr', bad: 'i32' } });
    const out = rt.zeros([8]);
    const err = await k.launch({ grid: [8] }, out, 5).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRuntimeError);
    expect((err as KernelRuntimeError).programId).toEqual([5, 0, 0]);
    expect((err as Error).message).toMatch(/kernel 'trapper' trapped in program \(5, 0, 0\): .*divide by zero/i);
    // Unchecked code keeps no source places: the message says how to get one.
    expect((err as Error).message).toMatch(/kernel\.interpret\(\.\.\.\) with the same arguments names the line/);
    await k.launch({ grid: [8] }, out, 100);
    expect(Array.from(out.toArray())).toEqual([-1, -1, -1, -1, -1, -1, -1, -1]);
    // The interpreter reports the same fault with the source position.
    await expect(k.interpret({ grid: [8] }, out, 2)).rejects.toThrow(/program \(2, 0, 0\) at 3:\d+: integer division by zero/);
    rt.dispose();
  });
});

describe('integer edge cases agree with the interpreter', () => {
  test('-2^31 / -1 wraps (no trap), and so do the vector lanes', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const k = jit(`function q(X, D, Out, n) {
      const i = arange(4);
      store(Out, i, idiv(load(X, i), load(D, i)));
      store(Out, 4, idiv(load(X, 0), load(D, 0)));
    }`, { signature: { X: 'ptr', D: 'ptr', Out: 'ptr', n: 'i32' } });
    const x = rt.tensor([-2147483648, 7, -7, 2147483647], [4], 'i32');
    const d = rt.tensor([-1, -1, 2, -1], [4], 'i32');
    const a = rt.zeros([5], 'i32');
    const b = rt.zeros([5], 'i32');
    await k.launch({ grid: [1] }, x, d, a, 4);
    await k.interpret({ grid: [1] }, x, d, b, 4);
    expect(Array.from(a.toArray())).toEqual([-2147483648, -7, -3, -2147483647, -2147483648]);
    expect(Array.from(b.toArray())).toEqual(Array.from(a.toArray()));
    rt.dispose();
  });
});

test('a loop whose next step would pass 2^31 stops instead of wrapping', async () => {
  const rt = await Runtime.create({ threads: 0 });
  const k = jit(`function count(Out, start, step) {
    let n = 0;
    for (let i = start; i < 2147483647; i += step) { n += 1; }
    store(Out, 0, n);
  }`, { signature: { Out: 'ptr', start: 'i32', step: 'i32' } });
  const a = rt.zeros([1], 'i32');
  const b = rt.zeros([1], 'i32');
  await k.launch({ grid: [1] }, a, 2147483600, 7);
  await k.interpret({ grid: [1] }, b, 2147483600, 7);
  expect(a.toArray()[0]).toBe(7);
  expect(b.toArray()[0]).toBe(7);
  rt.dispose();
});

describe('module cache', () => {
  test('a corrupt entry is discarded and rebuilt; an unwritable directory falls back to memory', () => {
    const dir = mkdtempSync(join(tmpdir(), 'tilejit-cache-'));
    const key = hashKey(['k']);
    const c = new ModuleCache(dir);
    c.put(key, new Uint8Array([1, 2, 3]), { scratchBytes: 16 });
    expect(new ModuleCache(dir).get(key)).toEqual({ bytes: new Uint8Array([1, 2, 3]), meta: { scratchBytes: 16 } });
    const file = join(dir, readdirSync(dir)[0]!);
    writeFileSync(file, 'TJC1 garbage');
    expect(new ModuleCache(dir).get(key)).toBeUndefined();
    expect(readdirSync(dir)).toEqual([]);
    expect(new ModuleCache(dir).stats().entries).toBe(0);
    if (process.getuid?.() !== 0) {
      chmodSync(dir, 0o500);
      const ro = new ModuleCache(join(dir, 'sub'));
      ro.put(key, new Uint8Array([4]), {});
      expect(ro.get(key)?.bytes).toEqual(new Uint8Array([4]));
      chmodSync(dir, 0o700);
    }
    const file2 = join(dir, 'not-a-dir');
    writeFileSync(file2, 'x');
    const bad = new ModuleCache(join(file2, 'cache')); // cannot mkdir under a file
    bad.put(key, new Uint8Array([5]), {});
    expect(bad.get(key)?.bytes).toEqual(new Uint8Array([5]));
    rmSync(dir, { recursive: true, force: true });
  });
});
