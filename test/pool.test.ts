/**
 * @fileoverview The worker pool: the same answers with 0-3 threads, many interleaved launches,
 * traps and dead workers that reject only their launch, and a process that never disposes.
 */
import { execFileSync } from 'node:child_process';
import { describe, expect, test } from 'vitest';
import { jit, KernelRuntimeError } from '../src/index.js';
import { Runtime } from '../src/runtime/runtime.js';
import { CTL, WorkerPool } from '../src/runtime/pool.js';
import { WORKER_SOURCE } from '../src/runtime/worker-source.js';

const scale = jit(`function scale(X, Out, s, n, B) {
  const i = programId(0) * B + arange(B);
  const m = i < n;
  store(Out, i, load(X, i, m) * s + cast(programId(0), 'f32'), m);
}`, { signature: { X: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', B: 'constexpr' } });

const matmul = jit(`function mm(A, B, C, M, N, K, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    acc = dot(load(A, expandDims(rm, 1) * K + expandDims(rk, 0), expandDims(rm < M, 1) && expandDims(rk < K, 0)),
              load(B, expandDims(rk, 1) * N + expandDims(rn, 0), expandDims(rk < K, 1) && expandDims(rn < N, 0)), acc);
  }
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), acc, expandDims(rm < M, 1) && expandDims(rn < N, 0));
}`, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } });

const spin = jit(`function spin(Out, iters, bad) {
  const p = programId(0);
  let acc = 0.0;
  for (let i = 0; i < iters; i++) { acc = acc + 1.0; }
  store(Out, p, acc + cast(idiv(1, p - bad), 'f32'));
}`, { signature: { Out: 'ptr', iters: 'i32', bad: 'i32' } });

/** `p`, or a rejection if it has not settled within `ms` (a hang fails fast, not at the test timeout). */
const settleWithin = <T>(p: Promise<T>, ms: number): Promise<T> => {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`still pending after ${ms} ms`)), ms)));
  return Promise.race([p, hang]).finally(() => clearTimeout(timer));
};

const rand = (n: number, seed: number): Float32Array => {
  let s = seed;
  return Float32Array.from({ length: n }, () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) - 0.5);
};

describe('pool', () => {
  test('the worker loop and the pool agree on the control block layout', () => {
    for (const key of Object.keys(CTL)) expect(WORKER_SOURCE).toContain(`C.${key}`);
  });

  test('threads 0, 1, 2 and 3, with the caller taking part or not, give identical results', async () => {
    const results: Float32Array[] = [];
    const modes = [{ threads: 0 }, { threads: 1 }, { threads: 2 }, { threads: 3 }, { threads: 1, callerRuns: false }, { threads: 2, callerRuns: false }];
    for (const mode of modes) {
      const rt = await Runtime.create({ ...mode, inlineBelowBytes: 0 });
      const workers = mode.callerRuns === false ? mode.threads : Math.max(0, mode.threads - 1);
      expect(rt.workers).toHaveLength(workers);
      const x = rt.tensor(rand(5000, 1), [5000]);
      const y = rt.empty([5000]);
      await scale.launch({ grid: [40], B: 128 }, x, y, 1.5, 5000);
      const a = rt.tensor(rand(70 * 45, 2), [70, 45]);
      const b = rt.tensor(rand(45 * 33, 3), [45, 33]);
      const c = rt.empty([70, 33]);
      await matmul.launch({ grid: [5, 3], BM: 16, BN: 16, BK: 16 }, a, b, c, 70, 33, 45);
      results.push(Float32Array.from([...y.toArray(), ...c.toArray()]));
      expect(rt.stats().pooled > 0).toBe(workers > 0);
      expect(rt.stats().workerBusyMs).toHaveLength(workers);
      rt.dispose();
    }
    for (const r of results.slice(1)) expect(r).toEqual(results[0]);
  });

  test('100 interleaved launches of different kernels from concurrent callers are all right', async () => {
    const rt = await Runtime.create({ threads: 2, inlineBelowBytes: 0 });
    const jobs: Promise<() => void>[] = [];
    for (let j = 0; j < 100; j++) {
      if (j % 2 === 0) {
        const x = rt.tensor(rand(300, j), [300]);
        const y = rt.empty([300]);
        jobs.push(scale.launch({ grid: [5], B: 64 }, x, y, j, 300).then(() => () => {
          const xs = x.toArray(), ys = y.toArray();
          for (let i = 0; i < 300; i++) expect(ys[i]).toBe(Math.fround(Math.fround(xs[i]! * j) + Math.floor(i / 64)));
        }));
      } else {
        const a = rt.tensor(rand(16 * 8, j), [16, 8]);
        const b = rt.tensor(rand(8 * 16, j + 1), [8, 16]);
        const c = rt.empty([16, 16]);
        jobs.push(matmul.launch({ grid: [2, 2], BM: 8, BN: 8, BK: 8 }, a, b, c, 16, 16, 8).then(() => () => {
          const av = a.toArray(), bv = b.toArray(), cv = c.toArray();
          for (let i = 0; i < 16; i++) for (let q = 0; q < 16; q++) {
            let s = 0;
            for (let k = 0; k < 8; k++) s += av[i * 8 + k]! * bv[k * 16 + q]!;
            expect(Math.abs(cv[i * 16 + q]! - s)).toBeLessThan(1e-5);
          }
        }));
      }
    }
    for (const check of await Promise.all(jobs)) check();
    rt.dispose();
  });

  test('a trap in a worker rejects its launch with the program id; the pool keeps serving', async () => {
    const rt = await Runtime.create({ threads: 2, inlineBelowBytes: 0 });
    const out = rt.zeros([64]);
    const err = await spin.launch({ grid: [64] }, out, 10, 37).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(KernelRuntimeError);
    expect((err as KernelRuntimeError).programId).toEqual([37, 0, 0]);
    expect((err as Error).message).toMatch(/kernel 'spin' trapped in program \(37, 0, 0\)/);
    await spin.launch({ grid: [64] }, out, 10, 1000);
    expect(out.toArray()[5]).toBe(10);
    rt.dispose();
  });

  test('a trap in the caller\'s part rejects its launch the same way; the workers stop; the next launch is right', async () => {
    const rt = await Runtime.create({ threads: 2, inlineBelowBytes: 0 });
    const out = rt.zeros([64]);
    await spin.launch({ grid: [64] }, out, 10, 1000);
    for (let rep = 0; rep < 5; rep++) {
      // The worker is asleep after a pause: the caller runs the first chunks, program 3 among them.
      await new Promise((r) => setTimeout(r, 20));
      const busy = rt.stats().busyMs;
      const err = await spin.launch({ grid: [64] }, out, 10, 3).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(KernelRuntimeError);
      expect((err as KernelRuntimeError).programId).toEqual([3, 0, 0]);
      expect((err as Error).message).toMatch(/kernel 'spin' trapped in program \(3, 0, 0\)/);
      expect(rt.stats().busyMs).toBeGreaterThan(busy);
    }
    await spin.launch({ grid: [64] }, out, 7, 1000);
    expect(out.toArray()[63]).toBe(7);
    rt.dispose();
  });

  test('a worker terminated mid-launch rejects that launch, is replaced, and the next launch is right', async () => {
    // The caller takes no part: while it runs programs its event loop (the timer below) waits.
    const rt = await Runtime.create({ threads: 2, callerRuns: false, inlineBelowBytes: 0 });
    const out = rt.zeros([8]);
    await spin.launch({ grid: [8] }, out, 1, 1000); // compile and install first
    const victim = rt.workers[0]!;
    const pending = spin.launch({ grid: [8] }, out, 20_000_000, 1000);
    setTimeout(() => void victim.terminate(), 20);
    await expect(pending).rejects.toThrow(/worker 0 exited during the launch/);
    expect(rt.workers[0]).not.toBe(victim);
    await spin.launch({ grid: [8] }, out, 3, 1000);
    expect(Array.from(out.toArray())).toEqual([3, 3, 3, 3, 3, 3, 3, 3].map((v, p) => v + (p - 1000 === 0 ? 0 : Math.trunc(1 / (p - 1000)))));
    rt.dispose();
    expect(() => rt.empty([1])).toThrow(/disposed/);
  });

  test('a worker that dies after finishing its part is counted once: the launch fails when the others are done, and the next is whole', async () => {
    const rt = await Runtime.create({ threads: 2, callerRuns: false, inlineBelowBytes: 0 });
    // Program 0 spins long, the others not at all: one worker finishes its part and idles.
    const lopsided = jit(`function lopsided(Out, iters) {
      const p = programId(0);
      let acc = 0.0;
      for (let i = 0; i < where(p == 0, iters, 1); i++) { acc = acc + 1.0; }
      store(Out, p, acc);
    }`, { signature: { Out: 'ptr', iters: 'i32' } });
    const out = rt.zeros([64]);
    await lopsided.launch({ grid: [8] }, out, 16);
    const before = rt.stats().workerBusyMs!;
    const pending = lopsided.launch({ grid: [8] }, out, 400_000_000);
    await new Promise((r) => setTimeout(r, 40));
    const after = rt.stats().workerBusyMs!;
    const idle = after.findIndex((ms, i) => ms !== before[i]);
    void rt.workers[idle]!.terminate();
    await expect(pending).rejects.toThrow(new RegExp(`worker ${idle} exited during the launch`));
    // Rejected only once the survivor was done: program 0 holds its sum (f32: 1.0 additions stop at 2^24).
    expect(out.toArray()[0]).toBe(2 ** 24);
    out.write(new Float32Array(64).fill(-1));
    await lopsided.launch({ grid: [64] }, out, 16);
    expect(Array.from(out.toArray())).toEqual([16, ...new Array(63).fill(1)]);
    rt.dispose();
  });

  test('with the caller taking part, a worker that dies during a launch fails it once the caller has done its part', async () => {
    const rt = await Runtime.create({ threads: 2, inlineBelowBytes: 0 });
    const out = rt.zeros([64]);
    // The same specialisation as the launch below (its iteration count divides by 16 too).
    await spin.launch({ grid: [64] }, out, 16, 1000);
    const victim = rt.workers[0]!;
    void victim.terminate();
    // 64 programs of 2M iterations: the worker is gone long before they are done.
    await expect(spin.launch({ grid: [64] }, out, 2_000_000, 1000)).rejects.toThrow(/worker 0 exited during the launch/);
    expect(rt.workers[0]).not.toBe(victim);
    await spin.launch({ grid: [64] }, out, 48, 1000);
    expect(out.toArray()[10]).toBe(48);
    rt.dispose();
  });

  test('dispose during a pooled launch rejects it and every queued launch at once; later launches are refused', async () => {
    const rt = await Runtime.create({ threads: 2, callerRuns: false, inlineBelowBytes: 0 });
    const out = rt.zeros([8]);
    await spin.launch({ grid: [8] }, out, 1, 1000); // compile and install first
    const workers = [...rt.workers];
    const exited = workers.map((w) => new Promise((r) => w.once('exit', r)));
    const t0 = performance.now();
    // Seconds of work each; the first is running when dispose lands, the others are queued.
    const launches = [0, 1, 2].map(() => spin.launch({ grid: [8] }, out, 50_000_000, 1000).then(() => 'resolved', (e: unknown) => e as Error));
    setTimeout(() => rt.dispose(), 20);
    const [running, ...queued] = await settleWithin(Promise.all(launches), 5000);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(running).toBeInstanceOf(KernelRuntimeError);
    expect((running as Error).message).toBe("kernel 'spin': the runtime was disposed during the launch, which was abandoned");
    // The queued ones wait their turn (issue order) and then find the runtime disposed.
    for (const q of queued) expect((q as Error).message).toMatch(/^cannot launch kernel 'spin': this runtime was disposed/);
    await settleWithin(Promise.all(exited), 5000);
    await expect(spin.launch({ grid: [8] }, out, 1, 1000)).rejects.toThrow(/^cannot launch kernel 'spin': this runtime was disposed \(rt\.dispose\(\) was called before\)/);
  });

  test('dispose while the first launch is still installing its kernel on the workers rejects it', async () => {
    // Warm the compile cache on another runtime, so the launch below goes straight to set-up.
    const warm = await Runtime.create({ threads: 0 });
    await spin.launch({ grid: [8] }, warm.zeros([8]), 1, 1000);
    warm.dispose();
    // Slow workers (see the race test below): a set-up ack is outstanding for a while.
    WorkerPool.testPauseAfterDrainMs = 200;
    let rt: Runtime;
    try {
      rt = await Runtime.create({ threads: 3, inlineBelowBytes: 0 });
    } finally {
      WorkerPool.testPauseAfterDrainMs = 0;
    }
    const slots = (rt as unknown as { pool: { slots: { acks: Map<number, unknown> }[] } }).pool.slots;
    const launch = spin.launch({ grid: [8] }, rt.zeros([8]), 1, 1000).then(() => 'resolved', (e: unknown) => e as Error);
    while (!slots.some((s) => s.acks.size > 0)) await new Promise((r) => setImmediate(r));
    rt.dispose();
    const err = await settleWithin(launch, 5000);
    expect((err as Error).message).toBe("kernel 'spin': the runtime was disposed during the launch, which was abandoned");
  });

  test('set-up messages and launches that race a slow worker neither deadlock nor run a launch twice', async () => {
    // Workers that sleep after each drain of their messages: the pool's next message, or the
    // launch itself, lands in that window (set-up for a new kernel is two messages, scratch
    // then module; the launch follows the second ack at once).
    WorkerPool.testPauseAfterDrainMs = 25;
    let rt: Runtime;
    try {
      rt = await Runtime.create({ threads: 3, callerRuns: false, inlineBelowBytes: 0 });
    } finally {
      WorkerPool.testPauseAfterDrainMs = 0;
    }
    const pool = (rt as unknown as { pool: WorkerPool }).pool;
    // A worker that ran a launch twice counts itself finished twice, after the launch's end.
    const counted = async (): Promise<{ finished: number; expected: number }> => {
      await new Promise((r) => setTimeout(r, 60));
      return pool.finishedCounts;
    };
    try {
      const a = rt.tensor(rand(40 * 24, 4), [40, 24]);
      const b = rt.tensor(rand(24 * 40, 5), [24, 40]);
      const want = new Float64Array(40 * 40);
      for (let i = 0; i < 40; i++) for (let k = 0; k < 24; k++) for (let j = 0; j < 40; j++) want[i * 40 + j]! += a.toArray()[i * 24 + k]! * b.toArray()[k * 40 + j]!;
      // Each tile shape is a new module with more scratch than the last.
      for (const T of [4, 8, 16, 32]) {
        const c = rt.zeros([40, 40]);
        await matmul.launch({ grid: [Math.ceil(40 / T), Math.ceil(40 / T)], BM: T, BN: T, BK: 8 }, a, b, c, 40, 40, 24);
        expect(await counted()).toEqual({ finished: 3, expected: 3 });
        const got = c.toArray();
        let err = 0;
        for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
        expect(err).toBeLessThan(1e-5);
        const y = rt.empty([300]);
        await scale.launch({ grid: [10], B: 32 }, a, y, 2, 300);
        expect(await counted()).toEqual({ finished: 3, expected: 3 });
        expect(y.toArray()[299]).toBe(Math.fround(a.toArray()[299]! * 2 + 9));
      }
    } finally {
      rt.dispose();
    }
  }, 30_000);

  test('a process that never disposes its runtime exits by itself', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', new URL('./fixtures/no-dispose.ts', import.meta.url).pathname], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(out.trim().split('\n').pop()).toBe('ok 999');
  });
});

describe('inline choice', () => {
  test('launches over less than inlineBelowBytes run on the calling thread, larger ones on the pool', async () => {
    const copy = jit(`function copy(X, Y, n, B) {
      const i = programId(0) * B + arange(B);
      store(Y, i, load(X, i, i < n), i < n);
    }`, { signature: { X: 'ptr', Y: 'ptr', n: 'i32', B: 'constexpr' } });
    const rt = await Runtime.create({ threads: 2, inlineBelowBytes: 4096 });
    try {
      const run = async (n: number): Promise<void> => {
        const x = rt.tensor(Float32Array.from({ length: n }, (_, i) => i), [n]), y = rt.empty([n]);
        await copy.launch({ grid: [Math.ceil(n / 64)], B: 64 }, x, y, n);
        expect(Array.from(y.toArray())).toEqual(Array.from(x.toArray()));
      };
      const s0 = rt.stats();
      await run(256); // 2 KiB of tensors
      const s1 = rt.stats();
      expect([s1.inline - s0.inline, s1.pooled - s0.pooled]).toEqual([1, 0]);
      await run(1024); // 8 KiB
      const s2 = rt.stats();
      expect([s2.inline - s1.inline, s2.pooled - s1.pooled]).toEqual([0, 1]);
      await expect(Runtime.create({ inlineBelowBytes: -1 })).rejects.toThrow(/inlineBelowBytes must be a non-negative integer number of bytes \(or Infinity\), got -1/);
    } finally {
      rt.dispose();
    }
  });
});
