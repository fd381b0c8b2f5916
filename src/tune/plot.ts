/**
 * @fileoverview The search as a picture: an SVG bar chart of a tuning report, one bar per
 * candidate (median ms, or GFLOP/s / GB/s when the work is given), the winner highlighted, rejected
 * candidates listed with their reason. Plain SVG text.
 */
import type { TuneReport } from './autotune.js';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

const cfgText = (c: Readonly<Record<string, unknown>>): string => Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(' ');

/** SVG of a tuning report; with `flops` (or `bytes`) per launch the bars are GFLOP/s (GB/s), else ms. */
export function plotTuneReport(report: TuneReport, opts: { readonly flops?: number; readonly bytes?: number; readonly title?: string } = {}): string {
  const rows = report.results;
  const work = opts.flops ?? opts.bytes;
  const unit = opts.flops ? 'GFLOP/s' : 'GB/s';
  const rate = (ms: number): number => (work ? work / ms / 1e6 : ms);
  const vmax = Math.max(1e-9, ...rows.filter((r) => r.ms !== null).map((r) => rate(r.ms!)));
  const labelW = 200, plotW = 360, rowH = 20, top = 44, left = labelW + 10;
  const w = left + plotW + 260, h = top + rows.length * rowH + 20;
  const title = opts.title ?? `${report.kernel}: ${Object.entries(report.key).map(([k, v]) => `${k}=${String(v)}`).join(' ')} (${work ? `${unit}, higher is better` : 'median ms, lower is better'})`;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="11">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${w / 2}" y="22" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const best = r === report.best;
    out.push(`<text x="${labelW}" y="${y + 13}" text-anchor="end"${best ? ' font-weight="bold"' : ''}>${esc(cfgText(r.config))}</text>`);
    if (r.ms === null) {
      out.push(`<text class="rejected" x="${left}" y="${y + 13}" fill="#c53030">${esc(`rejected: ${r.reason ?? ''}`.slice(0, 90))}</text>`);
      return;
    }
    const v = rate(r.ms);
    const bw = Math.max(1, (v / vmax) * plotW);
    out.push(`<rect class="bar" x="${left}" y="${y + 3}" width="${bw.toFixed(1)}" height="${rowH - 6}" fill="${best ? '#2b6cb0' : '#a0aec0'}"/>`);
    out.push(`<text x="${(left + bw + 4).toFixed(1)}" y="${y + 13}">${esc(`${v.toFixed(work ? 1 : 3)}${work ? ` ${unit}` : ' ms'}${best ? '  best' : ''}${r.verified ? '' : '  (unverified)'}`)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
