/**
 * @fileoverview Codegen planning decisions that change no result, only the code: which dot
 * operands the microkernel reads in place from their tensor instead of a scratch copy. The
 * differential tests (diff.test.ts) check that the results stay right either way.
 */
import { describe, expect, test } from 'vitest';
import { ACT_BACKWARD_HELPER, ACT_FORWARD_HELPER } from '../templates/activation.js';
import { GEMM_SOURCE } from '../templates/gemm.js';
import { parseKernel } from '../src/lang/parse.js';
import { specialize } from '../src/lang/specialize.js';
import { planKernel } from '../codegen/plan.js';
import type { StorageDType } from '../src/ir/ir.js';

const GEMM_SIG = {
  A: 'ptr', B: 'ptr', C: 'ptr', Bias: 'ptr', Out: 'ptr',
  M: 'i32', N: 'i32', K: 'i32', strideA: 'i32', strideB: 'i32', strideC: 'i32', strideOut: 'i32', alpha: 'f32', beta: 'f32', kSlab: 'i32', splits: 'i32', panelK: 'i32', Aux: 'ptr',
  BM: 'constexpr', BN: 'constexpr', BK: 'constexpr', TRANS_A: 'constexpr', TRANS_B: 'constexpr',
  HAS_C: 'constexpr', HAS_BIAS: 'constexpr', ACT: 'constexpr', EVEN: 'constexpr', PACKED_B: 'constexpr', AUX_OUT: 'constexpr', DACT: 'constexpr',
} as const;

function gemmPlan(opts: { EVEN: boolean; TRANS_A?: boolean; dtypeA?: StorageDType; checked?: boolean; PACKED_B?: boolean }) {
  const k = parseKernel(GEMM_SOURCE, { signature: GEMM_SIG, helpers: { fwd: ACT_FORWARD_HELPER, bwd: ACT_BACKWARD_HELPER } });
  const ir = specialize(k, {
    constexprs: { BM: 64, BN: 64, BK: 32, TRANS_A: opts.TRANS_A ?? false, TRANS_B: false, HAS_C: false, HAS_BIAS: false, ACT: 'none', EVEN: opts.EVEN, PACKED_B: opts.PACKED_B ?? false, AUX_OUT: false, DACT: 'none' },
    tensorDtypes: { A: opts.dtypeA ?? 'f32', B: 'f32', C: 'f32', Bias: 'f32', Out: 'f32', Aux: 'f32' },
  });
  return planKernel(ir, { inPlaceDots: !opts.checked });
}

describe('dot operands read in place', () => {
  test("the GEMM's unmasked A tile: read in place, not materialised; B keeps its copy", () => {
    const plan = gemmPlan({ EVEN: true });
    expect(plan.dotReadsInPlace.size).toBe(1);
    const [id] = [...plan.dotReadsInPlace.keys()];
    expect(plan.materialised.has(id!)).toBe(false);
  });
  test('packed B panels (rows BN apart): A and B both read in place', () => {
    expect(gemmPlan({ EVEN: true, PACKED_B: true }).dotReadsInPlace.size).toBe(2);
    // B straight from a [K, N] tensor: rows N apart, a run-time pitch: copied.
    expect(gemmPlan({ EVEN: true, PACKED_B: false }).dotReadsInPlace.size).toBe(1);
  });
  test('a transposed A tile (trans(load) that only dots read): read in place too, not transposed in scratch', () => {
    const plan = gemmPlan({ EVEN: true, TRANS_A: true });
    expect(plan.dotReadsInPlace.size).toBe(1);
    expect(plan.transReadByDot.size).toBe(1);
    expect(plan.materialised.has([...plan.dotReadsInPlace.keys()][0]!)).toBe(false);
  });
  test('a masked or f16 A tile, or a checked kernel: copied as before', () => {
    expect(gemmPlan({ EVEN: false }).dotReadsInPlace.size).toBe(0);
    expect(gemmPlan({ EVEN: false, TRANS_A: true }).dotReadsInPlace.size).toBe(0);
    expect(gemmPlan({ EVEN: true, dtypeA: 'f16' }).dotReadsInPlace.size).toBe(0);
    expect(gemmPlan({ EVEN: true, checked: true }).dotReadsInPlace.size).toBe(0);
  });
});

describe('a load its own store overwrites', () => {
  const loadsMaterialised = (body: string): number => {
    const k = parseKernel(`function k(X, n, B) { const i = arange(B); ${body} }`, { signature: { X: 'ptr', n: 'i32', B: 'constexpr' } });
    const ir = specialize(k, { constexprs: { B: 64 }, tensorDtypes: { X: 'f32' } });
    const plan = planKernel(ir);
    return ir.body.filter((ins) => ins.op === 'load' && plan.materialised.has(ins.id)).length;
  };
  test('at other offsets: copied before the store (in place, the fused loop would read what it wrote)', () => {
    expect(loadsMaterialised('store(X, i, load(X, 63 - i));')).toBe(1);
    expect(loadsMaterialised('store(X, i + 1, load(X, i, i < 63), i < 63);')).toBe(1);
    // A scatter through offsets read from X itself.
    expect(loadsMaterialised('const j = cast(load(X, i), \'i32\'); store(X, j, load(X, i) * 2.0);')).toBeGreaterThan(0);
  });
  test('written back where it was read, through elementwise ops: stays fused', () => {
    expect(loadsMaterialised('store(X, i, load(X, i) * 2.0 + 1.0);')).toBe(0);
    expect(loadsMaterialised('store(X, i, where(i < n, exp(load(X, i, i < n)), 0.0), i < n);')).toBe(0);
  });
});
