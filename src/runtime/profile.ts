/**
 * @fileoverview In-process profiling: what `rt.profile(fn)` records while `fn` runs (every
 * launch with its wall time on the caller and each worker's part in it), the per-kernel
 * summary (calls, total and median ms, GFLOP/s and GB/s where the work is known) and a Chrome
 * trace (chrome://tracing, Perfetto) with one track for the caller and one per worker. When no
 * profile is running the runtime does one field check per launch and nothing else.
 */
import type { WorkerSpan } from './pool.js';

/** Work of one launch, for rates: flops and bytes moved. */
export interface LaunchWork {
  readonly flops?: number;
  readonly bytes?: number;
}

/** Computes a launch's work from its grid and scalar/pointer params (in kernel order, constexprs excluded). */
export type WorkFn = (launch: { readonly grid: readonly [number, number, number]; readonly params: readonly number[] }) => LaunchWork;

/** Options of `rt.profile`. */
export interface ProfileOptions {
  /** Work estimators by kernel name, for GFLOP/s and GB/s (they override a kernel's own `work`). */
  readonly work?: Readonly<Record<string, WorkFn>>;
}

/** One launch as recorded. */
export interface LaunchRecord {
  readonly kernel: string;
  /** Epoch ms on the caller: from the call to the end of the launch. */
  readonly start: number;
  readonly end: number;
  readonly grid: readonly [number, number, number];
  readonly pooled: boolean;
  readonly workers: readonly WorkerSpan[];
  readonly work: LaunchWork | undefined;
  readonly error?: string;
}

/** Per-kernel summary. */
export interface KernelProfile {
  readonly kernel: string;
  readonly calls: number;
  readonly totalMs: number;
  readonly medianMs: number;
  readonly programs: number;
  readonly flops: number | null;
  readonly bytes: number | null;
  readonly gflops: number | null;
  readonly gbps: number | null;
}

/** A Chrome trace event (the subset used here). */
export interface TraceEvent {
  readonly name: string;
  readonly ph: 'X' | 'M';
  readonly pid: number;
  readonly tid: number;
  readonly ts?: number;
  readonly dur?: number;
  readonly cat?: string;
  readonly args?: Record<string, unknown>;
}

/** Records launches; the runtime holds one while a profile runs. */
export class Profiler {
  readonly launches: LaunchRecord[] = [];
  constructor(private readonly opts: ProfileOptions, readonly workers: number) {}

  /** @internal Called by the runtime after each launch. */
  record(kernel: string, start: number, end: number, grid: readonly [number, number, number], params: readonly number[], pooled: boolean, workers: readonly WorkerSpan[], error?: unknown, own?: WorkFn): void {
    const fn = this.opts.work?.[kernel] ?? own;
    this.launches.push({
      kernel, start, end, grid: [...grid] as [number, number, number], pooled, workers,
      work: fn ? fn({ grid, params }) : undefined,
      ...(error === undefined ? {} : { error: error instanceof Error ? error.message : String(error) }),
    });
  }
}

/** The result of `rt.profile(fn)`. */
export class Profile<T> {
  /** `workers`: the pool's worker threads (each gets a track). */
  constructor(readonly result: T, readonly launches: readonly LaunchRecord[], readonly workers: number) {}

  /** One row per kernel, in order of total time (largest first). */
  get kernels(): KernelProfile[] {
    const by = new Map<string, LaunchRecord[]>();
    for (const l of this.launches) {
      const list = by.get(l.kernel) ?? [];
      list.push(l);
      by.set(l.kernel, list);
    }
    const rows: KernelProfile[] = [];
    for (const [kernel, list] of by) {
      const ms = list.map((l) => l.end - l.start).sort((a, b) => a - b);
      const totalMs = ms.reduce((a, b) => a + b, 0);
      const n = ms.length;
      const medianMs = n % 2 ? ms[(n - 1) / 2]! : (ms[n / 2 - 1]! + ms[n / 2]!) / 2;
      const known = list.every((l) => l.work);
      const flops = known && list.every((l) => l.work!.flops !== undefined) ? list.reduce((a, l) => a + l.work!.flops!, 0) : null;
      const bytes = known && list.every((l) => l.work!.bytes !== undefined) ? list.reduce((a, l) => a + l.work!.bytes!, 0) : null;
      rows.push({
        kernel, calls: n, totalMs, medianMs,
        programs: list.reduce((a, l) => a + l.grid[0] * l.grid[1] * l.grid[2], 0),
        flops, bytes,
        gflops: flops !== null && totalMs > 0 ? flops / totalMs / 1e6 : null,
        gbps: bytes !== null && totalMs > 0 ? bytes / totalMs / 1e6 : null,
      });
    }
    return rows.sort((a, b) => b.totalMs - a.totalMs);
  }

  /** The summary as a text table. */
  table(): string {
    const rows = [['kernel', 'calls', 'total ms', 'median ms', 'GFLOP/s', 'GB/s']];
    for (const k of this.kernels) {
      rows.push([k.kernel, String(k.calls), k.totalMs.toFixed(3), k.medianMs.toFixed(3), k.gflops === null ? '-' : k.gflops.toFixed(1), k.gbps === null ? '-' : k.gbps.toFixed(2)]);
    }
    const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    return rows.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join('  ')).join('\n') + '\n';
  }

  /**
   * Chrome trace JSON (the object; `JSON.stringify` it to a file): track 0 is the caller (each
   * launch from call to completion, and inside it the caller's own part of a pooled one),
   * tracks 1.. are the workers (their part in each launch).
   * Times are µs from the first launch.
   */
  trace(): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms' } {
    const t0 = this.launches.length ? Math.min(...this.launches.map((l) => l.start)) : 0;
    const us = (t: number): number => Math.max(0, Math.round((t - t0) * 1000 * 1000) / 1000);
    const pid = 1;
    const events: TraceEvent[] = [
      { name: 'process_name', ph: 'M', pid, tid: 0, args: { name: 'tilejit runtime' } },
      { name: 'thread_name', ph: 'M', pid, tid: 0, args: { name: 'caller' } },
    ];
    for (let w = 0; w < this.workers; w++) events.push({ name: 'thread_name', ph: 'M', pid, tid: w + 1, args: { name: `worker ${w}` } });
    for (const l of this.launches) {
      const args: Record<string, unknown> = { grid: l.grid, pooled: l.pooled };
      if (l.work?.flops !== undefined) args.flops = l.work.flops;
      if (l.work?.bytes !== undefined) args.bytes = l.work.bytes;
      if (l.error) args.error = l.error;
      events.push({ name: l.kernel, cat: 'launch', ph: 'X', pid, tid: 0, ts: us(l.start), dur: us(l.end) - us(l.start), args });
      for (const s of l.workers) {
        events.push({ name: l.kernel, cat: 'programs', ph: 'X', pid, tid: s.worker + 1, ts: us(s.start), dur: Math.max(0, us(s.end) - us(s.start)), args: { programs: s.programs } });
      }
    }
    return { traceEvents: events, displayTimeUnit: 'ms' };
  }
}
