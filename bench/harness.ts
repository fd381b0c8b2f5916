/**
 * @fileoverview Benchmark plumbing shared by every suite: timing with mitata's `measure`
 * (medians after warm-up), the JSON line format of BENCH_JSON.md, and a missing-peer line
 * that never crashes a run.
 */
import { measure } from 'mitata';

/** One line of `npm run bench -- --json`. */
export interface BenchLine {
  suite: string;
  case: string;
  impl: string;
  threads: number;
  median_ms: number | null;
  gflops: number | null;
  gbps: number | null;
  peak_bytes: number | null;
  max_abs_err: number | null;
  params: Record<string, unknown>;
  error?: string;
}

export interface BenchContext {
  readonly quick: boolean;
  readonly json: boolean;
  emit(line: BenchLine): void;
}

/** Median wall time of one call in ms, after warm-up. `slow` calls get few samples. */
export async function medianMs(fn: () => unknown, opts: { quick: boolean; slow?: boolean }): Promise<number> {
  const stats = await measure(async () => {
    await fn();
  }, {
    min_samples: opts.slow ? 2 : opts.quick ? 5 : 12,
    max_samples: opts.slow ? 3 : opts.quick ? 20 : 200,
    min_cpu_time: (opts.slow ? 1 : opts.quick ? 100 : 500) * 1e6,
    warmup_samples: 1,
  } as never) as unknown as { p50: number };
  return stats.p50 / 1e6;
}

/** A line for a measured implementation. */
export function line(
  suite: string, name: string, impl: string, threads: number, ms: number,
  work: { flops?: number; bytes?: number }, err: number | null, params: Record<string, unknown>,
): BenchLine {
  return {
    suite, case: name, impl, threads, median_ms: round(ms),
    gflops: work.flops ? round(work.flops / ms / 1e6) : null,
    gbps: work.bytes ? round(work.bytes / ms / 1e6) : null,
    peak_bytes: null, max_abs_err: err, params,
  };
}

/** A line for an implementation that could not run (not installed, failed to load). */
export function missing(suite: string, name: string, impl: string, threads: number, error: unknown, params: Record<string, unknown>): BenchLine {
  return {
    suite, case: name, impl, threads, median_ms: null, gflops: null, gbps: null, peak_bytes: null, max_abs_err: null, params,
    error: error instanceof Error ? error.message : String(error),
  };
}

export function maxAbsErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let e = 0;
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i]! - b[i]!));
  return e;
}

function round(x: number): number {
  return Number(x.toPrecision(4));
}

/** Deterministic uniform values in [-scale, scale). */
export function randArray(n: number, seed: number, scale = 1): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 * 2 - 1) * scale;
  }
  return out;
}
