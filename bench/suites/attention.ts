/**
 * @fileoverview `attention` and `attention-bwd`: flash attention, batch 1, 8 heads, D = 64, on
 * 1 and 2 threads. Effective GFLOP/s counts 4·N²·D per head (2 for causal: half the pairs); the
 * backward counts 2.5x the forward's flops, FlashAttention-2's convention. `peak_bytes` is the
 * heap the forward holds beyond its inputs and outputs (out and the row statistics lse) once
 * it returns: the per-thread scratch (see attentionSuite for why that is also its peak); the
 * N x N score matrix it never builds is in `params.scores_bytes`.
 */
import { ops, Runtime, type Tensor } from '../../src/index.js';
import { attnFwdKernel, chooseAttentionFwdConfig, headMajorStrides } from '../../templates/attention.js';
import { attentionRef } from '../../templates/reference.js';
import { line, medianMs, randArray, type BenchContext, type BenchLine } from '../harness.js';
import { ortRunner, timePeer } from '../peers.js';

const H = 8, D = 64;

function cases(quick: boolean): { N: number; causal: boolean }[] {
  const c = [{ N: 2048, causal: false }, { N: 2048, causal: true }, { N: 4096, causal: true }];
  if (!quick) c.push({ N: 4096, causal: false }, { N: 16384, causal: true });
  return c;
}

const flops = (N: number, causal: boolean): number => (4 * N * N * D * H) / (causal ? 2 : 1);

async function scratchBytes(rt: Runtime, N: number, causal: boolean): Promise<number> {
  const { BM, BN } = chooseAttentionFwdConfig(N, D, causal);
  const t = rt.empty([1]);
  const ck = await attnFwdKernel.prepare({ grid: [1, 1], BM, BN, D, CAUSAL: causal, WINDOW: 0, HAS_LENS: false, DROPOUT: false, runtime: rt }, t, t, t, t, t, t, N, H, 1, 0.125, 0, 0, ...headMajorStrides(H, H, N, D));
  t.free();
  return ck.scratchBytes;
}

export async function attentionSuite(ctx: BenchContext): Promise<void> {
  for (const { N, causal } of cases(ctx.quick)) {
    for (const threads of [1, 2]) {
      if (N >= 16384 && threads === 1) continue;
      const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
      const shape = [1, H, N, D];
      const q = rt.tensor(randArray(H * N * D, 1), shape), k = rt.tensor(randArray(H * N * D, 2), shape), v = rt.tensor(randArray(H * N * D, 3), shape);
      // The runtime keeps no high-water mark, so this is the heap still held after the first
      // call, less its outputs: the scratch a launch allocates and keeps for the next one. It
      // is the call's peak too because ops.attention allocates nothing else on the heap (no
      // temporaries: only out and lse, and key lengths, which are not used here); a temporary
      // freed before the call returned would not show here.
      const before = rt.stats().inUseBytes;
      let r = await ops.attention(q, k, v, { causal });
      const extra = rt.stats().inUseBytes - before - r.out.byteLength - r.lse.byteLength;
      const slow = N >= 4096;
      const ms = await medianMs(async () => {
        r.out.free();
        r.lse.free();
        r = await ops.attention(q, k, v, { causal });
      }, { quick: ctx.quick, slow });
      const params = {
        B: 1, H, N, D, causal, dtype: 'f32', scratch_per_worker_bytes: await scratchBytes(rt, N, causal),
        scores_bytes: 4 * N * N * H,
      };
      const l: BenchLine = line('attention', `attention N=${N} H=${H} D=${D}${causal ? ' causal' : ''}`, 'tilejit', threads, ms, { flops: flops(N, causal) }, null, params);
      l.peak_bytes = extra;
      ctx.emit(l);
      rt.dispose();
    }
  }
  // onnxruntime-web: the same attention as MatMul(q, kᵀ) · scale -> Softmax -> MatMul(·, v), which
  // materialises the N x N scores (it runs out of memory at N = 4096 here).
  for (const N of ctx.quick ? [2048] : [2048, 4096]) {
    const q = randArray(H * N * D, 1), k = randArray(H * N * D, 2), v = randArray(H * N * D, 3);
    const kT = new Float32Array(H * N * D);
    for (let h = 0; h < H; h++) for (let n = 0; n < N; n++) for (let d = 0; d < D; d++) kT[(h * D + d) * N + n] = k[(h * N + n) * D + d]!;
    await timePeer(ctx, {
      suite: 'attention', name: `attention N=${N} H=${H} D=${D}`, impl: 'ort-web', threads: 2, work: { flops: flops(N, false) },
      params: { B: 1, H, N, D, causal: false, dtype: 'f32', scores_bytes: 4 * N * N * H }, slow: true,
      make: async () => {
        const run = await ortRunner(2, [
          { op: 'MatMul', inputs: ['q', 'kT'], outputs: ['s'] },
          { op: 'Mul', inputs: ['s', 'scale'], outputs: ['z'] },
          { op: 'Softmax', inputs: ['z'], outputs: ['p'], attrs: [{ name: 'axis', i: -1 }] },
          { op: 'MatMul', inputs: ['p', 'v'], outputs: ['o'] },
        ], [['q', [1, H, N, D]], ['kT', [1, H, D, N]], ['v', [1, H, N, D]], ['scale', [1]]], [['o', [1, H, N, D]]]);
        const scale = new Float32Array([1 / Math.sqrt(D)]);
        return () => run({ q, kT, v, scale });
      },
    });
  }
  // Plain JS on one head (all eight would take ~10 s a sample): the naive reference, f64.
  const N = ctx.quick ? 512 : 1024;
  const q = randArray(N * D, 1), k = randArray(N * D, 2), v = randArray(N * D, 3);
  const ms = await medianMs(() => attentionRef(q, k, v, { B: 1, H: 1, Hkv: 1, N, D }), { quick: ctx.quick, slow: true });
  ctx.emit(line('attention', `attention N=${N} H=1 D=${D}`, 'naive-js', 1, ms, { flops: 4 * N * N * D }, 0, { B: 1, H: 1, N, D, causal: false }));
}

export async function attentionBwdSuite(ctx: BenchContext): Promise<void> {
  const N = 2048;
  for (const causal of [false, true]) {
    const rt = await Runtime.create({ threads: 2 });
    const shape = [1, H, N, D];
    const q = rt.tensor(randArray(H * N * D, 1), shape), k = rt.tensor(randArray(H * N * D, 2), shape), v = rt.tensor(randArray(H * N * D, 3), shape);
    const dout = rt.tensor(randArray(H * N * D, 4), shape);
    const fwd = await ops.attention(q, k, v, { causal });
    const fwdMs = await medianMs(async () => {
      const r = await ops.attention(q, k, v, { causal });
      r.out.free();
      r.lse.free();
    }, { quick: ctx.quick, slow: true });
    let g = await ops.attentionBackward(dout, q, k, v, fwd, { causal });
    const ms = await medianMs(async () => {
      for (const t of [g.dq, g.dk, g.dv]) t.free();
      g = await ops.attentionBackward(dout, q, k, v, fwd, { causal });
    }, { quick: ctx.quick, slow: true });
    const params = { B: 1, H, N, D, causal, dtype: 'f32', forward_ms: Math.round(fwdMs * 1000) / 1000, ratio_to_forward: Math.round((ms / fwdMs) * 100) / 100 };
    ctx.emit(line('attention-bwd', `attention backward N=${N} H=${H} D=${D}${causal ? ' causal' : ''}`, 'tilejit', 2, ms, { flops: 2.5 * flops(N, causal) }, null, params));
    rt.dispose();
  }
  await trainingShapeQKV(ctx);
}

/**
 * Forward and backward at the forecaster's shape from one QKV projection [B, N, 3·H·D], as a
 * transformer layer runs them: `tilejit` splits heads into [B, H, N, D] copies, attends and
 * merges (and the reverse for the gradients); `tilejit-qkv` reads the projection in place.
 */
async function trainingShapeQKV(ctx: BenchContext): Promise<void> {
  const B = 32, Hs = 4, N = 256, Dh = 32, d = Hs * Dh;
  const rt = await Runtime.create({ threads: 2 });
  const qkv = rt.tensor(randArray(B * N * 3 * d, 5), [B, N, 3 * d]);
  const dout = rt.tensor(randArray(B * N * d, 6), [B, N, d]);
  const headMajor = async (): Promise<void> => {
    await rt.scope(async () => {
      const s = await ops.splitHeads(qkv, { heads: Hs, components: 3 });
      const [q, k, v] = [0, 1, 2].map((i) => s.narrow(i, i + 1).reshape([B, Hs, N, Dh])) as [Tensor, Tensor, Tensor];
      const f = await ops.attention(q, k, v);
      await ops.mergeHeads(f.out.reshape([1, B, Hs, N, Dh]));
      const dHeads = (await ops.splitHeads(dout, { heads: Hs })).reshape([B, Hs, N, Dh]);
      const g = rt.empty([3, B, Hs, N, Dh]);
      const [dq, dk, dv] = [0, 1, 2].map((i) => g.narrow(i, i + 1).reshape([B, Hs, N, Dh])) as [Tensor, Tensor, Tensor];
      await ops.attentionBackward(dHeads, q, k, v, f, { out: { dq, dk, dv } });
      await ops.mergeHeads(g);
    });
  };
  const packed = async (): Promise<void> => {
    await rt.scope(async () => {
      const x = qkv.reshape([B, N, 3, Hs, Dh]);
      const f = await ops.attentionQKV(x);
      await ops.attentionQKVBackward(dout.reshape([B, N, Hs, Dh]), x, f);
    });
  };
  const name = `attention fwd+bwd from a QKV projection B=${B} H=${Hs} N=${N} D=${Dh}`;
  const params = { B, H: Hs, N, D: Dh, causal: false, dtype: 'f32' };
  for (const [impl, fn] of [['tilejit', headMajor], ['tilejit-qkv', packed]] as const) {
    const ms = await medianMs(fn, { quick: ctx.quick });
    ctx.emit(line('attention-bwd', name, impl, 2, ms, { flops: 3.5 * 4 * B * Hs * N * N * Dh }, null, params));
  }
  rt.dispose();
}
