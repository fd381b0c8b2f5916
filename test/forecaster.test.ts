/**
 * @fileoverview The end-to-end forecaster: tilejit against its plain-JS twin on a tiny
 * configuration (losses over several steps, gradients of one step), and bf16 mixed precision
 * against f32.
 */
import { afterAll, expect, test } from 'vitest';
import { ops, Runtime } from '../src/index.js';
import { batch, standardise, synthetic, tokens, type ForecastConfig } from '../examples/forecaster/common.js';
import { TilejitForecaster } from '../examples/forecaster/model.js';
import { ReferenceForecaster } from '../examples/forecaster/reference.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

const cfg: ForecastConfig = { context: 24, patch: 2, channels: 1, dModel: 32, heads: 2, ffn: 64, layers: 2, horizon: 6 };
const series = standardise(synthetic(400, 3), 400).z;
const batches = Array.from({ length: 6 }, (_, s) => batch(series, cfg, [0, 1, 2, 3, 4].map((b) => s * 37 + b * 11)));

test('one step: every gradient matches the plain-JS reference', async () => {
  const rt = await rtP;
  const ours = new TilejitForecaster(rt, cfg, { seed: 5 });
  const ref = new ReferenceForecaster(cfg, { seed: 5 });
  const { x, y } = batches[0]!;
  const B = 5;
  await rt.scope(async () => {
    const X = rt.tensor(x, [B, tokens(cfg), cfg.patch]);
    const f = await ours.forward(X);
    const rf = ref.forward(x, B);
    const pred = f.pred.toArray();
    for (let i = 0; i < pred.length; i++) expect(Math.abs(pred[i]! - rf.pred[i]!)).toBeLessThan(2e-5);
    const loss = await ops.mseLoss(f.pred, rt.tensor(y, [B, cfg.horizon]), { grad: true });
    const rl = ReferenceForecaster.mse(rf.pred, y);
    expect(Math.abs(loss.value! - rl.loss) / rl.loss).toBeLessThan(1e-5);
    const g = await ours.backward(X, f, loss.grad!);
    const rg = ref.backward(x, B, rf, rl.grad);
    ours.names.forEach((name, k) => {
      const got = g[k]!.toArray(), want = rg[k]!;
      let scale = 0, err = 0;
      for (let i = 0; i < want.length; i++) {
        scale = Math.max(scale, Math.abs(want[i]!));
        err = Math.max(err, Math.abs(got[i]! - want[i]!));
      }
      if (!(err <= 1e-4 * scale + 1e-7)) expect.fail(`${name}: max error ${err} against max |grad| ${scale}`);
    });
  });
  ours.dispose();
});

test('six training steps: losses agree with the plain-JS reference within 1e-4 relative', async () => {
  const rt = await rtP;
  const ours = new TilejitForecaster(rt, cfg, { seed: 7, lr: 3e-3 });
  const ref = new ReferenceForecaster(cfg, { seed: 7, lr: 3e-3 });
  let before = 0;
  for (const [i, { x, y }] of batches.entries()) {
    const a = await ours.trainStep(x, y), b = ref.trainStep(x, y);
    expect(Math.abs(a - b) / b).toBeLessThan(1e-4);
    // After the first step (which sizes the workers' scratch), a step frees all it allocates.
    if (i === 0) before = rt.stats().inUseBytes;
    else expect(rt.stats().inUseBytes).toBe(before);
  }
  ours.dispose();
});

test('bf16 mixed precision (half weights, f32 masters, loss scaling) ends within 2% of f32', async () => {
  const rt = await rtP;
  const f32 = new TilejitForecaster(rt, cfg, { seed: 9, lr: 3e-3 });
  const bf = new TilejitForecaster(rt, cfg, { seed: 9, lr: 3e-3, mixed: 'bf16' });
  expect(bf.weights.get('l0.qkv.w')!.dtype).toBe('bf16');
  let a = 0, b = 0;
  for (let rep = 0; rep < 3; rep++) {
    for (const { x, y } of batches) {
      a = await f32.trainStep(x, y);
      b = await bf.trainStep(x, y);
    }
  }
  expect(bf.scaler!.skipped).toBe(0);
  expect(Math.abs(b - a) / a).toBeLessThan(0.02);
  f32.dispose();
  bf.dispose();
});
