/**
 * @fileoverview The profiler: per-kernel summary, Chrome trace (valid JSON, the kernels that
 * ran, a track per worker whose programs add up to each launch's grid), nothing recorded
 * outside `rt.profile`, no nesting.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { jit, ops, Runtime, type TraceEvent } from '../src/index.js';

const scale = jit(`function scale(X, Out, s, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i, load(X, i, i < n) * s, i < n);
}`, { signature: { X: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', BLOCK: 'constexpr' } });
const addOne = jit(`function addOne(X, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(X, i, load(X, i, i < n) + 1.0, i < n);
}`, { signature: { X: 'ptr', n: 'i32', BLOCK: 'constexpr' }, work: ({ params }) => ({ bytes: 8 * params[1]! }) });

// Small launches go to the pool too; three threads: two workers and the caller.
const pooled = Runtime.create({ threads: 3, inlineBelowBytes: 0 });
const inline = Runtime.create({ threads: 0 });
afterAll(async () => {
  (await pooled).dispose();
  (await inline).dispose();
});

describe('rt.profile', () => {
  test('summarises each kernel and exports a trace with a track per worker', async () => {
    const rt = await pooled;
    const n = 1000;
    const x = rt.tensor(new Float32Array(n).fill(1), [n]);
    const y = rt.empty([n]);
    await scale.launch({ grid: [8], BLOCK: 128 }, x, y, 3, n); // compiled outside the profile
    const p = await rt.profile(async () => {
      for (let i = 0; i < 3; i++) await scale.launch({ grid: [8], BLOCK: 128 }, x, y, 3, n);
      for (let i = 0; i < 2; i++) await addOne.launch({ grid: [8], BLOCK: 128 }, x, n);
      return 'done';
    }, { work: { scale: ({ params }) => ({ flops: params[3]!, bytes: 8 * params[3]! }) } });
    expect(p.result).toBe('done');
    expect(y.toArray()[999]).toBe(3);
    expect(x.toArray()[0]).toBe(3);
    const k = p.kernels;
    expect(k.map((r) => [r.kernel, r.calls, r.programs]).sort()).toEqual([['addOne', 2, 16], ['scale', 3, 24]]);
    const s = k.find((r) => r.kernel === 'scale')!;
    expect(s.medianMs).toBeGreaterThan(0);
    expect(s.totalMs).toBeGreaterThanOrEqual(s.medianMs);
    expect(s.flops).toBe(3000);
    expect(s.bytes).toBe(24000);
    expect(s.gbps).toBeCloseTo(24000 / s.totalMs / 1e6, 9);
    // addOne states its own work (bytes only) in jit's options.
    const a = k.find((r) => r.kernel === 'addOne')!;
    expect([a.flops, a.gflops, a.bytes]).toEqual([null, null, 16000]);
    expect(a.gbps).toBeCloseTo(16000 / a.totalMs / 1e6, 9);
    expect(p.table()).toMatch(/^kernel\s+calls\s+total ms\s+median ms\s+GFLOP\/s\s+GB\/s\n/);

    const trace = JSON.parse(JSON.stringify(p.trace())) as { traceEvents: TraceEvent[]; displayTimeUnit: string };
    const names = trace.traceEvents.filter((e) => e.name === 'thread_name').map((e) => [e.tid, e.args!.name]);
    expect(names).toEqual([[0, 'caller'], [1, 'worker 0'], [2, 'worker 1']]);
    const spans = trace.traceEvents.filter((e) => e.ph === 'X');
    for (const e of spans) {
      expect(e.pid).toBe(1);
      expect(Number.isFinite(e.ts) && e.ts! >= 0).toBe(true);
      expect(Number.isFinite(e.dur) && e.dur! >= 0).toBe(true);
    }
    const caller = spans.filter((e) => e.tid === 0 && e.cat === 'launch');
    expect(caller.map((e) => e.name)).toEqual(['scale', 'scale', 'scale', 'addOne', 'addOne']);
    // Launches on the caller's track do not overlap (each awaited before the next).
    for (let i = 1; i < caller.length; i++) expect(caller[i]!.ts!).toBeGreaterThanOrEqual(caller[i - 1]!.ts! + caller[i - 1]!.dur! - 50);
    // Every launch's programs are accounted for by the parts of the caller (inside its launch, on
    // its track) and of each worker (clocks of different threads agree to a few µs; 50 µs of slack).
    const parts = spans.filter((e) => e.cat === 'programs');
    expect(parts.length).toBe(15);
    for (let i = 0; i < 5; i++) {
      const mine = parts.slice(3 * i, 3 * i + 3);
      expect(mine.map((e) => e.tid).sort()).toEqual([0, 1, 2]);
      expect(mine.reduce((t, e) => t + (e.args!.programs as number), 0)).toBe(8);
      for (const w of mine) {
        expect(w.name).toBe(caller[i]!.name);
        expect(w.ts!).toBeGreaterThanOrEqual(caller[i]!.ts! - 50);
        expect(w.ts! + w.dur!).toBeLessThanOrEqual(caller[i]!.ts! + caller[i]!.dur! + 50);
      }
    }
  });

  test('records nothing outside a profile; profiles do not nest; inline runtimes have the caller track only', async () => {
    const rt = await inline;
    const x = rt.tensor(new Float32Array(64), [64]);
    await addOne.launch({ grid: [1], BLOCK: 64 }, x, 64);
    const p = await rt.profile(async () => {
      await addOne.launch({ grid: [1], BLOCK: 64 }, x, 64);
      await expect(rt.profile(() => 0)).rejects.toThrow(/already being profiled/);
    });
    await addOne.launch({ grid: [1], BLOCK: 64 }, x, 64);
    expect(x.toArray()[0]).toBe(3);
    expect(p.launches).toHaveLength(1);
    expect(p.launches[0]!.pooled).toBe(false);
    const t = p.trace();
    expect(t.traceEvents.filter((e) => e.ph === 'X').map((e) => [e.tid, e.name])).toEqual([[0, 'addOne']]);
    expect(t.traceEvents.filter((e) => e.name === 'thread_name')).toHaveLength(1);
    const again = await rt.profile(() => undefined);
    expect(again.launches).toEqual([]);
    expect(again.trace().traceEvents.filter((e) => e.ph === 'X')).toEqual([]);
  });
});

test('ops.matmul states its work: the profile has GEMM and GEMV flops without a work option', async () => {
  const rt = await inline;
  const a = rt.zeros([2, 32, 48]), b = rt.zeros([48, 40]), v = rt.zeros([1, 48]);
  const p = await rt.profile(async () => {
    await ops.matmul(a, b);
    await ops.matmul(v, b);
  });
  const by = Object.fromEntries(p.kernels.map((r) => [r.kernel, r.flops]));
  expect(by).toEqual({ gemm: 2 * 2 * 32 * 40 * 48, gemv: 2 * 40 * 48 });
});
