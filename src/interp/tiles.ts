/**
 * @fileoverview The interpreter's whole-tile ops: broadcast, transpose, dot and reductions.
 * Tiles are row-major with rank <= 2, so every op sees a shape as [rows, cols] (a scalar is
 * [1, 1], a 1-D tile [1, n]: right-aligned, as numpy broadcasting reads them).
 */
import type { ReduceFn, Shape } from '../ir/ir.js';
import type { Tile } from './memory.js';

/** A rank <= 2 shape as [rows, cols], right-aligned. */
export function dims2(shape: Shape): [number, number] {
  if (shape.length === 2) return [shape[0]!, shape[1]!];
  if (shape.length === 1) return [1, shape[0]!];
  return [1, 1];
}

/** Numpy broadcast of `src` (shape `from`) into `out` (shape `to`): size-1 dims repeat. */
export function broadcast(src: Tile, from: Shape, to: Shape, out: Tile): void {
  const [R, C] = dims2(to);
  const [sR, sC] = dims2(from);
  for (let r = 0; r < R; r++) {
    const srow = (sR === 1 ? 0 : r) * sC;
    for (let c = 0; c < C; c++) out[r * C + c] = src[srow + (sC === 1 ? 0 : c)]!;
  }
}

/** out [C, R] = transpose of src [R, C]. */
export function trans(src: Tile, from: Shape, out: Tile): void {
  const [R, C] = dims2(from);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out[c * R + r] = src[r * C + c]!;
}

/**
 * out [M, N] = a [M, K] @ b [K, N] (+ acc): each element's products summed in f64 in k order,
 * the sum added to acc in f64, rounded to f32 once.
 */
export function dot(a: Float32Array, b: Float32Array, acc: Float32Array | undefined, M: number, K: number, N: number, out: Float32Array): void {
  // i-k-j order walks b and the row sums contiguously; each element still sums over k in order.
  const row = new Float64Array(N);
  for (let i = 0; i < M; i++) {
    row.fill(0);
    for (let k = 0; k < K; k++) {
      const aik = a[i * K + k]!;
      const bk = k * N;
      for (let j = 0; j < N; j++) row[j]! += aik * b[bk + j]!;
    }
    const o = i * N;
    if (acc) for (let j = 0; j < N; j++) out[o + j] = row[j]! + acc[o + j]!;
    else for (let j = 0; j < N; j++) out[o + j] = row[j]!;
  }
}

/**
 * Reduces `src` (shape `from`) along `axis` into `out`. sum: f64 accumulation, rounded once
 * (i32 sums wrap, exact since 2^16 elements of 2^31 stay below 2^53). max/min: Math.max/min,
 * so a NaN anywhere gives NaN, unless `skipNan` (ReduceV.skipNan): then NaN elements are passed over.
 */
export function reduce(fn: ReduceFn, src: Tile, from: Shape, axis: number, isInt: boolean, out: Tile, skipNan = false): void {
  const [R, C] = dims2(from);
  // Along axis 0 of a 2-D tile: C outputs, each over a column; otherwise over a row.
  const down = from.length === 2 && axis === 0;
  const outer = down ? C : R;
  const inner = down ? R : C;
  const stride = down ? C : 1;
  for (let o = 0; o < outer; o++) {
    const first = down ? o : o * C;
    let s: number;
    if (fn === 'sum') {
      s = 0;
      for (let k = 0; k < inner; k++) s += src[first + k * stride]!;
      if (isInt) s |= 0;
    } else {
      s = fn === 'max' ? -Infinity : Infinity;
      const m = fn === 'max' ? Math.max : Math.min;
      for (let k = 0; k < inner; k++) {
        const x = src[first + k * stride]!;
        if (!(skipNan && Number.isNaN(x))) s = m(s, x);
      }
    }
    out[o] = s;
  }
}
