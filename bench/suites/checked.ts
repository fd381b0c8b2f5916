/**
 * @fileoverview `checked`: what bounds-checked launches cost. GELU (bench/kernels.ts, one load
 * and one store per element, with and without masks) and SGEMM (loads of A and B tiles feeding
 * dot), each timed unchecked and checked in the same process, alternating, on the calling thread
 * and on 2 workers; the checked line carries `ratio` = checked / unchecked median.
 */
import { Runtime } from '../../src/index.js';
import { line, maxAbsErr, medianMs, randArray, type BenchContext } from '../harness.js';
import { geluTanh, sgemm } from '../kernels.js';

interface Case {
  name: string;
  work: { flops?: number; bytes?: number };
  params: Record<string, unknown>;
  run(checked: boolean): Promise<void>;
  out(): Float32Array | Int32Array;
}

export async function checkedSuite(ctx: BenchContext): Promise<void> {
  for (const threads of [1, 2]) {
    const rt = await Runtime.create({ threads: threads === 1 ? 0 : threads });
    const cases: Case[] = [];
    for (const n of ctx.quick ? [1 << 20] : [1 << 20, (1 << 22) - 3]) {
      const X = rt.tensor(randArray(n, 3, 4), [n]), Y = rt.empty([n]);
      const opts = { grid: [Math.ceil(n / 1024)], BLOCK: 1024, EVEN: n % 1024 === 0, runtime: rt };
      cases.push({
        name: `gelu tanh ${n} f32${opts.EVEN ? '' : ' (masked tail)'}`, work: { bytes: 8 * n }, params: { n, EVEN: opts.EVEN },
        run: (checked) => geluTanh.launch({ ...opts, checked }, X, Y, n), out: () => Y.toArray(),
      });
    }
    for (const n of ctx.quick ? [256] : [256, 1024]) {
      const A = rt.tensor(randArray(n * n, 1), [n, n]), B = rt.tensor(randArray(n * n, 2), [n, n]), C = rt.empty([n, n]);
      const cfg = threads === 1 ? { BM: 64, BN: 64, BK: 32 } : { BM: 64, BN: 32, BK: 64 };
      const opts = { grid: [n / cfg.BM, n / cfg.BN], ...cfg, runtime: rt };
      cases.push({
        name: `sgemm ${n}x${n}x${n} f32`, work: { flops: 2 * n ** 3 }, params: { M: n, N: n, K: n, ...cfg },
        run: (checked) => sgemm.launch({ ...opts, checked }, A, B, C, n, n, n), out: () => C.toArray(),
      });
    }
    for (const c of cases) {
      await c.run(false);
      const want = c.out();
      await c.run(true);
      const err = maxAbsErr(c.out(), want);
      // Alternate and keep the better median of two rounds each: drift hits both sides alike.
      const ms = { plain: Infinity, checked: Infinity };
      for (let round = 0; round < 2; round++) {
        ms.plain = Math.min(ms.plain, await medianMs(() => c.run(false), { quick: ctx.quick }));
        ms.checked = Math.min(ms.checked, await medianMs(() => c.run(true), { quick: ctx.quick }));
      }
      const ratio = Number((ms.checked / ms.plain).toFixed(3));
      ctx.emit(line('checked', c.name, 'tilejit', threads, ms.plain, c.work, null, { ...c.params, checked: false }));
      ctx.emit(line('checked', c.name, 'tilejit-checked', threads, ms.checked, c.work, err, { ...c.params, checked: true, ratio }));
      ctx.note(`${'checked'.padEnd(12)} ${c.name.padEnd(44)} ratio checked/unchecked t=${threads}: ${ratio}`);
    }
    rt.dispose();
  }
}
