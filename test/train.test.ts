/**
 * @fileoverview Losses, optimisers, the loss scaler and mixed precision against plain-JS
 * references, and `jit.map`; the argument checks of the elementwise and row ops.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { Adam, AdamW, jit, KernelCompileError, LossScaler, ops, Runtime, SGD, type Reduction } from '../src/index.js';
import { bf16BitsToF32, f32ToBf16Bits, f16BitsToF32, f32ToF16Bits } from '../src/util/half.js';
import { adamRef, lossRef, sgdRef } from '../templates/reference.js';
import { close, rand } from './util/data.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

const KINDS = [['mse', ops.mseLoss], ['mae', ops.l1Loss], ['huber', ops.huberLoss]] as const;

describe('losses', () => {
  test.each(KINDS.flatMap(([k]) => [1, 3, 1000, 4096, 5000].flatMap((n) => (['mean', 'sum', 'none'] as const).map((r) => [k, n, r] as const))))(
    '%s n=%i reduction=%s: value and gradient', async (kind, n, reduction) => {
      const rt = await rtP;
      const fn = KINDS.find(([k]) => k === kind)![1];
      const p = rand(n, n + 1, 3), t = rand(n, n + 2, 3);
      if (n > 3) { p[1] = t[1]!; p[2] = t[2]! + 0.5; } // d = 0 (MAE's gradient 0) and |d| = 0.5 (< Huber delta)
      const delta = 0.75;
      const r = await fn(rt.tensor(p, [n]), rt.tensor(t, [n]), { reduction: reduction as Reduction, grad: true, delta, gradScale: 3 });
      const pw = Array.from(p, (v, i) => lossRef(kind, v - t[i]!, delta));
      const scale = reduction === 'mean' ? 3 / n : 3;
      close(r.grad!.toArray(), pw.map((x) => x.g * scale), 1e-6, 1e-7, 'grad');
      if (reduction === 'none') {
        expect(r.loss.shape).toEqual([n]);
        expect(r.value).toBeUndefined();
        close(r.loss.toArray(), pw.map((x) => x.l), 1e-6, 1e-7, 'loss');
      } else {
        const s = pw.reduce((a, x) => a + x.l, 0);
        const want = reduction === 'mean' ? s / n : s;
        expect(r.loss.shape).toEqual([]);
        expect(Math.abs(r.value! - want)).toBeLessThanOrEqual(1e-6 * Math.abs(want) + 1e-7);
        expect(r.loss.toArray()[0]).toBe(Math.fround(r.value!));
      }
    });

  test('the gradient matches finite differences of the reference loss', async () => {
    const rt = await rtP;
    const n = 40;
    const p = rand(n, 8, 2), t = rand(n, 9, 2);
    for (const [kind, fn] of KINDS) {
      const g = (await fn(rt.tensor(p, [n]), rt.tensor(t, [n]), { grad: true })).grad!.toArray();
      const L = (pp: Float64Array): number => pp.reduce((a, v, i) => a + lossRef(kind, v - t[i]!).l, 0) / n;
      const x = Float64Array.from(p);
      for (let i = 0; i < n; i++) {
        const h = 1e-6, keep = x[i]!;
        x[i] = keep + h; const up = L(x);
        x[i] = keep - h; const down = L(x);
        x[i] = keep;
        expect(Math.abs(g[i]! - (up - down) / (2 * h))).toBeLessThan(1e-5);
      }
    }
  });

  test.each(['f16', 'bf16'] as const)('%s storage: the loss of the stored values, the gradient in the same dtype', async (dtype) => {
    const rt = await rtP;
    const n = 777;
    const P = rt.tensor(rand(n, 31, 2), [n], dtype), T = rt.tensor(rand(n, 32, 2), [n], dtype);
    const p = P.toArray(), t = T.toArray();
    const r = await ops.huberLoss(P, T, { grad: true, reduction: 'sum' });
    expect(r.grad!.dtype).toBe(dtype);
    const want = Array.from(p, (v, i) => lossRef('huber', v - t[i]!));
    expect(Math.abs(r.value! - want.reduce((a, x) => a + x.l, 0))).toBeLessThan(1e-4);
    const ulp = dtype === 'f16' ? 2 ** -10 : 2 ** -7;
    close(r.grad!.toArray(), want.map((x) => x.g), ulp, 1e-7, 'grad');
  });

  test.each(KINDS.map(([k]) => k))('%s: a NaN in pred or target gives a NaN value and a NaN gradient there', async (kind) => {
    const rt = await rtP;
    const fn = KINDS.find(([k]) => k === kind)![1];
    // NaN in pred, in target, Inf - Inf; the other lanes on both sides of Huber's delta and d = 0.
    const p = [NaN, 1, Infinity, 0.25, 3, -4, 2, 0.5];
    const t = [0, NaN, Infinity, 0, 0, 0, 2, 0.5];
    const nan = [0, 1, 2];
    for (const dtype of ['f32', 'f16', 'bf16'] as const) {
      const P = rt.tensor(p, [p.length], dtype), T = rt.tensor(t, [t.length], dtype);
      const each = await fn(P, T, { reduction: 'none', grad: true });
      const g = each.grad!.toArray(), l = each.loss.toArray();
      for (let i = 0; i < p.length; i++) {
        const want = lossRef(kind, p[i]! - t[i]!);
        if (nan.includes(i)) {
          expect(g[i], `${dtype} grad[${i}]`).toBeNaN();
          expect(l[i], `${dtype} loss[${i}]`).toBeNaN();
        } else {
          expect(g[i], `${dtype} grad[${i}]`).toBe(want.g);
        }
      }
      const mean = await fn(P, T, { grad: true });
      expect(mean.value).toBeNaN();
      expect(Array.from(mean.grad!.toArray(), Number.isNaN)).toEqual(p.map((_, i) => nan.includes(i)));
    }
  });

  test('empty input: mean is NaN, sum is 0; bad reduction and delta are rejected', async () => {
    const rt = await rtP;
    const e = rt.empty([0]);
    expect(Number.isNaN((await ops.mseLoss(e, e)).value)).toBe(true);
    expect((await ops.mseLoss(e, e, { reduction: 'sum' })).value).toBe(0);
    const x = rt.tensor([1, 2], [2]);
    await expect(ops.mseLoss(x, x, { reduction: 'avg' as Reduction })).rejects.toThrow(/mseLoss: reduction must be one of 'mean', 'sum', 'none', got "avg"/);
    await expect(ops.huberLoss(x, x, { delta: 0 })).rejects.toThrow(/delta must be a finite number > 0/);
    await expect(ops.l1Loss(x, rt.tensor([1, 2, 3], [3]))).rejects.toThrow(/target: expected shape \[2\], got \[3\]/);
  });
});

describe('optimisers', () => {
  test.each([[false, 0, 4097], [false, 0.1, 4096], [true, 0.05, 8192]] as const)('Adam (decoupled=%s, weight decay %f, n=%i) over 5 steps vs the reference', async (decoupled, wd, n) => {
    const rt = await rtP;
    const p0 = rand(n, 1), P = rt.tensor(p0, [n]);
    const opt = decoupled ? new AdamW([P], { lr: 0.01, weightDecay: wd }) : new Adam([P], { lr: 0.01, weightDecay: wd });
    const p = Float64Array.from(p0), m = new Float64Array(n), v = new Float64Array(n);
    for (let step = 1; step <= 5; step++) {
      const g = rand(n, 100 + step, 0.5);
      await opt.step([rt.tensor(g, [n])]);
      adamRef(p, g, m, v, { lr: 0.01, step, weightDecay: wd, decoupled });
    }
    expect(opt.stepCount).toBe(5);
    close(P.toArray(), p, 1e-5, 2e-6, 'param');
    close(opt.m[0]!.toArray(), m, 1e-5, 1e-7, 'm');
    close(opt.v[0]!.toArray(), v, 1e-5, 1e-9, 'v');
    opt.dispose();
  });

  test.each([[0, 0, false, 0, 1001], [0.9, 0, false, 0, 2048], [0.9, 0.1, false, 0.01, 1001], [0.9, 0, true, 0, 4096]] as const)(
    'SGD momentum %f dampening %f nesterov %s wd %f n=%i over 4 steps', async (momentum, dampening, nesterov, weightDecay, n) => {
      const rt = await rtP;
      const p0 = rand(n, 2), P = rt.tensor(p0, [n]);
      const opt = new SGD([P], { lr: 0.1, momentum, dampening, nesterov, weightDecay });
      const p = Float64Array.from(p0), buf = momentum ? new Float64Array(n) : undefined;
      for (let s = 0; s < 4; s++) {
        const g = rand(n, 50 + s);
        await opt.step([rt.tensor(g, [n])]);
        sgdRef(p, g, buf, { lr: 0.1, momentum, dampening, nesterov, weightDecay, first: s === 0 });
      }
      close(P.toArray(), p, 1e-5, 1e-6, 'param');
      opt.dispose();
    });

  test('f32 master weights refresh bf16 / f16 copies; bf16 gradients; gradScale unscales', async () => {
    const rt = await rtP;
    const n = 300;
    const P = rt.tensor(rand(n, 3), [n]);
    const copyB = rt.empty([n], 'bf16'), copyH = rt.empty([n], 'f16');
    const Q = rt.tensor(P.toArray(), [n]);
    const opt = new AdamW([P, Q], { lr: 1e-2, copies: [copyB, copyH] });
    const g = rand(n, 4);
    await opt.step([rt.tensor(g.map((x) => x * 1024), [n], 'bf16'), rt.tensor(g, [n])], { gradScale: 1 / 1024 });
    const p = P.toArray(), q = Q.toArray();
    expect(Array.from(copyB.toArray())).toEqual(Array.from(p, (x) => bf16BitsToF32(f32ToBf16Bits(x))));
    expect(Array.from(copyH.toArray())).toEqual(Array.from(q, (x) => f16BitsToF32(f32ToF16Bits(x))));
    // The bf16 gradient was rounded, so the two parameters agree to bf16 precision of g only.
    close(p, q, 0, 2e-4, 'p vs q');
  });

  test('bad input: gradient count, shapes, hyper-parameters', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]);
    const opt = new Adam([P]);
    await expect(opt.step([])).rejects.toThrow(/Adam.step: 1 parameters but 0 gradients/);
    await expect(opt.step([rt.tensor([1], [1])])).rejects.toThrow(/Adam.step: grads\[0\]: expected shape \[3\], got \[1\]/);
    const [G, M, V] = [rt.zeros([3]), rt.zeros([3]), rt.zeros([3])];
    await expect(ops.adamStep(P, G, M, V, { lr: 0.1, step: 0 })).rejects.toThrow(/step must be an integer >= 1, got 0/);
    await expect(ops.adamStep(P, G, M, V, { lr: 0.1, step: 1, beta1: 1 })).rejects.toThrow(/beta1 must be in \[0, 1\), got 1/);
    await expect(ops.sgdStep(P, G, undefined, { lr: 0.1, momentum: 0.9 })).rejects.toThrow(/momentum needs a buffer/);
    expect(() => new SGD([P], {} as never)).toThrow(/SGD: lr is required/);
  });

  test('bad input names the op and the argument: missing, freed and foreign tensors, missing options', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]), G = rt.zeros([3]), M = rt.zeros([3]), V = rt.zeros([3]);
    const o = { lr: 0.1, step: 1 };
    // Refused at the op's boundary, not by the launcher as "adam: argument 'G' must be a Tensor".
    await expect(ops.adamStep(P, undefined as never, M, V, o)).rejects.toThrow(/^adamStep: grad must be a Tensor, got undefined$/);
    await expect(ops.adamStep(P, G, M, undefined as never, o)).rejects.toThrow(/^adamStep: v must be a Tensor, got undefined$/);
    await expect(ops.adamStep(null as never, G, M, V, o)).rejects.toThrow(/^adamStep: param must be a Tensor, got null$/);
    const freed = rt.zeros([3]);
    freed.free();
    await expect(ops.adamStep(P, G, freed, V, o)).rejects.toThrow(/^adamStep: m has been freed$/);
    await expect(ops.sgdStep(P, freed, undefined, { lr: 0.1 })).rejects.toThrow(/^sgdStep: grad has been freed$/);
    await expect(ops.adamStep(P, G, M, V, { ...o, copy: rt.empty([3], 'i32') })).rejects.toThrow(/adamStep: copy must be f32, f16 or bf16, got i32/);
    const other = await Runtime.create({ threads: 0 });
    await expect(ops.adamStep(P, other.zeros([3]), M, V, o)).rejects.toThrow(/adamStep: grad belongs to a different runtime/);
    const gone = other.zeros([3]);
    other.dispose();
    await expect(ops.sgdStep(gone, G, undefined, { lr: 0.1 })).rejects.toThrow(/^sgdStep: the runtime of param has been disposed/);
    // Missing options: a TypeError saying what was expected, not "Cannot read properties of undefined".
    await expect(ops.adamStep(P, G, M, V, undefined as never)).rejects.toThrow(/^adamStep: options must be an object \{ lr, step, \.\.\. \}, got undefined$/);
    await expect(ops.sgdStep(P, G, undefined, undefined as never)).rejects.toThrow(/^sgdStep: options must be an object \{ lr, \.\.\. \}, got undefined$/);
    await expect(ops.unscaleGrads(undefined as never, 1)).rejects.toThrow(/^unscaleGrads: grads must be an array of tensors, got undefined$/);
    await expect(ops.unscaleGrads([undefined as never], 1)).rejects.toThrow(/^unscaleGrads: grads\[0\] must be a Tensor, got undefined$/);
    expect(P.toArray()).toEqual(new Float32Array([1, 2, 3]));
  });

  test('adamStep / sgdStep refuse overlapping tensors (m === v would silently mix the two moments)', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]), G = rt.tensor([1, 1, 1], [3]), M = rt.zeros([3]), V = rt.zeros([3]);
    const o = { lr: 0.1, step: 1 };
    await expect(ops.adamStep(P, G, M, M, o)).rejects.toThrow(/^adamStep: v must not overlap m \(pass separate tensors\)$/);
    await expect(ops.adamStep(P, P, M, V, o)).rejects.toThrow(/^adamStep: grad must not overlap param/);
    await expect(ops.adamStep(P, G, G, V, o)).rejects.toThrow(/^adamStep: m must not overlap grad/);
    await expect(ops.adamStep(P, G, M, V, { ...o, copy: V })).rejects.toThrow(/^adamStep: copy must not overlap v/);
    // Views: two states that share one element, and the same memory seen through a reshape.
    const both = rt.zeros([5]);
    await expect(ops.adamStep(P, G, both.narrow(0, 3), both.narrow(2, 5), o)).rejects.toThrow(/^adamStep: v must not overlap m$/);
    const P2 = rt.zeros([1, 3]);
    await expect(ops.adamStep(P2, G.reshape([1, 3]), P2.reshape([1, 3]), V.reshape([1, 3]), o)).rejects.toThrow(/adamStep: m must not overlap param/);
    const buf = rt.zeros([3]);
    await expect(ops.sgdStep(P, G, G, { lr: 0.1, momentum: 0.9 })).rejects.toThrow(/^sgdStep: buf must not overlap grad/);
    await expect(ops.sgdStep(P, G, buf, { lr: 0.1, momentum: 0.9, copy: P })).rejects.toThrow(/^sgdStep: copy must not overlap param/);
    await expect(ops.sgdStep(P, G, P, { lr: 0.1, momentum: 0.9 })).rejects.toThrow(/^sgdStep: buf must not overlap param/);
    // A gradient listed twice would be unscaled twice.
    await expect(ops.unscaleGrads([G, M, G], 0.5)).rejects.toThrow(/^unscaleGrads: grads\[2\] must not overlap grads\[0\] \(the same tensor twice\)$/);
    // Nothing was written by a refused step; separate tensors still work.
    expect([P.toArray(), G.toArray(), M.toArray(), V.toArray()].map((t) => Array.from(t))).toEqual([[1, 2, 3], [1, 1, 1], [0, 0, 0], [0, 0, 0]]);
    await ops.adamStep(P, G, M, V, o);
    expect(Array.from(P.toArray(), (x) => +x.toFixed(4))).toEqual([0.9, 1.9, 2.9]);
    await ops.sgdStep(P, G, buf, { lr: 0.1, momentum: 0.9, firstStep: true });
    expect(Array.from(P.toArray(), (x) => +x.toFixed(4))).toEqual([0.8, 1.8, 2.8]);
  });

  test('options of the wrong type are refused, not coerced', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]), G = rt.zeros([3]), M = rt.zeros([3]), V = rt.zeros([3]), B = rt.zeros([3]);
    await expect(ops.adamStep(P, G, M, V, { lr: 0.1, step: 1, decoupled: 'yes' as never })).rejects.toThrow(/^adamStep: decoupled must be a boolean, got "yes"$/);
    await expect(ops.adamStep(P, G, M, V, { lr: '0.1' as never, step: 1 })).rejects.toThrow(/^adamStep: lr must be a finite number >= 0, got "0.1"$/);
    await expect(ops.sgdStep(P, G, B, { lr: 0.1, momentum: 0.9, nesterov: 1 as never })).rejects.toThrow(/^sgdStep: nesterov must be a boolean, got 1$/);
    await expect(ops.sgdStep(P, G, B, { lr: 0.1, momentum: 0.9, firstStep: 'false' as never })).rejects.toThrow(/^sgdStep: firstStep must be a boolean, got "false"$/);
    await expect(ops.mseLoss(P, G, { grad: 'yes' as never })).rejects.toThrow(/^mseLoss: grad must be a boolean, got "yes"$/);
    await expect(ops.huberLoss(P, G, { delta: '1' as never })).rejects.toThrow(/^huberLoss: delta must be a finite number > 0, got "1"$/);
    await expect(ops.l1Loss(P, G, null as never)).rejects.toThrow(/^l1Loss: options must be an object, got null$/);
    const gone = rt.zeros([3]);
    gone.free();
    await expect(ops.mseLoss(P, gone)).rejects.toThrow(/^mseLoss: target has been freed$/);
    expect(() => new LossScaler({ growthFactor: '3' as never })).toThrow(/^LossScaler: growthFactor must be a finite number > 1, got "3"$/);
    expect(() => new LossScaler({ initScale: '1024' as never })).toThrow(/^LossScaler: initScale must be a finite number > 0, got "1024"$/);
    expect(() => new LossScaler(null as never)).toThrow(/^LossScaler: options must be an object, got null$/);
    const s = new LossScaler();
    await expect(s.step([G], undefined as never)).rejects.toThrow(/^LossScaler.step: apply must be a function \(the optimiser step\), got undefined$/);
    expect(() => s.update('no' as never)).toThrow(/^LossScaler.update: overflow must be a boolean, got "no"$/);
    expect(s.scale).toBe(2 ** 16);
  });

  test('the learning rate can be set between steps (a schedule), keeping the state; a bad one is refused', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]), G = rt.tensor([1, -1, 2], [3]);
    const sgd = new SGD([P], { lr: 0.5, momentum: 0.9 });
    await sgd.step([G]); // buffer = g, p -= 0.5 g
    sgd.lr = 0.25;
    await sgd.step([G]); // buffer = 0.9 g + g, p -= 0.25 · 1.9 g
    close(P.toArray(), [1, 2, 3].map((p, i) => p - 0.5 * [1, -1, 2][i]! - 0.25 * 1.9 * [1, -1, 2][i]!), 1e-6, 1e-6, 'p');
    const Q = rt.tensor([1, 2, 3], [3]);
    const adam = new AdamW([Q], { lr: 0.1 });
    adam.lr = 0;
    await adam.step([G]);
    expect(Array.from(Q.toArray())).toEqual([1, 2, 3]); // lr 0: neither the update nor the decay moves it
    expect(adam.stepCount).toBe(1);
    expect(() => (adam.lr = -1)).toThrow(/^AdamW: lr must be a finite number >= 0, got -1$/);
    expect(() => (sgd.lr = NaN)).toThrow(/^SGD: lr must be a finite number >= 0, got NaN$/);
    expect([adam.lr, sgd.lr]).toEqual([0, 0.25]);
  });

  test('Adam / SGD: parameters and hyper-parameters checked at construction, a step checked whole before it runs', async () => {
    const rt = await rtP;
    const P = rt.tensor([1, 2, 3], [3]), Q = rt.tensor([4, 5], [2]);
    expect(() => new Adam([1, 2] as never)).toThrow(/^Adam: params\[0\] must be a Tensor, got number$/);
    expect(() => new AdamW([P, undefined] as never)).toThrow(/^AdamW: params\[1\] must be a Tensor, got undefined$/);
    expect(() => new Adam(P as never)).toThrow(/^Adam: params must be a non-empty array of tensors, got a tensor of shape \[3\] \(f32\)$/);
    expect(() => new Adam([P, Q, P])).toThrow(/^Adam: params\[2\] must not overlap params\[0\] \(the same tensor twice\)$/);
    expect(() => new SGD([P, P.reshape([1, 3])], { lr: 0.1 })).toThrow(/^SGD: params\[1\] must not overlap params\[0\]/);
    expect(() => new Adam([P], null as never)).toThrow(/^Adam: options must be an object, got null$/);
    expect(() => new Adam([P], { beta2: 1 })).toThrow(/^Adam: beta2 must be in \[0, 1\), got 1$/);
    expect(() => new AdamW([P], { lr: -1 })).toThrow(/^AdamW: lr must be a finite number >= 0, got -1$/);
    expect(() => new Adam([P], { copies: [rt.empty([2], 'bf16')] })).toThrow(/^Adam: copies\[0\]: expected shape \[3\], got \[2\]$/);
    expect(() => new Adam([P], { copies: rt.empty([3], 'bf16') as never })).toThrow(/^Adam: copies must be an array of tensors/);
    // A copy over another parameter (or another copy) would overwrite it at every step.
    const Q3 = rt.tensor([7, 8, 9], [3]), C = rt.empty([3], 'bf16');
    expect(() => new SGD([P, Q3], { lr: 0.1, copies: [Q3, C] })).toThrow(/^SGD: (copies\[0\] must not overlap params\[1\]|params\[1\] must not overlap copies\[0\])/);
    expect(() => new Adam([P, Q3], { copies: [C, C] })).toThrow(/^Adam: copies\[1\] must not overlap copies\[0\] \(the same tensor twice\)$/);
    // ... and so would one over a step's gradient, which is read after the copy is written.
    const withCopies = new SGD([P, Q3], { lr: 0.1, copies: [C, rt.empty([3], 'bf16')] });
    await expect(withCopies.step([C, rt.zeros([3])])).rejects.toThrow(/^SGD.step: (grads\[0\] must not overlap copies\[0\]|copies\[0\] must not overlap grads\[0\])/);
    await expect(withCopies.step([rt.zeros([3]), P])).rejects.toThrow(/^SGD.step: (grads\[1\] must not overlap params\[0\]|params\[0\] must not overlap grads\[1\])/);
    expect(Array.from(Q3.toArray())).toEqual([7, 8, 9]);
    expect(() => new SGD([P], undefined as never)).toThrow(/^SGD: options must be an object { lr, ... }, got undefined$/);
    expect(() => new SGD([P], { lr: '0.1' as never })).toThrow(/^SGD: lr must be a finite number >= 0, got "0.1"$/);
    expect(() => new SGD([P], { lr: 0.1, momentum: 0.9, nesterov: 'yes' as never })).toThrow(/^SGD: nesterov must be a boolean, got "yes"$/);
    // A bad gradient for the second parameter leaves the first one (and the step count) untouched.
    for (const opt of [new Adam([P, Q], { lr: 0.1 }), new SGD([P, Q], { lr: 0.1, momentum: 0.9 })]) {
      const name = opt instanceof Adam ? 'Adam' : 'SGD';
      const gp = rt.tensor([1, 1, 1], [3]);
      await expect(opt.step([gp, rt.zeros([3])])).rejects.toThrow(new RegExp(`^${name}.step: grads\\[1\\]: expected shape \\[2\\], got \\[3\\]$`));
      await expect(opt.step([gp, Q])).rejects.toThrow(new RegExp(`^${name}.step: grads\\[1\\] must not overlap params\\[1\\]`));
      await expect(opt.step(undefined as never)).rejects.toThrow(new RegExp(`^${name}.step: grads must be an array of tensors \\(one per parameter\\), got undefined$`));
      await expect(opt.step([gp, rt.zeros([2])], null as never)).rejects.toThrow(new RegExp(`^${name}.step: options must be an object, got null$`));
      await expect(opt.step([gp, rt.zeros([2])], { gradScale: NaN })).rejects.toThrow(/gradScale must be a finite number, got NaN/);
      expect(Array.from(P.toArray())).toEqual([1, 2, 3]);
      expect(opt.stepCount).toBe(0);
      opt.dispose();
      await expect(opt.step([gp, rt.zeros([2])])).rejects.toThrow(new RegExp(`^${name}.step: this optimiser was disposed$`));
    }
  });
});

describe('loss scaler', () => {
  test('overflow skips the step and backs off; N clean steps grow the scale', async () => {
    const rt = await rtP;
    const s = new LossScaler({ initScale: 1024, growthInterval: 3 });
    const G = rt.empty([5000]);
    let applied = 0;
    const apply = (): void => void applied++;
    // Clean: unscaled in place by 1/1024.
    G.write(Array.from({ length: 5000 }, (_, i) => (i % 7) * 1024));
    expect(await s.step([G], apply)).toBe(true);
    expect(G.toArray()[3]).toBe(3);
    expect([s.scale, s.growthTracker, applied]).toEqual([1024, 1, 1]);
    // Inf in the last element of the last block; NaN in another tensor.
    for (const bad of [Infinity, -Infinity, NaN]) {
      const data = new Float32Array(5000).fill(1);
      data[4999] = bad;
      G.write(data);
      expect(await s.step([rt.tensor([1, 2], [2]), G], apply)).toBe(false);
    }
    expect([s.scale, s.growthTracker, s.skipped, applied]).toEqual([128, 0, 3, 1]);
    // A finite value that overflows only after... stays finite when unscaled: clean.
    for (let i = 0; i < 3; i++) {
      G.write(new Float32Array(5000).fill(3e38));
      expect(await s.step([G], apply)).toBe(true);
    }
    expect([s.scale, s.growthTracker, applied]).toEqual([256, 0, 4]);
    expect(s.scaleLoss(0.5)).toBe(128);
  });

  test.each([
    ['f16', 40000, 0.5, 80000],
    ['f16', 32760, 0.5, 65520],
    // Finite in f32 (under 3.4028e38), past bf16's 3.3962e38.
    ['bf16', 2 ** 127, 0.5005, 3.3994e38],
  ] as const)('%s: a gradient of %f unscaled by 1/%f overflows its dtype (%f): flagged, the step skipped', async (dtype, g, scale, unscaled) => {
    const rt = await rtP;
    const n = 5000;
    const s = new LossScaler({ initScale: scale });
    const P = rt.tensor(rand(n, 1), [n]);
    const p0 = P.toArray();
    const opt = new SGD([P], { lr: 0.1 });
    const data = new Float32Array(n).fill(1);
    data[n - 1] = g;
    const G = rt.tensor(data, [n], dtype);
    expect(Number.isFinite(Math.fround(unscaled))).toBe(true);
    expect(await s.step([G], () => opt.step([G]))).toBe(false);
    expect(G.toArray()[n - 1]).toBe(Infinity);
    expect(opt.stepCount).toBe(0);
    expect(P.toArray()).toEqual(p0);
    expect([s.scale, s.skipped]).toEqual([scale / 2, 1]);
    // Just under the dtype's overflow: stored finite, not flagged, the step applied.
    G.write(new Float32Array(n).fill(dtype === 'f16' ? 65504 * scale : 3.38e38 * scale));
    expect(await ops.unscaleGrads([G], 1 / scale)).toBe(false);
    expect(G.toArray().every(Number.isFinite)).toBe(true);
    opt.dispose();
  });

  test('bad settings are rejected', () => {
    expect(() => new LossScaler({ backoffFactor: 1 })).toThrow(/backoffFactor must be in \(0, 1\)/);
    expect(() => new LossScaler({ growthInterval: 0 })).toThrow(/growthInterval must be an integer >= 1/);
  });
});

describe('elementwise and row ops: argument checks', () => {
  test('options, dtypes and outputs are checked at the op, naming it; out may be an input itself but not overlap one', async () => {
    const rt = await rtP;
    const x = rt.tensor([-1, 2, -3, 4], [2, 2]);
    await expect(ops.softmax(x, { dtype: 'f64' as never })).rejects.toThrow(/^softmax: dtype must be one of 'f32', 'f16', 'bf16', got "f64"$/);
    await expect(ops.activation('relu', x, { dtype: 'i32' })).rejects.toThrow(/^activation: dtype must be one of 'f32', 'f16', 'bf16', got "i32"$/);
    await expect(ops.activation('relu', x, null as never)).rejects.toThrow(/^activation: options must be an object, got null$/);
    await expect(ops.cast(x, 'f16', null as never)).rejects.toThrow(/^cast: options must be an object, got null$/);
    await expect(ops.logSoftmax(x, 'f16' as never)).rejects.toThrow(/^logSoftmax: options must be an object, got "f16"$/);
    await expect(ops.activation('relu', x, { dtype: 'f16', out: rt.empty([2, 2]) })).rejects.toThrow(/^activation: out has dtype f32, expected f16$/);
    await expect(ops.cast(x, 'bf16', { out: rt.empty([2, 2], 'f16') })).rejects.toThrow(/^cast: out has dtype f16, expected bf16$/);
    // Two views of one buffer, shifted by a row: the programs would read what another wrote.
    const buf = rt.tensor([-1, 2, -3, 4, -5, 6], [3, 2]);
    const a = buf.narrow(0, 2), b = buf.narrow(1, 3);
    await expect(ops.activation('relu', a, { out: b })).rejects.toThrow(/^activation: out must not overlap x \(it may be x itself, in place\)$/);
    await expect(ops.activationBackward('relu', a, x, { out: b })).rejects.toThrow(/^activationBackward: out must not overlap dy/);
    await expect(ops.softmax(a, { out: b })).rejects.toThrow(/^softmax: out must not overlap x/);
    await expect(ops.softmaxBackward(x, a, { out: b })).rejects.toThrow(/^softmaxBackward: out must not overlap y/);
    await expect(ops.activation('relu', a, { out: buf.reshape([6]).narrow(0, 4).reshape([2, 2]), dtype: 'f32' })).resolves.toBeDefined();
    expect(Array.from(buf.toArray())).toEqual([0, 2, 0, 4, -5, 6]);
    // In place, over the very same memory, is fine.
    const y = rt.tensor([1, 2, 3, 4], [2, 2]);
    expect(await ops.softmax(y, { out: y })).toBe(y);
    close(y.toArray(), [1 / (1 + Math.E), Math.E / (1 + Math.E), 1 / (1 + Math.E), Math.E / (1 + Math.E)], 1e-6, 1e-7, 'softmax in place');
    const other = await Runtime.create({ threads: 0 });
    const gone = other.zeros([2]);
    other.dispose();
    await expect(ops.activation('gelu', gone)).rejects.toThrow(/^activation: the runtime of x has been disposed/);
    await expect(ops.softmax(gone)).rejects.toThrow(/^softmax: the runtime of x has been disposed/);
  });
});

describe('jit.map', () => {
  test('arrow and function forms, tensors and numbers, awkward sizes, dtypes', async () => {
    const rt = await rtP;
    const swiglu = jit.map((a: number, b: number) => a * sigmoid(a) * b);
    expect(swiglu.helperSource).toMatch(/^function f\(a, b\) \{ return a \* sigmoid\(a\) \* b; \}$/);
    const a = rand(100, 5, 3), b = rand(100, 6);
    close((await swiglu(rt.tensor(a, [100]), rt.tensor(b, [100]))).toArray(), Array.from(a, (v, i) => (v / (1 + Math.exp(-v))) * b[i]!), 1e-5, 1e-7, 'swiglu');
    const fma = jit.map('(x, y, s) => x * s + y');
    for (const n of [1, 3, 1000, 2048, 5001]) {
      const x = rand(n, n), y = rand(n, n + 1);
      const out = await fma(rt.tensor(x, [n]), rt.tensor(y, [n]), 0.5);
      close(out.toArray(), Array.from(x, (v, i) => Math.fround(Math.fround(v * 0.5) + y[i]!)), 1e-7, 0, `n=${n}`);
    }
    const silu = jit.map(function silu(x: number) { return x * sigmoid(x); });
    const x = rand(777, 1, 4);
    const h = await silu(rt.tensor(x, [7, 111], 'bf16'));
    expect(h.shape).toEqual([7, 111]);
    expect(h.dtype).toBe('bf16');
    const xs = x.map((v) => bf16BitsToF32(f32ToBf16Bits(v)));
    close(h.toArray(), Array.from(xs, (v) => bf16BitsToF32(f32ToBf16Bits(v / (1 + Math.exp(-v))))), 2 ** -7, 1e-6, 'silu');
    const f32out = await silu(rt.tensor(x, [777], 'bf16'), { dtype: 'f32' });
    expect(f32out.dtype).toBe('f32');
    const block = jit.map('(x) => { const y = x * x; return where(x > 0.0, y, -y); }');
    close((await block(rt.tensor([-2, 3], [2]))).toArray(), [-4, 9], 0, 0, 'block');
  });

  test('errors: wrong arity, shape mismatch, no tensor, unsupported body', async () => {
    const rt = await rtP;
    const add = jit.map('(a, b) => a + b');
    const x = rt.tensor([1, 2, 3], [3]);
    await expect(add(x)).rejects.toThrow(/takes 2 inputs, got 1/);
    await expect(add(x, rt.tensor([1, 2], [2]))).rejects.toThrow(/input 1 has shape \[2\], expected \[3\]/);
    await expect(add(1, 2)).rejects.toThrow(/needs at least one tensor input/);
    const bad = jit.map((a: number) => Math.exp(a));
    await expect(bad(x)).rejects.toThrow(KernelCompileError);
    expect(() => jit.map('not a function')).toThrow(/expected a function or an arrow function/);
  });
});

declare function sigmoid(x: number): number;
