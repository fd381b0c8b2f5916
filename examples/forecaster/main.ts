/**
 * @fileoverview The forecaster demo: trains the transformer on the airline passengers series
 * (log scale, 1949-1959 for training, 1960 held out) with a progress bar, prints the held-out
 * error next to a seasonal-naive baseline, times a training step against the plain-JS twin on a
 * larger synthetic series, measures batch-1 inference latency, and writes an SVG of the forecast.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { Runtime } from '../../src/index.js';
import { airline, batch, rng, standardise, synthetic, type ForecastConfig } from './common.js';
import { TilejitForecaster } from './model.js';
import { ReferenceForecaster } from './reference.js';
import { medianMs } from '../timing.js';

/** The airline model: 3 years of context in 12 patches of 3 months, the next 12 months out. */
export const AIRLINE: ForecastConfig = { context: 36, patch: 3, channels: 1, dModel: 32, heads: 2, ffn: 64, layers: 2, horizon: 12 };

/** A medium model for the demo's speed comparison (the `train` bench suite runs the large one). */
export const SPEED: ForecastConfig = { context: 128, patch: 1, channels: 1, dModel: 64, heads: 4, ffn: 256, layers: 2, horizon: 24 };

function progress(step: number, total: number, loss: number): void {
  const width = 30, done = Math.round((step / total) * width);
  const bar = `[${'#'.repeat(done)}${'.'.repeat(width - done)}] ${String(step).padStart(4)}/${total} loss ${loss.toFixed(4)}`;
  if (process.stderr.isTTY) process.stderr.write(`\r${bar}${step === total ? '\n' : ''}`);
  else if (step === total || step % Math.ceil(total / 5) === 0) process.stderr.write(`${bar}\n`);
}

function svg(history: Float32Array, truth: Float32Array, forecast: Float32Array, naive: Float32Array): string {
  const all = [...history, ...truth, ...forecast];
  const lo = Math.min(...all) * 0.95, hi = Math.max(...all) * 1.05;
  const W = 720, H = 300, n = history.length + truth.length;
  const px = (i: number): number => 40 + (i / (n - 1)) * (W - 60);
  const py = (v: number): number => H - 30 - ((v - lo) / (hi - lo)) * (H - 50);
  const line = (vals: ArrayLike<number>, from: number, color: string, dash = ''): string =>
    `<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${Array.from(vals, (v, i) => `${px(from + i).toFixed(1)},${py(v).toFixed(1)}`).join(' ')}"/>`;
  const h = history.length;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="40" y="16">Airline passengers (thousands), 1960 held out: truth, tilejit forecast, seasonal naive</text>
${line(history, 0, '#555')}
${line(truth, h, '#111')}
${line(forecast, h, '#d62728')}
${line(naive, h, '#1f77b4', '4 3')}
<text x="${W - 200}" y="40" fill="#d62728">tilejit transformer</text>
<text x="${W - 200}" y="56" fill="#1f77b4">seasonal naive</text>
<text x="${px(0)}" y="${H - 10}">1949</text><text x="${px(h) - 10}" y="${H - 10}">1960</text>
</svg>
`;
}

/** Run the demo; returns false if tilejit and the plain-JS twin disagree. */
export async function forecasterDemo(opts: { steps?: number; threads?: number } = {}): Promise<boolean> {
  const rt = await Runtime.create({ threads: opts.threads ?? 2 });
  const c = AIRLINE;
  const raw = airline();
  const trainEnd = raw.length - c.horizon;
  const { z, mean, std } = standardise(raw.map(Math.log), trainEnd);
  const model = new TilejitForecaster(rt, c, { lr: 2e-3, weightDecay: 0.01, seed: 1 });
  const starts = Array.from({ length: trainEnd - c.context - c.horizon + 1 }, (_, i) => i);
  const r = rng(2);
  const steps = opts.steps ?? 400;
  console.log(`\nforecaster: ${c.layers}-layer transformer, d_model ${c.dModel}, ${c.heads} heads, ${c.context / c.patch} tokens of ${c.patch} months; ${starts.length} training windows, batch 16, ${rt.threads} threads`);
  const t0 = performance.now();
  for (let s = 1; s <= steps; s++) {
    const pick = Array.from({ length: 16 }, () => starts[Math.floor(r() * starts.length)]!);
    const { x, y } = batch(z, c, pick);
    const loss = await model.trainStep(x, y);
    progress(s, steps, loss);
  }
  const trainMs = performance.now() - t0;
  // Forecast 1960 from 1957-1959; back to passengers.
  const { x } = batch(z, c, [trainEnd - c.context]);
  const fz = await model.predict(x);
  const forecast = fz.map((v) => Math.exp(v * std + mean));
  const truth = raw.subarray(trainEnd);
  const naive = raw.slice(trainEnd - 12, trainEnd);
  const rmse = (a: ArrayLike<number>): number => Math.sqrt(Array.from(truth, (t, i) => (a[i]! - t) ** 2).reduce((p, q) => p + q, 0) / truth.length);
  const mape = (a: ArrayLike<number>): number => (100 * Array.from(truth, (t, i) => Math.abs(a[i]! - t) / t).reduce((p, q) => p + q, 0)) / truth.length;
  console.log(`trained ${steps} steps in ${(trainMs / 1000).toFixed(1)} s (${(trainMs / steps).toFixed(1)} ms/step)`);
  console.log(`1960 held out: tilejit RMSE ${rmse(forecast).toFixed(1)} (MAPE ${mape(forecast).toFixed(1)}%)   seasonal naive RMSE ${rmse(naive).toFixed(1)} (MAPE ${mape(naive).toFixed(1)}%)`);
  const infer = await medianMs(() => model.predict(x), 50, false);
  console.log(`batch-1 inference: ${infer.toFixed(2)} ms median`);
  mkdirSync('out', { recursive: true });
  writeFileSync('out/forecast.svg', svg(raw.subarray(0, trainEnd), truth, forecast, naive));
  console.log('wrote out/forecast.svg');
  model.dispose();

  // Speed: one training step against the plain-JS twin on a synthetic hourly series.
  const S = SPEED, B = 16;
  const series = standardise(synthetic(20000), 20000).z;
  const sb = batch(series, S, Array.from({ length: B }, (_, i) => i * 997));
  const fast = new TilejitForecaster(rt, S, { seed: 3 });
  const slow = new ReferenceForecaster(S, { seed: 3 });
  const l0 = await fast.trainStep(sb.x, sb.y), l1 = slow.trainStep(sb.x, sb.y);
  const agree = Math.abs(l0 - l1) / l1 < 1e-4;
  // The first steps above were the warm-up; then the median of an odd count on both sides
  // (plain JS gets fewer steps, being the slow side).
  const ours = await medianMs(() => fast.trainStep(sb.x, sb.y), 5, false);
  const js = await medianMs(() => slow.trainStep(sb.x, sb.y), 3, false);
  console.log(`training step, batch ${B}, ${S.context} tokens, d_model ${S.dModel}, ${S.heads} heads: tilejit ${ours.toFixed(1)} ms, plain JS ${js.toFixed(0)} ms: x${(js / ours).toFixed(1)}; first-step losses ${agree ? 'agree' : 'DISAGREE'} (${l0.toPrecision(6)} vs ${l1.toPrecision(6)})`);
  fast.dispose();
  rt.dispose();
  return agree;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const ok = await forecasterDemo();
  if (!ok) process.exit(1);
}
