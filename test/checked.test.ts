/**
 * @fileoverview Checked launches: every load and store is compared with its tensor's size. Just
 * past the end, far past, negative offsets, scalar and gathered accesses, stores that would
 * land in a neighbour (which stays untouched), masked lanes that must not fault, on the calling
 * thread and on the pool; the runtime-wide switch; checked code only when asked.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { jit, KernelCompileError, KernelRuntimeError, type BoundsFault } from '../src/index.js';
import { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/runtime/tensor.js';

/** Copy with a shift: `shift` moves every access, `n` masks (ALL: no mask at all). */
const copy = jit(`function copy(X, Out, n, shift, BLOCK, MASKED) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  if (MASKED) {
    const m = i < n;
    store(Out, i, load(X, i + shift, m), m);
  } else {
    store(Out, i, load(X, i + shift));
  }
}`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', shift: 'i32', BLOCK: 'constexpr', MASKED: 'constexpr' } });

/** Stores at i + shift: a store that would leave Out. */
const put = jit(`function put(Out, n, shift, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i + shift, cast(i, 'f32') + 1.0, i < n);
}`, { signature: { Out: 'ptr', n: 'i32', shift: 'i32', BLOCK: 'constexpr' } });

/** Scalar accesses (rank-0 offsets). */
const scalar = jit(`function scalar(X, Out, at, to) {
  store(Out, to, load(X, at) * 2.0);
}`, { signature: { X: 'ptr', Out: 'ptr', at: 'i32', to: 'i32' } });

/** Non-contiguous lanes: a strided gather and a strided scatter. */
const strided = jit(`function strided(X, Out, stride, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i * stride, load(X, i * stride) + 1.0);
}`, { signature: { X: 'ptr', Out: 'ptr', stride: 'i32', BLOCK: 'constexpr' } });

/** Masked-off lanes carry wild offsets (far past the end and negative): only real lanes count. */
const wild = jit(`function wild(X, Out, Out2, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  const far = where(m, i, 1000000000);
  const neg = where(m, i, -1000000000);
  const x = load(X, far, m, 7.0) + load(X, neg * 1, m);
  store(Out, neg, x, m);
  store(Out2, (i * 3) % 64 + where(m, 0, 1000000000), x, m);
}`, { signature: { X: 'ptr', Out: 'ptr', Out2: 'ptr', n: 'i32', BLOCK: 'constexpr' } });

/** 2-D tiles through dot: loads feed scratch buffers, the store is a 2-D tile. */
const mm = jit(`function mm(A, B, C, M, N, K, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    acc = dot(load(A, expandDims(rm, 1) * K + expandDims(rk, 0)), load(B, expandDims(rk, 1) * N + expandDims(rn, 0)), acc);
  }
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), acc);
}`, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } });

const iota = (n: number, from = 0): Float32Array => Float32Array.from({ length: n }, (_, i) => from + i);

/** The launch's rejection, which must be a bounds fault. */
async function fault(p: Promise<void>): Promise<KernelRuntimeError & { fault: BoundsFault }> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(KernelRuntimeError);
  const k = err as KernelRuntimeError;
  expect(k.fault, k.message).toBeDefined();
  return k as KernelRuntimeError & { fault: BoundsFault };
}

/** Bytes of memory from `lo` to `hi` except [skipLo, skipHi). */
function bytesAround(rt: Runtime, lo: Tensor, hi: Tensor, skip: Tensor): Uint8Array {
  const all = new Uint8Array(rt.memory.buffer);
  const a = all.slice(lo.byteOffset, skip.byteOffset);
  const b = all.slice(skip.byteOffset + skip.byteLength, hi.byteOffset + hi.byteLength);
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

const MODES = [
  { mode: 'inline', opts: { threads: 0 } },
  { mode: 'pool', opts: { threads: 2, inlineBelowBytes: 0 } },
] as const;

describe.each(MODES)('checked launches ($mode)', ({ mode, opts }) => {
  let rt: Runtime;
  beforeAll(async () => {
    rt = await Runtime.create(opts);
  });
  afterAll(() => rt.dispose());

  test('in-bounds launches run and agree with unchecked ones', async () => {
    const x = rt.tensor(iota(100), [100]);
    const a = rt.zeros([100]);
    const b = rt.zeros([100]);
    await copy.launch({ grid: [4], BLOCK: 32, MASKED: true, checked: true }, x, a, 100, 0);
    await copy.launch({ grid: [4], BLOCK: 32, MASKED: true }, x, b, 100, 0);
    expect(Array.from(a.toArray())).toEqual(Array.from(iota(100)));
    expect(b.toArray()).toEqual(a.toArray());
    if (mode === 'pool') expect(rt.stats().pooled).toBeGreaterThan(0);
  });

  test('a load just past the end names the kernel, place, program, offset and size', async () => {
    const x = rt.tensor(iota(100), [100]);
    const out = rt.zeros([128]);
    const err = await fault(copy.launch({ grid: [4], BLOCK: 32, MASKED: false, checked: true }, x, out, 100, 0));
    expect(err.kernelName).toBe('copy');
    expect(err.programId).toEqual([3, 0, 0]);
    expect(err.fault).toEqual({ kind: 'load', tensor: 'X', offset: 100, size: 100, line: 7, column: 19 });
    expect(err.message).toContain("kernel 'copy' program (3, 0, 0) at 7:19: out-of-bounds load from tensor 'X' at offset 100, outside [0, 100)");
    // The code frame points at the load.
    expect(err.message).toContain('> 7 |     store(Out, i, load(X, i + shift));');
    expect(err.message).toMatch(/\n {4}\| {19}\^/);
  });

  test('the interpreter reports the same fault, frame and place', async () => {
    const x = rt.tensor(iota(100), [100]);
    const out = rt.zeros([128]);
    const err = await fault(copy.interpret({ grid: [4], BLOCK: 32, MASKED: false }, x, out, 100, 0));
    expect(err.programId).toEqual([3, 0, 0]);
    expect(err.fault).toEqual({ kind: 'load', tensor: 'X', offset: 100, size: 100, line: 7, column: 19 });
    expect(err.message).toContain('> 7 |     store(Out, i, load(X, i + shift));');
  });

  test('through the mask, one element past the end', async () => {
    const x = rt.tensor(iota(100), [100]);
    const out = rt.zeros([100]);
    const err = await fault(copy.launch({ grid: [4], BLOCK: 32, MASKED: true, checked: true }, x, out, 100, 1));
    expect(err.programId).toEqual([3, 0, 0]);
    expect(err.fault).toMatchObject({ kind: 'load', tensor: 'X', offset: 100, size: 100, line: 5 });
  });

  test('far past the end and negative offsets', async () => {
    const x = rt.tensor(iota(64), [64]);
    const out = rt.zeros([64]);
    // Both programs fault here; on the pool either may be the first to report.
    let err = await fault(copy.launch({ grid: [2], BLOCK: 32, MASKED: true, checked: true }, x, out, 64, 1 << 28));
    const p = err.programId![0]!;
    expect([0, 1]).toContain(p);
    expect(err.programId).toEqual([p, 0, 0]);
    expect(err.fault).toMatchObject({ tensor: 'X', offset: (1 << 28) + 32 * p, size: 64 });
    err = await fault(copy.launch({ grid: [2], BLOCK: 32, MASKED: true, checked: true }, x, out, 64, -3));
    expect(err.fault).toMatchObject({ tensor: 'X', offset: -3, size: 64 });
    expect(err.message).toContain('at offset -3, outside [0, 64)');
    err = await fault(copy.launch({ grid: [2], BLOCK: 32, MASKED: true, checked: true }, x, out, 64, -(2 ** 31)));
    expect(err.fault.offset).toBe(-(2 ** 31) + 32 * err.programId![0]!);
  });

  test('an out-of-bounds store writes no byte outside its tensor', async () => {
    for (const shift of [2, -2, 1000, -1000]) {
      const before = rt.tensor(new Float32Array(32).fill(-1), [32]);
      const out = rt.zeros([30]);
      const after = rt.tensor(new Float32Array(32).fill(-2), [32]);
      expect(before.byteOffset).toBeLessThan(out.byteOffset);
      expect(after.byteOffset).toBeGreaterThan(out.byteOffset);
      const around = bytesAround(rt, before, after, out);
      const err = await fault(put.launch({ grid: [2], BLOCK: 16, checked: true }, out, 30, shift));
      expect(err.fault).toMatchObject({ kind: 'store', tensor: 'Out', size: 30, line: 3, column: 3 });
      expect(err.fault.offset < 0 || err.fault.offset >= 30).toBe(true);
      expect(bytesAround(rt, before, after, out)).toEqual(around);
      for (const t of [before, out, after]) t.free();
    }
  });

  test('a partly outside vector store is refused whole: the lanes inside are not written either', async () => {
    const out = rt.zeros([30]);
    const after = rt.tensor(new Float32Array(16).fill(-2), [16]);
    // Lanes 28..31 of program 1: 28 and 29 are inside, 30 and 31 are not.
    const err = await fault(put.launch({ grid: [2], BLOCK: 16, checked: true }, out, 32, 0));
    expect(err.programId).toEqual([1, 0, 0]);
    expect(err.fault.offset).toBe(30);
    const got = out.toArray();
    expect(got[27]).toBe(28);
    expect(got[28]).toBe(0);
    expect(got[29]).toBe(0);
    expect(Array.from(after.toArray())).toEqual(new Array(16).fill(-2));
  });

  test('scalar loads and stores', async () => {
    const x = rt.tensor(iota(10), [10]);
    const out = rt.zeros([10]);
    await scalar.launch({ grid: [1], checked: true }, x, out, 9, 0);
    expect(out.toArray()[0]).toBe(18);
    let err = await fault(scalar.launch({ grid: [1], checked: true }, x, out, 10, 0));
    expect(err.fault).toMatchObject({ kind: 'load', tensor: 'X', offset: 10, size: 10, line: 2, column: 18 });
    err = await fault(scalar.launch({ grid: [1], checked: true }, x, out, 0, -1));
    expect(err.fault).toMatchObject({ kind: 'store', tensor: 'Out', offset: -1, size: 10, line: 2, column: 3 });
  });

  test('gathers and scatters check every lane', async () => {
    const x = rt.tensor(iota(50), [50]);
    const out = rt.zeros([50]);
    await strided.launch({ grid: [1], BLOCK: 16, checked: true }, x, out, 3);
    expect(out.toArray()[45]).toBe(46);
    const err = await fault(strided.launch({ grid: [1], BLOCK: 16, checked: true }, x, out, 4));
    // Lane 13 (offset 52) is the first outside.
    expect(err.fault).toMatchObject({ kind: 'load', offset: 52, size: 50 });
  });

  test('masked-off lanes are not checked, however wild their offsets', async () => {
    const x = rt.tensor(iota(64), [64]);
    const out = rt.zeros([64]);
    const out2 = rt.zeros([64]);
    await wild.launch({ grid: [3], BLOCK: 32, checked: true }, x, out, out2, 50);
    const got = out.toArray();
    expect(got[10]).toBe(20);
    expect(got[49]).toBe(98);
    expect(got[55]).toBe(0);
    // Lane i = 11 lands at 33 through the gathered, masked scatter; i = 61 is masked off.
    expect(out2.toArray()[33]).toBe(22);
    expect(out2.toArray()[(61 * 3) % 64]).toBe(0);
  });

  test('2-D tiles through dot', async () => {
    const M = 8, N = 8, K = 8;
    const a = rt.tensor(iota(M * K), [M, K]), b = rt.tensor(iota(K * N), [K, N]);
    const c1 = rt.zeros([M, N]), c2 = rt.zeros([M, N]);
    await mm.launch({ grid: [2, 2], BM: 4, BN: 4, BK: 4, checked: true }, a, b, c1, M, N, K);
    await mm.launch({ grid: [2, 2], BM: 4, BN: 4, BK: 4 }, a, b, c2, M, N, K);
    expect(c1.toArray()).toEqual(c2.toArray());
    expect(c1.toArray()[0]).toBe(Array.from({ length: K }, (_, k) => k * k * N).reduce((s, v) => s + v, 0));
    // K = 12 with 8x8 tensors: the loop reads past A's rows and B's end.
    const err = await fault(mm.launch({ grid: [2, 2], BM: 4, BN: 4, BK: 4, checked: true }, a, b, c1, M, N, 12));
    expect(err.fault.size).toBe(64);
    expect(['A', 'B']).toContain(err.fault.tensor);
  });

  test('a checked kernel that traps for another reason reports a plain trap', async () => {
    const div = jit(`function div(Out, d) { store(Out, 0, cast(idiv(7, d), 'f32')); }`, { signature: { Out: 'ptr', d: 'i32' } });
    const out = rt.zeros([4]);
    // A bounds fault first, so a stale record would be there to misread.
    await fault(scalar.launch({ grid: [1], checked: true }, out, out, 4, 0));
    const err = await div.launch({ grid: [1], checked: true }, out, 0).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRuntimeError);
    expect((err as KernelRuntimeError).fault).toBeUndefined();
    expect((err as KernelRuntimeError).message).toMatch(/trapped in program \(0, 0, 0\)/);
  });

  test('the runtime keeps serving after a fault', async () => {
    const x = rt.tensor(iota(40), [40]);
    const out = rt.zeros([40]);
    await fault(copy.launch({ grid: [2], BLOCK: 32, MASKED: false, checked: true }, x, out, 40, 0));
    await copy.launch({ grid: [2], BLOCK: 32, MASKED: true, checked: true }, x, out, 40, 0);
    expect(Array.from(out.toArray())).toEqual(Array.from(iota(40)));
  });
});

describe('the runtime-wide switch', () => {
  test('Runtime.create({ checked }) and rt.checked; a launch option overrides them', async () => {
    const rt = await Runtime.create({ threads: 0, checked: true });
    try {
      expect(rt.checked).toBe(true);
      const x = rt.tensor(iota(100), [100]);
      const out = rt.zeros([128]);
      const err = await fault(copy.launch({ grid: [4], BLOCK: 32, MASKED: false }, x, out, 100, 0));
      expect(err.fault.offset).toBe(100);
      // Unchecked, the same launch reads whatever follows X and does not fail.
      await copy.launch({ grid: [4], BLOCK: 32, MASKED: false, checked: false }, x, out, 100, 0);
      expect(out.toArray()[99]).toBe(99);
      rt.checked = false;
      await copy.launch({ grid: [4], BLOCK: 32, MASKED: false }, x, out, 100, 0);
      rt.checked = true;
      await fault(copy.launch({ grid: [4], BLOCK: 32, MASKED: false }, x, out, 100, 0));
    } finally {
      rt.dispose();
    }
  });

  test('checked is part of the specialisation: one compile each way, the reason says so', async () => {
    const k = jit(`function twice(X, Out, BLOCK) {
      const i = programId(0) * BLOCK + arange(BLOCK);
      store(Out, i, load(X, i) * 2.0);
    }`, { signature: { X: 'ptr', Out: 'ptr', BLOCK: 'constexpr' } });
    const rt = await Runtime.create({ threads: 0 });
    try {
      const x = rt.tensor(iota(16), [16]);
      const out = rt.zeros([16]);
      await k.launch({ grid: [1], BLOCK: 16 }, x, out);
      await k.launch({ grid: [1], BLOCK: 16, checked: true }, x, out);
      await k.launch({ grid: [1], BLOCK: 16, checked: false }, x, out);
      await k.launch({ grid: [1], BLOCK: 16, checked: true }, x, out);
      expect(k.compileCount).toBe(2);
      expect(k.compileLog[1]!.reason).toBe('checked: unchecked -> bounds-checked');
      expect(out.toArray()[15]).toBe(30);
      // Unchecked code has no check in it: no trap and no hidden size params.
      const plain = await k.wat({ grid: [1], BLOCK: 16 }, x, out);
      const checked = await k.wat({ grid: [1], BLOCK: 16, checked: true }, x, out);
      expect(plain).not.toContain('unreachable');
      expect(checked).toContain('unreachable');
      expect((await k.prepare({ grid: [1], BLOCK: 16 }, x, out)).paramTypes).toEqual(['i32', 'i32']);
      expect((await k.prepare({ grid: [1], BLOCK: 16, checked: true }, x, out)).paramTypes).toEqual(['i32', 'i32', 'i32', 'i32']);
    } finally {
      rt.dispose();
    }
  });

  test('bad values are refused', async () => {
    await expect(Runtime.create({ threads: 0, checked: 'yes' as never })).rejects.toThrow(/checked must be a boolean/);
    const rt = await Runtime.create({ threads: 0 });
    try {
      const x = rt.tensor(iota(4), [4]);
      await expect(copy.launch({ grid: [1], BLOCK: 4, MASKED: true, checked: 1 as never }, x, x, 4, 0)).rejects.toThrow(/'checked' must be a boolean/);
    } finally {
      rt.dispose();
    }
  });
});

describe('places inside helpers', () => {
  const helper = `function ld(P, off) {
  // the access is on line 3 of the helper
  return load(P, off);
}`;
  const kernel = `function hk(X, Out, BLOCK) {
  const i = programId(1) * BLOCK + arange(BLOCK);

  store(Out, i, ld(X, i));
}`;

  test('a fault in a helper names the helper and frames its own source (checked launch and interpreter)', async () => {
    const rt = await Runtime.create({ threads: 0, checked: true });
    const k = jit(kernel, { signature: { X: 'ptr', Out: 'ptr', BLOCK: 'constexpr' }, helpers: { ld: helper } });
    const x = rt.tensor(new Float32Array(100).fill(1), [100]), o = rt.empty([512]);
    for (const run of [k.launch.bind(k), k.interpret.bind(k)]) {
      const err = await run({ grid: [1, 2], BLOCK: 256 }, x, o).catch((e: unknown) => e) as KernelRuntimeError;
      expect(err).toBeInstanceOf(KernelRuntimeError);
      expect(err.message).toMatch(/^kernel 'hk' program \(0, 0, 0\) in helper 'ld' at 3:10: (out-of-bounds )?load from tensor 'X' at offset 100/);
      expect(err.message).toContain('> 3 |   return load(P, off);');
      expect(err.fault).toMatchObject({ kind: 'load', tensor: 'X', line: 3, column: 10, helper: 'ld' });
    }
    rt.dispose();
  });

  test('a compile error in a helper\'s body is placed at the call, with the helper\'s own line', async () => {
    const bad = `function ld(P, off) {
  // a builtin used as a value on line 3
  return load(P, off) + load;
}`;
    const rt = await Runtime.create({ threads: 0 });
    const k = jit(kernel, { signature: { X: 'ptr', Out: 'ptr', BLOCK: 'constexpr' }, helpers: { ld: bad } });
    const err = await k.ir({ grid: [1, 1], BLOCK: 16 }, rt.empty([16]), rt.empty([16])).catch((e: unknown) => e) as KernelCompileError;
    expect(err).toBeInstanceOf(KernelCompileError);
    expect(err.message).toMatch(/E_TYPE at hk:4:17: in helper 'ld' \(its line 3:25\): 'load' is a function/);
    expect(err.message).toContain('> 4 |   store(Out, i, ld(X, i));');
    rt.dispose();
  });
});
