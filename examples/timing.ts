/**
 * @fileoverview The examples' stopwatch: the median of a few timed calls.
 */

/**
 * Median wall time of `reps` (>= 1) calls in ms, after one untimed warm-up call unless `warm`
 * is false. An odd `reps` gives a median that leaves out the slowest and fastest calls alike.
 */
export async function medianMs(f: () => unknown, reps: number, warm = true): Promise<number> {
  if (!Number.isInteger(reps) || reps < 1) throw new RangeError(`medianMs: reps must be a positive integer, got ${reps}`);
  if (warm) await f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  const h = t.length >> 1;
  // An even count has two middles: their mean, not the slower one.
  return t.length % 2 ? t[h]! : (t[h - 1]! + t[h]!) / 2;
}
