/**
 * @fileoverview Flash attention (FlashAttention-2's schedule) in the kernel language. q has H
 * heads, k and v Hkv with H a multiple of Hkv (grouped-query: query head h reads kv head
 * h / (H / Hkv)); each tensor is addressed through strides for batch entry, head and row (see
 * `offs`), so [B, H, N, D] tensors and the q, k and v of a packed [B, N, 3, H, D] projection
 * run the same code. A forward program owns BM query rows of one head and streams BN-key
 * blocks through an online softmax in base 2 (scale·log2 e folded into q), so no N x N buffer
 * exists; it writes out and the natural-log sum-exp per row. Causal attention stops at the
 * diagonal block, a sliding window starts at its band, and only blocks crossing a boundary (the
 * diagonal, the band's edge, a key length) are masked.
 *
 * The backward recomputes P block by block from lse, after `attnDelta` computes delta =
 * rowsum(dO · O). `attnBwd` owns a kv head and computes all three gradients in one pass (dQ summed
 * in place); where there are too few kv heads to keep the threads busy, `attnBwdKV` owns a key
 * block (summing over the query heads of its group) for dK and dV, and `attnBwdQ` a query block
 * for dQ.
 *
 * Dropout keeps a probability with chance 1 - pdrop and scales it by 1 / (1 - pdrop); the keep
 * mask is rand(seed + 7919·(b·H + h), row·N + key), which the backward replays.
 */
import { jit } from '../src/kernel.js';
import { nearestRow } from './lookup.js';
import { ATTENTION_TABLE } from './tuned-tables.js';

/** Shared prologue: ids, the key range of this query block, and whether a block needs masks. */
const RANGE = `function keyRange(mb, kvLen, BM, BN, CAUSAL, WINDOW) {
  let hi = kvLen;
  if (CAUSAL) { hi = minimum(hi, (mb + 1) * BM); }
  if (WINDOW > 0) {
    if (!CAUSAL) { hi = minimum(hi, (mb + 1) * BM + WINDOW - 1); }
  }
  return hi;
}`;

const LOW = `function keyLow(mb, BM, BN, WINDOW) {
  let lo = 0;
  if (WINDOW > 0) { lo = idiv(maximum(0, mb * BM - WINDOW + 1), BN) * BN; }
  return lo;
}`;

/** The mask of valid (query rm, key rn) pairs for one block. */
const VALID = `function valid(rm, rn, kvLen, CAUSAL, WINDOW) {
  let ok = expandDims(rn < kvLen, 0) && expandDims(rm >= 0, 1);
  if (CAUSAL) { ok = ok && (expandDims(rn, 0) <= expandDims(rm, 1)); }
  if (WINDOW > 0) {
    ok = ok && (expandDims(rn, 0) > expandDims(rm, 1) - WINDOW);
    if (!CAUSAL) { ok = ok && (expandDims(rn, 0) < expandDims(rm, 1) + WINDOW); }
  }
  return ok;
}`;

/** Whether the block of keys [n0, n0 + BN) needs a mask for query block mb. */
const NEEDS_MASK = `function needsMask(mb, n0, kvLen, BM, BN, CAUSAL, WINDOW) {
  let need = n0 + BN > kvLen;
  if (CAUSAL) { need = need || n0 + BN - 1 > mb * BM; }
  if (WINDOW > 0) {
    need = need || n0 <= mb * BM + BM - 1 - WINDOW;
    if (!CAUSAL) { need = need || n0 + BN - 1 >= mb * BM + WINDOW; }
  }
  return need;
}`;

/** Valid keys of batch entry b: its length from Lens (capped at N), or N. */
const KV_LEN = `function kvLength(Lens, b, N, HAS_LENS) {
  if (HAS_LENS) { return minimum(load(Lens, b), N); }
  return N;
}`;

/**
 * Element offsets of rows rm, columns rd of head h of batch entry b in a tensor of strides
 * (sB, sH, sN) for batch entry, head and row (the head dim is contiguous): [B, H, N, D] is
 * (H·N·D, N·D, D), a [B, N, 3, H, D] projection's q, k or v (N·3·H·D, D, 3·H·D).
 */
const OFFS = `function offs(b, h, rm, rd, sB, sH, sN) {
  return b * sB + h * sH + expandDims(rm, 1) * sN + expandDims(rd, 0);
}`;

/** The dropout keep mask of (query rm, key rn) in head bh: the one contract forward and backward share. */
const KEEP = `function keepMask(seed, bh, rm, rn, N, pdrop) {
  return rand(seed + bh * 7919, expandDims(rm, 1) * N + expandDims(rn, 0)) >= pdrop;
}`;

export const ATTENTION_HELPERS = { keyRange: RANGE, keyLow: LOW, valid: VALID, needsMask: NEEDS_MASK, kvLength: KV_LEN, offs: OFFS, keepMask: KEEP };

export const ATTN_FWD_SOURCE = `function attnFwd(Q, K, V, O, Lse, Lens, N, H, group, scale, seed, pdrop,
    qB, qH, qN, kB, kH, kN, oB, oH, oN, BM, BN, D, CAUSAL, WINDOW, HAS_LENS, DROPOUT) {
  const mb = programId(0);
  const bh = programId(1);
  const b = idiv(bh, H);
  const h = bh - b * H;
  const hk = idiv(h, group);
  const kvLen = kvLength(Lens, b, N, HAS_LENS);
  const rm = mb * BM + arange(BM);
  const rd = arange(D);
  const mq = expandDims(rm < N, 1);
  const q = load(Q, offs(b, h, rm, rd, qB, qH, qN), mq, 0.0) * (scale * 1.4426950408889634);
  const lo = keyLow(mb, BM, BN, WINDOW);
  const hi = keyRange(mb, kvLen, BM, BN, CAUSAL, WINDOW);
  let mi = full([BM], -Infinity);
  let li = zeros([BM]);
  let acc = zeros([BM, D]);
  for (let n0 = lo; n0 < hi; n0 += BN) {
    const rn = n0 + arange(BN);
    const kvoffs = offs(b, hk, rn, rd, kB, kH, kN);
    // Keys past the length load as 0: their p is 0, and 0 times a NaN of the padding is NaN.
    const mk = expandDims(rn < kvLen, 1);
    const k = load(K, kvoffs, mk, 0.0);
    let s = dot(q, trans(k));
    if (needsMask(mb, n0, kvLen, BM, BN, CAUSAL, WINDOW)) {
      s = where(valid(rm, rn, kvLen, CAUSAL, WINDOW), s, -Infinity);
    }
    // A NaN score reaches its row through li and acc, so the max may skip it.
    const mnew = maximum(mi, max(s, 1, false, false));
    // Rows with nothing valid yet keep max -Infinity; subtract 0 instead so exp2 gives 0, not NaN.
    const msafe = where(mnew == -Infinity, 0.0, mnew);
    const alpha = exp2(mi - msafe, true);
    let p = exp2(s - expandDims(msafe, 1), true);
    li = li * alpha + sum(p, 1);
    if (DROPOUT) {
      const keep = keepMask(seed, bh, rm, rn, N, pdrop);
      p = where(keep, p * (1.0 / (1.0 - pdrop)), 0.0);
    }
    const v = load(V, kvoffs, mk, 0.0);
    acc = dot(p, v, acc * expandDims(alpha, 1));
    mi = mnew;
  }
  // A row with no valid key (a key length of 0) gets zeros and lse -Infinity.
  const inv = where(li > 0.0, 1.0 / li, 0.0);
  store(O, offs(b, h, rm, rd, oB, oH, oN), acc * expandDims(inv, 1), mq);
  store(Lse, bh * N + rm, (mi + log2(li)) * 0.6931471805599453, rm < N);
}`;

export const ATTN_DELTA_SOURCE = `function attnDelta(O, Do, Delta, N, H, oB, oH, oN, BM, D) {
  const bh = programId(1);
  const b = idiv(bh, H);
  const rm = programId(0) * BM + arange(BM);
  const m = expandDims(rm < N, 1);
  const o = offs(b, bh - b * H, rm, arange(D), oB, oH, oN);
  store(Delta, bh * N + rm, sum(load(O, o, m, 0.0) * load(Do, o, m, 0.0), 1), rm < N);
}`;

/**
 * The backward's dK/dV pass, and (FUSED) the whole backward in one pass. Split, a program owns a
 * key block of a kv head (summing over the query heads of its group). FUSED, a program owns a kv
 * head: all its key blocks in turn, so S, P and dP are computed once per (query block, key
 * block) pair for all three gradients (the split passes compute them twice: 7 dots a pair
 * against 5); dQ sums over key blocks in place in f32, zeroed first and scaled at the end.
 */
export const ATTN_BWD_KV_SOURCE = `function attnBwdKV(Q, K, V, Do, Lse, Delta, Dq, Dk, Dv, Lens, N, H, group, scale, seed, pdrop,
    qB, qH, qN, kB, kH, kN, oB, oH, oN, BM, BN, D, CAUSAL, WINDOW, HAS_LENS, DROPOUT, FUSED) {
  let bhk = programId(1);
  if (FUSED) { bhk = programId(0); }
  const Hkv = idiv(H, group);
  const b = idiv(bhk, Hkv);
  const hk = bhk - b * Hkv;
  const kvLen = kvLength(Lens, b, N, HAS_LENS);
  const rd = arange(D);
  const c = scale * 1.4426950408889634;
  let nbLo = programId(0);
  let nbHi = nbLo + 1;
  if (FUSED) {
    nbLo = 0;
    nbHi = cdiv(N, BN);
    for (let g = 0; g < group; g += 1) {
      for (let m0 = 0; m0 < N; m0 += BM) {
        const rm = m0 + arange(BM);
        store(Dq, offs(b, hk * group + g, rm, rd, qB, qH, qN), zeros([BM, D]), expandDims(rm < N, 1));
      }
    }
  }
  for (let nb = nbLo; nb < nbHi; nb += 1) {
    const rn = nb * BN + arange(BN);
    const mk = expandDims(rn < N, 1);
    // Keys past the length load as 0 (p is 0 there, and 0 times a NaN of the padding is NaN), so
    // their dK and dV are stored as exactly 0; without lengths kvLen is N and the masks are one.
    const mkv = expandDims(rn < kvLen, 1);
    const kvoffs = offs(b, hk, rn, rd, kB, kH, kN);
    const k = load(K, kvoffs, mkv, 0.0);
    const v = load(V, kvoffs, mkv, 0.0);
    let dk = zeros([BN, D]);
    let dv = zeros([BN, D]);
    // Query blocks that see this key block (none past the key length: zero gradients).
    let mlo = 0;
    if (CAUSAL) { mlo = idiv(nb * BN, BM); }
    let mhi = cdiv(N, BM);
    if (WINDOW > 0) { mhi = minimum(mhi, cdiv(nb * BN + BN + WINDOW - 1, BM)); if (!CAUSAL) { mlo = idiv(maximum(0, nb * BN - WINDOW + 1), BM); } }
    if (nb * BN >= kvLen) { mhi = mlo; }
    for (let g = 0; g < group; g += 1) {
      const h = hk * group + g;
      const bh = b * H + h;
      for (let mb = mlo; mb < mhi; mb += 1) {
        const rm = mb * BM + arange(BM);
        const mq = expandDims(rm < N, 1);
        const qoffs = offs(b, h, rm, rd, qB, qH, qN);
        const q = load(Q, qoffs, mq, 0.0);
        const lse = load(Lse, bh * N + rm, rm < N, 0.0) * 1.4426950408889634;
        let p = exp2(dot(q, trans(k)) * c - expandDims(lse, 1), true);
        if (needsMask(mb, nb * BN, kvLen, BM, BN, CAUSAL, WINDOW)) {
          p = where(valid(rm, rn, kvLen, CAUSAL, WINDOW) && mq, p, 0.0);
        }
        const d0 = load(Do, offs(b, h, rm, rd, oB, oH, oN), mq, 0.0);
        let dp = dot(d0, trans(v));
        let pd = p;
        if (DROPOUT) {
          const keep = keepMask(seed, bh, rm, rn, N, pdrop);
          const r = 1.0 / (1.0 - pdrop);
          pd = where(keep, p * r, 0.0);
          dp = where(keep, dp * r, 0.0);
        }
        dv = dot(trans(pd), d0, dv);
        const ds = p * (dp - expandDims(load(Delta, bh * N + rm, rm < N, 0.0), 1));
        dk = dot(trans(ds), q, dk);
        if (FUSED) { store(Dq, qoffs, dot(ds, k, load(Dq, qoffs, mq, 0.0)), mq); }
      }
    }
    store(Dk, kvoffs, dk * scale, mk);
    store(Dv, kvoffs, dv, mk);
  }
  if (FUSED) {
    for (let g = 0; g < group; g += 1) {
      for (let m0 = 0; m0 < N; m0 += BM) {
        const rm = m0 + arange(BM);
        const o = offs(b, hk * group + g, rm, rd, qB, qH, qN);
        store(Dq, o, load(Dq, o, expandDims(rm < N, 1), 0.0) * scale, expandDims(rm < N, 1));
      }
    }
  }
}`;

export const ATTN_BWD_Q_SOURCE = `function attnBwdQ(Q, K, V, Do, Lse, Delta, Dq, Lens, N, H, group, scale, seed, pdrop,
    qB, qH, qN, kB, kH, kN, oB, oH, oN, BM, BN, D, CAUSAL, WINDOW, HAS_LENS, DROPOUT) {
  const mb = programId(0);
  const bh = programId(1);
  const b = idiv(bh, H);
  const h = bh - b * H;
  const hk = idiv(h, group);
  const kvLen = kvLength(Lens, b, N, HAS_LENS);
  const rm = mb * BM + arange(BM);
  const rd = arange(D);
  const mq = expandDims(rm < N, 1);
  const qoffs = offs(b, h, rm, rd, qB, qH, qN);
  const q = load(Q, qoffs, mq, 0.0) * (scale * 1.4426950408889634);
  const d0 = load(Do, offs(b, h, rm, rd, oB, oH, oN), mq, 0.0);
  const lse = expandDims(load(Lse, bh * N + rm, rm < N, 0.0) * 1.4426950408889634, 1);
  const delta = expandDims(load(Delta, bh * N + rm, rm < N, 0.0), 1);
  const lo = keyLow(mb, BM, BN, WINDOW);
  const hi = keyRange(mb, kvLen, BM, BN, CAUSAL, WINDOW);
  let dq = zeros([BM, D]);
  for (let n0 = lo; n0 < hi; n0 += BN) {
    const rn = n0 + arange(BN);
    const kvoffs = offs(b, hk, rn, rd, kB, kH, kN);
    // Keys past the length load as 0, as in the forward.
    const mk = expandDims(rn < kvLen, 1);
    const k = load(K, kvoffs, mk, 0.0);
    let p = exp2(dot(q, trans(k)) - lse, true);
    if (needsMask(mb, n0, kvLen, BM, BN, CAUSAL, WINDOW)) {
      p = where(valid(rm, rn, kvLen, CAUSAL, WINDOW) && mq, p, 0.0);
    }
    let dp = dot(d0, trans(load(V, kvoffs, mk, 0.0)));
    if (DROPOUT) {
      const keep = keepMask(seed, bh, rm, rn, N, pdrop);
      dp = where(keep, dp * (1.0 / (1.0 - pdrop)), 0.0);
    }
    dq = dot(p * (dp - delta), k, dq);
  }
  store(Dq, qoffs, dq * scale, mq);
}`;

/** The strides every attention kernel takes after pdrop (see `offs` and `headMajorStrides`). */
const STRIDE_PARAMS = {
  qB: 'i32', qH: 'i32', qN: 'i32', kB: 'i32', kH: 'i32', kN: 'i32', oB: 'i32', oH: 'i32', oN: 'i32',
} as const;

const FWD_SIG = {
  Q: 'ptr', K: 'ptr', V: 'ptr', O: 'ptr', Lse: 'ptr', Lens: 'ptr', N: 'i32', H: 'i32', group: 'i32', scale: 'f32', seed: 'i32', pdrop: 'f32',
  ...STRIDE_PARAMS,
  BM: 'constexpr', BN: 'constexpr', D: 'constexpr', CAUSAL: 'constexpr', WINDOW: 'constexpr', HAS_LENS: 'constexpr', DROPOUT: 'constexpr',
} as const;

export const attnFwdKernel = jit(ATTN_FWD_SOURCE, { signature: FWD_SIG, helpers: ATTENTION_HELPERS });

export const attnDeltaKernel = jit(ATTN_DELTA_SOURCE, {
  signature: { O: 'ptr', Do: 'ptr', Delta: 'ptr', N: 'i32', H: 'i32', oB: 'i32', oH: 'i32', oN: 'i32', BM: 'constexpr', D: 'constexpr' },
  helpers: { offs: OFFS },
});

/**
 * The strides (qB, qH, qN, kB, kH, kN, oB, oH, oN) that follow pdrop in every attention
 * kernel's arguments, for contiguous [B, H, N, D] q, out (and dout, dq) and [B, Hkv, N, D] k, v
 * (and dk, dv).
 */
export function headMajorStrides(H: number, Hkv: number, N: number, D: number): [number, number, number, number, number, number, number, number, number] {
  return [H * N * D, N * D, D, Hkv * N * D, N * D, D, H * N * D, N * D, D];
}

const BWD_KV_OPTIONS = {
  signature: {
    Q: 'ptr', K: 'ptr', V: 'ptr', Do: 'ptr', Lse: 'ptr', Delta: 'ptr', Dq: 'ptr', Dk: 'ptr', Dv: 'ptr', Lens: 'ptr',
    N: 'i32', H: 'i32', group: 'i32', scale: 'f32', seed: 'i32', pdrop: 'f32',
    ...STRIDE_PARAMS,
    BM: 'constexpr', BN: 'constexpr', D: 'constexpr', CAUSAL: 'constexpr', WINDOW: 'constexpr', HAS_LENS: 'constexpr', DROPOUT: 'constexpr',
    FUSED: 'constexpr',
  },
  helpers: ATTENTION_HELPERS,
} as const;

/** The split dK/dV pass (FUSED false; Dq unused). */
export const attnBwdKVKernel = jit(ATTN_BWD_KV_SOURCE, BWD_KV_OPTIONS);

/** The one-pass backward (FUSED true): the same source, named apart in profiles. */
export const attnBwdKernel = jit(ATTN_BWD_KV_SOURCE, { ...BWD_KV_OPTIONS, name: 'attnBwd' });

export const attnBwdQKernel = jit(ATTN_BWD_Q_SOURCE, {
  signature: {
    Q: 'ptr', K: 'ptr', V: 'ptr', Do: 'ptr', Lse: 'ptr', Delta: 'ptr', Dq: 'ptr', Lens: 'ptr',
    N: 'i32', H: 'i32', group: 'i32', scale: 'f32', seed: 'i32', pdrop: 'f32',
    ...STRIDE_PARAMS,
    BM: 'constexpr', BN: 'constexpr', D: 'constexpr', CAUSAL: 'constexpr', WINDOW: 'constexpr', HAS_LENS: 'constexpr', DROPOUT: 'constexpr',
  },
  helpers: ATTENTION_HELPERS,
});

/**
 * The tile sizes where the tuned table has no row near the shape, for any pass: BM query rows
 * and BN keys per block, the largest that keep a forward program's scratch within about 100 KB
 * (64x32 at D = 64: 99.6 KB; 64x64 there would be 149 KB for ~9% more speed).
 */
export function chooseAttentionConfig(N: number, D: number): { BM: number; BN: number } {
  if (N <= 16) return { BM: 16, BN: 16 };
  if (D <= 32) return { BM: 64, BN: 64 };
  return D >= 128 ? { BM: 32, BN: 32 } : { BM: 64, BN: 32 };
}

/** The forward's candidates for the autotuner (pruned to ATTENTION_SCRATCH_MAX per shape). */
export const ATTENTION_CONFIGS: readonly { BM: number; BN: number }[] = [16, 32, 64, 128].flatMap((BM) => [16, 32, 64, 128].map((BN) => ({ BM, BN })));

/**
 * The attention passes the tuner sizes: the forward, the backward's dK/dV and dQ passes, and
 * the one-pass backward.
 */
export type AttentionPass = 'fwd' | 'dkv' | 'dq' | 'bwd';

/**
 * Scratch a program may use when the tuner picks its tiles. 128x128 at D = 32 takes 297 KB in
 * the forward and 508 KB in the one-pass backward, and on the forecaster's batch (32 entries of
 * 4 heads, N 256) ran 12% and 5% faster than 32x64 (62 and 119 KB); the rule's 64x32 at D = 64
 * takes 99.6 KB in the forward, 156 KB for dK/dV and 123 KB for dQ.
 */
export const ATTENTION_SCRATCH_MAX: Readonly<Record<AttentionPass, number>> = { fwd: 320_000, dkv: 320_000, dq: 320_000, bwd: 520_000 };

/**
 * A pass's tiles: the tuned table's (templates/tuned-tables.ts) for a nearby shape, else the
 * rule. The one-pass backward, where the table has no row of its own, takes the dK/dV pass's
 * (its loops, plus one dot a block pair).
 */
export function chooseAttentionPassConfig(pass: AttentionPass, N: number, D: number, causal: boolean): { BM: number; BN: number } {
  const row = nearestRow(ATTENTION_TABLE, { N, D, causal, pass }, ['N'], ['D', 'causal', 'pass'])
    ?? (pass === 'bwd' ? nearestRow(ATTENTION_TABLE, { N, D, causal, pass: 'dkv' }, ['N'], ['D', 'causal', 'pass']) : undefined);
  return row ? { BM: row.BM, BN: row.BN } : chooseAttentionConfig(N, D);
}

/** The forward's tiles (see chooseAttentionPassConfig). */
export function chooseAttentionFwdConfig(N: number, D: number, causal: boolean): { BM: number; BN: number } {
  return chooseAttentionPassConfig('fwd', N, D, causal);
}

