/**
 * @fileoverview `train`: one training step (forward, backward, AdamW) of the transformer
 * forecaster on tilejit next to its plain-JS twin in one process, and the batch-1 inference
 * latency. The plain-JS step takes tens of seconds at this size, so it runs a few times: one
 * warm-up step, then three timed ones, each next to a tilejit median (quick: a smaller model).
 */
import { Runtime } from '../../src/index.js';
import { batch, standardise, synthetic, type ForecastConfig } from '../../examples/forecaster/common.js';
import { TilejitForecaster } from '../../examples/forecaster/model.js';
import { ReferenceForecaster } from '../../examples/forecaster/reference.js';
import { AIRLINE } from '../../examples/forecaster/main.js';
import { line, median, medianMs, type BenchContext } from '../harness.js';

const FULL: ForecastConfig = { context: 256, patch: 1, channels: 1, dModel: 128, heads: 4, ffn: 512, layers: 2, horizon: 24 };
const QUICK: ForecastConfig = { context: 128, patch: 1, channels: 1, dModel: 64, heads: 4, ffn: 256, layers: 2, horizon: 24 };

export async function trainSuite(ctx: BenchContext): Promise<void> {
  const c = ctx.quick ? QUICK : FULL;
  const B = ctx.quick ? 16 : 32;
  const series = standardise(synthetic(40000), 40000).z;
  const { x, y } = batch(series, c, Array.from({ length: B }, (_, i) => i * 997));
  const params = { batch: B, seq: c.context, d_model: c.dModel, heads: c.heads, ffn: c.ffn, layers: c.layers, horizon: c.horizon };
  const name = `train step b${B} seq${c.context} d${c.dModel} h${c.heads}`;
  const rt = await Runtime.create({ threads: 2 });
  const ours = new TilejitForecaster(rt, c, { seed: 1 });
  const ref = new ReferenceForecaster(c, { seed: 1 });
  // The first step of each, from the same weights, is the warm-up and the check.
  const l0 = await ours.trainStep(x, y);
  const err = Math.abs(l0 - ref.trainStep(x, y));
  // Rounds of one timed plain-JS step and then tilejit's median right after it: the machine's
  // speed drifts over the tens of seconds a plain-JS step takes, so each ratio pairs neighbours.
  // Each line's median_ms is the median over the rounds (for tilejit, of its per-round medians).
  const rounds = 3;
  const jsTimes: number[] = [], ourTimes: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const t0 = performance.now();
    ref.trainStep(x, y);
    jsTimes.push(performance.now() - t0);
    ourTimes.push(await medianMs(() => ours.trainStep(x, y), { quick: ctx.quick, slow: true }));
  }
  const ratios = jsTimes.map((j, i) => j / ourTimes[i]!);
  const tenths = (v: number): number => Math.round(v * 10) / 10;
  const perRound = (key: (round: number) => string, xs: number[], f: (v: number) => number): Record<string, number> =>
    Object.fromEntries(xs.map((v, i) => [key(i + 1), f(v)]));
  ctx.emit(line('train', name, 'tilejit', 2, median(ourTimes), {}, err, {
    ...params, speedup_vs_js: tenths(median(ratios)), ...perRound((r) => `speedup_round${r}`, ratios, tenths),
  }));
  ctx.emit(line('train', name, 'naive-js', 1, median(jsTimes), {}, 0, {
    ...params, repetitions: rounds, warmup: 1, ...perRound((r) => `round${r}_ms`, jsTimes, Math.round),
  }));
  const one = x.subarray(0, c.context * c.channels);
  await ours.predict(one);
  const inf = await medianMs(() => ours.predict(one), { quick: ctx.quick });
  ctx.emit(line('train', `inference batch 1 seq${c.context} d${c.dModel}`, 'tilejit', 2, inf, {}, null, params));
  ours.dispose();
  // The demo's model (airline passengers: 12 tokens, d_model 32), batch 1.
  const small = new TilejitForecaster(rt, AIRLINE, { seed: 1 });
  const sx = new Float32Array(AIRLINE.context).map((_, i) => Math.sin(i / 3));
  await small.predict(sx);
  const sms = await medianMs(() => small.predict(sx), { quick: ctx.quick });
  ctx.emit(line('train', `inference batch 1 airline model (seq${AIRLINE.context / AIRLINE.patch} d${AIRLINE.dModel})`, 'tilejit', 2, sms, {}, null, { ...AIRLINE }));
  small.dispose();
  rt.dispose();
}
