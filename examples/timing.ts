/**
 * @fileoverview The examples' stopwatch: the median of a few timed calls.
 */

/** Median wall time of `reps` calls in ms, after one untimed warm-up call unless `warm` is false. */
export async function medianMs(f: () => unknown, reps: number, warm = true): Promise<number> {
  if (warm) await f();
  const t: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    t.push(performance.now() - t0);
  }
  t.sort((a, b) => a - b);
  return t[Math.floor(t.length / 2)]!;
}
