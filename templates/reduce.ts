/**
 * @fileoverview Sum over the leading axis of a [rows, N] tensor: programs sum slabs of rows
 * into f32 partials [slabs, N] (parallel over column blocks and slabs), then `colsum` adds the
 * slabs. The slab count depends only on the shape, so results do not change with threads. EVEN:
 * the slabs hold whole BR-row steps and the columns fill the tiles (no masks).
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

export const SUM_ROWS_SOURCE = `function sumRows(X, Part, rows, N, rowsPer, BR, BN, EVEN) {
  const cols = programId(0) * BN + arange(BN);
  const mc = cols < N;
  const r0 = programId(1) * rowsPer;
  const r1 = minimum(rows, r0 + rowsPer);
  // BR rows at a time into a loop-carried [BR, BN] partial, reduced once at the end: a
  // reduction per step would put a tile round trip and a horizontal add behind every load.
  let acc = zeros([BR, BN]);
  for (let r = r0; r < r1; r += BR) {
    const rr = r + arange(BR);
    const m = expandDims(rr < r1, 1) && expandDims(mc, 0);
    acc = acc + ld(X, expandDims(rr, 1) * N + expandDims(cols, 0), m, 0.0, EVEN);
  }
  st(Part, programId(1) * N + cols, sum(acc, 0), mc, EVEN);
}`;

export const sumRowsKernel = jit(SUM_ROWS_SOURCE, {
  signature: { X: 'ptr', Part: 'ptr', rows: 'i32', N: 'i32', rowsPer: 'i32', BR: 'constexpr', BN: 'constexpr', EVEN: 'constexpr' },
  helpers: MASKED_HELPERS,
});

/** Out[n] = sum over r of P[r, n] (P is [rows, N]). */
export const COLSUM_SOURCE = `function colsum(P, Out, rows, N, BN) {
  const cols = programId(0) * BN + arange(BN);
  const mc = cols < N;
  let acc = zeros([BN]);
  for (let r = 0; r < rows; r += 1) {
    acc = acc + load(P, r * N + cols, mc, 0.0);
  }
  store(Out, cols, acc, mc);
}`;

export const colsumKernel = jit(COLSUM_SOURCE, { signature: { P: 'ptr', Out: 'ptr', rows: 'i32', N: 'i32', BN: 'constexpr' } });
