/**
 * @fileoverview `ops.attention` and `ops.attentionBackward` (q, k, v as [B, H, N, D] tensors),
 * `ops.attentionQKV` and `ops.attentionQKVBackward` (one packed [B, N, 3, H, D] projection):
 * exact scaled dot-product attention through the flash-attention templates (no N x N buffer).
 */
import {
  attnBwdKernel, attnBwdKVKernel, attnBwdQKernel, attnDeltaKernel, attnFwdKernel, chooseAttentionPassConfig, headMajorStrides, type AttentionPass,
} from '../../templates/attention.js';
import type { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { describe, fail, finite, flag, floatTensor, isPow2, liveRuntime, optionsOf, overlaps, pow2AtLeast, sameShape } from './common.js';

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
  /**
   * Valid keys per batch entry (padding): numbers, or an i32 tensor [B]; keys at or past it are
   * ignored, whatever they hold (NaN there changes nothing), and get dk = dv = 0.
   */
  readonly kvLens?: readonly number[] | Tensor;
  /**
   * Dropout on the attention probabilities: drop with chance `p`, scale the rest by 1 / (1 - p).
   * `seed` is an integer in [-2^31, 2^31 - 1] (the kernels' i32); others are refused, not wrapped.
   * Either `{ p, seed }`, or p alone with `seed` beside it (`{ dropout: 0.1, seed: 7 }`).
   */
  readonly dropout?: number | { readonly p: number; readonly seed: number };
  /** The dropout seed when `dropout` is a number (the backward replays the mask from it). */
  readonly seed?: number;
  /** Force tile sizes (tuning, tests). */
  readonly config?: { readonly BM: number; readonly BN: number };
}

/**
 * out (dtype of q; [B, H, N, D] from `attention`, [B, N, H, D] from `attentionQKV`) and the
 * natural-log sum-exp per query row, f32 [B, H, N].
 */
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

/**
 * The range of dropout.seed: the kernels take it as an i32, so a wider seed would be wrapped
 * (2^32 + 5 would drop the same entries as 5).
 */
const SEED_MIN = -(2 ** 31), SEED_MAX = 2 ** 31 - 1;

/** A dropout seed: an integer in the kernels' i32 range. */
function checkSeed(op: string, name: string, seed: unknown): number {
  if (typeof seed !== 'number') fail(op, `${name} must be an integer, got ${describe(seed)}`);
  if (!Number.isInteger(seed) || seed < SEED_MIN || seed > SEED_MAX) {
    throw new RangeError(`${op}: ${name} must be an integer in [-2^31, 2^31 - 1] (the kernels' i32 seed), got ${seed}`);
  }
  return seed;
}

function check(op: string, q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions): Checked {
  floatTensor(op, 'q', q);
  const rt = liveRuntime(op, 'q', q);
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
  if (B * H * N * D >= 2 ** 31) fail(op, `q has ${B * H * N * D} elements; at most 2^31 - 1 are supported`);
  return checkOptions(op, rt, B, H, Hkv, N, D, opts);
}

/**
 * The head dim, dropout and key-length options of a [B, H | Hkv, N, D] problem. Allocates
 * only at the end (the key lengths given as numbers), once everything else has passed.
 */
function checkOptions(op: string, rt: Runtime, B: number, H: number, Hkv: number, N: number, D: number, opts: AttentionOptions): Checked {
  if (!DS.includes(D)) fail(op, `head dim D must be one of ${DS.join(', ')}, got ${D}`);
  const causal = flag(op, 'causal', opts.causal);
  const scale = finite(op, 'scale', opts.scale ?? 1 / Math.sqrt(D));
  const window = finite(op, 'window', opts.window ?? 0, (w) => Number.isInteger(w) && w >= 0, 'an integer >= 0');
  let pdrop = 0, seed = 0;
  const drop: unknown = opts.dropout;
  const topSeed: unknown = opts.seed;
  if (topSeed !== undefined) checkSeed(op, 'seed', topSeed);
  if (drop !== undefined) {
    const bare = typeof drop === 'number';
    if (!bare && (drop === null || typeof drop !== 'object')) fail(op, `dropout must be a probability or an object { p, seed }, got ${describe(drop)}`);
    if (!bare && topSeed !== undefined) fail(op, 'seed goes in dropout.seed when dropout is an object { p, seed }, not beside it');
    if (N * N >= 2 ** 31) fail(op, `dropout needs N² < 2^31 (its counters), got N = ${N}`);
    const d = bare ? { p: drop, seed: topSeed } : drop as { p?: unknown; seed?: unknown };
    const [pName, seedName] = bare ? ['dropout', 'seed'] : ['dropout.p', 'dropout.seed'];
    pdrop = finite(op, pName, d.p, (p) => p >= 0 && p < 1, 'in [0, 1)');
    if (bare && d.seed === undefined && pdrop > 0) fail(op, 'dropout needs a seed beside it ({ dropout, seed }): the backward replays the mask from it');
    seed = bare && d.seed === undefined ? 0 : checkSeed(op, seedName, d.seed);
  }
  const cfg: unknown = opts.config;
  if (cfg !== undefined) {
    if (cfg === null || typeof cfg !== 'object') fail(op, `config must be an object { BM, BN }, got ${describe(cfg)}`);
    for (const key of ['BM', 'BN'] as const) {
      const x = (cfg as Record<string, unknown>)[key];
      if (!isPow2(x)) fail(op, `config.${key} must be a power of two, got ${describe(x)}`);
    }
  }
  let lens: Tensor | undefined;
  let ownLens = false;
  if (opts.kvLens !== undefined) {
    if (opts.kvLens instanceof Tensor) {
      lens = opts.kvLens;
      if (lens.isFreed) fail(op, 'kvLens has been freed');
      if (lens.runtime !== rt || lens.dtype !== 'i32' || lens.size !== B || !lens.isContiguous()) {
        fail(op, `kvLens must be a contiguous i32 tensor of ${B} elements in q's runtime, got ${describe(lens)}`);
      }
    } else {
      const a = opts.kvLens;
      if (!Array.isArray(a) || a.length !== B || a.some((x) => !Number.isInteger(x) || x < 0)) {
        fail(op, `kvLens must list ${B} non-negative integers (one per batch entry), got ${describe(a)}`);
      }
      lens = rt.tensor(a.map((x) => Math.min(x, N)), [B], 'i32');
      ownLens = true;
    }
  }
  return { rt, B, H, Hkv, N, D, scale, causal, window, pdrop, seed, lens, ownLens };
}

/**
 * Where q (and dq), k and v (and dk, dv) and out (and dout) sit: a view per tensor (k and v of
 * a packed projection start H·D elements apart) and the strides the kernels take.
 */
interface Operands {
  readonly q: Tensor; readonly k: Tensor; readonly v: Tensor;
  readonly strides: readonly number[];
}

/** The packed layout's views: q, k and v of a [B, N, 3, H, D] tensor, one row of tokens 3·H·D long. */
function qkvViews(qkv: Tensor, c: Checked): Operands {
  const HD = c.H * c.D, flat = qkv.reshape([qkv.size]);
  const row = 3 * HD;
  const strides = [c.N * row, c.D, row, c.N * row, c.D, row, c.N * HD, c.D, HD];
  // Nothing to read in an empty projection (no launch runs), and no k or v offset inside it.
  if (qkv.size === 0) return { q: flat, k: flat, v: flat, strides };
  return { q: flat, k: flat.narrow(HD, qkv.size), v: flat.narrow(2 * HD, qkv.size), strides };
}

/** Gradients written over an input would be read back half-overwritten: refuse any overlap. */
function checkDisjoint(op: string, grads: readonly [string, Tensor | undefined][], inputs: readonly [string, Tensor][]): void {
  grads.forEach(([g, t], i) => {
    if (t === undefined) return;
    for (const [name, x] of inputs) if (overlaps(t, x)) fail(op, `${g} must not overlap ${name}`);
    for (const [g2, t2] of grads.slice(i + 1)) if (t2 && overlaps(t, t2)) fail(op, `${g} must not overlap ${g2}`);
  });
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
export async function attention(q: Tensor, k: Tensor, v: Tensor, options?: AttentionOptions): Promise<AttentionResult> {
  const opts = optionsOf('attention', options);
  const c = check('attention', q, k, v, opts);
  return forward(c, { q, k, v, strides: headMajorStrides(c.H, c.Hkv, c.N, c.D) }, q.shape, q.dtype, opts);
}

/**
 * Self-attention over a packed projection qkv [B, N, 3, H, D] (FlashAttention's qkvpacked
 * layout: what one QKV GEMM over [B·N, d] tokens writes), read in place: out is [B, N, H, D],
 * token-major like the input, so the output projection reads it as [B·N, H·D] with no head
 * shuffles; lse is [B, H, N]. Same options and results as `ops.attention`.
 * @example
 * const qkv = (await ops.matmul(x, wqkv)).reshape([B, N, 3, H, D]);
 * const { out } = await ops.attentionQKV(qkv, { causal: true }); // [B, N, H, D]
 */
export async function attentionQKV(qkv: Tensor, options?: AttentionOptions): Promise<AttentionResult> {
  const opts = optionsOf('attentionQKV', options);
  const c = checkQKV('attentionQKV', qkv, opts);
  return forward(c, qkvViews(qkv, c), [c.B, c.N, c.H, c.D], qkv.dtype, opts);
}

function checkQKV(op: string, qkv: Tensor, opts: AttentionOptions): Checked {
  floatTensor(op, 'qkv', qkv);
  const s = qkv.shape;
  if (s.length !== 5 || s[2] !== 3) fail(op, `qkv must be [B, N, 3, H, D] (q, k and v of each token), got [${s.join(', ')}]`);
  const [B, N, , H, D] = s as [number, number, number, number, number];
  if (qkv.size >= 2 ** 31) fail(op, `qkv has ${qkv.size} elements; at most 2^31 - 1 are supported`);
  return checkOptions(op, liveRuntime(op, 'qkv', qkv), B, H, H, N, D, opts);
}

/** The forward's launch over checked operands; frees the key lengths it was given. */
async function forward(c: Checked, x: Operands, outShape: readonly number[], dtype: Tensor['dtype'], opts: AttentionOptions): Promise<AttentionResult> {
  let out: Tensor | undefined, lse: Tensor | undefined;
  try {
    out = c.rt.empty(outShape, dtype);
    lse = c.rt.empty([c.B, c.H, c.N], 'f32');
    if (c.N > 0 && c.B * c.H > 0) {
      const t = tiles(c, opts, 'fwd');
      await attnFwdKernel.launch(
        { grid: [Math.ceil(c.N / t.BM), c.B * c.H], ...constexprs(c), BM: t.BM, BN: t.BN },
        x.q, x.k, x.v, out, lse, c.lens ?? lse, c.N, c.H, c.H / c.Hkv, c.scale, c.seed, c.pdrop, ...x.strides,
      );
    }
  } catch (err) {
    out?.free();
    lse?.free();
    throw err;
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
  dout: Tensor, q: Tensor, k: Tensor, v: Tensor, fwd: AttentionResult, options?: AttentionBackwardOptions,
): Promise<AttentionGrads> {
  const op = 'attentionBackward';
  const opts = optionsOf(op, options);
  checkFused(op, opts.fused);
  const out: unknown = opts.out;
  if (out !== undefined && (out === null || typeof out !== 'object' || out instanceof Tensor)) fail(op, `out must be an object { dq?, dk?, dv? }, got ${describe(out)}`);
  const o: Partial<AttentionGrads> = opts.out ?? {};
  const c = check(op, q, k, v, opts);
  let dq: Tensor | undefined, dk: Tensor | undefined, dv: Tensor;
  let fused: boolean;
  try {
    checkForward(op, c, dout, fwd, q.shape);
    // Every given gradient checked, and one pass or two decided, before any output is
    // allocated, so that refusing one leaves nothing behind.
    const given = [['out.dq', o.dq, q], ['out.dk', o.dk, k], ['out.dv', o.dv, v]] as const;
    for (const [name, t, like] of given) {
      if (t === undefined) continue;
      floatTensor(op, name, t, c.rt);
      sameShape(op, name, t.shape, like.shape);
    }
    fused = chooseFused(op, c, opts.fused, o.dq?.dtype ?? q.dtype);
    checkDisjoint(op, given.map(([name, t]): [string, Tensor | undefined] => [name, t]), [['q', q], ['k', k], ['v', v], ['dout', dout], ['fwd.out', fwd.out], ['fwd.lse', fwd.lse]]);
    dq = o.dq ?? c.rt.empty(q.shape, q.dtype);
    dk = o.dk ?? c.rt.empty(k.shape, k.dtype);
    dv = o.dv ?? c.rt.empty(v.shape, v.dtype);
  } catch (err) {
    // A refused out leaves no gradient this call allocated behind.
    if (dq && dq !== o.dq) dq.free();
    if (dk && dk !== o.dk) dk.free();
    if (c.ownLens) c.lens!.free();
    throw err;
  }
  try {
    await backward(c, { q, k, v, strides: headMajorStrides(c.H, c.Hkv, c.N, c.D) }, { q: dq, k: dk, v: dv }, dout, fwd, fused, opts);
  } catch (err) {
    for (const [t, mine] of [[dq, o.dq], [dk, o.dk], [dv, o.dv]] as const) if (t !== mine) t.free();
    throw err;
  }
  return { dq, dk, dv };
}

/** Options of `ops.attentionQKVBackward`: the forward's, plus where to write dqkv. */
export interface AttentionQKVBackwardOptions extends AttentionOptions {
  /** Write dqkv here ([B, N, 3, H, D]) instead of allocating it. */
  readonly out?: Tensor;
  /** As in `ops.attentionBackward`. */
  readonly fused?: boolean;
}

/**
 * The backward of `ops.attentionQKV`: dqkv [B, N, 3, H, D] (dq, dk and dv of each token, the
 * layout the QKV projection's backward reads) from dout [B, N, H, D], the forward's qkv and its
 * out and lse.
 */
export async function attentionQKVBackward(dout: Tensor, qkv: Tensor, fwd: AttentionResult, options?: AttentionQKVBackwardOptions): Promise<Tensor> {
  const op = 'attentionQKVBackward';
  const opts = optionsOf(op, options);
  checkFused(op, opts.fused);
  const c = checkQKV(op, qkv, opts);
  let dqkv: Tensor;
  let fused: boolean;
  try {
    checkForward(op, c, dout, fwd, [c.B, c.N, c.H, c.D]);
    if (opts.out !== undefined) {
      floatTensor(op, 'out', opts.out, c.rt);
      sameShape(op, 'out', opts.out.shape, qkv.shape);
    }
    fused = chooseFused(op, c, opts.fused, opts.out?.dtype ?? qkv.dtype);
    checkDisjoint(op, [['out', opts.out]], [['qkv', qkv], ['dout', dout], ['fwd.out', fwd.out], ['fwd.lse', fwd.lse]]);
    dqkv = opts.out ?? c.rt.empty(qkv.shape, qkv.dtype);
  } catch (err) {
    if (c.ownLens) c.lens!.free();
    throw err;
  }
  try {
    await backward(c, qkvViews(qkv, c), qkvViews(dqkv, c), dout, fwd, fused, opts);
  } catch (err) {
    if (dqkv !== opts.out) dqkv.free();
    throw err;
  }
  return dqkv;
}

function checkFused(op: string, fused: unknown): void {
  if (fused !== undefined && typeof fused !== 'boolean') fail(op, `fused must be a boolean, got ${describe(fused)}`);
}

/** dout and the forward's result `fwd`: its out (shaped `outShape`) and lse. */
function checkForward(op: string, c: Checked, dout: Tensor, fwd: AttentionResult, outShape: readonly number[]): void {
  floatTensor(op, 'dout', dout, c.rt);
  sameShape(op, 'dout', dout.shape, outShape);
  if (fwd === null || typeof fwd !== 'object') fail(op, `fwd must be the forward's result { out, lse }, got ${describe(fwd)}`);
  floatTensor(op, 'fwd.out', fwd.out, c.rt);
  sameShape(op, 'fwd.out', fwd.out.shape, outShape);
  floatTensor(op, 'fwd.lse', fwd.lse, c.rt);
  if (fwd.lse.dtype !== 'f32') fail(op, `fwd.lse must be the forward's f32 log-sum-exp, got ${fwd.lse.dtype}`);
  sameShape(op, 'fwd.lse', fwd.lse.shape, [c.B, c.H, c.N]);
}

/** One pass or two (see AttentionBackwardOptions.fused), for a dq of `dqDtype`. */
function chooseFused(op: string, c: Checked, asked: boolean | undefined, dqDtype: Tensor['dtype']): boolean {
  const fused = asked ?? (dqDtype === 'f32' && c.B * c.Hkv >= FUSED_HEADS_PER_THREAD * Math.max(1, c.rt.threads));
  if (fused && dqDtype !== 'f32') fail(op, `the one-pass backward sums dq in place in f32; dq is ${dqDtype} (pass fused: false)`);
  return fused;
}

/**
 * The backward's launches: delta, then one pass or the dK/dV and dQ passes. The gradients g
 * are laid out as the inputs x (the kernels address both through x's strides). Frees the key
 * lengths it was given.
 */
async function backward(
  c: Checked, x: Operands, g: Pick<Operands, 'q' | 'k' | 'v'>, dout: Tensor, fwd: AttentionResult, fused: boolean, opts: AttentionOptions,
): Promise<void> {
  const rows = c.B * c.H * c.N;
  let delta: Tensor | undefined;
  try {
    if (rows === 0) return;
    delta = c.rt.empty([rows], 'f32');
    const BM = Math.min(64, pow2AtLeast(c.N));
    await attnDeltaKernel.launch({ grid: [Math.ceil(c.N / BM), c.B * c.H], BM, D: c.D, runtime: c.rt }, fwd.out, dout, delta, c.N, c.H, ...x.strides.slice(6));
    const args = [c.N, c.H, c.H / c.Hkv, c.scale, c.seed, c.pdrop, ...x.strides] as const;
    if (fused) {
      const t = tiles(c, opts, 'bwd');
      await attnBwdKernel.launch(
        { grid: [c.B * c.Hkv], ...constexprs(c), BM: t.BM, BN: t.BN, FUSED: true },
        x.q, x.k, x.v, dout, fwd.lse, delta, g.q, g.k, g.v, c.lens ?? delta, ...args,
      );
      return;
    }
    // Each pass has its own tiles; a forced config sets both.
    const kv = tiles(c, opts, 'dkv');
    const qc = tiles(c, opts, 'dq');
    await attnBwdKVKernel.launch(
      { grid: [Math.ceil(c.N / kv.BN), c.B * c.Hkv], ...constexprs(c), BM: kv.BM, BN: kv.BN, FUSED: false },
      x.q, x.k, x.v, dout, fwd.lse, delta, g.q, g.k, g.v, c.lens ?? delta, ...args,
    );
    await attnBwdQKernel.launch(
      { grid: [Math.ceil(c.N / qc.BM), c.B * c.H], ...constexprs(c), BM: qc.BM, BN: qc.BN },
      x.q, x.k, x.v, dout, fwd.lse, delta, g.q, c.lens ?? delta, ...args,
    );
  } finally {
    delta?.free();
    if (c.ownLens) c.lens!.free();
  }
}
