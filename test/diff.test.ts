/**
 * @fileoverview Differential tests: every kernel here runs compiled (WebAssembly, with and
 * without relaxed SIMD) and through the reference interpreter on the same inputs, over awkward
 * sizes and every storage dtype; the results must agree within the stated tolerances. Checked
 * launches (bounds-checked code) must give the unchecked results bit for bit.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { jit, type Kernel, type KernelArg } from '../src/kernel.js';
import { Runtime } from '../src/runtime/runtime.js';
import type { Tensor } from '../src/runtime/tensor.js';
import { detectFeatures } from '../src/runtime/features.js';

type DT = 'f32' | 'f16' | 'bf16' | 'i32';

interface Case {
  name: string;
  kernel: Kernel;
  /** Build the arguments (fresh tensors) for size n. */
  args(rt: Runtime, n: number, dt: DT, rnd: () => number): KernelArg[];
  launch(n: number): Record<string, unknown> & { grid: number[] };
  /** Indices of the output tensors among args. */
  outs: number[];
  sizes?: number[];
  dtypes?: DT[];
  /** Absolute + relative tolerance for f32 outputs. */
  tol?: number;
}

const SIZES = [1, 3, 17, 63, 65, 1000];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const vec = (rt: Runtime, n: number, dt: DT, rnd: () => number, scale = 2): Tensor => {
  const a = dt === 'i32' ? Int32Array.from({ length: n }, () => Math.floor((rnd() - 0.5) * 200)) : Float32Array.from({ length: n }, () => (rnd() - 0.5) * scale);
  return rt.tensor(a, [n], dt);
};
const zeros = (rt: Runtime, n: number, dt: DT): Tensor => rt.tensor(dt === 'i32' ? new Int32Array(n) : new Float32Array(n), [n], dt);

const cdiv = (a: number, b: number): number => Math.ceil(a / b);

const CASES: Case[] = [];
const add = (c: Case): void => void CASES.push(c);

// Every compare form a masked access turns into a scalar "all four lanes" test (the index on
// either side, strict or not, bounds that cut inside a vector and outside it, an and with a
// lane-invariant mask), stored side by side so each partial vector is checked.
add({
  name: 'mask forms',
  kernel: jit(`function maskForms(X, Out, n, k, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const x = load(X, i, i < n, 7.0);
    const row = programId(0) < 3;
    store(Out, i, x + 1.0, i < n);
    store(Out, n + i, load(X, i, i <= k) * 2.0, n > i && i <= k);
    store(Out, 2 * n + i, load(X, i, k >= i, -1.0), i >= k - 5 && i < n);
    store(Out, 3 * n + i, where(k < i, x, 0.0), (k < i || i < 2) && i < n && row);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', k: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), zeros(rt, 4 * n, dt), n, Math.floor(n / 2)],
  launch: (n) => ({ grid: [cdiv(n, 16)], BLOCK: 16 }),
  outs: [1],
  dtypes: ['f32', 'bf16'],
});

// Split loops: the whole vectors of a row run a mask-free copy of the body up to a limit computed
// before the loop (prefix masks: cols < w, offs < n, cols <= k, k >= cols), or while a test
// holds (a suffix mask: cols >= k - 5), the rest the masked body. Row widths cut vectors at
// every lane, rows end inside a tile and the tensor ends inside a row, so an off-by-one in a
// limit reads or writes a lane the interpreter does not.
add({
  name: 'split loops',
  kernel: jit(`function splitLoops(X, Out, S, n, w, k, BLOCK) {
    const rows = programId(0) * 4 + arange(4);
    const cols = arange(BLOCK);
    const offs = expandDims(rows, 1) * w + expandDims(cols, 0);
    const inRow = expandDims(cols < w, 0) && offs < n;
    const x = load(X, offs, inRow, -3.0);
    const y = where(expandDims(cols <= k, 0), x * 2.0, x);
    store(Out, offs, y + 1.0, inRow);
    store(Out, n + offs, x, inRow && expandDims(k >= cols, 0));
    store(Out, 2 * n + offs, x - 1.0, inRow && expandDims(cols >= k - 5, 0));
    store(S, rows, sum(where(inRow, x, 0.0), 1) + max(x, 1), rows * w < n);
  }`, { signature: { X: 'ptr', Out: 'ptr', S: 'ptr', n: 'i32', w: 'i32', k: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => {
    const w = 1 + (n % 61);
    return [vec(rt, n, dt, r), zeros(rt, 3 * n, dt), zeros(rt, cdiv(n, w) + 4, 'f32'), n, w, w >> 1];
  },
  launch: (n) => ({ grid: [cdiv(cdiv(n, 1 + (n % 61)), 4)], BLOCK: 64 }),
  outs: [1, 2],
  // Row widths 1 + n % 61 of every residue mod 4, most with several rows: 2, 4, 18, 3, 5, 18,
  // 21, 23, 47, 15, 29, 25, 1, 48.
  sizes: [1, 3, 17, 63, 65, 78, 142, 144, 168, 197, 211, 1000, 1037, 2000],
  dtypes: ['f32', 'bf16'],
});

add({
  name: 'saxpy',
  kernel: jit(`function saxpy(X, Y, Out, a, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    store(Out, i, a * load(X, i, m) + load(Y, i, m), m);
  }`, { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', a: 'f32', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), vec(rt, n, dt, r), zeros(rt, n, dt), 1.5, n],
  launch: (n) => ({ grid: [cdiv(n, 64)], BLOCK: 64 }),
  outs: [2],
  dtypes: ['f32', 'f16', 'bf16'],
});

add({
  name: 'gelu tanh chain',
  kernel: jit(`function gelu(X, Out, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const x = load(X, i, m);
    const u = 0.7978845608 * (x + 0.044715 * x * x * x);
    store(Out, i, 0.5 * x * (1.0 + tanh(u)), m);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r, 8), zeros(rt, n, dt), n],
  launch: (n) => ({ grid: [cdiv(n, 128)], BLOCK: 128 }),
  outs: [1],
  dtypes: ['f32', 'bf16'],
});

add({
  name: 'math functions',
  kernel: jit(`function mathfns(X, Out, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const x = load(X, i, m, 0.5);
    const y = exp(x) + log(abs(x) + 1.0) + sigmoid(x) * erf(x) - exp2(x * 0.5) + sqrt(abs(x)) + rsqrt(abs(x) + 1.0) + log2(x * x + 2.0);
    store(Out, i, floor(x * 3.0) + ceil(x) + y, m);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r, 6), zeros(rt, n, 'f32'), n],
  launch: (n) => ({ grid: [cdiv(n, 32)], BLOCK: 32 }),
  outs: [1],
  tol: 1e-5,
});

add({
  name: 'integer ops',
  kernel: jit(`function intops(X, Out, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const x = load(X, i, m);
    const y = (x * 7 + i) % 13 + idiv(x, 3) + (x << 2) - (x >> 1) + ((x >>> 28) & 15) + (x ^ i) + (x | 1) - (~x) + minimum(x, i) + maximum(x, -i);
    store(Out, i, y, m);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, _dt, r) => [vec(rt, n, 'i32', r), zeros(rt, n, 'i32'), n],
  launch: (n) => ({ grid: [cdiv(n, 16)], BLOCK: 16 }),
  outs: [1],
  dtypes: ['i32'],
});

add({
  name: 'where, compare, min/max, casts',
  kernel: jit(`function sel(X, Y, Out, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const x = load(X, i, m);
    const y = load(Y, i, m);
    const big = (x > y) && !(x == 0.0) || (y <= -0.5);
    const k = cast(x * 10.0, 'i32');
    const z = where(big, maximum(x, y), minimum(x, y)) + cast(k, 'f32') + cast(big, 'f32') * 100.0 + (x >= 0.0 ? 1.0 : -1.0);
    store(Out, i, z, m);
  }`, { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), vec(rt, n, dt, r), zeros(rt, n, 'f32'), n],
  launch: (n) => ({ grid: [cdiv(n, 64)], BLOCK: 64 }),
  outs: [2],
  dtypes: ['f32', 'f16'],
});

add({
  name: 'row sum and column max over 2-D tiles',
  kernel: jit(`function rowcol(X, RowSum, ColMax, rows, cols, BR, BC) {
    const r = programId(0) * BR + arange(BR);
    const c = arange(BC);
    const m = expandDims(r < rows, 1) && expandDims(c < cols, 0);
    const x = load(X, expandDims(r, 1) * cols + expandDims(c, 0), m, -1.0);
    store(RowSum, r, sum(x, 1), r < rows);
    const cm = max(x, 0);
    store(ColMax, programId(0) * cols + c, cm, c < cols);
  }`, { signature: { X: 'ptr', RowSum: 'ptr', ColMax: 'ptr', rows: 'i32', cols: 'i32', BR: 'constexpr', BC: 'constexpr' } }),
  args: (rt, n, dt, r) => {
    const cols = Math.min(n, 30);
    return [vec(rt, n * cols, dt, r), zeros(rt, n, 'f32'), zeros(rt, cdiv(n, 8) * cols, 'f32'), n, cols];
  },
  launch: (n) => ({ grid: [cdiv(n, 8)], BR: 8, BC: 32 }),
  outs: [1, 2],
  dtypes: ['f32', 'bf16'],
  tol: 1e-5,
});

add({
  name: 'full reduction to a scalar and a scalar store',
  kernel: jit(`function total(X, Out, n, BLOCK) {
    const pid = programId(0);
    const i = pid * BLOCK + arange(BLOCK);
    const x = load(X, i, i < n);
    const s = sum(x);
    const mx = max(x);
    store(Out, pid * 2, s);
    store(Out, pid * 2 + 1, mx + min(x));
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), zeros(rt, cdiv(n, 256) * 2, 'f32'), n],
  launch: (n) => ({ grid: [cdiv(n, 256)], BLOCK: 256 }),
  outs: [1],
  tol: 1e-5,
});

add({
  name: 'row softmax',
  kernel: jit(`function softmax(X, Out, rows, cols, BC) {
    const row = programId(0);
    const c = arange(BC);
    const m = c < cols;
    const x = load(X, row * cols + c, m, -Infinity);
    const e = exp(x - max(x));
    store(Out, row * cols + c, e / sum(e), m);
  }`, { signature: { X: 'ptr', Out: 'ptr', rows: 'i32', cols: 'i32', BC: 'constexpr' } }),
  args: (rt, n, dt, r) => {
    const cols = Math.min(n, 200);
    const rows = Math.max(1, Math.floor(n / 50));
    return [vec(rt, rows * cols, dt, r, 10), zeros(rt, rows * cols, dt), rows, cols];
  },
  launch: (n) => ({ grid: [Math.max(1, Math.floor(n / 50))], BC: 256 }),
  outs: [1],
  dtypes: ['f32', 'f16'],
  tol: 1e-5,
});

add({
  name: 'transpose through trans()',
  kernel: jit(`function transpose(X, Out, rows, cols, B) {
    const r = programId(0) * B + arange(B);
    const c = programId(1) * B + arange(B);
    const m = expandDims(r < rows, 1) && expandDims(c < cols, 0);
    const x = load(X, expandDims(r, 1) * cols + expandDims(c, 0), m);
    const mt = expandDims(c < cols, 1) && expandDims(r < rows, 0);
    store(Out, expandDims(c, 1) * rows + expandDims(r, 0), trans(x), mt);
  }`, { signature: { X: 'ptr', Out: 'ptr', rows: 'i32', cols: 'i32', B: 'constexpr' } }),
  args: (rt, n, dt, r) => {
    const rows = Math.max(1, Math.floor(n / 9));
    return [vec(rt, rows * 9, dt, r), zeros(rt, rows * 9, dt), rows, 9];
  },
  launch: (n) => ({ grid: [cdiv(Math.max(1, Math.floor(n / 9)), 16), 1], B: 16 }),
  outs: [1],
  dtypes: ['f32', 'bf16', 'i32'],
});

const MATMUL = `function matmul(A, B, C, M, N, K, BM, BN, BK) {
  const pm = programId(0);
  const pn = programId(1);
  const rm = pm * BM + arange(BM);
  const rn = pn * BN + arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    const a = load(A, expandDims(rm, 1) * K + expandDims(rk, 0), expandDims(rm < M, 1) && expandDims(rk < K, 0));
    const b = load(B, expandDims(rk, 1) * N + expandDims(rn, 0), expandDims(rk < K, 1) && expandDims(rn < N, 0));
    acc = dot(a, b, acc);
  }
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), acc, expandDims(rm < M, 1) && expandDims(rn < N, 0));
}`;

for (const [bm, bn, bk] of [[16, 16, 8], [4, 8, 4], [32, 32, 16], [2, 4, 2], [8, 2, 4]] as const) {
  add({
    name: `tiled matmul ${bm}x${bn}x${bk} (loop-carried dot)`,
    kernel: jit(MATMUL, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } }),
    args: (rt, n, dt, r) => {
      const M = Math.min(n, 70), N = Math.min(n + 2, 37), K = Math.min(n, 45);
      return [vec(rt, M * K, dt, r), vec(rt, K * N, dt, r), zeros(rt, M * N, 'f32'), M, N, K];
    },
    launch: (n) => ({ grid: [cdiv(Math.min(n, 70), bm), cdiv(Math.min(n + 2, 37), bn)], BM: bm, BN: bn, BK: bk }),
    outs: [2],
    sizes: [1, 3, 17, 63, 65],
    dtypes: ['f32', 'f16', 'bf16'],
    tol: 1e-5,
  });
}

// A stored K x M and read through trans(): the dot reads the loaded tile down its columns (no
// transpose pass), in the microkernel (N >= 4) and the scalar one (N < 4); a second dot on the
// same transpose, and one with it on the right, which keeps the transpose materialised.
const MATMUL_TA = `function matmulTA(A, B, C, C2, M, N, K, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  let acc = zeros([BM, BN]);
  let acc2 = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    const at = trans(load(A, expandDims(rk, 1) * M + expandDims(rm, 0), expandDims(rk < K, 1) && expandDims(rm < M, 0)));
    const b = load(B, expandDims(rk, 1) * N + expandDims(rn, 0), expandDims(rk < K, 1) && expandDims(rn < N, 0));
    acc = dot(at, b, acc);
    acc2 = dot(at, b * 2.0, acc2);
  }
  const mask = expandDims(rm < M, 1) && expandDims(rn < N, 0);
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), acc, mask);
  store(C2, expandDims(rm, 1) * N + expandDims(rn, 0), acc2, mask);
}`;

for (const [bm, bn, bk] of [[16, 16, 8], [4, 8, 4], [2, 4, 2], [8, 2, 4], [1, 8, 4]] as const) {
  add({
    name: `tiled matmul, A transposed, ${bm}x${bn}x${bk}`,
    kernel: jit(MATMUL_TA, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', C2: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } }),
    args: (rt, n, dt, r) => {
      const M = Math.min(n, 70), N = Math.min(n + 2, 37), K = Math.min(n, 45);
      return [vec(rt, M * K, dt, r), vec(rt, K * N, dt, r), zeros(rt, M * N, 'f32'), zeros(rt, M * N, 'f32'), M, N, K];
    },
    launch: (n) => ({ grid: [cdiv(Math.min(n, 70), bm), cdiv(Math.min(n + 2, 37), bn)], BM: bm, BN: bn, BK: bk }),
    outs: [2, 3],
    sizes: [1, 3, 17, 63, 65],
    dtypes: ['f32', 'bf16'],
    tol: 1e-5,
  });
}

// A dot's left operand loaded unmasked from an f32 tensor is read in place (no scratch copy):
// rows a run-time pitch apart, starting off a vector boundary; N < 4 takes the scalar dot. Then
// a load that a store overwrites before the dot runs must still give the dot the old values.
const IN_PLACE_DOT = `function ipDot(A, B, C, D, E, F, K, lda, ldb, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    const a = load(A, 1 + expandDims(rm, 1) * lda + expandDims(rk, 0));
    acc = dot(a, load(B, expandDims(rk, 1) * BN + expandDims(rn, 0)), acc);
  }
  store(C, expandDims(rm, 1) * BN + expandDims(rn, 0), acc);
  // B rows a run-time pitch apart: in place when the dot has one block of rows (BM <= 4).
  const bw = load(B, 3 + expandDims(arange(BK), 1) * ldb + expandDims(rn, 0));
  store(F, expandDims(rm, 1) * BN + expandDims(rn, 0), dot(load(A, expandDims(rm, 1) * lda + expandDims(arange(BK), 0)), bw));
  // Transposed: a [BK, BM] block whose rows are lda apart, read as its transpose.
  const at = load(A, 2 + expandDims(arange(BK), 1) * lda + expandDims(rm, 0));
  store(E, expandDims(rm, 1) * BN + expandDims(rn, 0), dot(trans(at), load(B, expandDims(arange(BK), 1) * BN + expandDims(rn, 0))));
  const offs = expandDims(rm, 1) * lda + expandDims(arange(BK), 0);
  const a0 = load(A, offs);
  store(A, offs, full([BM, BK], 5.0));
  store(D, expandDims(rm, 1) * BN + expandDims(rn, 0), dot(a0, load(B, expandDims(arange(BK), 1) * BN + expandDims(rn, 0))));
}`;
for (const [bm, bn, bk] of [[8, 8, 4], [16, 16, 8], [4, 2, 4], [2, 8, 2], [1, 4, 8]] as const) {
  add({
    name: `dot reads its left operand in place, ${bm}x${bn}x${bk}`,
    kernel: jit(IN_PLACE_DOT, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', D: 'ptr', E: 'ptr', F: 'ptr', K: 'i32', lda: 'i32', ldb: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } }),
    args: (rt, n, dt, r) => {
      const M = bm * Math.min(cdiv(n, bm), 4), K = bk * Math.min(cdiv(n, bk), 6), lda = Math.max(K, M) + 3, ldb = bn + 5;
      const out = (): Tensor => zeros(rt, M * bn, 'f32');
      return [vec(rt, (Math.max(M, K) + 1) * lda, dt, r), vec(rt, Math.max(K * bn, bk * ldb + 3), dt, r), out(), out(), out(), out(), K, lda, ldb];
    },
    launch: (n) => ({ grid: [Math.min(cdiv(n, bm), 4)], BM: bm, BN: bn, BK: bk }),
    outs: [0, 2, 3, 4, 5],
    sizes: [1, 17, 63],
    dtypes: ['f32', 'bf16', 'f16'],
    tol: 1e-5,
  });
}

add({
  name: 'trans() on the right of a dot stays a transpose',
  kernel: jit(`function rightT(X, Y, Out, B) {
    const r = arange(B);
    const x = load(X, expandDims(r, 1) * B + expandDims(r, 0));
    const y = load(Y, expandDims(r, 1) * B + expandDims(r, 0));
    const t = trans(y);
    store(Out, expandDims(r, 1) * B + expandDims(r, 0), dot(t, x) + dot(x, t));
  }`, { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', B: 'constexpr' } }),
  args: (rt, n, dt, r) => {
    const B = n >= 8 ? 8 : 2;
    return [vec(rt, B * B, dt, r), vec(rt, B * B, dt, r), zeros(rt, B * B, 'f32')];
  },
  launch: (n) => ({ grid: [1], B: n >= 8 ? 8 : 2 }),
  outs: [2],
  sizes: [1, 17],
  dtypes: ['f32'],
  tol: 1e-5,
});

add({
  name: 'online softmax state carried through a loop',
  kernel: jit(`function online(X, Out, cols, BR, BC) {
    const r = programId(0) * BR + arange(BR);
    let m = full([BR], -Infinity);
    let l = zeros([BR]);
    let acc = zeros([BR, 4]);
    for (let c0 = 0; c0 < cols; c0 += BC) {
      const c = c0 + arange(BC);
      const x = load(X, expandDims(r, 1) * cols + expandDims(c, 0), expandDims(c < cols, 0), -Infinity);
      const mNew = maximum(m, max(x, 1));
      const alpha = exp(m - mNew);
      const p = exp(x - expandDims(mNew, 1));
      l = l * alpha + sum(p, 1);
      acc = acc * expandDims(alpha, 1) + expandDims(sum(p * x, 1), 1);
      m = mNew;
    }
    store(Out, r, m + log(l) + sum(acc, 1) / (4.0 * l));
  }`, { signature: { X: 'ptr', Out: 'ptr', cols: 'i32', BR: 'constexpr', BC: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, 8 * n, dt, r, 6), zeros(rt, 8, 'f32'), n],
  launch: () => ({ grid: [1], BR: 8, BC: 16 }),
  outs: [1],
  tol: 2e-5,
});

add({
  name: 'descending loop, runtime if with tile results, early return',
  kernel: jit(`function ctl(X, Out, n, BLOCK) {
    const pid = programId(0);
    if (pid * BLOCK >= n) return;
    const i = pid * BLOCK + arange(BLOCK);
    let acc = zeros([BLOCK]);
    let s = 0.0;
    for (let k = 3; k >= 0; k--) {
      acc = acc * 0.5 + cast(k, 'f32');
      s += 1.0;
    }
    let t = acc;
    if (pid % 2 == 0) {
      t = t + load(X, i, i < n);
    } else {
      t = t - load(X, i, i < n) * s;
    }
    store(Out, i, t, i < n);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), zeros(rt, n, 'f32'), n],
  launch: (n) => ({ grid: [cdiv(n, 16) + 2], BLOCK: 16 }),
  outs: [1],
});

add({
  name: 'dropout with rand',
  kernel: jit(`function dropout(X, Out, n, seed, p, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const keep = rand(seed, i) >= p;
    store(Out, i, where(keep, load(X, i, m) / (1.0 - p), 0.0), m);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', seed: 'i32', p: 'f32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), zeros(rt, n, dt), n, 1234, 0.25],
  launch: (n) => ({ grid: [cdiv(n, 64)], BLOCK: 64 }),
  outs: [1],
  dtypes: ['f32', 'bf16'],
});

add({
  name: 'gather and scatter with non-contiguous offsets',
  kernel: jit(`function gs(X, Out, n, BLOCK) {
    const i = programId(0) * BLOCK + arange(BLOCK);
    const m = i < n;
    const rev = n - 1 - i;
    const x = load(X, rev, m);
    store(Out, (i * 7) % n, x * 2.0, m);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', BLOCK: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), zeros(rt, n, dt), n],
  launch: (n) => ({ grid: [cdiv(n, 32)], BLOCK: 32 }),
  outs: [1],
  sizes: [1, 3, 17, 65, 1000].filter((n) => n % 7 !== 0),
  dtypes: ['f32', 'f16', 'i32'],
});

add({
  name: 'outer product by broadcasting, general reshape',
  kernel: jit(`function outer(X, Y, Out, Out2, BM, BN) {
    const a = load(X, arange(BM));
    const b = load(Y, arange(BN));
    const o = expandDims(a, 1) * expandDims(b, 0) + 1.0;
    store(Out, expandDims(arange(BM), 1) * BN + expandDims(arange(BN), 0), o);
    const r = reshape(o, [BN, BM]);
    store(Out2, expandDims(arange(BN), 1) * BM + expandDims(arange(BM), 0), r);
  }`, { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', Out2: 'ptr', BM: 'constexpr', BN: 'constexpr' } }),
  args: (rt, _n, dt, r) => [vec(rt, 8, dt, r), vec(rt, 16, dt, r), zeros(rt, 128, 'f32'), zeros(rt, 128, 'f32')],
  launch: () => ({ grid: [1], BM: 8, BN: 16 }),
  outs: [2, 3],
  sizes: [1],
});

add({
  name: 'helper kernel inlined, staticRange unrolled, keepdims norm',
  kernel: jit(`function norm(X, Out, cols, BC, REPS) {
    const row = programId(0);
    const c = arange(BC);
    const m = c < cols;
    const x = load(X, expandDims(row * cols + c, 0), expandDims(m, 0));
    let y = x;
    for (const k of staticRange(REPS)) {
      y = centre(y, cols) * (k + 1);
    }
    store(Out, expandDims(row * cols + c, 0), y, expandDims(m, 0));
  }`, {
    signature: { X: 'ptr', Out: 'ptr', cols: 'i32', BC: 'constexpr', REPS: 'constexpr' },
    helpers: { centre: `function centre(t, n) { return t - sum(t, 1, true) / cast(n, 'f32'); }` },
  }),
  args: (rt, n, dt, r) => [vec(rt, 4 * Math.min(n, 60), dt, r), zeros(rt, 4 * Math.min(n, 60), 'f32'), Math.min(n, 60)],
  launch: () => ({ grid: [4], BC: 64, REPS: 3 }),
  outs: [1],
  tol: 1e-5,
});

add({
  name: 'scratch regions: buffers of a loop body are reused after it, earlier ones stay live',
  kernel: jit(`function regions(X, Out, n, B) {
    const offs = expandDims(arange(B), 1) * B + expandDims(arange(B), 0);
    const xt = trans(load(X, offs));
    let acc = zeros([B, B]);
    for (let k = 0; k < n; k++) {
      const y = trans(xt) * cast(k + 1, 'f32');
      acc = dot(y, xt, acc);
    }
    let w = acc;
    if (n > 2) { w = trans(acc) + 1.0; } else { w = trans(xt) * 2.0; }
    store(Out, offs, trans(w) + xt);
  }`, { signature: { X: 'ptr', Out: 'ptr', n: 'i32', B: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, 64, dt, r), zeros(rt, 64, 'f32'), n],
  launch: () => ({ grid: [1], B: 8 }),
  outs: [1],
  sizes: [1, 3],
  tol: 1e-5,
});

// In-place kernels: a store to the tensor its value was loaded from. Tile semantics read the
// whole tile before the store writes any of it, so a load at other offsets (a reversal, a
// shift, a row flip, a swap of halves) must not be fused into the store's loop.
const pow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const inPlace = (name: string, body: string, sizes = [1, 3, 17, 64, 65]): void => add({
  name: `in place: ${name}`,
  kernel: jit(`function inPlace(X, n, B) {
    const i = arange(B);
    ${body}
  }`, { signature: { X: 'ptr', n: 'i32', B: 'constexpr' } }),
  args: (rt, n, dt, r) => [vec(rt, n, dt, r), n],
  launch: (n) => ({ grid: [1], B: pow2(n) }),
  outs: [0],
  sizes,
  dtypes: ['f32', 'bf16'],
});
inPlace('reversed', 'store(X, i, load(X, n - 1 - i, i < n, 0.0), i < n);');
inPlace('shifted right by one', 'store(X, i + 1, load(X, i, i < n - 1, 0.0), i < n - 1);');
inPlace('halves swapped through where', `const h = idiv(n, 2);
    store(X, i, where(i < h, load(X, i + h, i < h, 0.0), load(X, i - h, i >= h && i < 2 * h, 0.0)), i < 2 * h);`);
inPlace('reversed behind an exp', 'store(X, n - 1 - i, exp(load(X, i, i < n, 0.0)) * 0.0 + load(X, i, i < n, 0.0), i < n);');
inPlace('reversed after an earlier store', `store(X, i, load(X, i, i < n, 0.0) * 2.0, i < n);
    store(X, i, load(X, n - 1 - i, i < n, 0.0), i < n);`);
inPlace('updated where it was read (fused)', 'store(X, i, load(X, i, i < n, 0.0) * 2.0 + 1.0, i < n);');
inPlace('rows of a 2-D tile flipped', `const R = 4;
    const C = idiv(B, 4);
    const r = expandDims(arange(4), 1);
    const c = expandDims(arange(B / 4), 0);
    const m = c < idiv(n, 4);
    store(X, r * C + c, load(X, (3 - r) * C + c, m, 0.0), m);`, [4, 16, 64, 256]);

const rt0Promise = Runtime.create({ threads: 0 });
let rt0: Runtime;
beforeAll(async () => {
  rt0 = await rt0Promise;
});
afterAll(() => rt0.dispose());

function compare(got: Float32Array | Int32Array, want: Float32Array | Int32Array, tol: number, what: string): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    if (Number.isNaN(w)) {
      expect(Number.isNaN(g), `${what}[${i}]: want NaN, got ${g}`).toBe(true);
      continue;
    }
    if (g === w) continue;
    const err = Math.abs(g - w);
    if (!(err <= tol * (1 + Math.abs(w)))) {
      expect.fail(`${what}[${i}]: compiled ${g}, interpreter ${w} (|diff| ${err} > ${tol}·(1+|want|))`);
    }
  }
}

const targets = detectFeatures().relaxedSimd ? [true, false] : [false];

describe.each(targets.map((relaxed) => ({ relaxed })))('compiled vs interpreter (relaxed SIMD: $relaxed)', ({ relaxed }) => {
  for (const c of CASES) {
    const grid = (c.sizes ?? SIZES).flatMap((n) => (c.dtypes ?? ['f32']).map((dt) => ({ n, dt })));
    test.each(grid)(`${c.name}: n=$n $dt`, async ({ n, dt }) => {
      const rt = rt0;
      const seed = n * 31 + dt.length;
      const a1 = c.args(rt, n, dt, rng(seed));
      const a2 = c.args(rt, n, dt, rng(seed));
      await c.kernel.launch({ ...c.launch(n), relaxedSimd: relaxed, runtime: rt }, ...a1);
      await c.kernel.interpret({ ...c.launch(n), relaxedSimd: relaxed, runtime: rt }, ...a2);
      const tol = c.tol ?? (dt === 'f32' || dt === 'i32' ? 2e-6 : 1e-2);
      for (const o of c.outs) {
        const got = (a1[o] as Tensor).toArray();
        const want = (a2[o] as Tensor).toArray();
        const t = (a1[o] as Tensor).dtype === 'f32' ? c.tol ?? 2e-6 : tol;
        compare(got, want, t, `${c.name} out${o}`);
      }
      for (const x of [...a1, ...a2]) if (typeof x !== 'number') x.free();
    });
  }
});

// Checked code differs from unchecked code only by its bounds checks: on these valid kernels
// (masks, gathers, scatters, 2-D tiles, dot, loops, branches) the results are bit for bit equal.
describe('checked launches agree with unchecked ones', () => {
  for (const c of CASES) {
    const sizes = c.sizes ?? SIZES;
    const grid = [...new Set([sizes[0]!, sizes[sizes.length - 1]!])].map((n) => ({ n, dt: (c.dtypes ?? ['f32'])[0]! }));
    test.each(grid)(`${c.name}: n=$n $dt`, async ({ n, dt }) => {
      const rt = rt0;
      const seed = n * 17 + 3;
      const a1 = c.args(rt, n, dt, rng(seed));
      const a2 = c.args(rt, n, dt, rng(seed));
      await c.kernel.launch({ ...c.launch(n), runtime: rt, checked: true }, ...a1);
      await c.kernel.launch({ ...c.launch(n), runtime: rt }, ...a2);
      for (const o of c.outs) expect((a1[o] as Tensor).toArray(), `${c.name} out${o}`).toEqual((a2[o] as Tensor).toArray());
      for (const x of [...a1, ...a2]) if (typeof x !== 'number') x.free();
    });
  }
});

describe('integer division builtins at run time, every sign', () => {
  const k = jit(`function divs(X, Out, d, B) {
    const i = arange(B);
    const x = load(X, i);
    store(Out, i, cdiv(x, d));
    store(Out, B + i, idiv(x, d));
  }`, { signature: { X: 'ptr', Out: 'ptr', d: 'i32', B: 'constexpr' } });
  const xs = Int32Array.from({ length: 64 }, (_, i) => i - 32);
  xs[0] = 2 ** 31 - 1; // (a + b - 1) / b overflowed here
  xs[1] = -(2 ** 31);
  test.each([1, 3, 4, 7, -1, -4, -7, 2 ** 30])('cdiv(x, %i) = ceil(x / d), idiv truncates', async (d) => {
    for (const mode of ['launch', 'interpret'] as const) {
      const X = rt0.tensor(xs, [64], 'i32'), Out = rt0.empty([128], 'i32');
      await k[mode]({ grid: [1], B: 64, runtime: rt0 }, X, Out, d);
      const got = Out.toArray();
      const want = [...xs].map((x) => Math.ceil(x / d) | 0).concat([...xs].map((x) => Math.trunc(x / d) | 0));
      // -2^31 / -1 wraps to -2^31 (the IR's i32 division), as | 0 does here.
      for (let i = 0; i < 128; i++) expect(got[i], `${mode} x=${xs[i % 64]} d=${d} (${i < 64 ? 'cdiv' : 'idiv'})`).toBe(want[i]);
      X.free();
      Out.free();
    }
  });
});
