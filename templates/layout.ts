/**
 * @fileoverview Layout moves for multi-head attention: [B, N, C·H·Dh] rows (a fused QKV
 * projection, C = 3) to C stacked head-major tensors [C, B, H, N, Dh], and back. One program
 * moves a BN-token slab of one (batch, component, head).
 */
import { jit } from '../src/kernel.js';
import { MASKED_HELPERS } from './masked.js';

export const HEADS_SOURCE = `function heads(In, Out, B, N, C, H, BN, DH, SPLIT, EVEN) {
  const slab = programId(1);
  const h = slab - idiv(slab, H) * H;
  const bc = idiv(slab, H);
  const c = bc - idiv(bc, C) * C;
  const b = idiv(bc, C);
  const rn = programId(0) * BN + arange(BN);
  const rd = arange(DH);
  const m = expandDims(rn < N, 1);
  const rows = ((b * N + expandDims(rn, 1)) * C + c) * H * DH + h * DH + expandDims(rd, 0);
  const heads = (((c * B + b) * H + h) * N + expandDims(rn, 1)) * DH + expandDims(rd, 0);
  if (SPLIT) {
    st(Out, heads, ld(In, rows, m, 0.0, EVEN), m, EVEN);
  } else {
    st(Out, rows, ld(In, heads, m, 0.0, EVEN), m, EVEN);
  }
}`;

export const headsKernel = jit(HEADS_SOURCE, {
  signature: { In: 'ptr', Out: 'ptr', B: 'i32', N: 'i32', C: 'i32', H: 'i32', BN: 'constexpr', DH: 'constexpr', SPLIT: 'constexpr', EVEN: 'constexpr' },
  helpers: MASKED_HELPERS,
});
