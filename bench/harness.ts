/**
 * @fileoverview Benchmark plumbing shared by every suite: timing with mitata's `measure`
 * (medians after warm-up), the JSON line format of BENCH_JSON.md, the check against the
 * plain-JS reference, and the error line (a missing peer, a wrong result) that never crashes a
 * run.
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
  /** A line of text for the table of a text-mode run; dropped with --json, whose lines carry it. */
  note(text: string): void;
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

/**
 * A check against the reference that failed outright: the output has the wrong length, or a
 * difference is NaN or infinite. No number says that (JSON has no NaN), so it becomes an error.
 */
export interface WrongResult {
  readonly wrong: string;
}

/**
 * A line for a measured implementation. `err` is the check against the plain-JS reference
 * (null: not checked); a failed check (a `WrongResult`, or an error that is not a finite number)
 * gives BENCH_JSON's error line instead, `median_ms: null` with the reason in `error`, so that a
 * wrong result can neither pass for an unchecked one (`max_abs_err: null`) nor get a speed-up.
 */
export function line(
  suite: string, name: string, impl: string, threads: number, ms: number,
  work: { flops?: number; bytes?: number }, err: number | WrongResult | null, params: Record<string, unknown>,
): BenchLine {
  if (err !== null && (typeof err !== 'number' || !Number.isFinite(err))) {
    const why = typeof err === 'number' ? `the error against the plain-JS reference is ${err}` : err.wrong;
    return missing(suite, name, impl, threads, `wrong result: ${why}`, params);
  }
  return {
    suite, case: name, impl, threads, median_ms: round(ms),
    gflops: work.flops ? round(work.flops / ms / 1e6) : null,
    gbps: work.bytes ? round(work.bytes / ms / 1e6) : null,
    peak_bytes: null, max_abs_err: err, params,
  };
}

/** An error line: an implementation that could not run (not installed, failed to load), or a wrong result. */
export function missing(suite: string, name: string, impl: string, threads: number, error: unknown, params: Record<string, unknown>): BenchLine {
  return {
    suite, case: name, impl, threads, median_ms: null, gflops: null, gbps: null, peak_bytes: null, max_abs_err: null, params,
    error: error instanceof Error ? error.message : String(error),
  };
}

/**
 * Max absolute difference of `got` from the reference `want`; a `WrongResult` when the lengths
 * differ or a difference is not finite (a NaN on either side, an infinity where the other is
 * not the same infinity).
 */
export function maxAbsErr(got: ArrayLike<number>, want: ArrayLike<number>): number | WrongResult {
  if (got.length !== want.length) return { wrong: `the output has ${got.length} values, the reference ${want.length}` };
  let e = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (g === w) continue; // equal infinities too, whose difference is NaN
    const d = Math.abs(g - w);
    if (!Number.isFinite(d)) return { wrong: `element ${i} is ${g}, the reference ${w}` };
    if (d > e) e = d;
  }
  return e;
}

/** The median of a few numbers (the mean of the middle two for an even count). */
export function median(xs: readonly number[]): number {
  if (!xs.length) throw new RangeError('median of no numbers');
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h]! : (s[h - 1]! + s[h]!) / 2;
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
