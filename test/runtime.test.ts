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
import type { Tensor } from '../src/runtime/tensor.js';

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

  test('a launch whose scratch cannot grow fails, and the next launch still has scratch of its own', async () => {
    const rt = await Runtime.create({ threads: 0, maxMemoryBytes: 1 << 20, initialMemoryBytes: 1 << 20 });
    // A row softmax: the sum needs scratch that grows with BLOCK.
    const k = jit(`function sm(X, Out, n, BLOCK) {
      const i = programId(0) * BLOCK + arange(BLOCK);
      const y = exp(load(X, i, i < n));
      store(Out, i, y / sum(y), i < n);
    }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } });
    const n = 1024;
    const x = rt.tensor(new Float32Array(n).fill(1), [n]), o = rt.empty([n]);
    await k.launch({ grid: [1], BLOCK: 1024 }, x, o, n);
    const fill: Tensor[] = [];
    try {
      for (;;) fill.push(rt.empty([1024]));
    } catch {
      // full
    }
    fill.pop()!.free();
    fill.pop()!.free(); // 8 KiB free: not enough for BLOCK 8192's scratch
    await expect(k.launch({ grid: [1], BLOCK: 8192 }, x, o, n)).rejects.toThrow(/out of memory/);
    const sentinel = rt.tensor(new Float32Array(512).fill(7), [512]);
    await k.launch({ grid: [1], BLOCK: 1024 }, x, o, n);
    expect(x.toArray().every((v) => v === 1)).toBe(true);
    expect(sentinel.toArray().every((v) => v === 7)).toBe(true);
    expect(o.toArray()[5]).toBeCloseTo(1 / 1024, 7);
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
  test('numbers stored as f16 / bf16 round once, from their f64 value (not via the nearest f32)', async () => {
    const rt = await Runtime.create({ threads: 0 });
    // Just above a half's tie, by less than an f32 ulp: the nearest f32 is the tie itself.
    expect(Array.from(rt.tensor([1 + 2 ** -11 + 2 ** -40, -(1 + 2 ** -11 + 2 ** -40), 1 + 2 ** -11], [3], 'f16').toArray())).toEqual([1 + 2 ** -10, -(1 + 2 ** -10), 1]);
    expect(Array.from(rt.tensor([1 + 2 ** -8 + 2 ** -40, 1 + 2 ** -8 - 2 ** -40, 1 + 2 ** -8], [3], 'bf16').toArray())).toEqual([1 + 2 ** -7, 1, 1]);
    // Against an exact reference (f64 scaling by powers of two is exact) over values near ties.
    const nearest = (x: number, bits: number): number => {
      const e = Math.floor(Math.log2(Math.abs(x)));
      const ulp = 2 ** (e - bits);
      const q = Math.abs(x) / ulp, f = Math.floor(q);
      const m = q - f > 0.5 || (q - f === 0.5 && f % 2 === 1) ? f + 1 : f;
      return Math.sign(x) * m * ulp;
    };
    let s = 12345;
    const xs: number[] = [];
    for (let i = 0; i < 4000; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      const tie = (1 + (s % 1024) / 1024 + 2 ** -11) * 2 ** ((s >>> 10) % 8 - 4); // an f16 tie at several binades
      xs.push(tie + (((s >>> 13) % 3) - 1) * 2 ** -38 * 2 ** ((s >>> 10) % 8 - 4));
    }
    const h = rt.tensor(xs, [xs.length], 'f16').toArray();
    xs.forEach((x, i) => expect(h[i], `f16 of ${x}`).toBe(nearest(x, 10)));
    const b = rt.tensor(xs.map((x) => x + 2 ** -9), [xs.length], 'bf16').toArray();
    xs.forEach((x, i) => expect(b[i], `bf16 of ${x + 2 ** -9}`).toBe(nearest(x + 2 ** -9, 7)));
    rt.dispose();
  });

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

  test('data that is not numbers is refused, not turned into NaNs', async () => {
    const rt = await Runtime.create({ threads: 0 });
    expect(() => rt.tensor('abc' as never, [3])).toThrow(new TypeError('tensor: data must be a typed array or an array of numbers, got the string "abc"'));
    expect(() => rt.tensor([1, '2', 3] as never, [3])).toThrow(new TypeError('tensor: data[1] must be a number, got "2"'));
    expect(() => rt.tensor([1, undefined, 3] as never, [3])).toThrow(/data\[1\] must be a number, got undefined/);
    expect(() => rt.tensor(null as never, [0])).toThrow(/data must be a typed array or an array of numbers, got null/);
    expect(() => rt.tensor(new BigInt64Array(2) as never, [2])).toThrow(/got BigInt64Array/);
    expect(() => rt.tensor(new DataView(new ArrayBuffer(8)) as never, [2])).toThrow(/got DataView/);
    expect(() => rt.empty([3]).write('abc' as never)).toThrow(/write: data must be a typed array or an array of numbers/);
    // Still accepted: typed arrays of any numeric kind, arrays and array-likes of numbers, NaN.
    expect(Array.from(rt.tensor(new Uint8Array([1, 2]), [2]).toArray())).toEqual([1, 2]);
    expect(Array.from(rt.tensor({ length: 2, 0: 5, 1: NaN }, [2]).toArray())).toEqual([5, NaN]);
    // The refused calls allocated nothing: the write target and the two accepted tensors.
    expect(rt.stats().inUseBytes).toBe(3 * 64);
    rt.dispose();
  });

  test('bad Runtime.create options are clear errors, not engine errors', async () => {
    await expect(Runtime.create({ threads: 0, initialMemoryBytes: NaN })).rejects.toThrow(new RangeError('Runtime.create: initialMemoryBytes must be a non-negative integer number of bytes, got NaN'));
    await expect(Runtime.create({ threads: 0, initialMemoryBytes: -5 })).rejects.toThrow(RangeError);
    await expect(Runtime.create({ threads: 0, initialMemoryBytes: '1' as never })).rejects.toThrow(new TypeError('Runtime.create: initialMemoryBytes must be a number of bytes, got string'));
    await expect(Runtime.create({ threads: 0, maxMemoryBytes: Infinity })).rejects.toThrow(/maxMemoryBytes must be a non-negative integer/);
    await expect(Runtime.create({ threads: 0, maxMemoryBytes: 1000 })).rejects.toThrow(new RangeError('Runtime.create: maxMemoryBytes must be from 64 KiB (65536) to 4 GiB, got 1000'));
    await expect(Runtime.create({ threads: 0, maxMemoryBytes: 2 ** 40 })).rejects.toThrow(/^Runtime.create: maxMemoryBytes must be from 64 KiB/);
    await expect(Runtime.create({ threads: 0, initialMemoryBytes: 2 ** 32 })).rejects.toThrow(new RangeError('Runtime.create: initialMemoryBytes (4294967296) is above maxMemoryBytes (2147483648, the default)'));
    (await Runtime.create({ threads: 0, maxMemoryBytes: 1 << 20 })).dispose(); // the default initial fits under it
    await expect(Runtime.create({ threads: 0, initialMemoryBytes: 1 << 20, maxMemoryBytes: 1 << 16 })).rejects.toThrow(/initialMemoryBytes \(1048576\) is above maxMemoryBytes \(65536\)$/);
    await expect(Runtime.create({ threads: 0, inlineBelowBytes: 'x' as never })).rejects.toThrow(/inlineBelowBytes must be a number of bytes, got string/);
    await expect(Runtime.create({ threads: 0, inlineBelowBytes: NaN })).rejects.toThrow(/inlineBelowBytes must be a non-negative integer number of bytes \(or Infinity\), got NaN/);
    await expect(Runtime.create(null as never)).rejects.toThrow(new TypeError('Runtime.create: options must be an object, got null'));
    const rt = await Runtime.create({ threads: 0, initialMemoryBytes: 0, inlineBelowBytes: Infinity });
    expect(rt.stats().memoryBytes).toBe(65536);
    rt.dispose();
  });

  test('a disposed runtime says what was attempted', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const k = jit(`function one(Out) { store(Out, 0, 1.0); }`, { signature: { Out: 'ptr' } });
    const out = rt.empty([1]);
    rt.dispose();
    const tail = ': this runtime was disposed (rt.dispose() was called before); create another with Runtime.create()';
    expect(() => rt.empty([1])).toThrow(new Error(`rt.empty: cannot allocate a tensor${tail}`));
    expect(() => rt.tensor([1], [1])).toThrow(new Error(`rt.tensor: cannot create a tensor${tail}`));
    await expect(rt.scope(() => 1)).rejects.toThrow(new Error(`rt.scope: cannot open a scope${tail}`));
    await expect(k.launch({ grid: [1] }, out)).rejects.toThrow(new Error(`cannot launch kernel 'one'${tail}`));
  });
});

describe('scopes', () => {
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  test('a scope whose function throws frees what it made and rethrows', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const outside = rt.empty([10]);
    const base = rt.stats().inUseBytes;
    const made: Tensor[] = [];
    await expect(rt.scope(async () => {
      made.push(rt.empty([100_000]));
      await sleep(1);
      made.push(rt.zeros([7]));
      throw new Error('boom');
    })).rejects.toThrow('boom');
    expect(made.map((t) => t.isFreed)).toEqual([true, true]);
    expect(rt.stats().inUseBytes).toBe(base);
    // A synchronous throw, and an inner scope's returned tensor in an outer scope that throws.
    await expect(rt.scope(() => {
      rt.empty([5]);
      throw new TypeError('sync');
    })).rejects.toThrow(TypeError);
    await expect(rt.scope(async () => {
      const kept = await rt.scope(async () => rt.empty([1000]));
      expect(kept.isFreed).toBe(false);
      throw new Error('outer');
    })).rejects.toThrow('outer');
    expect(rt.stats().inUseBytes).toBe(base);
    expect(outside.isFreed).toBe(false);
    rt.dispose();
  });

  test('scopes that overlap in time each free only their own tensors', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const base = rt.stats().inUseBytes;
    let t: Tensor | undefined;
    let aTemp: Tensor | undefined;
    let bTemp: Tensor | undefined;
    // A starts first, B starts and ends while A runs: A's allocations after B's start are A's.
    const A = rt.scope(async () => {
      await sleep(10);
      t = rt.tensor([1, 2, 3], [3]);
      aTemp = rt.empty([64]);
      await sleep(30);
      return t;
    });
    const B = rt.scope(async () => {
      await sleep(5);
      bTemp = rt.empty([64]);
      await sleep(15);
      return 0;
    });
    await B;
    expect(bTemp!.isFreed).toBe(true);
    expect([t!.isFreed, aTemp!.isFreed]).toEqual([false, false]);
    const ra = await A;
    expect(ra.isFreed).toBe(false);
    expect(aTemp!.isFreed).toBe(true);
    expect(Array.from(ra.toArray())).toEqual([1, 2, 3]);
    ra.free();
    expect(rt.stats().inUseBytes).toBe(base);
    // Many concurrent scopes, each returning one tensor and dropping another.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => rt.scope(async () => {
      await sleep((i * 7) % 11);
      rt.empty([16]);
      const mine = rt.tensor([i], [1]);
      await sleep((i * 5) % 13);
      return mine;
    })));
    expect(results.map((r) => (r.isFreed ? -1 : r.toArray()[0]))).toEqual(Array.from({ length: 20 }, (_, i) => i));
    results.forEach((r) => r.free());
    expect(rt.stats().inUseBytes).toBe(base);
    rt.dispose();
  });

  test('nested scopes: returned tensors move to the scope around, even when both are async', async () => {
    const rt = await Runtime.create({ threads: 0 });
    const base = rt.stats().inUseBytes;
    let inner: Tensor | undefined;
    let outerTemp: Tensor | undefined;
    const kept = await rt.scope(async () => {
      // Two inner scopes at once: each one's result is the outer scope's afterwards.
      const [x, y] = await Promise.all([
        rt.scope(async () => {
          await sleep(5);
          rt.empty([8]);
          return rt.tensor([1], [1]);
        }),
        rt.scope(async () => {
          await sleep(1);
          return { w: rt.tensor([2], [1]) };
        }),
      ]);
      inner = x;
      await sleep(1);
      outerTemp = rt.empty([8]);
      return y.w;
    });
    expect(inner!.isFreed).toBe(true); // not returned by the outer scope
    expect(outerTemp!.isFreed).toBe(true);
    expect(Array.from(kept.toArray())).toEqual([2]);
    kept.free();
    expect(rt.stats().inUseBytes).toBe(base);
    rt.dispose();
  });

  test('a scope of one runtime does not take another runtime\'s tensors; a freed tensor leaves its scope', async () => {
    const a = await Runtime.create({ threads: 0 });
    const b = await Runtime.create({ threads: 0 });
    let fromA: Tensor | undefined;
    const kept = await a.scope(async () => {
      await b.scope(async () => {
        await sleep(1);
        fromA = a.empty([4]); // a's scope owns it, not b's
      });
      expect(fromA!.isFreed).toBe(false);
      const gone = a.empty([4]);
      gone.free();
      return 1;
    });
    expect(kept).toBe(1);
    expect(fromA!.isFreed).toBe(true);
    expect([a.stats().inUseBytes, b.stats().inUseBytes]).toEqual([0, 0]);
    a.dispose();
    b.dispose();
  });

  test('a callback that outlives its scope allocates outside it (the scope around, or none)', async () => {
    const rt = await Runtime.create({ threads: 0 });
    let late: Promise<Tensor> | undefined;
    await rt.scope(() => {
      late = sleep(10).then(() => rt.empty([4]));
    });
    const t = await late!;
    // No open scope owns it: a scope that ends later must not free it.
    await rt.scope(() => sleep(1));
    expect(t.isFreed).toBe(false);
    t.free();
    expect(rt.stats().inUseBytes).toBe(0);
    rt.dispose();
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
