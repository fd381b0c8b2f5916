/**
 * @fileoverview Softmax and log-softmax along the last axis, forward and backward, viewing the
 * tensor as M rows of N. SINGLE: a program holds R whole rows in one [R, BN] tile (BN >= N),
 * reads x once and subtracts the row max. Otherwise one row per program in BN-wide chunks: an
 * online pass keeps the running max and a sum rescaled whenever the max grows, then a second
 * pass writes.
 */
import { jit } from '../src/kernel.js';
import { nearestRow } from './lookup.js';
import { MASKED_HELPERS } from './masked.js';
import { NORM_TABLE, SOFTMAX_TABLE } from './tuned-tables.js';

export const SOFTMAX_SOURCE = `function softmax(X, Dy, Out, M, N, R, BN, LOG, BWD, SINGLE, EVEN) {
  if (SINGLE) {
    const rows = programId(0) * R + arange(R);
    const cols = arange(BN);
    const offs = expandDims(rows, 1) * N + expandDims(cols, 0);
    const m = expandDims(rows < M, 1) && expandDims(cols < N, 0);
    if (BWD) {
      // X holds the forward's output y.
      const y = ld(X, offs, m, 0.0, EVEN);
      const dy = ld(Dy, offs, m, 0.0, EVEN);
      if (LOG) {
        st(Out, offs, dy - exp(y, true) * expandDims(sum(dy, 1), 1), m, EVEN);
      } else {
        st(Out, offs, y * (dy - expandDims(sum(dy * y, 1), 1)), m, EVEN);
      }
    } else {
      const x = ld(X, offs, m, -Infinity, EVEN);
      // A NaN reaches the whole row through the sum, so the max may skip it (propagateNan false).
      const z = x - expandDims(max(x, 1, false, false), 1);
      const e = exp(z, true);
      if (LOG) {
        st(Out, offs, z - expandDims(log(sum(e, 1)), 1), m, EVEN);
      } else {
        st(Out, offs, e * expandDims(1.0 / sum(e, 1), 1), m, EVEN);
      }
    }
  } else {
    const base = programId(0) * N;
    if (BWD) {
      let acc = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const m = cols < N;
        const dy = load(Dy, base + cols, m, 0.0);
        if (LOG) { acc = acc + sum(dy, 0); } else { acc = acc + sum(dy * load(X, base + cols, m, 0.0), 0); }
      }
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const m = cols < N;
        const y = load(X, base + cols, m, 0.0);
        const dy = load(Dy, base + cols, m, 0.0);
        if (LOG) { store(Out, base + cols, dy - exp(y, true) * acc, m); } else { store(Out, base + cols, y * (dy - acc), m); }
      }
    } else {
      let mx = -Infinity;
      let s = 0.0;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const x = load(X, base + cols, cols < N, -Infinity);
        const mnew = maximum(mx, max(x, 0, false, false));
        // Rescale the sum to the new max; equal maxima (both -Infinity too) keep it as it is.
        // A chunk of only -Infinity (mnew still -Infinity) adds exp(-Infinity - 0) = 0.
        s = s * where(mnew == mx, 1.0, exp(mx - mnew, true)) + sum(exp(x - where(mnew == -Infinity, 0.0, mnew), true), 0);
        mx = mnew;
      }
      const ls = log(s);
      const inv = 1.0 / s;
      for (let c = 0; c < N; c += BN) {
        const cols = c + arange(BN);
        const m = cols < N;
        const x = load(X, base + cols, m, 0.0);
        if (LOG) { store(Out, base + cols, x - mx - ls, m); } else { store(Out, base + cols, exp(x - mx, true) * inv, m); }
      }
    }
  }
}`;

/** The softmax kernel. */
export const softmaxKernel = jit(SOFTMAX_SOURCE, {
  signature: {
    X: 'ptr', Dy: 'ptr', Out: 'ptr', M: 'i32', N: 'i32',
    R: 'constexpr', BN: 'constexpr', LOG: 'constexpr', BWD: 'constexpr', SINGLE: 'constexpr', EVEN: 'constexpr',
  },
  helpers: MASKED_HELPERS,
});

/** Widest row held in one tile; longer rows stream in chunks. */
export const ROW_TILE_MAX = 8192;

/** A row kernel's config: rows per program, the tile width (SINGLE) or chunk, and whether the masks go. */
export interface RowConfig {
  readonly R: number;
  readonly BN: number;
  readonly SINGLE: boolean;
  readonly EVEN: boolean;
}

/**
 * The row kernels' config space (the autotuner's candidates): R whole rows per program in one
 * tile as wide as the row, or one row streamed in chunks of BN. A SINGLE config's tile width is
 * the row's, set when it is used (see `rowConfigFor`).
 */
export const ROW_CONFIGS: readonly { R: number; BN?: number; SINGLE: boolean }[] = [
  ...[1, 2, 4, 8, 16, 32, 64, 128, 256].map((R) => ({ R, SINGLE: true })),
  ...[1024, 2048, 4096].map((BN) => ({ R: 1, BN, SINGLE: false })),
];

/** The tile width of a SINGLE config for rows of N (a power of two), or undefined past ROW_TILE_MAX. */
export function rowTile(N: number): number | undefined {
  let BN = 1;
  while (BN < N) BN *= 2;
  return BN > ROW_TILE_MAX ? undefined : BN;
}

/**
 * A (table or candidate) config made concrete for M rows of N: a SINGLE config gets the row's
 * tile width, with R lowered until the tile fits 2^16 elements; EVEN when every row fills its
 * tile and the programs tile the rows exactly (no masks at all). Undefined when a SINGLE config
 * cannot hold the row.
 */
export function rowConfigFor(M: number, N: number, c: { R: number; BN?: number; SINGLE: boolean }): RowConfig | undefined {
  if (!c.SINGLE) return { R: 1, BN: c.BN ?? 2048, SINGLE: false, EVEN: false };
  const BN = rowTile(N);
  if (BN === undefined) return undefined;
  let R = c.R;
  while (R > 1 && R * BN > 1 << 16) R /= 2;
  return { R, BN, SINGLE: true, EVEN: BN === N && M % R === 0 };
}

/**
 * Row-kernel tiling for M rows of N: the tuned table's row for a nearby shape
 * (templates/tuned-tables.ts: SOFTMAX_TABLE for softmax, NORM_TABLE for the norms), else the rule.
 */
export function chooseRowConfig(M: number, N: number, kind: 'softmax' | 'norm' = 'softmax'): RowConfig {
  const row = nearestRow(kind === 'softmax' ? SOFTMAX_TABLE : NORM_TABLE, { M, N }, ['M', 'N']);
  const tuned = row && rowConfigFor(M, N, row);
  return tuned ?? ruleRowConfig(M, N);
}

function ruleRowConfig(M: number, N: number): RowConfig {
  const BN = rowTile(N);
  if (BN === undefined) return { R: 1, BN: 2048, SINGLE: false, EVEN: false };
  // Rows of 128 elements or more run one per program (a 1-D tile reduces faster than the rows
  // of a 2-D one: 4096x1024 softmax 5.5 GB/s at R = 1 against 4.5 at R = 4); short rows are
  // stacked up to ~128 elements a tile so a program is not all overhead.
  let R = Math.max(1, Math.min(256, Math.floor(128 / BN)));
  while (R > 1 && Math.ceil(M / R) < 16) R /= 2;
  return { R, BN, SINGLE: true, EVEN: BN === N && M % R === 0 };
}
