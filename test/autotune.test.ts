/**
 * @fileoverview The autotuner: per-config results (adding a config times only it), bucketed
 * keys, scratch outputs (the caller's tensors untouched, every candidate starts from the
 * original contents), rejection of wrong candidates before timing, the portable results file
 * and its recovery from corruption, the listener.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { autotune, jit, Runtime, type KernelArg, type LaunchOptions, type TuneEvent } from '../src/index.js';
import { bucket, configId } from '../src/tune/index.js';
import { chooseGemmConfig, gemmRuleConfig } from '../src/ops/matmul.js';
import { GEMM_CONFIGS } from '../templates/gemm.js';
import { GEMM_TABLE } from '../templates/gemm-table.js';

const SCALE = `function scale(X, Out, s, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  const m = i < n;
  store(Out, i, load(X, i, m) * s, m);
}`;
// No masks: right only when BLOCK divides n.
const SCALE_UNMASKED = `function scaleUnmasked(X, Out, s, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);
  store(Out, i, load(X, i) * s);
}`;
const SIG = { X: 'ptr', Out: 'ptr', s: 'f32', n: 'i32', BLOCK: 'constexpr' } as const;
const CONFIGS = [{ BLOCK: 16 }, { BLOCK: 32 }, { BLOCK: 64 }];
const FAST = { warmup: 0, rep: 2 };
const grid = (meta: Readonly<Record<string, unknown>>, args: Readonly<Record<string, KernelArg>>): number[] =>
  [Math.ceil((args.n as number) / (meta.BLOCK as number))];

const rtP = Runtime.create({ threads: 0 });
afterAll(async () => (await rtP).dispose());
const dir = (): string => mkdtempSync(join(tmpdir(), 'tilejit-tune-'));

async function problem(n: number) {
  const rt = await rtP;
  const x = rt.tensor(Float32Array.from({ length: n }, (_, i) => i - 7), [n]);
  const out = rt.tensor(new Float32Array(n).fill(7), [n]);
  return { rt, x, out };
}

describe('autotune', () => {
  test('key values bucket to powers of two', () => {
    expect([0, 1, 2, 3, 1000, 1024, 1025, -3, 0.5].map((v) => bucket(v))).toEqual([0, 1, 2, 4, 1024, 1024, 2048, -4, 1]);
    expect(bucket('causal')).toBe('causal');
    expect(bucket(true)).toBe(true);
    expect(configId({ b: 1, a: 2 })).toBe(configId({ a: 2, b: 1 }));
  });

  test('tunes into scratch outputs, verifies every candidate, launches the best, writes the results file', async () => {
    const { x, out } = await problem(1000);
    const events: TuneEvent[] = [];
    const tuned = autotune(jit(SCALE, { signature: SIG }), { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: dir(), listener: (e) => events.push(e) });
    const report = await tuned.tune({}, x, out, 2, 1000);
    // The caller's output was never written while tuning.
    expect(Array.from(out.toArray()).every((v) => v === 7)).toBe(true);
    expect(report.measured).toBe(3);
    expect(report.key).toEqual({ n: 1024 });
    expect(report.results.map((r) => [r.config.BLOCK, r.status, r.verified])).toEqual([[16, 'ok', true], [32, 'ok', true], [64, 'ok', true]]);
    for (const r of report.results) expect(r.ms).toBeGreaterThan(0);
    expect(report.results.some((r) => r.config.BLOCK === report.best.config.BLOCK)).toBe(true);
    expect(events.map((e) => e.type)).toEqual(['start', 'candidate', 'timed', 'candidate', 'timed', 'candidate', 'timed', 'done']);
    await tuned.launch({}, x, out, 2, 1000);
    const y = out.toArray();
    expect([y[0], y[7], y[999]]).toEqual([-14, 0, 1984]);
    const file = JSON.parse(readFileSync(tuned.file!, 'utf8'));
    expect(file.format).toBe('tilejit-tune/1');
    expect(file.kernel).toBe('scale');
    const entries = Object.values(file.entries) as { key: unknown; signature: { threads: number; relaxedSimd: boolean }; results: Record<string, { ms: number }> }[];
    expect(entries).toHaveLength(1);
    expect(entries[0]!.key).toEqual({ n: 1024 });
    expect(entries[0]!.signature.threads).toBe(0);
    expect(Object.keys(entries[0]!.results)).toHaveLength(3);
  });

  test('results are kept per config and per bucket: adding a config times only that one', async () => {
    const { x, out } = await problem(1000);
    const cacheDir = dir();
    const k = jit(SCALE, { signature: SIG });
    const first = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
    expect((await first.tune({}, x, out, 2, 1000)).measured).toBe(3);
    // Same bucket (900 -> 1024): nothing measured, in this object or a fresh one reading the file.
    expect((await first.tune({}, x, out, 2, 900)).measured).toBe(0);
    const events: TuneEvent[] = [];
    const second = autotune(k, { configs: [...CONFIGS, { BLOCK: 128 }], key: ['n'], grid, ...FAST, cacheDir, listener: (e) => events.push(e) });
    const r = await second.tune({}, x, out, 2, 900);
    expect(r.measured).toBe(1);
    expect(events.filter((e) => e.type === 'cached')).toHaveLength(3);
    expect(events.filter((e) => e.type === 'candidate').map((e) => e.type === 'candidate' && e.config)).toEqual([{ BLOCK: 128 }]);
    // Another bucket is tuned on its own.
    const big = await problem(2000);
    expect((await second.tune({}, big.x, big.out, 2, 2000)).measured).toBe(4);
    const file = JSON.parse(readFileSync(second.file!, 'utf8'));
    expect(Object.values(file.entries).map((e) => (e as { key: { n: number } }).key.n).sort()).toEqual([1024, 2048]);
  });

  test('a candidate that is wrong is rejected before it is timed, and never chosen', async () => {
    const { x, out } = await problem(40);
    // BLOCK 64 reads past the end of a 40-element tensor without masks: the interpreter faults.
    const unmasked = autotune(jit(SCALE_UNMASKED, { signature: SIG }), { configs: [{ BLOCK: 8 }, { BLOCK: 64 }], key: ['n'], grid, ...FAST, cacheDir: false });
    const r = await unmasked.tune({}, x, out, 2, 40);
    expect(r.results[1]!.status).toBe('rejected');
    expect(r.results[1]!.ms).toBeNull();
    expect(r.results[1]!.reason).toMatch(/interpreter failed/);
    expect(r.best.config).toEqual({ BLOCK: 8 });
    // A candidate whose compiled code computes something else than the interpreter says.
    const real = jit(SCALE, { signature: SIG });
    let timedLaunches = 0;
    const broken = {
      name: real.name, hash: real.hash, params: real.params,
      interpret: real.interpret.bind(real),
      launch: (o: LaunchOptions, ...a: KernelArg[]) => {
        timedLaunches++;
        return real.launch(o, ...(o.BLOCK === 32 ? [a[0]!, a[1]!, (a[2] as number) + 1, a[3]!] : a));
      },
    } as unknown as Parameters<typeof autotune>[0];
    const events: TuneEvent[] = [];
    const tuned = autotune(broken, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: false, listener: (e) => events.push(e) });
    const report = await tuned.tune({}, x, out, 2, 40);
    const bad = report.results.find((q) => q.config.BLOCK === 32)!;
    expect(bad.status).toBe('rejected');
    expect(bad.reason).toMatch(/output 'Out' differs from the interpreter at element 0: -21 vs -14/);
    expect(report.best.config.BLOCK).not.toBe(32);
    expect(events.filter((e) => e.type === 'rejected')).toHaveLength(1);
    expect(timedLaunches).toBeGreaterThan(3);
    // Every config rejected: a clear error listing why.
    const allBad = autotune(jit(SCALE_UNMASKED, { signature: SIG }), { configs: [{ BLOCK: 64 }], key: ['n'], grid, ...FAST, cacheDir: false });
    await expect(allBad.tune({}, x, out, 2, 40)).rejects.toThrow(/no config passed for key n=64/);
  });

  test('each candidate starts from the original outputs, in scratch tensors', async () => {
    const { x, out } = await problem(100);
    const real = jit(SCALE, { signature: SIG });
    const seen: { block: number; offset: number; first: number }[] = [];
    const spy = {
      name: real.name, hash: real.hash, params: real.params, interpret: real.interpret.bind(real),
      launch: (o: LaunchOptions, ...a: KernelArg[]) => {
        const t = a[1] as typeof out;
        seen.push({ block: o.BLOCK as number, offset: t.byteOffset, first: t.toArray()[50]! });
        return real.launch(o, ...a);
      },
    } as unknown as Parameters<typeof autotune>[0];
    const tuned = autotune(spy, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: false, verify: false });
    await tuned.tune({}, x, out, 2, 100);
    for (const b of [16, 32, 64]) {
      const mine = seen.filter((s) => s.block === b);
      expect(mine[0]!.first).toBe(7); // not the previous candidate's 86
      expect(mine.every((s) => s.offset !== out.byteOffset)).toBe(true);
    }
    expect(out.toArray()[50]).toBe(7);
  });

  test('concurrent launches of one bucket share one search', async () => {
    const { x, out } = await problem(300);
    const events: TuneEvent[] = [];
    const tuned = autotune(jit(SCALE, { signature: SIG }), { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: false, listener: (e) => events.push(e) });
    const y = (await rtP).empty([300]);
    await Promise.all([tuned.launch({}, x, out, 2, 300), tuned.launch({}, x, y, 3, 300)]);
    expect(events.filter((e) => e.type === 'candidate')).toHaveLength(3);
    expect(events.filter((e) => e.type === 'done')).toHaveLength(1);
    expect([out.toArray()[299], y.toArray()[299]]).toEqual([584, 876]);
  });

  test('a corrupt results file is ignored and rebuilt', async () => {
    const { x, out } = await problem(64);
    const cacheDir = dir();
    const k = jit(SCALE, { signature: SIG });
    const a = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
    await a.tune({}, x, out, 2, 64);
    for (const garbage of ['{"format":"tilejit-tune/1","hash":', '{"format":"tilejit-tune/1","hash":"x","entries":{}}', '[1,2]']) {
      writeFileSync(a.file!, garbage);
      const b = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
      expect(b.recoveredCorruptFile).toBe(true);
      expect((await b.tune({}, x, out, 2, 64)).measured).toBe(3);
      const file = JSON.parse(readFileSync(a.file!, 'utf8'));
      expect(file.hash).toBe(k.hash);
      expect(Object.keys(Object.values(file.entries as Record<string, { results: object }>)[0]!.results)).toHaveLength(3);
    }
  });

  test('a result that says ok without a time, or sits under another config\'s id, makes the file corrupt', async () => {
    const { x, out } = await problem(64);
    const cacheDir = dir();
    const k = jit(SCALE, { signature: SIG });
    const a = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
    await a.tune({}, x, out, 2, 64);
    const good = readFileSync(a.file!, 'utf8');
    type Results = Record<string, { config: object; ms: number | null; status: string }>;
    const edits: ((r: Results) => void)[] = [
      (r) => void (Object.values(r)[0]!.ms = null),
      (r) => void (Object.values(r)[0]!.ms = -1),
      (r) => void (Object.values(r)[0]!.config = { BLOCK: 64 }),
    ];
    for (const edit of edits) {
      const file = JSON.parse(good);
      edit((Object.values(file.entries)[0] as { results: Results }).results);
      writeFileSync(a.file!, JSON.stringify(file));
      const b = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
      expect(b.recoveredCorruptFile).toBe(true);
      const r = await b.tune({}, x, out, 2, 64);
      expect(r.measured).toBe(3);
      expect(r.best.ms).toBeGreaterThanOrEqual(0);
    }
  });

  test('a results file that cannot be written: the tuning stands, in memory, and the report says it was not saved', async () => {
    const { x, out } = await problem(64);
    const blocker = join(dir(), 'not-a-dir');
    writeFileSync(blocker, 'a file where the cache directory should be');
    const a = autotune(jit(SCALE, { signature: SIG }), { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: blocker });
    const r = await a.tune({}, x, out, 2, 64);
    expect([r.measured, r.saved]).toEqual([3, false]);
    await a.launch({}, x, out, 2, 64);
    expect(out.toArray()[63]).toBe(112);
    expect((await a.tune({}, x, out, 2, 64)).saved).toBe(false);
    const ok = await autotune(jit(SCALE, { signature: SIG }), { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: dir() }).tune({}, x, out, 2, 64);
    expect(ok.saved).toBe(true);
  });

  test('each result records the shape it was timed at; another shape of the bucket reuses it and says so', async () => {
    const cacheDir = dir();
    const k = jit(SCALE, { signature: SIG });
    const a = autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir });
    const p1 = await problem(1000), p2 = await problem(1010);
    const r1 = await a.tune({}, p1.x, p1.out, 2, 1000);
    expect([r1.at, r1.results.map((r) => r.at)]).toEqual([{ n: 1000 }, [{ n: 1000 }, { n: 1000 }, { n: 1000 }]]);
    const r2 = await autotune(k, { configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir }).tune({}, p2.x, p2.out, 2, 1010);
    expect([r2.measured, r2.at, r2.best.at]).toEqual([0, { n: 1010 }, { n: 1000 }]);
  });

  test('processes saving one results file at the same time keep every one\'s results (the lock)', async () => {
    const file = join(dir(), 'tune', 'k.json');
    const store = new URL('../src/tune/store.ts', import.meta.url).href;
    const script = join(dir(), 'saver.ts');
    writeFileSync(script, `import { TuneStore } from ${JSON.stringify(store)};
const [file, tag] = process.argv.slice(2);
const s = new TuneStore(file, 'k', 'h');
for (let i = 0; i < 40; i++) {
  s.entry(tag + i, { arch: 'x' }, { n: i }).results['[["B",1]]'] = { config: { B: 1 }, status: 'ok', ms: 1, verified: true };
  s.save();
}
`);
    const run = (tag: string): Promise<number | null> => new Promise((resolve) => {
      spawn(process.execPath, ['--import', 'tsx', script, file, tag], { stdio: 'inherit' }).on('exit', resolve);
    });
    expect(await Promise.all(['a', 'b', 'c'].map(run))).toEqual([0, 0, 0]);
    expect(Object.keys(JSON.parse(readFileSync(file, 'utf8')).entries)).toHaveLength(120);
    expect(existsSync(`${file}.lock`)).toBe(false);
  }, 30_000);

  test('bad options fail clearly', () => {
    const k = jit(SCALE, { signature: SIG });
    expect(() => autotune(k, { configs: [], key: [], grid })).toThrow(/non-empty/);
    expect(() => autotune(k, { configs: [{ n: 3 }], key: [], grid })).toThrow(/'n', which is not a constexpr/);
    expect(() => autotune(k, { configs: CONFIGS, key: [], grid, outputs: ['s'] })).toThrow(/not a ptr/);
  });

  test('verification on a small problem built per candidate', async () => {
    const { x, out } = await problem(4096);
    const sizes: number[] = [];
    const tuned = autotune(jit(SCALE_UNMASKED, { signature: SIG }), {
      configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: false,
      verify: {
        args: (rt, meta) => {
          const n = 2 * (meta.BLOCK as number);
          sizes.push(n);
          return [rt.tensor(new Float32Array(n).fill(1), [n]), rt.empty([n]), 3, n];
        },
      },
    });
    const before = (await rtP).stats().inUseBytes;
    const r = await tuned.tune({}, x, out, 2, 4096);
    expect(sizes).toEqual([32, 64, 128]);
    expect(r.results.every((q) => q.status === 'ok' && q.verified)).toBe(true);
    expect((await rtP).stats().inUseBytes).toBe(before); // scratch and verification tensors freed
    // A problem builder that throws for one candidate rejects that one, with the reason; the others are timed.
    const picky = autotune(jit(SCALE_UNMASKED, { signature: SIG }), {
      configs: CONFIGS, key: ['n'], grid, ...FAST, cacheDir: false,
      verify: {
        args: (rt, meta) => {
          if (meta.BLOCK === 32) throw new Error('no problem for 32');
          const n = 2 * (meta.BLOCK as number);
          return [rt.tensor(new Float32Array(n).fill(1), [n]), rt.empty([n]), 3, n];
        },
      },
    });
    const p = await picky.tune({}, x, out, 2, 4096);
    expect(p.results.map((q) => q.status)).toEqual(['ok', 'rejected', 'ok']);
    expect(p.results[1]!.reason).toBe('verify.args threw for this config: no problem for 32');
  });

  test('the generated GEMM table holds tuner configs, and ops.matmul follows it near its shapes only', () => {
    expect(GEMM_TABLE.length).toBeGreaterThan(0);
    const space = new Set(GEMM_CONFIGS.map((c) => configId(c)));
    for (const r of GEMM_TABLE) {
      const c = { BM: r.BM, BN: r.BN, BK: r.BK };
      expect(space.has(configId(c))).toBe(true);
      expect(chooseGemmConfig(r.M, r.N, r.K, r.relaxed)).toEqual(c);
    }
    // Both feature sets have rows, and each set follows its own.
    expect(GEMM_TABLE.some((r) => r.relaxed) && GEMM_TABLE.some((r) => !r.relaxed)).toBe(true);
    // The rule (thin tiles for tiny M), which shapes far from every tuned one get.
    expect(chooseGemmConfig(2, 7, 3)).toEqual(gemmRuleConfig(2, 7, 3));
    expect(gemmRuleConfig(2, 7, 3)).toEqual({ BM: 4, BN: 16, BK: 1 });
    // K shorter than a 64-deep tile gets a tile no deeper than K rounds up to (no masked K
    // steps), and a tile that does not divide its dimension shrinks to the power of two that does.
    expect(gemmRuleConfig(32768, 24, 32)).toEqual({ BM: 64, BN: 8, BK: 32 });
    expect(gemmRuleConfig(20, 300, 24)).toEqual({ BM: 32, BN: 64, BK: 8 });
    expect(gemmRuleConfig(8192, 128, 1).BK).toBe(1);
    expect(gemmRuleConfig(8192, 128, 3).BK).toBe(1);
    // ... but not where the tile would get thin: an odd factor above 4 in K, a small tail.
    expect(gemmRuleConfig(8192, 128, 17)).toEqual({ BM: 64, BN: 64, BK: 32 });
    expect(gemmRuleConfig(8200, 256, 256).BM).toBeGreaterThanOrEqual(64);
    // A tail under 5% of its dimension keeps the wide tile (N 1000 would otherwise get BN 8).
    expect(gemmRuleConfig(1024, 1000, 1024).BN).toBeGreaterThanOrEqual(64);
    expect(chooseGemmConfig(1024, 1000, 1024).BN).toBeGreaterThanOrEqual(64); // a table row, fitted
    // A weight gradient's shape (few rows, deep K): all of M in a tile, thin K steps.
    expect(gemmRuleConfig(128, 384, 8192)).toEqual({ BM: 128, BN: 64, BK: 32 });
    expect(gemmRuleConfig(96, 256, 4096)).toEqual({ BM: 32, BN: 64, BK: 32 });
    // Transposed (xᵀ·dy), from 128 rows up, it takes wide thin tiles whatever the untransposed
    // table says for the shape; fewer rows keep the rule.
    const table = chooseGemmConfig(512, 128, 8192);
    expect(chooseGemmConfig(512, 128, 8192, undefined, true)).toEqual({ BM: 128, BN: 128, BK: 16 });
    expect(chooseGemmConfig(512, 128, 8192, undefined, false)).toEqual(table);
    expect(chooseGemmConfig(160, 136, 2056, undefined, true)).toEqual({ BM: 32, BN: 8, BK: 16 });
    expect(chooseGemmConfig(96, 256, 4096, undefined, true)).toEqual(chooseGemmConfig(96, 256, 4096));
    // Tall and shallow with K a power of two up to 128: K in one slab; other K as before.
    expect(gemmRuleConfig(8192, 128, 128)).toEqual({ BM: 128, BN: 64, BK: 128 });
    expect(gemmRuleConfig(8192, 128, 100)).toEqual({ BM: 64, BN: 64, BK: 64 });
  });
});
