/**
 * @fileoverview The compiler core's suites: `compile` (a new specialisation, a cache hit),
 * `dot` (SGEMM written in the kernel language) and `dispatch` (an empty launch's round trip).
 */
import { Runtime } from '../../src/index.js';
import { line, maxAbsErr, median, medianMs, missing, randArray, type BenchContext } from '../harness.js';
import { naiveSgemm, sgemm } from '../kernels.js';

export async function compileSuite(ctx: BenchContext): Promise<void> {
  const rt = await Runtime.create({ threads: 0 });
  const n = 256;
  const A = rt.tensor(randArray(n * n, 1), [n, n]);
  const B = rt.tensor(randArray(n * n, 2), [n, n]);
  const C = rt.empty([n, n]);
  const { compileIR } = await import('../../codegen/module.js');
  const { detectFeatures } = await import('../../src/runtime/features.js');
  const v8 = await import('node:v8');
  const relaxed = detectFeatures().relaxedSimd;
  // Distinct specialisations: V8 reuses the machine code of a module whose bytes it has seen,
  // so compiling one specialisation again would time binaryen alone.
  const tiles = [[64, 64, 32], [64, 64, 16], [64, 64, 64], [32, 64, 32], [64, 32, 32], [32, 32, 32], [128, 64, 32], [64, 128, 32], [32, 32, 16]];
  const irs = tiles.map(([BM, BN, BK]) => sgemm.specialisedIR({ grid: [n / BM!, n / BN!], BM, BN, BK }, A, B, C, n, n, n));
  await compileIR(irs[0]!, { relaxed }); // loads binaryen once, outside the timing
  // IR -> binaryen module -> bytes -> WebAssembly.Module, with TurboFan compiling every function
  // in the Module constructor (as a first launch would before its first program).
  const ms: number[] = [];
  v8.setFlagsFromString('--no-wasm-lazy-compilation');
  try {
    for (const ir of irs) {
      const t0 = performance.now();
      const out = await compileIR(ir, { relaxed });
      new WebAssembly.Module(out.bytes);
      ms.push(performance.now() - t0);
    }
  } finally {
    v8.setFlagsFromString('--wasm-lazy-compilation');
  }
  // One line for the nine: the median time to compile one specialisation, over the tile configs.
  ctx.emit(line('compile', `compile one sgemm ${n}x${n}x${n} specialisation (median of ${irs.length} tile configs)`, 'tilejit', 1, median(ms), {}, null, {
    M: n, N: n, K: n, tiles: tiles.map(([BM, BN, BK]) => ({ BM, BN, BK })), relaxed, specialisations: irs.length, turbofan: true,
  }));
  const opts = { grid: [n / 64, n / 64], BM: 64, BN: 64, BK: 32 };
  await sgemm.prepare(opts, A, B, C, n, n, n);
  const hit = await medianMs(() => sgemm.prepare(opts, A, B, C, n, n, n), { quick: ctx.quick });
  ctx.emit(line('compile', 'cache hit (key + lookup)', 'tilejit', 1, hit, {}, null, { BM: 64, BN: 64, BK: 32 }));
  rt.dispose();
}

export async function dotSuite(ctx: BenchContext): Promise<void> {
  for (const threads of [1, 2]) await dotRun(ctx, threads);
}

async function dotRun(ctx: BenchContext, threads: number): Promise<void> {
  // threads: 1 runs on the calling thread (no pool); 2 uses one worker beside the caller.
  const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
  const sizes = ctx.quick ? [256] : [256, 1024];
  for (const n of sizes) {
    const name = `sgemm ${n}x${n}x${n} f32`;
    const params = { M: n, N: n, K: n, dtype: 'f32' };
    const a = randArray(n * n, 1), b = randArray(n * n, 2);
    const A = rt.tensor(a, [n, n]), B = rt.tensor(b, [n, n]), C = rt.empty([n, n]);
    const ref = new Float32Array(n * n);
    const jsMs = await medianMs(() => naiveSgemm(a, b, ref, n, n, n), { quick: ctx.quick, slow: n >= 512 });
    for (const cfg of threads === 1 ? [{ BM: 64, BN: 64, BK: 32 }, { BM: 32, BN: 64, BK: 64 }, { BM: 64, BN: 32, BK: 64 }] : [{ BM: 64, BN: 32, BK: 64 }]) {
      try {
        const opts = { grid: [n / cfg.BM, n / cfg.BN], ...cfg, runtime: rt };
        await sgemm.launch(opts, A, B, C, n, n, n);
        const err = maxAbsErr(C.toArray(), ref);
        const ms = await medianMs(() => sgemm.launch(opts, A, B, C, n, n, n), { quick: ctx.quick });
        ctx.emit(line('dot', name, 'tilejit', threads, ms, { flops: 2 * n ** 3 }, err, { ...params, ...cfg }));
      } catch (err) {
        ctx.emit(missing('dot', name, 'tilejit', threads, err, { ...params, ...cfg }));
      }
    }
    if (threads === 1) ctx.emit(line('dot', name, 'naive-js', 1, jsMs, { flops: 2 * n ** 3 }, 0, params));
    A.free(); B.free(); C.free();
  }
  rt.dispose();
}

/** Empty-launch round trip: the fixed cost of a launch on the calling thread and on 2 workers. */
export async function dispatchSuite(ctx: BenchContext): Promise<void> {
  const { jit } = await import('../../src/index.js');
  const empty = jit('function empty(X) {}', { signature: { X: 'ptr' } });
  // threads 2: one worker and the caller taking chunks; then two workers and a waiting caller.
  for (const [threads, callerRuns] of [[0, true], [2, true], [2, false]] as const) {
    // inlineBelowBytes 0: a tiny launch would otherwise run on the calling thread.
    const rt = await Runtime.create({ threads, callerRuns, inlineBelowBytes: 0 });
    const x = rt.empty([1]);
    const opts = { grid: [2], runtime: rt };
    await empty.launch(opts, x);
    const ms = await medianMs(() => empty.launch(opts, x), { quick: ctx.quick });
    const name = callerRuns ? 'empty launch, 2 programs' : 'empty launch, 2 programs, caller waiting';
    ctx.emit(line('dispatch', name, 'tilejit', threads === 0 ? 1 : threads, ms, {}, null, { programs: 2, pooled: threads > 0, callerRuns }));
    rt.dispose();
  }
}
