/**
 * @fileoverview `ops.splitHeads` / `ops.mergeHeads` (the layout moves around multi-head
 * attention) and `ops.sum` over the leading axis (bias gradients, batch sums).
 */
import { headsKernel } from '../../templates/layout.js';
import { colsumKernel, sumRowsKernel } from '../../templates/reduce.js';
import type { Tensor } from '../runtime/tensor.js';
import { columnSumTiles, fail, FLOAT_DTYPES, floatTensor, isPow2, pow2AtLeast, rowSlabs } from './common.js';

/** The largest power of two at most x (x >= 1). */
const pow2Below = (x: number): number => 2 ** Math.floor(Math.log2(x));

/** Row steps a sum adds into a fresh partial before the total (see SUM_ROWS_SOURCE). */
export const SUM_CHUNK = 32;

/**
 * [B, N, C·H·Dh] -> [C, B, H, N, Dh]: C projections (3 for a fused QKV) of H heads each, moved
 * head-major for `ops.attention`; `narrow(c, c + 1)` then `reshape([B, H, N, Dh])` picks one.
 */
export async function splitHeads(x: Tensor, opts: { heads: number; components?: number }): Promise<Tensor> {
  const op = 'splitHeads';
  floatTensor(op, 'x', x);
  if (x.shape.length !== 3) fail(op, `x must be [B, N, C·H·Dh], got [${x.shape.join(', ')}]`);
  const [B, N, W] = x.shape as [number, number, number];
  const H = opts?.heads, C = opts?.components ?? 1;
  if (!Number.isInteger(H) || H < 1 || !Number.isInteger(C) || C < 1 || W % (H * C) !== 0) {
    fail(op, `heads and components must be positive integers dividing the last dim ${W}, got heads ${H}, components ${C}`);
  }
  const Dh = W / (H * C);
  if (!isPow2(Dh)) fail(op, `the head dim (${W} / (${C}·${H}) = ${Dh}) must be a power of two`);
  const out = x.runtime.empty([C, B, H, N, Dh], x.dtype);
  await move(x, out, B, N, C, H, Dh, true);
  return out;
}

/** [C, B, H, N, Dh] -> [B, N, C·H·Dh], the inverse of `splitHeads`. */
export async function mergeHeads(x: Tensor): Promise<Tensor> {
  const op = 'mergeHeads';
  floatTensor(op, 'x', x);
  if (x.shape.length !== 5) fail(op, `x must be [C, B, H, N, Dh], got [${x.shape.join(', ')}]`);
  const [C, B, H, N, Dh] = x.shape as [number, number, number, number, number];
  if (!isPow2(Dh)) fail(op, `the head dim ${Dh} must be a power of two`);
  const out = x.runtime.empty([B, N, C * H * Dh], x.dtype);
  await move(x, out, B, N, C, H, Dh, false);
  return out;
}

async function move(x: Tensor, out: Tensor, B: number, N: number, C: number, H: number, Dh: number, split: boolean): Promise<void> {
  if (x.size === 0) return;
  const BN = Math.max(1, Math.min(64, 2048 / Dh));
  await headsKernel.launch({ grid: [Math.ceil(N / BN), B * C * H], BN, DH: Dh, SPLIT: split, EVEN: N % BN === 0, runtime: x.runtime }, x, out, B, N, C, H);
}

/**
 * Sum over the leading axis: [R, ...rest] -> [...rest], in the dtype of x or `dtype`. f32
 * accumulation in two levels (partials of 32 row steps, then their total) and compensated
 * across slabs, so the error does not grow with R: a million 0.1s land 4.2·2^-24 from the
 * exact sum.
 */
export async function sum(x: Tensor, opts: { axis?: 0; dtype?: 'f32' | 'f16' | 'bf16' } = {}): Promise<Tensor> {
  const op = 'sum';
  floatTensor(op, 'x', x);
  if ((opts.axis ?? 0) !== 0) fail(op, `only axis 0 (the leading axis) is supported, got ${String(opts.axis)}`);
  if (x.shape.length === 0) fail(op, 'x must have at least one dim');
  const rt = x.runtime;
  const rows = x.shape[0]!;
  const rest = x.shape.slice(1);
  const N = rest.reduce((p, d) => p * d, 1);
  if (opts.dtype !== undefined && !(FLOAT_DTYPES as readonly string[]).includes(opts.dtype)) fail(op, `dtype must be 'f32', 'f16' or 'bf16', got ${JSON.stringify(opts.dtype)}`);
  const out = rt.empty(rest, opts.dtype ?? x.dtype);
  if (N === 0) return out;
  // Fewer than 64 columns fill too little of a tile: sum rows of `fold` rows each (the
  // memory is the same), then fold the partials back down to N columns in colsum.
  const fold = N < 64 && rows >= 512 ? Math.min(pow2AtLeast(Math.ceil(256 / N)), pow2Below(rows / 2)) : 1;
  const width = N * fold;
  const wide = Math.ceil(rows / fold);
  const { BR, BN } = columnSumTiles(width);
  const { rowsPer, slabs: P } = rowSlabs(wide, BR);
  const even = width % BN === 0 && wide % rowsPer === 0 && rows % fold === 0;
  const part = rt.empty([P, width], 'f32');
  try {
    if (rows > 0) await sumRowsKernel.launch({ grid: [Math.ceil(width / BN), P], BR, BN, CHUNK: SUM_CHUNK, EVEN: even, runtime: rt }, x, part, wide, width, rows * N, rowsPer);
    // [P, width] is [P · fold, N] in memory.
    await colsumKernel.launch({ grid: [Math.ceil(N / 256)], BN: 256, runtime: rt }, part, out, rows > 0 ? P * fold : 0, N);
  } finally {
    part.free();
  }
  return out;
}
