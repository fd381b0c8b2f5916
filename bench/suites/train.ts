/**
 * @fileoverview Suites for the elementwise, row, loss, optimiser and mixed-precision ops:
 * `activations`, `softmax`, `layernorm`, `losses`, `optim`, `amp`. Each case times tilejit on 1
 * and 2 threads next to plain JS written the way a competent developer would (Float32Array
 * loops, no allocation), in one process. Rates are compulsory traffic: every input read once
 * and every output written once, in storage bytes.
 */
import { ops, Runtime, type Activation, type Tensor } from '../../src/index.js';
import { line, maxAbsErr, medianMs, randArray, type BenchContext } from '../harness.js';
import { geluTanh } from '../kernels.js';
import { loadTf, ortRunner, timePeer, type OnnxNode } from '../peers.js';

type Case = {
  suite: string;
  name: string;
  params: Record<string, unknown>;
  bytes: number;
  /** Plain JS: fills and returns its output. */
  js: () => ArrayLike<number>;
  /**
   * The reference to check against, from plain JS's first output, built outside its timing
   * (default: a copy, since the timed calls overwrite it).
   */
  want?: (jsOut: ArrayLike<number>) => ArrayLike<number>;
  /** Builds the tensors in `rt` and returns the timed call and the output to check. */
  setup: (rt: Runtime) => { run: () => Promise<unknown>; out: () => ArrayLike<number> };
  /** onnxruntime-web: one node over float inputs (2 threads). */
  ort?: { nodes: OnnxNode[]; inputs: [string, number[], Float32Array][]; output: [string, number[]] };
  /** tfjs-backend-wasm: the op on tensors made from the inputs (1 thread). */
  tf?: (tf: Awaited<ReturnType<typeof loadTf>>) => () => Promise<ArrayLike<number>>;
};

async function runCase(ctx: BenchContext, c: Case): Promise<void> {
  const slow = c.bytes > 200e6;
  const first = c.js();
  const want = c.want ? c.want(first) : Float32Array.from(first);
  const jsMs = await medianMs(c.js, { quick: ctx.quick, slow });
  for (const threads of [1, 2]) {
    const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
    const s = c.setup(rt);
    await s.run();
    const err = maxAbsErr(s.out(), want);
    const ms = await medianMs(s.run, { quick: ctx.quick, slow });
    ctx.emit(line(c.suite, c.name, 'tilejit', threads, ms, { bytes: c.bytes }, err, c.params));
    rt.dispose();
  }
  ctx.emit(line(c.suite, c.name, 'naive-js', 1, jsMs, { bytes: c.bytes }, 0, c.params));
  const peer = { suite: c.suite, name: c.name, want, work: { bytes: c.bytes }, params: c.params, slow };
  if (c.ort) {
    const o = c.ort;
    await timePeer(ctx, {
      ...peer, impl: 'ort-web', threads: 2,
      make: async () => {
        const run = await ortRunner(2, o.nodes, o.inputs.map(([n, sh]) => [n, sh] as const), [o.output]);
        const feeds = Object.fromEntries(o.inputs.map(([n, , d]) => [n, d]));
        return () => run(feeds);
      },
    });
  }
  if (c.tf) {
    const f = c.tf;
    await timePeer(ctx, { ...peer, impl: 'tfjs-wasm', threads: 1, make: async () => f(await loadTf()) });
  }
}

/** A tfjs call that returns its result's data and frees the result. */
const tfRun = (op: () => import('@tensorflow/tfjs-core').Tensor) => async (): Promise<ArrayLike<number>> => {
  const t = op();
  const d = await t.data();
  t.dispose();
  return d as Float32Array;
};

const erf = (x: number): number => {
  // Abramowitz-Stegun 7.1.26 is too coarse for a check; plain JS users reach for a series.
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = 1 - t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 +
    t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? y : -y;
};

const JS_ACT: Partial<Record<Activation, (v: number) => number>> = {
  gelu: (v) => 0.5 * v * (1 + erf(v * Math.SQRT1_2)),
  gelu_tanh: (v) => 0.5 * v * (1 + Math.tanh(0.7978845608 * (v + 0.044715 * v * v * v))),
};

export async function activationsSuite(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 1 << 20 : 1 << 22;
  const x = randArray(n, 3, 4);
  for (const act of ['gelu_tanh', 'gelu'] as const) {
    const f = JS_ACT[act]!;
    const out = new Float32Array(n);
    await runCase(ctx, {
      suite: 'activations', name: `${act} ${n} f32`, params: { n, dtype: 'f32', op: act }, bytes: 8 * n,
      js: () => {
        for (let i = 0; i < n; i++) out[i] = f(x[i]!);
        return out;
      },
      setup: (rt) => {
        const X = rt.tensor(x, [n]), Y = rt.empty([n]);
        return { run: () => ops.activation(act, X, { out: Y }), out: () => Y.toArray() };
      },
      ort: { nodes: [{ op: act === 'gelu' ? 'Gelu' : 'FastGelu', domain: 'com.microsoft', inputs: ['x'], outputs: ['y'] }], inputs: [['x', [n], x]], output: ['y', [n]] },
    });
  }
  // The compiler core's case: GELU written in the kernel language by a user (bench/kernels.ts).
  const out = new Float32Array(n);
  await runCase(ctx, {
    suite: 'activations', name: `gelu tanh ${n} f32 (user kernel)`, params: { n, dtype: 'f32', approximate: 'tanh' }, bytes: 8 * n,
    js: () => {
      for (let i = 0; i < n; i++) out[i] = JS_ACT.gelu_tanh!(x[i]!);
      return out;
    },
    setup: (rt) => {
      const X = rt.tensor(x, [n]), Y = rt.empty([n]);
      const opts = { grid: [Math.ceil(n / 1024)], BLOCK: 1024, EVEN: n % 1024 === 0, runtime: rt };
      return { run: () => geluTanh.launch(opts, X, Y, n), out: () => Y.toArray() };
    },
  });
}

export async function softmaxSuite(ctx: BenchContext): Promise<void> {
  const [M, N] = ctx.quick ? [1024, 1024] : [4096, 1024];
  const x = randArray(M * N, 5, 6);
  const out = new Float32Array(M * N);
  await runCase(ctx, {
    suite: 'softmax', name: `softmax ${M}x${N} f32`, params: { M, N, dtype: 'f32' }, bytes: 8 * M * N,
    js: () => {
      for (let r = 0; r < M; r++) {
        const o = r * N;
        let mx = -Infinity;
        for (let c = 0; c < N; c++) mx = Math.max(mx, x[o + c]!);
        let s = 0;
        for (let c = 0; c < N; c++) s += out[o + c] = Math.exp(x[o + c]! - mx);
        const inv = 1 / s;
        for (let c = 0; c < N; c++) out[o + c]! *= inv;
      }
      return out;
    },
    setup: (rt) => {
      const X = rt.tensor(x, [M, N]), Y = rt.empty([M, N]);
      return { run: () => ops.softmax(X, { out: Y }), out: () => Y.toArray() };
    },
    ort: { nodes: [{ op: 'Softmax', inputs: ['x'], outputs: ['y'], attrs: [{ name: 'axis', i: -1 }] }], inputs: [['x', [M, N], x]], output: ['y', [M, N]] },
    tf: (tf) => {
      const X = tf.tensor2d(x, [M, N]);
      return tfRun(() => tf.softmax(X));
    },
  });
}

export async function layernormSuite(ctx: BenchContext): Promise<void> {
  const [M, N] = ctx.quick ? [1024, 1024] : [4096, 1024];
  const x = randArray(M * N, 6, 3), w = randArray(N, 7), b = randArray(N, 8);
  const out = new Float32Array(M * N);
  await runCase(ctx, {
    suite: 'layernorm', name: `layer norm ${M}x${N} f32`, params: { M, N, dtype: 'f32', affine: true }, bytes: 8 * M * N,
    js: () => {
      for (let r = 0; r < M; r++) {
        const o = r * N;
        let s = 0;
        for (let c = 0; c < N; c++) s += x[o + c]!;
        const mean = s / N;
        let v = 0;
        for (let c = 0; c < N; c++) v += (x[o + c]! - mean) ** 2;
        const rstd = 1 / Math.sqrt(v / N + 1e-5);
        for (let c = 0; c < N; c++) out[o + c] = (x[o + c]! - mean) * rstd * w[c]! + b[c]!;
      }
      return out;
    },
    setup: (rt) => {
      const X = rt.tensor(x, [M, N]), W = rt.tensor(w, [N]), B = rt.tensor(b, [N]), Y = rt.empty([M, N]);
      const run = async (): Promise<void> => {
        const r = await ops.layerNorm(X, { weight: W, bias: B, out: Y });
        r.mean?.free();
        r.rstd.free();
      };
      return { run, out: () => Y.toArray() };
    },
    ort: {
      nodes: [{ op: 'LayerNormalization', inputs: ['x', 'w', 'b'], outputs: ['y'], attrs: [{ name: 'axis', i: -1 }, { name: 'epsilon', f: 1e-5 }] }],
      inputs: [['x', [M, N], x], ['w', [N], w], ['b', [N], b]], output: ['y', [M, N]],
    },
  });
}

export async function lossesSuite(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 1 << 20 : 1 << 22;
  const p = randArray(n, 9, 2), t = randArray(n, 10, 2);
  const grad = new Float32Array(n);
  let jsLoss = 0;
  await runCase(ctx, {
    suite: 'losses', name: `mse mean + grad ${n} f32`, params: { n, dtype: 'f32', loss: 'mse', reduction: 'mean' }, bytes: 12 * n,
    // Both outputs are checked: the gradient, then the loss value as one more element.
    want: (gr) => {
      const w = new Float32Array(n + 1);
      w.set(gr);
      w[n] = jsLoss;
      return w;
    },
    js: () => {
      let s = 0;
      for (let i = 0; i < n; i++) {
        const d = p[i]! - t[i]!;
        s += d * d;
        grad[i] = (2 * d) / n;
      }
      jsLoss = s / n;
      return grad;
    },
    setup: (rt) => {
      const P = rt.tensor(p, [n]), T = rt.tensor(t, [n]);
      let g: Tensor | undefined;
      let last = NaN;
      const run = async (): Promise<void> => {
        g?.free();
        const r = await ops.mseLoss(P, T, { grad: true });
        r.loss.free();
        last = r.value!;
        g = r.grad;
      };
      const out = (): Float32Array => {
        const o = new Float32Array(n + 1);
        o.set(g!.toArray());
        o[n] = last;
        return o;
      };
      return { run, out };
    },
  });
}

export async function optimSuite(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 1 << 20 : 10_000_000;
  const p0 = randArray(n, 11), g = randArray(n, 12, 0.1);
  const p = Float32Array.from(p0), m = new Float32Array(n), v = new Float32Array(n);
  await runCase(ctx, {
    suite: 'optim', name: `adam step ${n} f32`, params: { n, dtype: 'f32', optimizer: 'adam' }, bytes: 28 * n,
    js: () => {
      // Step 1000 each time: the same arithmetic as tilejit's timed calls.
      const lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8, step = 1000;
      const ss = lr / (1 - b1 ** step), ib = 1 / Math.sqrt(1 - b2 ** step);
      for (let i = 0; i < n; i++) {
        const gi = g[i]!;
        const mi = m[i] = b1 * m[i]! + (1 - b1) * gi;
        const vi = v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        p[i]! -= (ss * mi) / (Math.sqrt(vi) * ib + eps);
      }
      return p;
    },
    setup: (rt) => {
      const P = rt.tensor(p0, [n]), G = rt.tensor(g, [n]), M1 = rt.zeros([n]), V = rt.zeros([n]);
      const run = (): Promise<void> => ops.adamStep(P, G, M1, V, { lr: 1e-3, step: 1000 });
      // The check reads the first step, taken from the same start as plain JS's first.
      return { run, out: () => P.toArray() };
    },
  });
}

export async function ampSuite(ctx: BenchContext): Promise<void> {
  const n = ctx.quick ? 1 << 20 : 1 << 22;
  const x = randArray(n, 13, 100);
  const u16 = new Uint16Array(n);
  await runCase(ctx, {
    suite: 'amp', name: `cast f32 -> bf16 ${n}`, params: { n, from: 'f32', to: 'bf16' }, bytes: 6 * n,
    js: () => {
      const xb = new Uint32Array(x.buffer, x.byteOffset, n);
      for (let i = 0; i < n; i++) {
        const b = xb[i]!;
        u16[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // round to nearest even (finite inputs)
      }
      return u16;
    },
    // Widened back to f32 for the check (tilejit's toArray reads bf16 as f32), outside the timing.
    want: (bits) => {
      const f32 = new Float32Array(n), u32 = new Uint32Array(f32.buffer);
      for (let i = 0; i < n; i++) u32[i] = bits[i]! << 16;
      return f32;
    },
    setup: (rt) => {
      const X = rt.tensor(x, [n]), Y = rt.empty([n], 'bf16');
      return { run: () => ops.cast(X, 'bf16', { out: Y }), out: () => Y.toArray() };
    },
  });
}
