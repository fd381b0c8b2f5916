/**
 * @fileoverview The tuned config tables and the ops that read them: every row holds a config of
 * its template's space, the choosers follow a row near its shape (within a power of two on each
 * size, two in all) and fall back to their rules elsewhere, and every op `tilejit tune` knows
 * tunes a small problem end to end (verified candidates, a winner from the space).
 */
import { afterAll, describe, expect, test } from 'vitest';
import { detectFeatures, Runtime } from '../src/index.js';
import { configId } from '../src/tune/index.js';
import { freeProblem, TUNE_OPS } from '../src/tune/ops.js';
import { ATTENTION_CONFIGS, chooseAttentionConfig, chooseAttentionFwdConfig, chooseAttentionPassConfig } from '../templates/attention.js';
import { chooseGemvConfig, GEMV_CONFIGS } from '../templates/gemv.js';
import { nearestRow } from '../templates/lookup.js';
import { chooseRowConfig, ROW_CONFIGS, rowConfigFor } from '../templates/softmax.js';
import { ATTENTION_TABLE, GEMV_TABLE, NORM_TABLE, SOFTMAX_TABLE, TUNED_THREADS } from '../templates/tuned-tables.js';

const rtP = Runtime.create({ threads: 0 });
afterAll(async () => (await rtP).dispose());

describe('nearestRow', () => {
  const rows = [{ M: 64, N: 1024, flag: false, x: 1 }, { M: 4096, N: 1024, flag: false, x: 2 }, { M: 4096, N: 128, flag: true, x: 3 }];
  test('the nearest within one power of two per size and two in all; exact keys must match', () => {
    expect(nearestRow(rows, { M: 4096, N: 1024 }, ['M', 'N'])?.x).toBe(2);
    expect(nearestRow(rows, { M: 3000, N: 1500 }, ['M', 'N'])?.x).toBe(2);
    expect(nearestRow(rows, { M: 100, N: 1024 }, ['M', 'N'])?.x).toBe(1);
    expect(nearestRow(rows, { M: 512, N: 1024 }, ['M', 'N'])).toBeUndefined(); // three steps from both
    expect(nearestRow(rows, { M: 2048, N: 2048 }, ['M', 'N'])?.x).toBe(2); // one step on each: two in all
    expect(nearestRow(rows, { M: 4096, N: 128, flag: true }, ['M', 'N'], ['flag'])?.x).toBe(3);
    expect(nearestRow(rows, { M: 4096, N: 128, flag: false }, ['M', 'N'], ['flag'])).toBeUndefined();
  });
});

describe('tuned tables', () => {
  const ids = (cs: readonly object[]): Set<string> => new Set(cs.map((c) => configId(c)));

  test('GEMV rows hold configs of its space, and chooseGemvConfig follows them on the tuned thread count only', () => {
    expect(GEMV_TABLE.length).toBeGreaterThan(0);
    for (const r of GEMV_TABLE) {
      const c = { BN: r.BN, BK: r.BK };
      expect(ids(GEMV_CONFIGS[r.transB ? 'bt' : 'b']).has(configId(c))).toBe(true);
      expect(chooseGemvConfig(r.N, r.K, r.transB, TUNED_THREADS)).toEqual(c);
    }
    // Another thread count: the rule (one program per thread for B; for Bᵀ a [4, 32] partial
    // when the f32 weights stream from memory, else 16 rows reduced every 256 columns).
    expect(chooseGemvConfig(4096, 4096, true, TUNED_THREADS + 1)).toEqual({ BN: 4, BK: 32 });
    expect(chooseGemvConfig(1024, 1024, true, TUNED_THREADS + 1)).toEqual({ BN: 16, BK: 256 });
    expect(chooseGemvConfig(4096, 4096, true, TUNED_THREADS + 1, true)).toEqual({ BN: 16, BK: 256 });
    expect(chooseGemvConfig(4096, 4096, false, 1)).toEqual({ BN: 4096, BK: 8 });
  });

  test.each([['softmax', SOFTMAX_TABLE], ['norm', NORM_TABLE]] as const)('%s rows hold row configs, and chooseRowConfig follows them', (kind, table) => {
    expect(table.length).toBeGreaterThan(0);
    const space = ids(ROW_CONFIGS);
    for (const r of table) {
      expect(space.has(configId(r.SINGLE ? { R: r.R, SINGLE: true } : { R: 1, BN: r.BN, SINGLE: false }))).toBe(true);
      expect(chooseRowConfig(r.M, r.N, kind)).toEqual(rowConfigFor(r.M, r.N, r));
    }
    // Nowhere near a tuned shape (5 rows of 3): the rule.
    expect(chooseRowConfig(5, 3, kind)).toEqual({ R: 1, BN: 4, SINGLE: true, EVEN: false });
  });

  test('a whole-row config fitted to another row width keeps its tile within 2^16 elements and masks when needed', () => {
    expect(rowConfigFor(4096, 1000, { R: 16, SINGLE: true })).toEqual({ R: 16, BN: 1024, SINGLE: true, EVEN: false });
    expect(rowConfigFor(4096, 8192, { R: 16, SINGLE: true })).toEqual({ R: 8, BN: 8192, SINGLE: true, EVEN: true });
    expect(rowConfigFor(7, 9000, { R: 1, SINGLE: true })).toBeUndefined();
    expect(rowConfigFor(7, 9000, { R: 1, BN: 2048, SINGLE: false })).toEqual({ R: 1, BN: 2048, SINGLE: false, EVEN: false });
  });

  test('attention rows hold its configs for each pass, and each pass follows its own rows', () => {
    const space = ids(ATTENTION_CONFIGS);
    for (const pass of ['fwd', 'dkv', 'dq'] as const) {
      const rows = ATTENTION_TABLE.filter((r) => r.pass === pass);
      expect(rows.length, pass).toBeGreaterThan(0);
      for (const r of rows) {
        expect(space.has(configId({ BM: r.BM, BN: r.BN }))).toBe(true);
        expect(chooseAttentionPassConfig(pass, r.N, r.D, r.causal)).toEqual({ BM: r.BM, BN: r.BN });
      }
    }
    expect(chooseAttentionFwdConfig(1024, 48, false)).toEqual(chooseAttentionConfig(1024, 48)); // no D = 48 row
    // The one-pass backward follows its own rows where it has them, else the dK/dV pass's.
    for (const r of ATTENTION_TABLE.filter((x) => x.pass === 'dkv')) {
      const own = ATTENTION_TABLE.find((x) => x.pass === 'bwd' && x.N === r.N && x.D === r.D && x.causal === r.causal);
      expect(chooseAttentionPassConfig('bwd', r.N, r.D, r.causal)).toEqual(own ? { BM: own.BM, BN: own.BN } : { BM: r.BM, BN: r.BN });
    }
  });
});

describe('every op the tuner knows tunes a small problem', () => {
  const SMALL: Record<string, number[]> = {
    matmul: [24, 40, 16], 'matmul-plain': [24, 40, 16], gemv: [300, 70], 'gemv-bt': [300, 70], softmax: [20, 300], layernorm: [9, 2500],
    attention: [40, 32], 'attention-causal': [40, 16], 'attention-dkv': [40, 16], 'attention-dkv-causal': [24, 16],
    'attention-dq': [40, 16], 'attention-dq-causal': [24, 16], 'attention-bwd': [40, 16], 'attention-bwd-causal': [24, 16],
  };
  test('SMALL covers every op', () => expect(Object.keys(SMALL).sort()).toEqual(Object.keys(TUNE_OPS).sort()));

  test.each(Object.keys(SMALL))('%s', async (op) => {
    const rt = await rtP;
    const spec = TUNE_OPS[op]!;
    const run = async () => {
      const problem = spec.problem(rt, SMALL[op]!);
      const report = await spec.tuned({ cacheDir: false, warmup: 0, rep: 1 }).tune({ ...problem.fixed, runtime: rt }, ...problem.args);
      freeProblem(problem.args);
      return report;
    };
    const report = await run();
    expect(report.results.length).toBeGreaterThan(0);
    expect(report.results.every((r) => r.status === 'ok' && r.verified)).toBe(true);
    expect(report.results).toContain(report.best);
    // A second search frees all it allocates (the first also grew the per-runner scratch).
    if (op === 'matmul' || op === 'softmax' || op === 'attention-dq') {
      const before = rt.stats().inUseBytes;
      await run();
      expect(rt.stats().inUseBytes).toBe(before);
    }
    const row = spec.tableRow(SMALL[op]!, report.best.config);
    for (const [i, k] of spec.form.split('x').entries()) expect(row[k]).toBe(SMALL[op]![i]);
    // The mul+add path is tuned apart: launched without relaxed SIMD, keyed and tabled as such.
    if (op === 'matmul-plain') {
      expect(report.key.relaxedSimd).toBe(false);
      expect(row.relaxed).toBe(false);
    }
    if (op === 'matmul') expect(row.relaxed).toBe(detectFeatures().relaxedSimd);
  }, 60_000);
});
