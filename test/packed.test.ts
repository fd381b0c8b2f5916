/**
 * @fileoverview ops.packWeights and ops.matmul over packed weights, against the f64-accumulating
 * reference: awkward shapes (panels padded in N and K), transposed sources, half panels, the
 * epilogue, batches, transA, 0 and 2 threads, and the errors.
 */
import { afterAll, describe, expect, test } from 'vitest';
import { ops, PackedWeights } from '../src/index.js';
import { Runtime } from '../src/runtime/runtime.js';
import { gemmReference, type GemmActivation } from '../templates/gemm.js';
import { rand } from './util/data.js';

const rts = { 0: Runtime.create({ threads: 0 }), 2: Runtime.create({ threads: 2 }) };
afterAll(async () => {
  (await rts[0]).dispose();
  (await rts[2]).dispose();
});

function check(got: Float32Array | Int32Array, want: Float32Array, K: number, tol = 2e-6 * Math.sqrt(K + 1) * 4): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const err = Math.abs(got[i]! - want[i]!);
    if (!(err <= tol * (1 + Math.abs(want[i]!)))) expect.fail(`[${i}]: got ${got[i]}, want ${want[i]} (tol ${tol})`);
  }
}

/** op(b) as a row-major [K, N] array. */
function opB(b: Float32Array, K: number, N: number, transB: boolean): Float32Array {
  if (!transB) return b;
  const t = new Float32Array(K * N);
  for (let k = 0; k < K; k++) for (let n = 0; n < N; n++) t[k * N + n] = b[n * K + k]!;
  return t;
}

const DIMS = [1, 2, 3, 5, 15, 16, 17, 31, 33, 64, 65, 127];

describe.each([0, 2] as const)('ops.matmul with packed weights (threads %i)', (threads) => {
  const shapes: [number, number, number][] = [];
  for (let i = 0; i < 24; i++) shapes.push([DIMS[(i * 5) % DIMS.length]!, DIMS[(i * 7 + 2) % DIMS.length]!, DIMS[(i * 11 + 1) % DIMS.length]!]);
  shapes.push([1, 4096, 256], [200, 300, 130]);

  test.each(shapes)('M=%i N=%i K=%i, B and Bᵀ sources', async (M, N, K) => {
    const rt = await rts[threads];
    const a = rand(M * K, M + 3 * K), b = rand(K * N, N + 5 * K);
    for (const transB of [false, true]) {
      const W = await ops.packWeights(rt.tensor(b, transB ? [N, K] : [K, N]), { transB });
      expect(W.shape).toEqual([K, N]);
      const out = await ops.matmul(rt.tensor(a, [M, K]), W);
      expect(out.shape).toEqual([M, N]);
      check(out.toArray(), gemmReference(a, opB(b, K, N, transB), M, N, K), K);
      W.free();
    }
  });

  test.each([
    [1, 'none'], [1, 'relu'], [1, 'gelu'], [1, 'silu'], [19, 'gelu_tanh'], [70, 'relu'],
  ] as [number, GemmActivation][])('M=%i: alpha, beta with c, bias and the %s epilogue', async (M, activation) => {
    const rt = await rts[threads];
    const N = 45, K = 37;
    const a = rand(M * K, 1), b = rand(K * N, 2), c = rand(M * N, 3), bias = rand(N, 4);
    const W = await ops.packWeights(rt.tensor(b, [K, N]));
    const out = await ops.matmul(rt.tensor(a, [M, K]), W, { alpha: 0.75, beta: -0.5, c: rt.tensor(c, [M, N]), bias: rt.tensor(bias, [N]), activation });
    check(out.toArray(), gemmReference(a, b, M, N, K, { alpha: 0.75, beta: -0.5, c, bias, activation }), K);
  });

  test.each([
    ['f32', 'bf16'], ['f32', 'f16'], ['bf16', undefined], ['f16', undefined],
  ] as const)('a %s source packed to %s panels (f32 compute): the panels hold the rounded weights exactly', async (src, dtype) => {
    const rt = await rts[threads];
    const N = 70, K = 50;
    const B = rt.tensor(rand(K * N, 21), [K, N], src);
    const W = await ops.packWeights(B, { dtype });
    const half = dtype ?? src;
    expect(W.dtype).toBe(half);
    expect(W.nr).toBe(32);
    // The reference multiplies the weights rounded to the panels' dtype, so only the f32
    // accumulation differs.
    const wq = rt.tensor(B.toArray() as Float32Array, [K, N], half).toArray() as Float32Array;
    for (const M of [1, 3, 40]) {
      const a = rand(M * K, 22 + M);
      const out = await ops.matmul(rt.tensor(a, [M, K]), W);
      expect(out.dtype).toBe('f32');
      check(out.toArray(), gemmReference(a, wq, M, N, K), K);
    }
  });

  test('a batched a shares the panels: rows of every entry, GEMV per entry, and transA', async () => {
    const rt = await rts[threads];
    const Bt = 3, N = 40, K = 24;
    const w = rand(K * N, 31);
    const W = await ops.packWeights(rt.tensor(w, [K, N]));
    for (const M of [1, 5]) {
      const a = rand(Bt * M * K, 32 + M);
      const out = await ops.matmul(rt.tensor(a, [Bt, M, K]), W);
      expect(out.shape).toEqual([Bt, M, N]);
      const got = out.toArray();
      for (let bi = 0; bi < Bt; bi++) check(got.subarray(bi * M * N, (bi + 1) * M * N), gemmReference(a.subarray(bi * M * K, (bi + 1) * M * K), w, M, N, K), K);
    }
    const M = 6;
    const at = rand(Bt * K * M, 35);
    const got = (await ops.matmul(rt.tensor(at, [Bt, K, M]), W, { transA: true })).toArray();
    for (let bi = 0; bi < Bt; bi++) check(got.subarray(bi * M * N, (bi + 1) * M * N), gemmReference(at.subarray(bi * K * M, (bi + 1) * K * M), w, M, N, K, { transA: true }), K);
  });

  test('batched a with c: GEMV rows (transA [.., K, 1] too) and GEMM rows; beta without c is ignored', async () => {
    const rt = await rts[threads];
    const Bt = 2, N = 50, K = 33;
    const w = rand(K * N, 51);
    const W = await ops.packWeights(rt.tensor(w, [K, N]));
    for (const [M, transA] of [[1, false], [1, true], [7, false], [7, true]] as const) {
      const a = rand(Bt * M * K, 52 + M), c = rand(Bt * M * N, 53);
      const out = await ops.matmul(rt.tensor(a, transA ? [Bt, K, M] : [Bt, M, K]), W, { transA, alpha: 2, beta: 0.5, c: rt.tensor(c, [Bt, M, N]) });
      const got = out.toArray();
      for (let bi = 0; bi < Bt; bi++) {
        const want = gemmReference(a.subarray(bi * M * K, (bi + 1) * M * K), w, M, N, K, { transA, alpha: 2, beta: 0.5, c: c.subarray(bi * M * N, (bi + 1) * M * N) });
        check(got.subarray(bi * M * N, (bi + 1) * M * N), want, K);
      }
    }
    const a = rand(3 * K, 54);
    // beta scales c: without c it is refused, not silently dropped.
    await expect(ops.matmul(rt.tensor(a, [3, K]), W, { beta: 5 })).rejects.toThrow(/matmul: beta scales c, but no c was given/);
  });

  test('half panels from a Bᵀ source; the output dtype follows the source weights, not the panels', async () => {
    const rt = await rts[threads];
    const N = 40, K = 24, M = 3;
    const b = rand(N * K, 61);
    const bq = rt.tensor(b, [N, K], 'bf16').toArray() as Float32Array;
    const W = await ops.packWeights(rt.tensor(b, [N, K]), { transB: true, dtype: 'bf16' });
    const a = rand(M * K, 62);
    // f32 weights packed to bf16 with a bf16 a: f32 out, as the f32 weights would give.
    const A = rt.tensor(a, [M, K], 'bf16');
    const out = await ops.matmul(A, W);
    expect(out.dtype).toBe('f32');
    check(out.toArray(), gemmReference(A.toArray() as Float32Array, opB(bq, K, N, true), M, N, K), K);
    // bf16 weights (kept bf16) with a bf16 a: bf16 out.
    const Wh = await ops.packWeights(rt.tensor(b, [N, K], 'bf16'), { transB: true });
    expect((await ops.matmul(A, Wh)).dtype).toBe('bf16');
    // ... and packed to f32 panels: still bf16 out.
    expect((await ops.matmul(A, await ops.packWeights(rt.tensor(b, [N, K], 'bf16'), { transB: true, dtype: 'f32' }))).dtype).toBe('bf16');
  });

  test('the same values as ops.matmul on the unpacked weights, into out of another dtype', async () => {
    const rt = await rts[threads];
    const M = 33, N = 64, K = 128;
    const A = rt.tensor(rand(M * K, 41), [M, K]), B = rt.tensor(rand(K * N, 42), [K, N]);
    const W = await ops.packWeights(B);
    const want = (await ops.matmul(A, B)).toArray() as Float32Array;
    const out = rt.empty([M, N], 'bf16');
    expect(await ops.matmul(A, W, { out })).toBe(out);
    check(out.toArray(), want, K, 1e-2);
    check((await ops.matmul(A, W)).toArray(), want, K);
  });
});

describe('ops.packWeights validation', () => {
  test('bad inputs are clear errors; an output given is not written', async () => {
    const rt = await rts[0];
    const b = rt.tensor(rand(12, 1), [3, 4]);
    await expect(ops.packWeights(rt.tensor(rand(24, 2), [2, 3, 4]))).rejects.toThrow(/packWeights: b must be 2-D/);
    await expect(ops.packWeights(rt.tensor([1, 2], [2], 'i32'))).rejects.toThrow(/packWeights: b must be f32, f16 or bf16/);
    await expect(ops.packWeights(rt.empty([0, 4]))).rejects.toThrow(/at least one row and column/);
    await expect(ops.packWeights(b, { dtype: 'i32' as never })).rejects.toThrow(/dtype must be one of 'f32', 'f16', 'bf16'/);
    const W = await ops.packWeights(b);
    expect(W).toBeInstanceOf(PackedWeights);
    const out = rt.tensor([7, 7, 7, 7], [1, 4]);
    await expect(ops.matmul(rt.tensor(rand(4, 3), [1, 4]), W, { out })).rejects.toThrow(/inner dimensions differ: op\(a\) is \[1, 4\] and the packed weights are \[3, 4\]/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { transB: true, out })).rejects.toThrow(/transB is fixed when the weights are packed/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { config: { BM: 4, BN: 64, BK: 16 }, out })).rejects.toThrow(/config.BN must be the panel width 16/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { bias: rt.empty([3]), out })).rejects.toThrow(/bias must be \[4\]/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { config: { BM: 3, BN: 16, BK: 16 }, out })).rejects.toThrow(/config.BM must be a power of two, got 3/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { config: { BM: 4, BN: 16, BK: 64 }, out })).rejects.toThrow(/config.BK must be a power of two dividing the panels' 16 rows, got 64/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { beta: Number.NaN, c: rt.empty([1, 4]), out })).rejects.toThrow(/beta must be a finite number/);
    const freed = rt.empty([1, 4]);
    freed.free();
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { c: freed, out })).rejects.toThrow(/matmul: c has been freed/);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W, { out: freed })).rejects.toThrow(/matmul: out has been freed/);
    // transB: false is the packed weights' own orientation.
    check((await ops.matmul(rt.tensor([1, 0, 0], [1, 3]), W, { transB: false })).toArray(), (b.toArray() as Float32Array).subarray(0, 4), 3);
    const other = await Runtime.create({ threads: 0 });
    try {
      await expect(ops.matmul(other.tensor(rand(3, 3), [1, 3]), W)).rejects.toThrow(/different runtimes/);
      const x = rt.tensor(rand(3, 3), [1, 3]);
      await expect(ops.matmul(x, W, { c: other.empty([1, 4]), out })).rejects.toThrow(/c belongs to another runtime/);
      await expect(ops.matmul(x, W, { bias: other.empty([4]), out })).rejects.toThrow(/bias belongs to another runtime/);
      await expect(ops.matmul(x, W, { out: other.empty([1, 4]) })).rejects.toThrow(/out belongs to another runtime/);
    } finally {
      other.dispose();
    }
    // Panels that do not hold the matrix they claim are refused (they would be read past their end).
    expect(() => new PackedWeights(rt.empty([16]), 16, 16, 16, 16)).toThrow(/do not hold a \[16, 16\] matrix/);
    expect(Array.from(out.toArray())).toEqual([7, 7, 7, 7]);
    W.free();
    expect(W.isFreed).toBe(true);
    await expect(ops.matmul(rt.tensor(rand(3, 3), [1, 3]), W)).rejects.toThrow(/packed weights have been freed/);
  });

  test('rt.scope keeps packed weights returned anywhere inside its result and frees the rest', async () => {
    const rt = await rts[0];
    const b = rand(20 * 10, 5);
    let tmp: PackedWeights | undefined;
    const { w, layers, byName } = await rt.scope(async () => {
      tmp = await ops.packWeights(rt.tensor(b, [20, 10]));
      const pack = (): Promise<PackedWeights> => ops.packWeights(rt.tensor(b, [20, 10]));
      return { w: await pack(), layers: [{ fc: { w: await pack() } }], byName: new Map([['head', await pack()]]), rt };
    });
    expect(tmp?.isFreed).toBe(true);
    expect(layers[0]!.fc.w.isFreed).toBe(false);
    expect(byName.get('head')!.isFreed).toBe(false);
    expect(w.isFreed).toBe(false);
    const a = rand(20, 6);
    check((await ops.matmul(rt.tensor(a, [1, 20]), w)).toArray(), gemmReference(a, b, 1, 10, 20), 20);
  });
});
