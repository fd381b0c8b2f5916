/**
 * @fileoverview Looking a shape up in a tuned table (templates/tuned-tables.ts, gemm-table.ts):
 * the row whose sizes are nearest in powers of two, within a step of each and two in all, with
 * the exact keys (a transpose, causal masking) equal. Outside that a template's own rule
 * decides: a table measured at other sizes says little about these.
 */

/** One tuned row: its key sizes and exact keys, and the config that won. */
export type TableRow = Readonly<Record<string, number | boolean | string>>;

/** The nearest row to `want` on `sizes` (log2 distance), matching `exact`; undefined if none is close. */
export function nearestRow<R extends TableRow>(
  rows: readonly R[], want: Readonly<Record<string, number | boolean | string>>, sizes: readonly string[], exact: readonly string[] = [],
): R | undefined {
  let best: R | undefined;
  let bestD = Infinity;
  for (const r of rows) {
    if (exact.some((k) => r[k] !== want[k])) continue;
    let d = 0;
    let near = true;
    for (const k of sizes) {
      const a = Number(want[k]), b = Number(r[k]);
      const dk = a === b ? 0 : a > 0 && b > 0 ? Math.abs(Math.log2(a / b)) : Infinity;
      if (dk > 1) near = false;
      d += dk;
    }
    if (near && d <= 2 && d < bestD) {
      best = r;
      bestD = d;
    }
  }
  return best;
}
