/**
 * @fileoverview A generator of random, well-typed kernel-language programs (fast-check
 * arbitraries, so a failure shrinks to a small kernel): elementwise chains, constexpr
 * branches, loop-carried tiles, masked loads and stores, 2-D tiles with reductions, dot,
 * transposes, run-time ifs, unrolled loops, rand, f32 /
 * f16 / bf16 / i32 storage, and random sizes. Each program comes with its inputs; `check.ts`
 * runs it compiled and interpreted and compares.
 */
import fc from 'fast-check';

export type Storage = 'f32' | 'f16' | 'bf16' | 'i32';

/** One generated program: source, signature, launch options, and how to build its arguments. */
export interface Program {
  readonly kind: string;
  readonly src: string;
  readonly signature: Record<string, 'ptr' | 'i32' | 'f32' | 'constexpr'>;
  readonly launch: { readonly grid: number[]; readonly [constexpr: string]: number | boolean | number[] };
  /** Arguments in order: tensors as { size, dtype }, scalars as numbers. */
  readonly args: readonly ({ size: number; dtype: Storage } | number)[];
  /** Index (among args) of the output tensor. */
  readonly out: number;
  /** Relative tolerance against (1 + max |interpreter output|); 0 means exact. */
  readonly tol: number;
  /** Seed for input data. */
  readonly seed: number;
}

// ---- float expressions ------------------------------------------------------------------

/** A float expression over named tile/scalar leaves. Bounded functions keep values small. */
export type FExpr =
  | { k: 'leaf'; name: string }
  | { k: 'const'; v: number }
  | { k: 'bin'; op: '+' | '-' | '*'; a: FExpr; b: FExpr }
  | { k: 'div'; a: FExpr; b: FExpr }
  | { k: 'fn2'; fn: 'minimum' | 'maximum'; a: FExpr; b: FExpr }
  | { k: 'un'; fn: 'tanh' | 'sigmoid' | 'abs' | 'neg' | 'expc' | 'sqrtabs' | 'erf' | 'logabs'; a: FExpr }
  | { k: 'where'; l: string; op: '<' | '>' | '<=' | '>='; r: string; a: FExpr; b: FExpr };

const fconst = fc.integer({ min: -20, max: 20 }).map((n) => ({ k: 'const', v: n / 8 }) as FExpr);

/** Float expressions of depth <= `depth` over `leaves` (cond leaves: exact values only). */
export function fexpr(leaves: readonly string[], depth: number): fc.Arbitrary<FExpr> {
  const leaf = fc.constantFrom(...leaves).map((name) => ({ k: 'leaf', name }) as FExpr);
  const base = fc.oneof({ weight: 3, arbitrary: leaf }, { weight: 1, arbitrary: fconst });
  if (depth <= 0) return base;
  const sub = fexpr(leaves, depth - 1);
  return fc.oneof(
    { weight: 2, arbitrary: base },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('bin' as const), op: fc.constantFrom('+' as const, '-' as const, '*' as const), a: sub, b: sub }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('div' as const), a: sub, b: sub }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('fn2' as const), fn: fc.constantFrom('minimum' as const, 'maximum' as const), a: sub, b: sub }) },
    {
      weight: 2,
      arbitrary: fc.record({
        k: fc.constant('un' as const),
        fn: fc.constantFrom('tanh' as const, 'sigmoid' as const, 'abs' as const, 'neg' as const, 'expc' as const, 'sqrtabs' as const, 'erf' as const, 'logabs' as const),
        a: sub,
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('where' as const), l: fc.constantFrom(...leaves), op: fc.constantFrom('<' as const, '>' as const, '<=' as const, '>=' as const),
        r: fc.constantFrom(...leaves, '0.25'), a: sub, b: sub,
      }),
    },
  ) as fc.Arbitrary<FExpr>;
}

export function renderF(e: FExpr): string {
  switch (e.k) {
    case 'leaf': return e.name;
    case 'const': {
      const t = Number.isInteger(e.v) ? `${e.v}.0` : String(e.v);
      return e.v < 0 ? `(${t})` : t;
    }
    case 'bin': return `(${renderF(e.a)} ${e.op} ${renderF(e.b)})`;
    case 'div': return `(${renderF(e.a)} / (abs(${renderF(e.b)}) + 1.0))`;
    case 'fn2': return `${e.fn}(${renderF(e.a)}, ${renderF(e.b)})`;
    case 'un':
      switch (e.fn) {
        case 'neg': return `(-${renderF(e.a)})`;
        case 'expc': return `exp(minimum(${renderF(e.a)}, 3.0))`;
        case 'sqrtabs': return `sqrt(abs(${renderF(e.a)}))`;
        case 'logabs': return `log(abs(${renderF(e.a)}) + 0.5)`;
        default: return `${e.fn}(${renderF(e.a)})`;
      }
    case 'where': return `where(${e.l} ${e.op} ${e.r}, ${renderF(e.a)}, ${renderF(e.b)})`;
  }
}

// ---- integer expressions ----------------------------------------------------------------

export type IExpr =
  | { k: 'leaf'; name: string }
  | { k: 'const'; v: number }
  | { k: 'bin'; op: '+' | '-' | '*' | '&' | '|' | '^'; a: IExpr; b: IExpr }
  | { k: 'shift'; op: '<<' | '>>' | '>>>'; a: IExpr; n: number }
  | { k: 'fn2'; fn: 'minimum' | 'maximum' | 'idiv' | 'rem'; a: IExpr; b: IExpr }
  | { k: 'un'; fn: 'abs' | 'neg' | 'not'; a: IExpr }
  | { k: 'where'; l: string; op: '<' | '>' | '==' | '!='; r: string; a: IExpr; b: IExpr };

export function iexpr(leaves: readonly string[], depth: number): fc.Arbitrary<IExpr> {
  const leaf = fc.constantFrom(...leaves).map((name) => ({ k: 'leaf', name }) as IExpr);
  const base = fc.oneof({ weight: 3, arbitrary: leaf }, { weight: 1, arbitrary: fc.integer({ min: -9, max: 9 }).map((v) => ({ k: 'const', v }) as IExpr) });
  if (depth <= 0) return base;
  const sub = iexpr(leaves, depth - 1);
  return fc.oneof(
    { weight: 2, arbitrary: base },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('bin' as const), op: fc.constantFrom('+' as const, '-' as const, '*' as const, '&' as const, '|' as const, '^' as const), a: sub, b: sub }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('shift' as const), op: fc.constantFrom('<<' as const, '>>' as const, '>>>' as const), a: sub, n: fc.integer({ min: 0, max: 31 }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('fn2' as const), fn: fc.constantFrom('minimum' as const, 'maximum' as const, 'idiv' as const, 'rem' as const), a: sub, b: sub }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('un' as const), fn: fc.constantFrom('abs' as const, 'neg' as const, 'not' as const), a: sub }) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('where' as const), l: fc.constantFrom(...leaves), op: fc.constantFrom('<' as const, '>' as const, '==' as const, '!=' as const),
        r: fc.constantFrom(...leaves, '3'), a: sub, b: sub,
      }),
    },
  ) as fc.Arbitrary<IExpr>;
}

export function renderI(e: IExpr): string {
  switch (e.k) {
    case 'leaf': return e.name;
    case 'const': return e.v < 0 ? `(${e.v})` : String(e.v);
    case 'bin': return `(${renderI(e.a)} ${e.op} ${renderI(e.b)})`;
    case 'shift': return `(${renderI(e.a)} ${e.op} ${e.n})`;
    case 'fn2':
      // Divisors in 1..8: never zero, and never -1 (so no -2^31 / -1).
      if (e.fn === 'idiv') return `idiv(${renderI(e.a)}, (${renderI(e.b)} & 7) + 1)`;
      if (e.fn === 'rem') return `(${renderI(e.a)} % ((${renderI(e.b)} & 7) + 1))`;
      return `${e.fn}(${renderI(e.a)}, ${renderI(e.b)})`;
    case 'un':
      if (e.fn === 'neg') return `(-${renderI(e.a)})`;
      if (e.fn === 'not') return `(~${renderI(e.a)})`;
      return `abs(${renderI(e.a)})`;
    case 'where': return `where(${e.l} ${e.op} ${e.r}, ${renderI(e.a)}, ${renderI(e.b)})`;
  }
}

// ---- programs ---------------------------------------------------------------------------

const pow2 = (lo: number, hi: number): fc.Arbitrary<number> => fc.integer({ min: lo, max: hi }).map((e) => 2 ** e);
const floatStorage = fc.constantFrom<Storage>('f32', 'f16', 'bf16');
const seed = fc.integer({ min: 1, max: 2 ** 30 });
const cdiv = (a: number, b: number): number => Math.ceil(a / b);
const TOL: Record<Storage, number> = { f32: 2e-4, f16: 4e-3, bf16: 2e-2, i32: 0 };

/** Elementwise over a 1-D masked tile, with an optional constexpr branch. */
const elementwise1d = fc.record({
  e1: fexpr(['x', 'y', 's', 'fi'], 4), e2: fexpr(['x', 'y', 's'], 2), flag: fc.boolean(), branch: fc.boolean(),
  n: fc.integer({ min: 1, max: 300 }), B: pow2(2, 6), dx: floatStorage, dout: floatStorage, s: fconst, seed, other: fconst,
}).map(({ e1, e2, flag, branch, n, B, dx, dout, s, seed, other }): Program => {
  const body = branch
    ? `  let z = ${renderF(e2)};\n  if (FLAG) {\n    z = ${renderF(e1)};\n  }\n  store(Out, i, z, m);`
    : `  store(Out, i, ${renderF(e1)}, m);`;
  const src = `function fz(X, Y, Out, s, n, B, FLAG) {
  const i = programId(0) * B + arange(B);
  const m = i < n;
  const x = load(X, i, m, ${renderF(other)});
  const y = load(Y, i, m);
  const fi = cast(i, 'f32') * 0.01;
${body}
}`;
  return {
    kind: 'elementwise', src, seed,
    signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', B: 'constexpr', FLAG: 'constexpr' },
    launch: { grid: [cdiv(n, B)], B, FLAG: flag },
    args: [{ size: n, dtype: dx }, { size: n, dtype: dx }, { size: n, dtype: dout }, (s as { v: number }).v, n],
    out: 2, tol: Math.max(TOL[dx], TOL[dout]),
  };
});

/** A run-time loop carrying a tile: acc = 0.5 * acc + f(x_k, y, acc). */
const loop1d = fc.record({
  e: fexpr(['xk', 'y', 'acc', 's'], 3), n: fc.integer({ min: 1, max: 200 }), K: fc.integer({ min: 0, max: 5 }), B: pow2(2, 6),
  dx: floatStorage, dout: floatStorage, s: fconst, seed, down: fc.boolean(),
}).map(({ e, n, K, B, dx, dout, s, seed, down }): Program => {
  const head = down ? 'for (let k = K - 1; k >= 0; k--)' : 'for (let k = 0; k < K; k++)';
  const src = `function fz(X, Y, Out, s, n, K, B) {
  const i = programId(0) * B + arange(B);
  const m = i < n;
  const y = load(Y, i, m);
  let acc = zeros([B]);
  ${head} {
    const xk = load(X, k * n + i, m);
    acc = 0.5 * acc + tanh(${renderF(e)});
  }
  store(Out, i, acc, m);
}`;
  return {
    kind: 'loop', src, seed,
    signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', K: 'i32', B: 'constexpr' },
    launch: { grid: [cdiv(n, B)], B },
    args: [{ size: Math.max(1, n * K), dtype: dx }, { size: n, dtype: dx }, { size: n, dtype: dout }, (s as { v: number }).v, n, K],
    out: 2, tol: Math.max(TOL[dx], TOL[dout]),
  };
});

/** A 2-D masked tile, an elementwise map with row/column broadcasts, and a reduction. */
const reduce2d = fc.record({
  e: fexpr(['x', 'rv', 'cv', 's'], 3), rows: fc.integer({ min: 1, max: 40 }), cols: fc.integer({ min: 1, max: 70 }),
  BR: pow2(0, 4), BC: pow2(2, 6), red: fc.constantFrom('sum', 'max', 'min'), axis: fc.constantFrom(0, 1),
  dx: floatStorage, s: fconst, seed,
}).map(({ e, rows, cols, BR, BC, red, axis, dx, s, seed }): Program => {
  const g0 = cdiv(rows, BR);
  const g1 = cdiv(cols, BC);
  // axis 1: one partial per (row, column block); axis 0: one per (row block, column).
  const store = axis === 1
    ? `store(Out, r * ${g1} + programId(1), ${red}(t, 1), r < rows);`
    : `store(Out, programId(0) * cols + c, ${red}(t, 0), c < cols);`;
  const src = `function fz(X, Out, s, rows, cols, BR, BC) {
  const r = programId(0) * BR + arange(BR);
  const c = programId(1) * BC + arange(BC);
  const m = expandDims(r < rows, 1) && expandDims(c < cols, 0);
  const x = load(X, expandDims(r, 1) * cols + expandDims(c, 0), m, 0.5);
  const rv = expandDims(cast(r, 'f32') * 0.1, 1);
  const cv = expandDims(cast(c, 'f32') * -0.05, 0);
  const t = ${renderF(e)} + zeros([BR, BC]);
  ${store}
}`;
  const outSize = axis === 1 ? rows * g1 : g0 * cols;
  return {
    kind: `reduce-${red}-${axis}`, src, seed,
    signature: { X: 'ptr', Out: 'ptr', s: 'f32', rows: 'i32', cols: 'i32', BR: 'constexpr', BC: 'constexpr' },
    launch: { grid: [g0, g1], BR, BC },
    args: [{ size: rows * cols, dtype: dx }, { size: outSize, dtype: 'f32' }, (s as { v: number }).v, rows, cols],
    out: 1, tol: Math.max(TOL[dx], 2e-4) * (red === 'sum' ? Math.sqrt(axis === 1 ? BC : BR) : 1),
  };
});

/** C = f(A) @ B over a run-time K loop, with masks on every edge and an epilogue. */
const dot2d = fc.record({
  pre: fexpr(['a0', 's'], 2), post: fexpr(['acc', 's'], 2), M: fc.integer({ min: 1, max: 40 }), N: fc.integer({ min: 1, max: 40 }),
  K: fc.integer({ min: 1, max: 40 }), BM: pow2(0, 4), BN: pow2(0, 5), BK: pow2(0, 4), dx: floatStorage, s: fconst, seed,
}).map(({ pre, post, M, N, K, BM, BN, BK, dx, s, seed }): Program => {
  const src = `function fz(A, B, C, s, M, N, K, BM, BN, BK) {
  const rm = programId(0) * BM + arange(BM);
  const rn = programId(1) * BN + arange(BN);
  let acc = zeros([BM, BN]);
  for (let k = 0; k < K; k += BK) {
    const rk = k + arange(BK);
    const a0 = load(A, expandDims(rm, 1) * K + expandDims(rk, 0), expandDims(rm < M, 1) && expandDims(rk < K, 0));
    const a = where(expandDims(rk < K, 0), ${renderF(pre)} + zeros([BM, BK]), 0.0);
    const b = load(B, expandDims(rk, 1) * N + expandDims(rn, 0), expandDims(rk < K, 1) && expandDims(rn < N, 0));
    acc = dot(a, b, acc);
  }
  store(C, expandDims(rm, 1) * N + expandDims(rn, 0), ${renderF(post)}, expandDims(rm < M, 1) && expandDims(rn < N, 0));
}`;
  return {
    kind: 'dot', src, seed,
    signature: { A: 'ptr', B: 'ptr', C: 'ptr', s: 'f32', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' },
    launch: { grid: [cdiv(M, BM), cdiv(N, BN)], BM, BN, BK },
    args: [{ size: M * K, dtype: dx }, { size: K * N, dtype: dx }, { size: M * N, dtype: 'f32' }, (s as { v: number }).v, M, N, K],
    out: 2, tol: Math.max(TOL[dx], 2e-4) * Math.sqrt(K),
  };
});

/** Integer elementwise (exact), i32 storage, masked. */
const int1d = fc.record({
  e: iexpr(['x', 'y', 'i', 'k'], 4), n: fc.integer({ min: 1, max: 300 }), B: pow2(2, 6), k: fc.integer({ min: -1000, max: 1000 }), seed,
}).map(({ e, n, B, k, seed }): Program => {
  const src = `function fz(X, Y, Out, k, n, B) {
  const i = programId(0) * B + arange(B);
  const m = i < n;
  const x = load(X, i, m, 7);
  const y = load(Y, i, m);
  store(Out, i, ${renderI(e)}, m);
}`;
  return {
    kind: 'int', src, seed,
    signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', k: 'i32', n: 'i32', B: 'constexpr' },
    launch: { grid: [cdiv(n, B)], B },
    args: [{ size: n, dtype: 'i32' }, { size: n, dtype: 'i32' }, { size: n, dtype: 'i32' }, k, n],
    out: 2, tol: 0,
  };
});

/** A square tile through trans, a run-time if with results, an unrolled loop and rand. */
const misc2d = fc.record({
  e: fexpr(['x', 'xt', 'u', 's'], 3), e2: fexpr(['w', 'x'], 2), B: pow2(0, 4), T: fc.integer({ min: -2, max: 3 }), R: fc.integer({ min: 0, max: 3 }),
  rows: fc.integer({ min: 1, max: 20 }), dx: floatStorage, s: fconst, seed, rseed: fc.integer({ min: 0, max: 1000 }),
}).map(({ e, e2, B, T, R, rows, dx, s, seed, rseed }): Program => {
  const src = `function fz(X, Out, s, rows, t, rs, B, R) {
  const base = programId(0) * B * B;
  const r = expandDims(arange(B), 1);
  const c = expandDims(arange(B), 0);
  const offs = base + r * B + c;
  const m = offs < rows * B;
  const x = load(X, offs, m, -0.25);
  const xt = trans(x);
  const u = rand(rs, offs);
  let w = ${renderF(e)} + zeros([B, B]);
  if (t > programId(0)) {
    w = trans(w) * 0.5;
  } else {
    w = w - 0.125;
  }
  for (const j of staticRange(R)) {
    w = tanh(${renderF(e2)}) + cast(j, 'f32');
  }
  store(Out, offs, w, m);
}`;
  const g = cdiv(rows, B);
  return {
    kind: 'misc2d', src, seed,
    signature: { X: 'ptr', Out: 'ptr', s: 'f32', rows: 'i32', t: 'i32', rs: 'i32', B: 'constexpr', R: 'constexpr' },
    launch: { grid: [g], B, R },
    args: [{ size: g * B * B, dtype: dx }, { size: g * B * B, dtype: 'f32' }, (s as { v: number }).v, rows, T, rseed],
    out: 1, tol: Math.max(TOL[dx], 2e-4),
  };
});

/**
 * In place, one program: X is read at a permutation of the store's offsets (a reversal, a
 * shift, an xor within the block, or the same offsets) and at the same offsets, and the result
 * is stored back into X. Tile semantics read the whole tile before the store writes.
 */
const inPlace1d = fc.record({
  e: fexpr(['x', 'v', 's'], 3), n: fc.integer({ min: 1, max: 70 }), perm: fc.constantFrom('n - 1 - i', 'i + d', 'i - d', 'i ^ d', 'i'),
  d: fc.integer({ min: 1, max: 7 }), dx: floatStorage, s: fconst, seed,
}).map(({ e, n, perm, d, dx, s, seed }): Program => {
  const B = 2 ** Math.ceil(Math.log2(n));
  const src = `function fz(X, s, n, d, B) {
  const i = arange(B);
  const m = i < n;
  const j = ${perm};
  const v = load(X, i, m);
  const x = load(X, j, m && j >= 0 && j < n, 0.25);
  store(X, i, ${renderF(e)}, m);
}`;
  return {
    kind: 'in-place', src, seed,
    signature: { X: 'ptr', s: 'f32', n: 'i32', d: 'i32', B: 'constexpr' },
    launch: { grid: [1], B },
    args: [{ size: n, dtype: dx }, (s as { v: number }).v, n, d],
    out: 0, tol: TOL[dx],
  };
});

/** Any generated program. */
export const program: fc.Arbitrary<Program> = fc.oneof(
  { weight: 3, arbitrary: elementwise1d },
  { weight: 2, arbitrary: loop1d },
  { weight: 2, arbitrary: reduce2d },
  { weight: 2, arbitrary: dot2d },
  { weight: 2, arbitrary: int1d },
  { weight: 2, arbitrary: misc2d },
  { weight: 1, arbitrary: inPlace1d },
);
