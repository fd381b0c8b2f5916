/**
 * @fileoverview `ops.attention` and `ops.attentionBackward`: exact scaled dot-product attention
 * through the flash-attention templates (no N x N buffer).
 */
import {
  attnBwdKernel, attnBwdKVKernel, attnBwdQKernel, attnDeltaKernel, attnFwdKernel, chooseAttentionPassConfig, type AttentionPass,
} from '../../templates/attention.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { describe, fail, finite, floatTensor, output, sameShape } from './common.js';

/** Options of `ops.attention`. */
export interface AttentionOptions {
  /** Query i attends keys j <= i. */
  readonly causal?: boolean;
  /**
   * Sliding window of width W > 0: keys j with i - W < j (and j < i + W when not causal); 0 (the
   * default) attends everything else allowed.
   */
  readonly window?: number;
  /** Multiplies q·k (default 1 / sqrt(D)). */
  readonly scale?: number;
  /** Valid keys per batch entry (padding): numbers, or an i32 tensor [B]; keys at or past it are ignored. */
  readonly kvLens?: readonly number[] | Tensor;
  /** Dropout on the attention probabilities: drop with chance `p`, scale the rest by 1 / (1 - p). */
  readonly dropout?: { readonly p: number; readonly seed: number };
  /** Force tile sizes (tuning, tests). */
  readonly config?: { readonly BM: number; readonly BN: number };
}

/** out [B, H, N, D] (dtype of q) and the natural-log sum-exp per query row, f32 [B, H, N]. */
export interface AttentionResult {
  readonly out: Tensor;
  readonly lse: Tensor;
}

/** Gradients with respect to q, k and v. */
export interface AttentionGrads {
  readonly dq: Tensor;
  readonly dk: Tensor;
  readonly dv: Tensor;
}

interface Checked {
  rt: Runtime;
  B: number; H: number; Hkv: number; N: number; D: number;
  scale: number; causal: boolean; window: number; pdrop: number; seed: number;
  lens?: Tensor; ownLens: boolean;
}

const DS = [16, 32, 64, 128];

function check(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Checked {
  floatTensor(op, 'q', q);
  const rt = q.runtime;
  floatTensor(op, 'k', k, rt);
  floatTensor(op, 'v', v, rt);
  if (q.shape.length !== 4) fail(op, `q must be [B, H, N, D], got [${q.shape.join(', ')}]`);
  const [B, H, N, D] = q.shape as [number, number, number, number];
  if (k.shape.length !== 4 || k.shape[0] !== B || k.shape[2] !== N || k.shape[3] !== D) {
    fail(op, `k must be [${B}, Hkv, ${N}, ${D}] like q [B, H, N, D], got [${k.shape.join(', ')}]`);
  }
  const Hkv = k.shape[1]!;
  sameShape(op, 'v', v.shape, k.shape);
  if (Hkv < 1 || H % Hkv !== 0) fail(op, `q's ${H} heads must be a multiple of k's ${Hkv} (grouped-query attention)`);
  if (!DS.includes(D)) fail(op, `head dim D must be one of ${DS.join(', ')}, got ${D}`);
  if (B * H * N * D >= 2 ** 31) fail(op, `q has ${B * H * N * D} elements; at most 2^31 - 1 are supported`);
  if (N * N >= 2 ** 31 && opts.dropout) fail(op, `dropout needs N² < 2^31 (its counters), got N = ${N}`);
  const scale = finite(op, 'scale', opts.scale ?? 1 / Math.sqrt(D));
  const window = finite(op, 'window', opts.window ?? 0, (w) => Number.isInteger(w) && w >= 0, 'an integer >= 0');
  let pdrop = 0, seed = 0;
  if (opts.dropout) {
    pdrop = finite(op, 'dropout.p', opts.dropout.p, (p) => p >= 0 && p < 1, 'in [0, 1)');
    seed = finite(op, 'dropout.seed', opts.dropout.seed, (s) => Number.isInteger(s), 'an integer') | 0;
  }
  let lens: Tensor | undefined;
  let ownLens = false;
  if (opts.kvLens !== undefined) {
    if (opts.kvLens instanceof Tensor) {
      lens = opts.kvLens;
      if (lens.runtime !== rt || lens.dtype !== 'i32' || lens.size !== B) fail(op, `kvLens must be an i32 tensor of ${B} elements in q's runtime`);
    } else {
      const a = opts.kvLens;
      if (!Array.isArray(a) || a.length !== B || a.some((x) => !Number.isInteger(x) || x < 0)) {
        fail(op, `kvLens must list ${B} non-negative integers (one per batch entry), got ${describe(a)}`);
      }
      lens = rt.tensor(a.map((x) => Math.min(x, N)), [B], 'i32');
      ownLens = true;
    }
  }
  return { rt, B, H, Hkv, N, D, scale, causal: opts.causal === true, window, pdrop, seed, lens, ownLens };
}

/** A pass's tiles: the forced config, else the tuned table's (or the rule's) for this shape. */
function tiles(c: Checked, opts: AttentionOptions, pass: AttentionPass): { BM: number; BN: number } {
  return opts.config ?? chooseAttentionPassConfig(pass, c.N, c.D, c.causal);
}

function constexprs(c: Checked): Record<string, unknown> {
  return { D: c.D, CAUSAL: c.causal, WINDOW: c.window, HAS_LENS: c.lens !== undefined, DROPOUT: c.pdrop > 0, runtime: c.rt };
}

/**
 * softmax(q·kᵀ·scale + masks)·v per head, exact, in O(N) extra memory.
 * @example
 * const { out, lse } = await ops.attention(q, k, v, { causal: true });
 */
export async function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Promise<AttentionResult> {
  const op = 'attention';
  const c = check(op, q, k, v, opts);
  const out = c.rt.empty(q.shape, q.dtype);
  const lse = c.rt.empty([c.B, c.H, c.N], 'f32');
  try {
    if (c.N > 0 && c.B * c.H > 0) {
      const t = tiles(c, opts, 'fwd');
      await attnFwdKernel.launch(
        { grid: [Math.ceil(c.N / t.BM), c.B * c.H], ...constexprs(c), BM: t.BM, BN: t.BN },
        q, k, v, out, lse, c.lens ?? lse, c.N, c.H, c.H / c.Hkv, c.scale, c.seed, c.pdrop,
      );
    }
  } finally {
    if (c.ownLens) c.lens!.free();
  }
  return { out, lse };
}

/** Options of `ops.attentionBackward`: the forward's, plus where to write the gradients. */
export interface AttentionBackwardOptions extends AttentionOptions {
  /** Write the gradients into these (shaped like q, k, v) instead of allocating them. */
  readonly out?: Partial<AttentionGrads>;
  /**
   * One pass per kv head for all three gradients (true), or a dK/dV pass and a dQ pass that
   * each recompute the scores (false). Default: one pass when dq is f32 and there are at least
   * FUSED_HEADS_PER_THREAD kv heads (B·Hkv) per thread, so that every thread has work.
   */
  readonly fused?: boolean;
}

/** kv heads per thread from which the one-pass backward keeps every thread busy. */
export const FUSED_HEADS_PER_THREAD = 4;

/** dq, dk, dv from the forward's inputs, its out and lse, and dout (same options as the forward). */
export async function attentionBackward(
  dout: Tensor, q: Tensor, k: Tensor, v: Tensor, fwd: AttentionResult, opts: AttentionBackwardOptions = {},
): Promise<AttentionGrads> {
  const op = 'attentionBackward';
  if (opts.fused !== undefined && typeof opts.fused !== 'boolean') fail(op, `fused must be a boolean, got ${describe(opts.fused)}`);
  const c = check(op, q, k, v, opts);
  let fused: boolean;
  let dq: Tensor | undefined, dk: Tensor | undefined, dv: Tensor;
  try {
    floatTensor(op, 'dout', dout, c.rt);
    sameShape(op, 'dout', dout.shape, q.shape);
    floatTensor(op, 'out', fwd.out, c.rt);
    sameShape(op, 'out', fwd.out.shape, q.shape);
    if (!(fwd.lse instanceof Tensor) || fwd.lse.dtype !== 'f32') fail(op, 'lse must be the forward\'s f32 log-sum-exp');
    sameShape(op, 'lse', fwd.lse.shape, [c.B, c.H, c.N]);
    // Decided before any output is allocated, so that refusing it leaves nothing behind.
    const dqDtype = opts.out?.dq instanceof Tensor ? opts.out.dq.dtype : q.dtype;
    fused = opts.fused ?? (dqDtype === 'f32' && c.B * c.Hkv >= FUSED_HEADS_PER_THREAD * Math.max(1, c.rt.threads));
    if (fused && dqDtype !== 'f32') fail(op, `the one-pass backward sums dq in place in f32; dq is ${dqDtype} (pass fused: false)`);
    dq = output(op, c.rt, q.shape, q.dtype, opts.out?.dq);
    dk = output(op, c.rt, k.shape, k.dtype, opts.out?.dk);
    dv = output(op, c.rt, v.shape, v.dtype, opts.out?.dv);
  } catch (err) {
    // A refused out leaves no gradient this call allocated behind.
    if (dq && dq !== opts.out?.dq) dq.free();
    if (dk && dk !== opts.out?.dk) dk.free();
    if (c.ownLens) c.lens!.free();
    throw err;
  }
  const rows = c.B * c.H * c.N;
  const delta = c.rt.empty([Math.max(1, rows)], 'f32');
  try {
    if (rows > 0) {
      await attnDeltaKernel.launch({ grid: [Math.ceil(rows / 64)], BM: 64, D: c.D, runtime: c.rt }, fwd.out, dout, delta, rows);
      const args = [c.N, c.H, c.H / c.Hkv, c.scale, c.seed, c.pdrop] as const;
      if (fused) {
        const t = tiles(c, opts, 'bwd');
        await attnBwdKernel.launch(
          { grid: [c.B * c.Hkv], ...constexprs(c), BM: t.BM, BN: t.BN, FUSED: true },
          q, k, v, dout, fwd.lse, delta, dq, dk, dv, c.lens ?? delta, ...args,
        );
        return { dq, dk, dv };
      }
      // Each pass has its own tiles; a forced config sets both.
      const kv = tiles(c, opts, 'dkv');
      const qc = tiles(c, opts, 'dq');
      await attnBwdKVKernel.launch(
        { grid: [Math.ceil(c.N / kv.BN), c.B * c.Hkv], ...constexprs(c), BM: kv.BM, BN: kv.BN, FUSED: false },
        q, k, v, dout, fwd.lse, delta, dq, dk, dv, c.lens ?? delta, ...args,
      );
      await attnBwdQKernel.launch(
        { grid: [Math.ceil(c.N / qc.BM), c.B * c.H], ...constexprs(c), BM: qc.BM, BN: qc.BN },
        q, k, v, dout, fwd.lse, delta, dq, c.lens ?? delta, ...args,
      );
    }
  } finally {
    delta.free();
    if (c.ownLens) c.lens!.free();
  }
  return { dq, dk, dv };
}
