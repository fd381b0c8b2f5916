/**
 * @fileoverview Sum over the leading axis of a [rows, N] tensor: programs sum slabs of rows
 * into f32 partials [slabs, N] (parallel over column blocks and slabs), then `colsum` adds the
 * slabs. The slab count depends only on the shape, so results do not change with threads. EVEN:
 * the slabs hold whole BR-row steps and the columns fill the tiles (no masks). A narrow tensor
 * (a column, or a few) is summed as wider rows of several of its rows each, whose partials
 * colsum then adds as more rows: every lane of the tile does work.
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

export const SUM_ROWS_SOURCE = `function sumRows(X, Part, rows, N, total, rowsPer, BR, BN, CHUNK, EVEN) {
  const cols = programId(0) * BN + arange(BN);
  const mc = cols < N;
  const r0 = programId(1) * rowsPer;
  const r1 = minimum(rows, r0 + rowsPer);
  // BR rows at a time into a loop-carried [BR, BN] partial, reduced once at the end: a
  // reduction per step would put a tile round trip and a horizontal add behind every load.
  // Two levels, CHUNK steps into a fresh partial and then into the total: a lane's rounding
  // error grows with CHUNK + steps / CHUNK additions instead of with all of its steps.
  let acc = zeros([BR, BN]);
  for (let c = r0; c < r1; c += BR * CHUNK) {
    const c1 = minimum(r1, c + BR * CHUNK);
    let part = zeros([BR, BN]);
    for (let r = c; r < c1; r += BR) {
      const rr = r + arange(BR);
      const offs = expandDims(rr, 1) * N + expandDims(cols, 0);
      // total: where a last row is cut short (a short column viewed as wider rows).
      const m = expandDims(rr < c1, 1) && expandDims(mc, 0) && offs < total;
      part = part + ld(X, offs, m, 0.0, EVEN);
    }
    acc = acc + part;
  }
  st(Part, programId(1) * N + cols, sum(acc, 0), mc, EVEN);
}`;

export const sumRowsKernel = jit(SUM_ROWS_SOURCE, {
  signature: { X: 'ptr', Part: 'ptr', rows: 'i32', N: 'i32', total: 'i32', rowsPer: 'i32', BR: 'constexpr', BN: 'constexpr', CHUNK: 'constexpr', EVEN: 'constexpr' },
  helpers: MASKED_HELPERS,
});

/** Out[n] = sum over r of P[r, n] (P is [rows, N]). */
export const COLSUM_SOURCE = `function colsum(P, Out, rows, N, BN) {
  const cols = programId(0) * BN + arange(BN);
  const mc = cols < N;
  // Compensated (Kahan): the partials are few next to the elements they sum, so the three
  // extra adds a row cost nothing, and thousands of them (a long narrow sum's) add up without
  // drift. comp stays 0 once the sum is not finite, so an infinity stays one.
  let acc = zeros([BN]);
  let comp = zeros([BN]);
  for (let r = 0; r < rows; r += 1) {
    const y = load(P, r * N + cols, mc, 0.0) - comp;
    const t = acc + y;
    comp = where(abs(t) < Infinity, (t - acc) - y, 0.0);
    acc = t;
  }
  store(Out, cols, acc, mc);
}`;

export const colsumKernel = jit(COLSUM_SOURCE, { signature: { P: 'ptr', Out: 'ptr', rows: 'i32', N: 'i32', BN: 'constexpr' } });
