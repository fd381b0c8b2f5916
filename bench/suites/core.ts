/**
 * @fileoverview The compiler core's suites: `compile` (one specialisation, a cache hit),
 * `dot` (SGEMM written in the kernel language, one thread) and `activations` (GELU).
 */
import { Runtime } from '../../src/index.js';
import { line, maxAbsErr, medianMs, missing, randArray, type BenchContext } from '../harness.js';
import { geluTanh, naiveGelu, naiveSgemm, sgemm } from '../kernels.js';

export async function compileSuite(ctx: BenchContext): Promise<void> {
  const rt = await Runtime.create({ threads: 0 });
  const n = 256;
  const A = rt.tensor(randArray(n * n, 1), [n, n]);
  const B = rt.tensor(randArray(n * n, 2), [n, n]);
  const C = rt.empty([n, n]);
  const { compileIR } = await import('../../codegen/module.js');
  const { detectFeatures } = await import('../../src/runtime/features.js');
  const relaxed = detectFeatures().relaxedSimd;
  const opts = { grid: [n / 64, n / 64], BM: 64, BN: 64, BK: 32 };
  const ir = sgemm.specialisedIR(opts, A, B, C, n, n, n);
  await compileIR(ir, { relaxed }); // loads binaryen once, outside the timing
  // IR -> optimised binaryen module -> bytes -> WebAssembly.Module (TurboFan up front).
  const ms = await medianMs(async () => {
    const out = await compileIR(ir, { relaxed });
    new WebAssembly.Module(out.bytes);
  }, { quick: ctx.quick });
  ctx.emit(line('compile', 'compile sgemm 64x64x32 specialisation', 'tilejit', 1, ms, {}, null, { BM: 64, BN: 64, BK: 32, relaxed }));
  await sgemm.prepare(opts, A, B, C, n, n, n);
  const hit = await medianMs(() => sgemm.prepare(opts, A, B, C, n, n, n), { quick: ctx.quick });
  ctx.emit(line('compile', 'cache hit (key + lookup)', 'tilejit', 1, hit, {}, null, { BM: 64, BN: 64, BK: 32 }));
  rt.dispose();
}

export async function dotSuite(ctx: BenchContext): Promise<void> {
  const rt = await Runtime.create({ threads: 0 });
  const sizes = ctx.quick ? [256] : [256, 1024];
  for (const n of sizes) {
    const name = `sgemm ${n}x${n}x${n} f32`;
    const params = { M: n, N: n, K: n, dtype: 'f32' };
    const a = randArray(n * n, 1), b = randArray(n * n, 2);
    const A = rt.tensor(a, [n, n]), B = rt.tensor(b, [n, n]), C = rt.empty([n, n]);
    const ref = new Float32Array(n * n);
    const jsMs = await medianMs(() => naiveSgemm(a, b, ref, n, n, n), { quick: ctx.quick, slow: n >= 512 });
    for (const cfg of [{ BM: 64, BN: 64, BK: 32 }, { BM: 32, BN: 64, BK: 64 }, { BM: 64, BN: 32, BK: 64 }]) {
      try {
        const opts = { grid: [n / cfg.BM, n / cfg.BN], ...cfg };
        await sgemm.launch(opts, A, B, C, n, n, n);
        const err = maxAbsErr(C.toArray(), ref);
        const ms = await medianMs(() => sgemm.launch(opts, A, B, C, n, n, n), { quick: ctx.quick });
        ctx.emit(line('dot', name, 'tilejit', 1, ms, { flops: 2 * n ** 3 }, err, { ...params, ...cfg }));
      } catch (err) {
        ctx.emit(missing('dot', name, 'tilejit', 1, err, { ...params, ...cfg }));
      }
    }
    ctx.emit(line('dot', name, 'naive-js', 1, jsMs, { flops: 2 * n ** 3 }, 0, params));
    A.free(); B.free(); C.free();
  }
  rt.dispose();
}

export async function activationsSuite(ctx: BenchContext): Promise<void> {
  const rt = await Runtime.create({ threads: 0 });
  const n = ctx.quick ? 1 << 20 : 1 << 22;
  const name = `gelu tanh ${n} f32`;
  const params = { n, dtype: 'f32', approximate: 'tanh' };
  const x = randArray(n, 3, 4);
  const X = rt.tensor(x, [n]), Y = rt.empty([n]);
  const ref = new Float32Array(n);
  const jsMs = await medianMs(() => naiveGelu(x, ref), { quick: ctx.quick });
  const opts = { grid: [Math.ceil(n / 1024)], BLOCK: 1024, EVEN: n % 1024 === 0 };
  await geluTanh.launch(opts, X, Y, n);
  const err = maxAbsErr(Y.toArray(), ref);
  const ms = await medianMs(() => geluTanh.launch(opts, X, Y, n), { quick: ctx.quick });
  ctx.emit(line('activations', name, 'tilejit', 1, ms, { bytes: 8 * n }, err, params));
  ctx.emit(line('activations', name, 'naive-js', 1, jsMs, { bytes: 8 * n }, 0, params));
  rt.dispose();
}
