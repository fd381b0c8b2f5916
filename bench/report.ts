/**
 * @fileoverview `npm run bench:report` (and `tilejit bench --report DIR`): runs the suites (or
 * reads BENCH_JSON lines from --in), measures this machine's ceilings, and writes a Markdown
 * summary with three SVG charts: speed against plain JS per case, achieved bandwidth against
 * the measured ceiling, and a roofline (GFLOP/s vs arithmetic intensity under the measured
 * SIMD peak and bandwidth). The charts are plain SVG text, no dependencies.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchLine } from './harness.js';
import { measureCeilings, type MachineCeilings } from './machine.js';
import { runBench, type BenchIO } from './run.js';

/** What the report says about the machine. */
export interface ReportMachine {
  readonly cpu: string;
  readonly cores: number;
  readonly node: string;
  readonly ceilings: MachineCeilings;
}

/** The rendered files. */
export interface Report {
  readonly markdown: string;
  readonly speedSvg: string;
  readonly bandwidthSvg: string;
  readonly rooflineSvg: string;
}

const BASELINE = 'naive-js';

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function fmt(x: number | null | undefined, digits = 3): string {
  if (x === null || x === undefined) return '-';
  return Math.abs(x) >= 100 ? x.toFixed(0) : Number(x.toPrecision(digits)).toString();
}

const COLORS: Record<string, string> = { tilejit: '#2b6cb0', 'naive-js': '#a0aec0', 'tfjs-wasm': '#dd6b20', 'ort-web': '#38a169' };
const color = (impl: string): string => COLORS[impl] ?? '#805ad5';

/** Speed of each measured line relative to the plain-JS line of its case (null: no baseline). */
export function speedups(lines: readonly BenchLine[]): { line: BenchLine; ratio: number }[] {
  const base = new Map<string, number>();
  for (const l of lines) if (l.impl === BASELINE && l.median_ms) base.set(`${l.suite}\u0000${l.case}`, l.median_ms);
  const out: { line: BenchLine; ratio: number }[] = [];
  for (const l of lines) {
    const b = base.get(`${l.suite}\u0000${l.case}`);
    if (l.impl !== BASELINE && l.median_ms && b) out.push({ line: l, ratio: b / l.median_ms });
  }
  return out;
}

/** A horizontal bar chart; `scale` maps a value to [0, 1]. */
function bars(title: string, rows: { label: string; value: number; text: string; fill: string }[], scale: (v: number) => number, ticks: { at: number; label: string }[], marks: { at: number; label: string }[] = []): string {
  const labelW = 430, plotW = 380, rowH = 18, top = 40, left = labelW + 10;
  const h = top + rows.length * rowH + 40;
  const w = left + plotW + 70;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="11">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${w / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${esc(title)}</text>`,
  ];
  for (const t of ticks) {
    const x = left + scale(t.at) * plotW;
    parts.push(`<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${h - 30}" stroke="#e2e8f0"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${h - 16}" text-anchor="middle" fill="#4a5568">${esc(t.label)}</text>`);
  }
  rows.forEach((r, i) => {
    const y = top + i * rowH;
    const bw = Math.max(1, scale(r.value) * plotW);
    parts.push(`<text x="${labelW}" y="${y + 12}" text-anchor="end">${esc(r.label)}</text>`);
    parts.push(`<rect class="bar" x="${left}" y="${y + 2}" width="${bw.toFixed(1)}" height="${rowH - 5}" fill="${r.fill}"/>`);
    parts.push(`<text x="${(left + bw + 4).toFixed(1)}" y="${y + 12}">${esc(r.text)}</text>`);
  });
  for (const m of marks) {
    const x = left + scale(m.at) * plotW;
    parts.push(`<line x1="${x.toFixed(1)}" y1="${top - 4}" x2="${x.toFixed(1)}" y2="${h - 30}" stroke="#c53030" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${x.toFixed(1)}" y="${top - 8}" text-anchor="middle" fill="#c53030">${esc(m.label)}</text>`);
  }
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

function logScale(lo: number, hi: number): (v: number) => number {
  const a = Math.log10(lo), b = Math.log10(hi);
  return (v) => Math.min(1, Math.max(0, (Math.log10(Math.max(v, lo)) - a) / (b - a)));
}

function decades(lo: number, hi: number, unit: string): { at: number; label: string }[] {
  const out: { at: number; label: string }[] = [];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    const v = 10 ** e;
    if (v >= lo * 0.999 && v <= hi * 1.001) out.push({ at: v, label: `${fmt(v)}${unit}` });
  }
  return out;
}

/**
 * The params that tell apart lines of one case, impl and thread count (e.g. the tile config of
 * a GEMM measured several ways), as "k=v" text; empty when the line is alone.
 */
function distinguishing(l: BenchLine, all: readonly BenchLine[]): string {
  const same = all.filter((x) => x.suite === l.suite && x.case === l.case && x.impl === l.impl && x.threads === l.threads);
  if (same.length < 2) return '';
  const keys = Object.keys(l.params).filter((k) => same.some((x) => JSON.stringify(x.params[k]) !== JSON.stringify(l.params[k])));
  return keys.map((k) => `${k}=${String(l.params[k])}`).join(' ');
}

const label = (l: BenchLine, all: readonly BenchLine[]): string => {
  const d = distinguishing(l, all);
  return `${l.case}${d ? ` (${d})` : ''} · ${l.impl} · ${l.threads}t`;
};

/** Flops per byte of a line, when its work is known both ways (or derivable from M, N, K). */
export function intensity(l: BenchLine): number | null {
  if (l.gflops && l.gbps) return l.gflops / l.gbps;
  const p = l.params as { M?: unknown; N?: unknown; K?: unknown; dtype?: unknown };
  if (l.gflops && typeof p.M === 'number' && typeof p.N === 'number' && typeof p.K === 'number') {
    const size = p.dtype === 'f16' || p.dtype === 'bf16' ? 2 : 4;
    return (2 * p.M * p.N * p.K) / (size * (p.M * p.K + p.K * p.N + p.M * p.N));
  }
  return null;
}

function roofline(lines: readonly BenchLine[], c: MachineCeilings): string {
  const w = 720, h = 420, left = 60, right = 230, top = 40, bottom = 50;
  const pw = w - left - right, ph = h - top - bottom;
  const peaks = Object.entries(c.peakGflops).map(([t, v]) => [Number(t), v] as const);
  const maxPeak = Math.max(1, ...peaks.map(([, v]) => v));
  const points = lines.filter((l) => l.median_ms && l.gflops).map((l) => ({ l, ai: intensity(l) })).filter((p): p is { l: BenchLine; ai: number } => p.ai !== null);
  const xlo = 1 / 16, xhi = Math.max(256, ...points.map((p) => p.ai * 2));
  const ylo = 0.1, yhi = maxPeak * 2;
  const sx = logScale(xlo, xhi), sy = logScale(ylo, yhi);
  const X = (v: number): number => left + sx(v) * pw, Y = (v: number): number => top + (1 - sy(v)) * ph;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}" font-family="sans-serif" font-size="11">`,
    `<rect width="${w}" height="${h}" fill="#ffffff"/>`,
    `<text x="${left + pw / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">Roofline: GFLOP/s vs arithmetic intensity</text>`,
    `<rect x="${left}" y="${top}" width="${pw}" height="${ph}" fill="none" stroke="#a0aec0"/>`,
  ];
  for (const t of decades(xlo, xhi, '')) parts.push(`<text x="${X(t.at).toFixed(1)}" y="${top + ph + 16}" text-anchor="middle">${t.label}</text>`);
  for (const t of decades(ylo, yhi, '')) parts.push(`<text x="${left - 6}" y="${(Y(t.at) + 4).toFixed(1)}" text-anchor="end">${t.label}</text>`);
  parts.push(`<text x="${left + pw / 2}" y="${h - 12}" text-anchor="middle">flop / byte</text>`);
  parts.push(`<text x="16" y="${top + ph / 2}" text-anchor="middle" transform="rotate(-90 16 ${top + ph / 2})">GFLOP/s</text>`);
  for (const [t, peak] of peaks) {
    const bw = c.bandwidthGbps[t] ?? 0;
    const knee = peak / Math.max(bw, 1e-9);
    const pts = [[xlo, Math.max(ylo, bw * xlo)], [Math.min(knee, xhi), Math.min(peak, bw * Math.min(knee, xhi))], [xhi, peak]];
    parts.push(`<polyline class="ceiling" fill="none" stroke="#c53030" stroke-width="1.5" stroke-dasharray="${t === 1 ? '4 3' : ''}" points="${pts.map(([x, y]) => `${X(x!).toFixed(1)},${Y(y!).toFixed(1)}`).join(' ')}"/>`);
    parts.push(`<text x="${(X(xhi) + 4).toFixed(1)}" y="${(Y(peak) + 4).toFixed(1)}" fill="#c53030">${t} thread${t > 1 ? 's' : ''}: ${fmt(peak)} GFLOP/s, ${fmt(bw)} GB/s</text>`);
  }
  for (const p of points) {
    parts.push(`<circle class="point" cx="${X(p.ai).toFixed(1)}" cy="${Y(p.l.gflops!).toFixed(1)}" r="4" fill="${color(p.l.impl)}"><title>${esc(`${label(p.l, lines)}: ${fmt(p.l.gflops)} GFLOP/s at ${fmt(p.ai)} flop/byte`)}</title></circle>`);
  }
  const impls = [...new Set(points.map((p) => p.l.impl))];
  impls.forEach((impl, i) => {
    parts.push(`<circle cx="${left + pw + 12}" cy="${top + ph - 12 - i * 16}" r="4" fill="${color(impl)}"/><text x="${left + pw + 20}" y="${top + ph - 8 - i * 16}">${esc(impl)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

/** Render the Markdown summary and the charts from BENCH_JSON lines and the machine. */
export function renderReport(lines: readonly BenchLine[], machine: ReportMachine): Report {
  const ups = speedups(lines);
  const upHi = Math.max(10, ...ups.map((u) => u.ratio * 1.5));
  const speedSvg = bars('Speed vs plain JS (× faster, log scale)', ups.map((u) => ({ label: label(u.line, lines), value: u.ratio, text: `${fmt(u.ratio)}×`, fill: color(u.line.impl) })),
    logScale(0.1, upHi), decades(0.1, upHi, '×'), [{ at: 1, label: 'plain JS' }]);
  const bwLines = lines.filter((l) => l.median_ms && l.gbps);
  const bwMax = Math.max(1, ...Object.values(machine.ceilings.bandwidthGbps), ...bwLines.map((l) => l.gbps!)) * 1.15;
  const lin = (v: number): number => Math.min(1, Math.max(0, v / bwMax));
  const step = bwMax > 50 ? 20 : bwMax > 20 ? 10 : 5;
  const bwTicks = Array.from({ length: Math.floor(bwMax / step) + 1 }, (_, i) => ({ at: i * step, label: `${i * step}` }));
  const bandwidthSvg = bars('Achieved bandwidth (GB/s) vs the measured copy bandwidth', bwLines.map((l) => ({ label: label(l, lines), value: l.gbps!, text: `${fmt(l.gbps)} GB/s`, fill: color(l.impl) })),
    lin, bwTicks, Object.entries(machine.ceilings.bandwidthGbps).map(([t, v]) => ({ at: v, label: `copy ${t}t` })));
  const rooflineSvg = roofline(lines, machine.ceilings);

  const md: string[] = [
    '# tilejit benchmarks',
    '',
    `Machine: ${machine.cpu}, ${machine.cores} cores, Node ${machine.node}. Medians after warm-up; every case measured side by side in one process.`,
    '',
    '| threads | SIMD peak (measured) | copy bandwidth (measured) |',
    '|---|---|---|',
    ...Object.keys(machine.ceilings.peakGflops).map((t) => `| ${t} | ${fmt(machine.ceilings.peakGflops[Number(t)])} GFLOP/s | ${fmt(machine.ceilings.bandwidthGbps[Number(t)])} GB/s |`),
    '',
    '![speed vs plain JS](speed.svg)',
    '',
    '![bandwidth](bandwidth.svg)',
    '',
    '![roofline](roofline.svg)',
    '',
  ];
  const ratio = new Map(ups.map((u) => [u.line, u.ratio]));
  for (const suite of [...new Set(lines.map((l) => l.suite))]) {
    md.push(`## ${suite}`, '', '| case | impl | threads | median ms | GFLOP/s | GB/s | vs plain JS | max abs err |', '|---|---|---|---|---|---|---|---|');
    for (const l of lines.filter((x) => x.suite === suite)) {
      if (l.median_ms === null) {
        const d = distinguishing(l, lines);
      md.push(`| ${l.case}${d ? ` (${d})` : ''} | ${l.impl} | ${l.threads} | error: ${(l.error ?? '').replace(/\|/g, '\\|')} | | | | |`);
        continue;
      }
      const r = ratio.get(l);
      const d = distinguishing(l, lines);
      md.push(`| ${l.case}${d ? ` (${d})` : ''} | ${l.impl} | ${l.threads} | ${fmt(l.median_ms, 4)} | ${fmt(l.gflops)} | ${fmt(l.gbps)} | ${r === undefined ? '-' : `${fmt(r)}×`} | ${l.max_abs_err === null ? '-' : l.max_abs_err.toExponential(1)} |`);
    }
    md.push('');
  }
  return { markdown: md.join('\n'), speedSvg, bandwidthSvg, rooflineSvg };
}

/** `[--in FILE] [--out DIR] [--quick] [--suite NAME]...`: write the report; returns the exit status. */
export async function runReport(args: readonly string[], io: BenchIO): Promise<number> {
  let input: string | undefined;
  let out = 'out/report';
  const rest: string[] = [];
  let quick = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--in' || a === '--out') {
      const v = args[++i];
      if (!v) {
        io.err(`${a} needs a value\nusage: bench:report [--in LINES.jsonl] [--out DIR] [--quick] [--suite NAME]...\n`);
        return 2;
      }
      if (a === '--in') input = v;
      else out = v;
    } else {
      if (a === '--quick') quick = true;
      rest.push(a);
    }
  }
  let lines: BenchLine[];
  if (input) {
    lines = readFileSync(input, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as BenchLine);
  } else {
    let text = '';
    const code = await runBench(['--json', ...rest], { out: (t) => (text += t), err: io.err }, 'bench:report');
    if (code !== 0) return code;
    lines = text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as BenchLine);
  }
  io.err('[report] measuring the machine ceilings...\n');
  const ceilings = await measureCeilings(quick);
  const r = renderReport(lines, { cpu: (cpus()[0]?.model ?? 'unknown').trim(), cores: availableParallelism(), node: process.versions.node, ceilings });
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'README.md'), r.markdown);
  writeFileSync(join(out, 'speed.svg'), r.speedSvg);
  writeFileSync(join(out, 'bandwidth.svg'), r.bandwidthSvg);
  writeFileSync(join(out, 'roofline.svg'), r.rooflineSvg);
  writeFileSync(join(out, 'lines.jsonl'), lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  io.out(`wrote ${join(out, 'README.md')} and 3 charts (${lines.length} measurements)\n`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runReport(process.argv.slice(2), { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) });
}
