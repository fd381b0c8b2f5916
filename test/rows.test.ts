/**
 * @fileoverview Row kernels and activations against the f64 references in templates/reference.ts:
 * awkward sizes, storage dtypes, both the one-tile and the chunked row paths, and every backward
 * checked against central finite differences of the reference forward.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { ops, Runtime, type Activation } from '../src/index.js';
import { bf16BitsToF32, f16BitsToF32, f32ToBf16Bits, f32ToF16Bits } from '../src/util/half.js';
import { activationGradRef, activationRef, normRef, softmaxBackwardRef, softmaxRef } from '../templates/reference.js';
import { chooseRowConfig } from '../templates/softmax.js';
import { close, rand } from './util/data.js';

const rtP = Runtime.create({ threads: 2 });
afterAll(async () => (await rtP).dispose());

/** The value a storage dtype keeps of x. */
function stored(x: number, dtype: string): number {
  if (dtype === 'f16') return f16BitsToF32(f32ToF16Bits(x));
  if (dtype === 'bf16') return bf16BitsToF32(f32ToBf16Bits(x));
  return Math.fround(x);
}

/** Relative tolerance of one storage rounding. */
const ULP: Record<string, number> = { f32: 2 ** -23, f16: 2 ** -10, bf16: 2 ** -7 };

/** Central difference of a scalar function of x, per element. */
function numericGrad(x: Float64Array, f: (x: Float64Array) => number, h = 1e-6): Float64Array {
  const g = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const keep = x[i]!;
    x[i] = keep + h;
    const up = f(x);
    x[i] = keep - h;
    const down = f(x);
    x[i] = keep;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

const dot = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!;
  return s;
};

const maxAbsDiff = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
};

const ACTS: Activation[] = ['relu', 'gelu', 'gelu_tanh', 'tanh', 'sigmoid', 'silu'];

describe('activations', () => {
  test.each(ACTS.flatMap((a) => [1, 3, 1000, 2048, 4097].flatMap((n) => (['f32', 'f16', 'bf16'] as const).map((d) => [a, n, d] as const))))(
    '%s forward and backward, n=%i %s', async (name, n, dtype) => {
      const rt = await rtP;
      const x = rand(n, n * 31 + name.length, 6);
      const dy = rand(n, n + 7, 2);
      const X = rt.tensor(x, [n], dtype), DY = rt.tensor(dy, [n], dtype);
      const xs = x.map((v) => stored(v, dtype)), dys = dy.map((v) => stored(v, dtype));
      const y = await ops.activation(name, X);
      const dx = await ops.activationBackward(name, DY, X);
      expect(y.dtype).toBe(dtype);
      // f32: the math library's few ulp; halves: one rounding of the result on top.
      const rel = dtype === 'f32' ? 2e-6 : 2 * ULP[dtype]!;
      close(y.toArray(), Array.from(xs, (v) => stored(activationRef(name, v), dtype)), rel, 1e-6, 'y');
      close(dx.toArray(), Array.from(xs, (v, i) => stored(dys[i]! * activationGradRef(name, v), dtype)), rel * 4, 4e-6, 'dx');
      for (const t of [X, DY, y, dx]) t.free();
    });

  test.each(ACTS)('%s backward matches finite differences of the forward', async (name) => {
    const rt = await rtP;
    // Keep away from relu's kink at 0.
    const x = rand(64, 99, 4).map((v) => (Math.abs(v) < 1e-3 ? 0.5 : v));
    const w = rand(64, 5);
    const dx = (await ops.activationBackward(name, rt.tensor(w, [64]), rt.tensor(x, [64]))).toArray();
    const num = numericGrad(Float64Array.from(x), (xx) => dot(w, xx.map((v) => activationRef(name, v))));
    close(dx, num, 1e-4, 1e-5, 'dx');
  });

  test('special values: relu(-0) = 0, sigmoid(±Infinity), tanh(NaN) is NaN, gelu(-Infinity) = 0', async () => {
    const rt = await rtP;
    const X = rt.tensor([-0, Infinity, -Infinity, NaN, 0], [5]);
    expect(Array.from((await ops.activation('sigmoid', X)).toArray()).slice(0, 3)).toEqual([0.5, 1, 0]);
    expect(Number.isNaN((await ops.activation('tanh', X)).toArray()[3])).toBe(true);
    expect((await ops.activation('gelu', X)).toArray()[1]).toBe(Infinity);
    expect((await ops.activation('silu', X)).toArray()[1]).toBe(Infinity);
    expect((await ops.activation('relu', X)).toArray()[0]).toBe(0);
  });

  test('ops.gelu(x, { approximate }): the erf form by default, the tanh form on request, against the reference', async () => {
    const rt = await rtP;
    const x = rand(1000, 17, 6);
    const X = rt.tensor(x, [1000]);
    close((await ops.gelu(X)).toArray(), Array.from(x, (v) => activationRef('gelu', v)), 2e-6, 1e-6, 'gelu');
    close((await ops.gelu(X, { approximate: 'none' })).toArray(), Array.from(x, (v) => activationRef('gelu', v)), 2e-6, 1e-6, 'gelu none');
    const tanh = (await ops.gelu(X, { approximate: 'tanh' })).toArray();
    close(tanh, Array.from(x, (v) => activationRef('gelu_tanh', v)), 2e-6, 1e-6, 'gelu tanh');
    // The two forms differ (by up to ~1e-3 near |x| = 2), so the option is not ignored.
    expect(Math.max(...Array.from(tanh, (v, i) => Math.abs(v - activationRef('gelu', x[i]!))))).toBeGreaterThan(1e-5);
    const out = rt.empty([1000], 'bf16');
    expect(await ops.gelu(X, { out })).toBe(out);
    await expect(ops.gelu(X, { approximate: 'fast' as never })).rejects.toThrow(/^gelu: approximate must be one of 'none', 'tanh', got "fast"$/);
    await expect(ops.gelu(X, 'tanh' as never)).rejects.toThrow(/^gelu: options must be an object, got "tanh"$/);
    await expect(ops.gelu(undefined as never)).rejects.toThrow(/^gelu: x must be a Tensor/);
  });

  test('cast f32 -> f16 / bf16 -> f32 rounds to nearest even, and out= is used', async () => {
    const rt = await rtP;
    const x = rand(3001, 3, 1000);
    const X = rt.tensor(x, [3001]);
    for (const d of ['f16', 'bf16'] as const) {
      const h = await ops.cast(X, d);
      expect(h.dtype).toBe(d);
      const back = await ops.cast(h, 'f32');
      expect(Array.from(back.toArray())).toEqual(Array.from(x, (v) => stored(v, d)));
    }
    const out = rt.empty([3001], 'bf16');
    expect(await ops.cast(X, 'bf16', { out })).toBe(out);
  });

  test('bad input: unknown activation, i32 tensor, shape mismatch', async () => {
    const rt = await rtP;
    const X = rt.tensor([1, 2, 3], [3]);
    await expect(ops.activation('swish' as Activation, X)).rejects.toThrow(/activation: name must be one of 'relu'.*got "swish"/);
    await expect(ops.activation('relu', rt.tensor([1], [1], 'i32'))).rejects.toThrow(/x must be f32, f16 or bf16, got i32/);
    await expect(ops.activationBackward('relu', rt.tensor([1, 2], [2]), X)).rejects.toThrow(/dy: expected shape \[3\], got \[2\]/);
    await expect(ops.cast(X, 'i32' as 'f32')).rejects.toThrow(/cast: dtype must be one of/);
  });
});

const ROW_SHAPES: [number, number][] = [[1, 1], [3, 5], [4, 1000], [7, 1024], [33, 17], [256, 128], [2, 8192], [3, 8193], [2, 20000], [1001, 96]];

describe('softmax and log-softmax', () => {
  test.each(ROW_SHAPES.flatMap(([M, N]) => [false, true].map((log) => [M, N, log] as const)))('[%i, %i] log=%s forward and backward', async (M, N, log) => {
    const rt = await rtP;
    const x = rand(M * N, M * 131 + N, 8);
    const dy = rand(M * N, N + 1);
    const X = rt.tensor(x, [M, N]);
    const y = await (log ? ops.logSoftmax(X) : ops.softmax(X));
    const want = softmaxRef(x, M, N, log);
    close(y.toArray(), want, 2e-5, log ? 2e-5 : 1e-7, 'y');
    const yv = y.toArray();
    const dx = await (log ? ops.logSoftmaxBackward(rt.tensor(dy, [M, N]), y) : ops.softmaxBackward(rt.tensor(dy, [M, N]), y));
    close(dx.toArray(), softmaxBackwardRef(yv, dy, M, N, log), 1e-4, 1e-6 * Math.sqrt(N), 'dx');
  });

  test('backward matches finite differences of the forward', async () => {
    const rt = await rtP;
    for (const log of [false, true]) {
      const [M, N] = [3, 7];
      const x = rand(M * N, 17, 3), w = rand(M * N, 4);
      const X = rt.tensor(x, [M, N]);
      const y = await (log ? ops.logSoftmax(X) : ops.softmax(X));
      const dx = await (log ? ops.logSoftmaxBackward(rt.tensor(w, [M, N]), y) : ops.softmaxBackward(rt.tensor(w, [M, N]), y));
      const num = numericGrad(Float64Array.from(x), (xx) => dot(w, softmaxRef(xx, M, N, log)));
      close(dx.toArray(), num, 1e-4, 1e-5, `dx log=${log}`);
    }
  });

  test('stable for large inputs; -Infinity entries get probability 0; batch dims; f16 storage', async () => {
    const rt = await rtP;
    const y = (await ops.softmax(rt.tensor([1000, 1001, -Infinity, 999], [1, 4]))).toArray();
    close(y, softmaxRef([1000, 1001, -Infinity, 999], 1, 4), 1e-6, 1e-7, 'y');
    expect(y[2]).toBe(0);
    const x = rand(2 * 3 * 50, 8, 4);
    const h = await ops.softmax(rt.tensor(x, [2, 3, 50], 'f16'));
    expect(h.shape).toEqual([2, 3, 50]);
    expect(h.dtype).toBe('f16');
    close(h.toArray(), softmaxRef(x.map((v) => stored(v, 'f16')), 6, 50), 2 * ULP.f16!, 1e-6, 'f16');
  });

  test('long rows with -Infinity in the first chunk stream correctly', async () => {
    const rt = await rtP;
    const N = 9000;
    const x = rand(N, 2, 3);
    for (let i = 0; i < 2048; i++) x[i] = -Infinity;
    close((await ops.softmax(rt.tensor(x, [1, N]))).toArray(), softmaxRef(x, 1, N), 2e-5, 1e-8, 'y');
  });

  test('bad input: a 0-d tensor, dy of another shape', async () => {
    const rt = await rtP;
    await expect(ops.softmax(rt.tensor([1], []))).rejects.toThrow(/softmax: x must have at least one dim/);
    await expect(ops.softmaxBackward(rt.tensor([1, 2], [2]), rt.tensor([1, 2, 3], [3]))).rejects.toThrow(/dy: expected shape \[3\]/);
  });
});

describe('layer norm and RMS norm', () => {
  const cases = ROW_SHAPES.flatMap(([M, N]) => [false, true].map((rms) => [M, N, rms] as const));
  test.each(cases)('[%i, %i] rms=%s forward, backward, weight and bias gradients', async (M, N, rms) => {
    const rt = await rtP;
    const x = rand(M * N, M * 7 + N, 3).map((v, i) => v + (i % 5)); // a non-zero mean
    const w = rand(N, 11), b = rand(N, 12), dy = rand(M * N, 13);
    const X = rt.tensor(x, [M, N]), W = rt.tensor(w, [N]), B = rt.tensor(b, [N]);
    const opts = rms ? { weight: W } : { weight: W, bias: B };
    const f = await (rms ? ops.rmsNorm(X, opts) : ops.layerNorm(X, opts));
    const ref = normRef(x, M, N, { rms, weight: w, bias: rms ? undefined : b });
    close(f.y.toArray(), ref.y, 1e-5, 1e-5, 'y');
    close(f.rstd.toArray(), ref.rstd, 1e-5, 0, 'rstd');
    if (!rms) close(f.mean!.toArray(), ref.mean, 1e-6, 1e-6, 'mean');
    const DY = rt.tensor(dy, [M, N]);
    const g = await (rms ? ops.rmsNormBackward(DY, X, { weight: W, rstd: f.rstd }) : ops.layerNormBackward(DY, X, { weight: W, bias: true, mean: f.mean, rstd: f.rstd }));
    // Analytic reference gradients.
    const dx = new Float64Array(M * N), dw = new Float64Array(N), db = new Float64Array(N);
    for (let r = 0; r < M; r++) {
      let c1 = 0, c2 = 0;
      const xh = (c: number): number => (x[r * N + c]! - ref.mean[r]!) * ref.rstd[r]!;
      for (let c = 0; c < N; c++) {
        const gg = dy[r * N + c]! * w[c]!;
        c1 += gg;
        c2 += gg * xh(c);
        dw[c]! += dy[r * N + c]! * xh(c);
        db[c]! += dy[r * N + c]!;
      }
      for (let c = 0; c < N; c++) dx[r * N + c] = ref.rstd[r]! * (dy[r * N + c]! * w[c]! - (rms ? 0 : c1 / N) - xh(c) * (c2 / N));
    }
    close(g.dx.toArray(), dx, 1e-4, 1e-5, 'dx');
    close(g.dweight!.toArray(), dw, 1e-4, 1e-5 * Math.sqrt(M), 'dweight');
    if (!rms) close(g.dbias!.toArray(), db, 1e-5, 1e-5 * Math.sqrt(M), 'dbias');
    else expect(g.dbias).toBeUndefined();
    // A residual's gradient joins dx in the same pass.
    const res = rand(M * N, 17);
    const gr = await (rms ? ops.rmsNormBackward : ops.layerNormBackward)(DY, X, { weight: W, rstd: f.rstd, mean: f.mean, residual: rt.tensor(res, [M, N]) });
    close(gr.dx.toArray(), dx.map((v, i) => v + res[i]!), 1e-4, 1e-5, 'dx + residual');
  });

  test('backward matches finite differences of the forward (x, weight, bias)', async () => {
    const rt = await rtP;
    const [M, N] = [3, 6];
    for (const rms of [false, true]) {
      const x = rand(M * N, 21, 2), w = rand(N, 22), b = rand(N, 23), up = rand(M * N, 24);
      const X = rt.tensor(x, [M, N]), W = rt.tensor(w, [N]);
      // Statistics recomputed by the backward (none passed).
      const g = await (rms ? ops.rmsNormBackward(rt.tensor(up, [M, N]), X, { weight: W }) : ops.layerNormBackward(rt.tensor(up, [M, N]), X, { weight: W, bias: true }));
      const L = (xx: ArrayLike<number>, ww: ArrayLike<number>, bb: ArrayLike<number>): number => dot(up, normRef(xx, M, N, { rms, weight: ww, bias: rms ? undefined : bb }).y);
      close(g.dx.toArray(), numericGrad(Float64Array.from(x), (xx) => L(xx, w, b)), 2e-4, 2e-5, 'dx');
      close(g.dweight!.toArray(), numericGrad(Float64Array.from(w), (ww) => L(x, ww, b)), 2e-4, 2e-5, 'dweight');
      if (!rms) close(g.dbias!.toArray(), numericGrad(Float64Array.from(b), (bb) => L(x, w, bb)), 2e-4, 2e-5, 'dbias');
    }
  });

  test('a backward that recomputes the statistics uses the forward\'s eps when given it', async () => {
    const rt = await rtP;
    const [M, N] = [4, 8];
    const X = rt.tensor(rand(M * N, 31, 0.05), [M, N]), DY = rt.tensor(rand(M * N, 32), [M, N]);
    for (const rms of [false, true]) {
      const [fwd, bwd] = rms ? [ops.rmsNorm, ops.rmsNormBackward] : [ops.layerNorm, ops.layerNormBackward];
      const f = await fwd(X, { eps: 1e-2 });
      const saved = (await bwd(DY, X, { rstd: f.rstd, mean: f.mean })).dx.toArray();
      // Small rows (|x| ~ 0.05): eps 1e-2 against the default 1e-5 changes dx several-fold.
      close((await bwd(DY, X, { eps: 1e-2 })).dx.toArray(), saved, 1e-5, 1e-6, `${rms ? 'rms' : 'layer'} recomputed with eps`);
      expect(maxAbsDiff((await bwd(DY, X, {})).dx.toArray(), saved)).toBeGreaterThan(0.1);
      await expect(bwd(DY, X, { eps: -1 })).rejects.toThrow(/eps must be a finite number >= 0, got -1/);
    }
  });

  test('stable variance: a large offset with a small spread; bf16 storage; no weight', async () => {
    const rt = await rtP;
    const [M, N] = [4, 300];
    const x = rand(M * N, 5, 0.01).map((v) => 1e4 + v);
    const f = await ops.layerNorm(rt.tensor(x, [M, N]));
    close(f.y.toArray(), normRef(Float32Array.from(x), M, N).y, 0, 2e-3, 'y');
    const xb = rand(M * N, 6, 2);
    const fb = await ops.rmsNorm(rt.tensor(xb, [M, N], 'bf16'), { eps: 1e-6 });
    expect(fb.y.dtype).toBe('bf16');
    close(fb.y.toArray(), normRef(xb.map((v) => stored(v, 'bf16')), M, N, { rms: true, eps: 1e-6 }).y, 2 * ULP.bf16!, 1e-6, 'bf16');
  });

  test('bad input: weight of the wrong length, bias for RMS norm, negative eps, wrong statistics', async () => {
    const rt = await rtP;
    const X = rt.tensor(rand(12, 1), [3, 4]);
    await expect(ops.layerNorm(X, { weight: rt.tensor([1, 2, 3], [3]) })).rejects.toThrow(/layerNorm: weight: expected shape \[4\], got \[3\]/);
    await expect(ops.rmsNorm(X, { bias: rt.tensor([1, 2, 3, 4], [4]) })).rejects.toThrow(/RMS norm has no bias/);
    await expect(ops.layerNorm(X, { eps: -1 })).rejects.toThrow(/eps must be a finite number >= 0, got -1/);
    await expect(ops.layerNormBackward(X, X, { rstd: rt.tensor([1, 2], [2]), mean: rt.tensor([1, 2, 3], [3]) })).rejects.toThrow(/rstd must be the forward's f32 statistics with 3 elements/);
    await expect(ops.layerNormBackward(X, X, { residual: rt.empty([3]) })).rejects.toThrow(/layerNormBackward: residual: expected shape/);
  });
});

/** n standard normals (Box-Muller over the seeded uniforms of `rand`). */
function gauss(n: number, seed: number): Float32Array {
  const u = rand(2 * n, seed).map((v) => (v + 1) / 2 || 0.5);
  return Float32Array.from({ length: n }, (_, i) => Math.sqrt(-2 * Math.log(u[2 * i]!)) * Math.cos(2 * Math.PI * u[2 * i + 1]!));
}

describe('norm statistics over the whole f32 range, in any element order', () => {
  // Which path the forward takes for [M, N] (chooseRowConfig: one tile up to 8192 wide, the
  // tuned table's streamed rows, chunks past that); asserted so that a retuned table cannot
  // quietly move a case to the other path.
  const path = (M: number, N: number): string => (chooseRowConfig(M, N, 'norm').SINGLE ? 'one-tile' : 'streamed');
  const alternating = (n: number, a: number): number[] => Array.from({ length: n }, (_, i) => (i % 2 ? -a : a));

  test.each([[4, 'one-tile'], [20000, 'streamed']].flatMap(([N, p]) => (['f32', 'bf16'] as const).map((d) => [N as number, p as string, d] as const)))(
    'N=%i (%s path), %s: squares that overflow or underflow f32 still normalise', async (N, p, dtype) => {
      const rt = await rtP;
      expect(path(1, N)).toBe(p);
      const rel = dtype === 'f32' ? 2e-6 : ULP.bf16!;
      const check = (f: { y: { toArray(): ArrayLike<number> }; rstd: { toArray(): ArrayLike<number> } }, y: number[], rstd: number, what: string): void => {
        close(f.y.toArray(), y, rel, 0, `${what} y`);
        close(f.rstd.toArray(), [rstd], 2e-6, 0, `${what} rstd`);
      };
      // ±1e19: the mean square, 1e38, fits in f32; the squares' sum does not.
      const big = stored(1e19, dtype);
      const ln = await ops.layerNorm(rt.tensor(alternating(N, 1e19), [1, N], dtype));
      check(ln, alternating(N, 1), 1 / big, 'layerNorm ±1e19');
      expect(Array.from(ln.mean!.toArray())).toEqual([0]);
      const c = stored(1e30, dtype);
      check(await ops.rmsNorm(rt.tensor(new Array<number>(N).fill(1e30), [1, N], dtype)), new Array<number>(N).fill(1), 1 / c, 'rmsNorm 1e30');
      // ±1e-23 with eps 0: the squares, 1e-46, underflow to 0.
      const tiny = stored(1e-23, dtype);
      check(await ops.layerNorm(rt.tensor(alternating(N, 1e-23), [1, N], dtype), { eps: 0 }), alternating(N, 1), 1 / tiny, 'layerNorm ±1e-23');
      check(await ops.rmsNorm(rt.tensor(alternating(N, 1e-23), [1, N], dtype), { eps: 0 }), alternating(N, 1), 1 / tiny, 'rmsNorm ±1e-23');
    });

  test.each([[7, 61, 'one-tile'], [2, 20000, 'streamed']] as const)('[%i, %i] (%s path): rows mixing magnitudes from 1e-30 to 1e30 match f64', async (M, N, p) => {
    const rt = await rtP;
    expect(path(M, N)).toBe(p);
    // Row r: magnitudes 10^e with e running over -30..30, each row offset and some scaled
    // wholly towards one end of the range.
    const g = gauss(M * N, 41);
    const x = Float32Array.from(g, (v, i) => v * 10 ** ((((i % N) + 7 * Math.floor(i / N)) % 61) - 30) * (Math.floor(i / N) % 3 === 1 ? 1e-8 : 1));
    for (const [rms, eps] of [[false, 1e-5], [true, 1e-5], [false, 0], [true, 0]] as const) {
      const f = await (rms ? ops.rmsNorm : ops.layerNorm)(rt.tensor(x, [M, N]), { eps });
      const ref = normRef(x, M, N, { rms, eps });
      const y = f.y.toArray();
      for (let r = 0; r < M; r++) {
        const want = ref.y.subarray(r * N, (r + 1) * N);
        const top = Math.max(...Array.from(want, Math.abs));
        // f32's rounding of the largest outputs, whose row they dominate, is the yardstick.
        close(y.subarray(r * N, (r + 1) * N), want, 1e-6, 4e-7 * top, `rms=${rms} eps=${eps} row ${r} y`);
      }
      close(f.rstd.toArray(), ref.rstd, 2e-6, 0, `rms=${rms} eps=${eps} rstd`);
      if (!rms) {
        const scale = Array.from({ length: M }, (_, r) => Math.max(...Array.from(x.subarray(r * N, (r + 1) * N), Math.abs)));
        const mean = f.mean!.toArray();
        for (let r = 0; r < M; r++) expect(Math.abs(mean[r]! - ref.mean[r]!)).toBeLessThanOrEqual(1e-6 * scale[r]!);
      }
    }
  });

  test.each([[2, 768, 'one-tile', 5000], [2, 4096, 'one-tile', 1e4], [1024, 1024, 'streamed', 1e4], [2, 20000, 'streamed', 1e4]] as const)(
    '[%i, %i] (%s path) layer norm of normals and one %d: the outlier first or last, the others within f32 rounding of f64', async (M, N, p, outlier) => {
      const rt = await rtP;
      expect(path(M, N)).toBe(p);
      // Row 0 has the outlier first, row 1 the same values with it last.
      const x = gauss(M * N, N + 3);
      x.copyWithin(N, 0, N - 1);
      x[0] = outlier;
      x[2 * N - 1] = outlier;
      const f = await ops.layerNorm(rt.tensor(x, [M, N]));
      const ref = normRef(x, M, N);
      const y = f.y.toArray();
      const others = (r: number, a: ArrayLike<number>): number[] => Array.from(a).slice(r * N, (r + 1) * N).filter((_, c) => c !== (r === 0 ? 0 : N - 1));
      // A shift by the first element (the outlier) cost 4e-6 to 1.2e-5 here; f32's own two-pass error is about 1e-8.
      for (const r of [0, 1]) close(others(r, y), others(r, ref.y), 2e-6, 5e-8, `row ${r} y`);
      close(Array.from(f.mean!.toArray()).slice(0, 2), Array.from(ref.mean).slice(0, 2), 1e-6, 1e-6, 'mean');
      close(Array.from(f.rstd.toArray()).slice(0, 2), Array.from(ref.rstd).slice(0, 2), 2e-6, 0, 'rstd');
    });

  test('a row redone for its range leaves the other rows of its tile bit for bit as they were', async () => {
    const rt = await rtP;
    const [M, N] = [64, 32];
    expect(chooseRowConfig(M, N, 'norm')).toMatchObject({ SINGLE: true, R: 4 });
    const x = rand(M * N, 77, 3);
    const bad = Float32Array.from(x);
    bad.set(alternating(N, 1e19), 5 * N);
    for (const rms of [false, true]) {
      const op = rms ? ops.rmsNorm : ops.layerNorm;
      const a = await op(rt.tensor(x, [M, N])), b = await op(rt.tensor(bad, [M, N]));
      const keep = (t: ArrayLike<number>, w: number): number[] => Array.from(t).filter((_, i) => Math.floor(i / w) !== 5);
      expect(keep(b.y.toArray(), N)).toEqual(keep(a.y.toArray(), N));
      expect(keep(b.rstd.toArray(), 1)).toEqual(keep(a.rstd.toArray(), 1));
      close(Array.from(b.y.toArray()).slice(5 * N, 6 * N), rms ? alternating(N, 1) : alternating(N, 1), 2e-6, 0, `rms=${rms} row 5`);
    }
  });

  test.each([[3, 1000, 'one-tile'], [2, 20000, 'streamed']] as const)('[%i, %i] (%s path) backward at 1e19 and 1e-19 (statistics recomputed) matches the analytic gradient', async (M, N, p) => {
    const rt = await rtP;
    expect(path(M, N)).toBe(p);
    for (const [rms, scale] of [[false, 1e19], [true, 1e19], [false, 1e-19], [true, 1e-19]] as const) {
      const x = Float32Array.from(rand(M * N, 90, 1), (v, i) => (v + (i % 3)) * scale);
      const w = rand(N, 91), dy = rand(M * N, 92);
      const g = await (rms ? ops.rmsNormBackward : ops.layerNormBackward)(rt.tensor(dy, [M, N]), rt.tensor(x, [M, N]), { weight: rt.tensor(w, [N]) });
      const ref = normRef(x, M, N, { rms });
      const dx = new Float64Array(M * N), dw = new Float64Array(N);
      for (let r = 0; r < M; r++) {
        const xh = (c: number): number => (x[r * N + c]! - ref.mean[r]!) * ref.rstd[r]!;
        let c1 = 0, c2 = 0;
        for (let c = 0; c < N; c++) {
          c1 += dy[r * N + c]! * w[c]!;
          c2 += dy[r * N + c]! * w[c]! * xh(c);
          dw[c]! += dy[r * N + c]! * xh(c);
        }
        for (let c = 0; c < N; c++) dx[r * N + c] = ref.rstd[r]! * (dy[r * N + c]! * w[c]! - (rms ? 0 : c1 / N) - xh(c) * (c2 / N));
      }
      const top = Math.max(...Array.from(dx, Math.abs));
      close(g.dx.toArray(), dx, 1e-4, 1e-5 * top, `rms=${rms} scale=${scale} dx`);
      close(g.dweight!.toArray(), dw, 1e-4, 1e-5 * Math.sqrt(M), `rms=${rms} scale=${scale} dweight`);
    }
  });
});

describe('norms of empty rows', () => {
  test('a last dim of 0: y is empty, the statistics of each row are NaN (not whatever memory held)', async () => {
    const rt = await Runtime.create({ threads: 0 });
    rt.tensor(new Float32Array(64).fill(123.5), [64]).free(); // dirty the heap the statistics would reuse
    const ln = await ops.layerNorm(rt.empty([3, 0]));
    expect(ln.y.shape).toEqual([3, 0]);
    expect(Array.from(ln.mean!.toArray())).toEqual([NaN, NaN, NaN]);
    expect(Array.from(ln.rstd.toArray())).toEqual([NaN, NaN, NaN]);
    const rn = await ops.rmsNorm(rt.empty([2, 0]));
    expect(Array.from(rn.rstd.toArray())).toEqual([NaN, NaN]);
    rt.dispose();
  });
});
