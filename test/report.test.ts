/**
 * @fileoverview The benchmark report: ratios against plain JS, the Markdown tables, and SVG
 * charts that are well-formed and hold one bar or point per measurement they chart.
 */
import { describe, expect, test } from 'vitest';
import type { BenchLine } from '../bench/harness.js';
import { intensity, renderReport, speedups } from '../bench/report.js';

const L = (o: Partial<BenchLine> & Pick<BenchLine, 'suite' | 'case' | 'impl' | 'median_ms'>): BenchLine =>
  ({ threads: 1, gflops: null, gbps: null, peak_bytes: null, max_abs_err: null, params: {}, ...o });

const LINES: BenchLine[] = [
  L({ suite: 'dot', case: 'sgemm 256x256x256 f32', impl: 'tilejit', median_ms: 1, gflops: 33.6, params: { M: 256, N: 256, K: 256, dtype: 'f32', BM: 64 } }),
  L({ suite: 'dot', case: 'sgemm 256x256x256 f32', impl: 'tilejit', median_ms: 2, gflops: 16.8, params: { M: 256, N: 256, K: 256, dtype: 'f32', BM: 32 } }),
  L({ suite: 'dot', case: 'sgemm 256x256x256 f32', impl: 'naive-js', median_ms: 50, gflops: 0.67, params: { M: 256, N: 256, K: 256, dtype: 'f32' } }),
  L({ suite: 'activations', case: 'gelu <tanh> & co', impl: 'tilejit', threads: 2, median_ms: 0.5, gbps: 16, max_abs_err: 2e-7 }),
  L({ suite: 'activations', case: 'gelu <tanh> & co', impl: 'naive-js', median_ms: 10, gbps: 0.8 }),
  L({ suite: 'activations', case: 'gelu <tanh> & co', impl: 'ort-web', median_ms: null, error: 'not installed' }),
  L({ suite: 'dispatch', case: 'empty launch', impl: 'tilejit', median_ms: 0.002 }),
];
const MACHINE = { cpu: 'Test CPU', cores: 2, node: '20.0.0', ceilings: { peakGflops: { 1: 48, 2: 95 }, bandwidthGbps: { 1: 12, 2: 24 } } };

/** Tags open and close in order (a small well-formedness check; no DTDs or CDATA here). */
function wellFormed(svg: string): boolean {
  const stack: string[] = [];
  for (const m of svg.matchAll(/<(\/?)([a-zA-Z]+)[^>]*?(\/?)>/g)) {
    if (m[3]) continue;
    if (m[1]) {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2]!);
  }
  return stack.length === 0 && !/<[^a-zA-Z/!?]/.test(svg.replace(/<\/?[a-zA-Z][^>]*>/g, ''));
}

describe('bench report', () => {
  test('ratios against plain JS and intensities', () => {
    const ups = speedups(LINES);
    expect(ups.map((u) => [u.line.impl, u.ratio])).toEqual([['tilejit', 50], ['tilejit', 25], ['tilejit', 20]]);
    expect(intensity(LINES[0]!)).toBeCloseTo((2 * 256 ** 3) / (4 * 3 * 256 * 256), 9);
    expect(intensity(LINES[3]!)).toBeNull();
    expect(intensity(L({ suite: 's', case: 'c', impl: 'tilejit', median_ms: 1, gflops: 4, gbps: 2 }))).toBe(2);
  });

  test('Markdown tables and well-formed charts with one mark per measurement', () => {
    const r = renderReport(LINES, MACHINE);
    expect(r.markdown).toContain('| 1 | 48 GFLOP/s | 12 GB/s |');
    expect(r.markdown).toContain('| sgemm 256x256x256 f32 (BM=64) | tilejit | 1 | 1 | 33.6 | - | 50× | - |');
    expect(r.markdown).toContain('| gelu <tanh> & co | ort-web | 1 | error: not installed |');
    expect(r.markdown).toMatch(/## dot[\s\S]*## activations[\s\S]*## dispatch/);
    for (const svg of [r.speedSvg, r.bandwidthSvg, r.rooflineSvg]) {
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(wellFormed(svg)).toBe(true);
    }
    expect(r.speedSvg.match(/class="bar"/g)).toHaveLength(3);
    expect(r.speedSvg).toContain('gelu &lt;tanh&gt; &amp; co · tilejit · 2t');
    expect(r.speedSvg).toContain('sgemm 256x256x256 f32 (BM=32) · tilejit · 1t');
    expect(r.bandwidthSvg.match(/class="bar"/g)).toHaveLength(2);
    expect(r.rooflineSvg.match(/class="point"/g)).toHaveLength(3);
    expect(r.rooflineSvg.match(/class="ceiling"/g)).toHaveLength(2);
    expect(r.rooflineSvg).toContain('2 threads: 95 GFLOP/s, 24 GB/s');
  });
});
