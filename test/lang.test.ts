/**
 * @fileoverview The front end on good kernels: the kernels the templates rely on specialise to
 * IR that verifies and computes the right values in the reference interpreter, and the printed
 * IR shows folding, unrolling, loop-carried values, inlining and explicit broadcasts.
 */
import { describe, expect, test } from 'vitest';
import type { ForI, IfI, Instr, KernelIR } from '../src/ir/ir.js';
import { isValue } from '../src/ir/ir.js';
import { printIR } from '../src/ir/print.js';
import { verify } from '../src/ir/verify.js';
import { parseKernel } from '../src/lang/index.js';
import { compile, expectClose, randomF32, run } from './util/lang.js';

/** Every instruction, nested blocks included. */
function all(body: readonly Instr[]): Instr[] {
  const out: Instr[] = [];
  for (const i of body) {
    out.push(i);
    if (i.op === 'for') out.push(...all(i.body));
    if (i.op === 'if') out.push(...all(i.then), ...all(i.else));
  }
  return out;
}
/** Stands in for the kernel builtin so a real JS function can be written here; never called. */
const store = (..._args: unknown[]): void => {};
const count = (ir: KernelIR, op: string): number => all(ir.body).filter((i) => i.op === op).length;

const SAXPY = `function saxpy(X, Y, Out, a, n, BLOCK) {
  const i = programId(0) * BLOCK + arange(BLOCK);   // an i32 tile [BLOCK]
  const m = i < n;                                   // a mask tile
  store(Out, i, a * load(X, i, m) + load(Y, i, m), m);
}`;
const SAXPY_SIG = { X: 'ptr', Y: 'ptr', Out: 'ptr', a: 'f32', n: 'i32', BLOCK: 'constexpr' } as const;

describe('parseKernel', () => {
  test('name, params in source order, exact source, helper sources', () => {
    const helper = 'function twice(x) { return x * 2; }';
    const k = parseKernel(SAXPY, { signature: SAXPY_SIG, helpers: { twice: helper } });
    expect(k.name).toBe('saxpy');
    expect(k.source).toBe(SAXPY);
    expect(k.params).toEqual([
      { name: 'X', kind: 'ptr' }, { name: 'Y', kind: 'ptr' }, { name: 'Out', kind: 'ptr' },
      { name: 'a', kind: 'f32' }, { name: 'n', kind: 'i32' }, { name: 'BLOCK', kind: 'constexpr' },
    ]);
    expect(k.helperSources.some((s) => s.includes(helper))).toBe(true);
  });

  test('a JS function, an anonymous function, leading comments', () => {
    // The function is never called: only its text is parsed.
    function addOne(X: unknown, n: unknown): void {
      store(X, n, 1.0);
    }
    const k = parseKernel(addOne, { signature: { X: 'ptr', n: 'i32' } });
    expect(k.name).toBe('addOne');
    const anon = parseKernel('// a comment\n/* and another */\n  function (X) { store(X, 0, 1.0); }', { signature: { X: 'ptr' } });
    expect(anon.name).toBe('kernel');
  });
});

describe('good kernels', () => {
  test('saxpy: IR params in signature order, values right', () => {
    const ir = compile(SAXPY, SAXPY_SIG, { constexprs: { BLOCK: 16 }, divisibility: { n: 4 } });
    expect(ir.params).toEqual([
      { kind: 'tensor', name: 'X', dtype: 'f32' }, { kind: 'tensor', name: 'Y', dtype: 'f32' },
      { kind: 'tensor', name: 'Out', dtype: 'f32' }, { kind: 'scalar', name: 'a', dtype: 'f32' },
      { kind: 'scalar', name: 'n', dtype: 'i32' },
    ]);
    const args = ir.body.filter((i) => i.op === 'arg');
    expect(args.map((a) => a.op === 'arg' && a.divisibility)).toEqual([undefined, 4]);
    const n = 37;
    const x = randomF32(48, 1);
    const y = randomF32(48, 2);
    const [, , out] = run(ir, [3], [x, y, new Float32Array(48), 2.5, n]);
    const ref = Float32Array.from({ length: 48 }, (_, i) => (i < n ? Math.fround(Math.fround(2.5 * x[i]!) + y[i]!) : 0));
    expect(Array.from(out!)).toEqual(Array.from(ref));
    const text = printIR(ir);
    expect(text).toContain('programId 0');
    expect(text).toMatch(/broadcast/); // the scalar pid*BLOCK and `a` meet tiles explicitly
    expect(text).toMatch(/store p2\[%\d+\] = %\d+ mask %\d+/);
  });

  test('constexpr if folds away and staticRange unrolls', () => {
    const src = `function k(Out, FLAG, N) {
      let acc = zeros([4]);
      if (FLAG) { acc = acc + 1.0; } else { acc = acc - 1.0; }
      for (const j of staticRange(N)) { acc = acc + j; }
      for (const j of staticRange(1, 7, 2)) { acc = acc * 1.0 + j * 10; }
      store(Out, arange(4), acc);
    }`;
    const ir = compile(src, { Out: 'ptr', FLAG: 'constexpr', N: 'constexpr' }, { constexprs: { FLAG: true, N: 3 } });
    expect(count(ir, 'if')).toBe(0);
    expect(count(ir, 'for')).toBe(0);
    // 1 (+1) + 3 (+j) + 3 * 2 (*1 then +j*10)
    expect(all(ir.body).filter((i) => i.op === 'binary' && i.fn === 'add').length).toBe(1 + 3 + 3);
    const [out] = run(ir, [1], [new Float32Array(4)]);
    // 1 + 0 + 1 + 2 = 4; then + 10 + 30 + 50
    expect(Array.from(out!)).toEqual([94, 94, 94, 94]);
    const irF = compile(src, { Out: 'ptr', FLAG: 'constexpr', N: 'constexpr' }, { constexprs: { FLAG: false, N: 0 } });
    expect(Array.from(run(irF, [1], [new Float32Array(4)])[0]!)).toEqual([89, 89, 89, 89]);
  });

  test('kernel with an early return: if (pid >= n) return;', () => {
    const src = `function k(Out, n) {
      const pid = programId(0);
      if (pid >= n) return;
      store(Out, pid, cast(pid * 3, 'f32'));
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32' });
    const ifs = ir.body.filter((i): i is IfI => i.op === 'if');
    expect(ifs.length).toBe(1);
    expect(ifs[0]!.then.map((i) => i.op)).toEqual(['return']);
    const [out] = run(ir, [6], [new Float32Array(6), 4]);
    expect(Array.from(out!)).toEqual([0, 3, 6, 9, 0, 0]);
  });

  test('run-time if merges every assigned variable into results', () => {
    const src = `function k(Out, x) {
      let a = 1.0;
      let b = arange(4);
      let untouched = 5;
      if (x > 0.0) { a = x * 2.0; b = b + 1; } else { b = b * 0; }
      store(Out, arange(4), a + cast(b, 'f32') + untouched);
    }`;
    const ir = compile(src, { Out: 'ptr', x: 'f32' });
    const ifi = ir.body.find((i): i is IfI => i.op === 'if')!;
    expect(ifi.results.map((r) => `${r.dtype}[${r.shape.join(',')}]`)).toEqual(['f32[]', 'i32[4]']);
    expect(Array.from(run(ir, [1], [new Float32Array(4), 3])[0]!)).toEqual([12, 13, 14, 15]);
    expect(Array.from(run(ir, [1], [new Float32Array(4), -3])[0]!)).toEqual([6, 6, 6, 6]);
  });

  test('run-time for loop: carried values, <= bound, descending loop', () => {
    const src = `function k(Out, n) {
      let s = 0;
      let t = zeros([2]);
      for (let i = 1; i <= n; i++) { s += i; t = t + 0.5; }
      let d = 0;
      for (let i = n; i > 0; i -= 2) { d = d * 10 + i; }
      store(Out, arange(2), t + cast(s, 'f32'));
      store(Out, 2, cast(d, 'f32'));
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32' });
    const fors = ir.body.filter((i): i is ForI => i.op === 'for');
    expect(fors.length).toBe(2);
    expect(fors[0]!.carried.map((c) => `${c.dtype}[${c.shape.join(',')}]`)).toEqual(['i32[]', 'f32[2]']);
    expect(fors[0]!.descending).toBe(false);
    expect(fors[1]!.descending).toBe(true);
    expect(fors[0]!.iv.op).toBe('iv');
    const [out] = run(ir, [1], [new Float32Array(3), 5]);
    expect(Array.from(out!)).toEqual([17.5, 17.5, 531]);
    const text = printIR(ir);
    expect(text).toMatch(/for %\d+ = %\d+; < %\d+; \+= %\d+ carry \(/);
    expect(text).toMatch(/yield %\d+, %\d+/);
  });

  test('tiled matmul with a run-time K loop carrying acc = dot(a, b, acc)', () => {
    const src = `function matmul(A, B, C, M, N, K, BM, BN, BK) {
      const pm = programId(0);
      const pn = programId(1);
      const offs_m = pm * BM + arange(BM);
      const offs_n = pn * BN + arange(BN);
      let acc = zeros([BM, BN]);
      for (let k = 0; k < K; k += BK) {
        const offs_k = k + arange(BK);
        const a = load(A, expandDims(offs_m, 1) * K + expandDims(offs_k, 0),
                       (expandDims(offs_m, 1) < M) & (expandDims(offs_k, 0) < K), 0.0);
        const b = load(B, expandDims(offs_k, 1) * N + expandDims(offs_n, 0),
                       (expandDims(offs_k, 1) < K) & (expandDims(offs_n, 0) < N), 0.0);
        acc = dot(a, b, acc);
      }
      const c_offs = expandDims(offs_m, 1) * N + expandDims(offs_n, 0);
      store(C, c_offs, acc, (expandDims(offs_m, 1) < M) & (expandDims(offs_n, 0) < N));
    }`;
    const sig = { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } as const;
    const ir = compile(src, sig, { constexprs: { BM: 4, BN: 8, BK: 4 } });
    const loop = ir.body.find((i): i is ForI => i.op === 'for')!;
    expect(loop.carried.map((c) => c.shape)).toEqual([[4, 8]]);
    expect(all(loop.body).some((i) => i.op === 'dot')).toBe(true);
    const M = 5;
    const N = 9;
    const K = 7;
    const a = randomF32(M * K, 3);
    const b = randomF32(K * N, 4);
    const [, , c] = run(ir, [2, 2], [a, b, new Float32Array(M * N), M, N, K]);
    const ref = new Float32Array(M * N);
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += a[i * K + k]! * b[k * N + j]!;
      ref[i * N + j] = s;
    }
    expectClose(c!, ref, 1e-5, 1e-5);
  });

  test('row softmax with max(x, 1, true) and keepdims reshape', () => {
    const src = `function softmax(X, Out, R, C, BR, BC) {
      const rows = programId(0) * BR + arange(BR);
      const cols = arange(BC);
      const offs = expandDims(rows, 1) * C + expandDims(cols, 0);
      const m = (expandDims(rows, 1) < R) & (expandDims(cols, 0) < C);
      const x = load(X, offs, m, -Infinity);
      const z = x - max(x, 1, true);
      const e = exp(z);
      store(Out, offs, e / sum(e, 1, true), m);
    }`;
    const ir = compile(src, { X: 'ptr', Out: 'ptr', R: 'i32', C: 'i32', BR: 'constexpr', BC: 'constexpr' }, { constexprs: { BR: 2, BC: 8 } });
    const reduces = all(ir.body).filter((i) => i.op === 'reduce');
    expect(reduces.map((r) => [r.op === 'reduce' && r.fn, r.shape])).toEqual([['max', [2]], ['sum', [2]]]);
    const reshapes = all(ir.body).filter((i) => i.op === 'reshape' && i.src.op === 'reduce' && i.shape.join() === '2,1');
    expect(reshapes.length).toBe(2);
    expect(printIR(ir)).toMatch(/f32\[2,1\] = reshape/);
    const R = 3;
    const C = 6;
    const x = randomF32(R * C, 7);
    const [, out] = run(ir, [2], [x, new Float32Array(R * C), R, C]);
    const ref = new Float32Array(R * C);
    for (let r = 0; r < R; r++) {
      const row = Array.from(x.subarray(r * C, r * C + C));
      const mx = Math.max(...row);
      const den = row.reduce((s, v) => s + Math.exp(v - mx), 0);
      row.forEach((v, j) => (ref[r * C + j] = Math.exp(v - mx) / den));
    }
    expectClose(out!, ref, 1e-6, 1e-5);
  });

  test('flash attention forward: online softmax carrying two [BM] tiles and a [BM, D] tile', () => {
    const src = `function attn(Q, K, V, O, N, scale, BM, BN, D) {
      const offs_m = programId(0) * BM + arange(BM);
      const offs_d = arange(D);
      const q = load(Q, expandDims(offs_m, 1) * D + expandDims(offs_d, 0), expandDims(offs_m, 1) < N, 0.0);
      let m_i = full([BM], -Infinity);
      let l_i = zeros([BM]);
      let acc = zeros([BM, D]);
      for (let start = 0; start < N; start += BN) {
        const offs_n = start + arange(BN);
        const kv_mask = expandDims(offs_n, 1) < N;
        const k = load(K, expandDims(offs_n, 1) * D + expandDims(offs_d, 0), kv_mask, 0.0);
        const v = load(V, expandDims(offs_n, 1) * D + expandDims(offs_d, 0), kv_mask, 0.0);
        let s = dot(q, trans(k)) * scale;
        s = where(expandDims(offs_n, 0) < N, s, -Infinity);
        const m_new = maximum(m_i, max(s, 1));
        const alpha = exp(m_i - m_new);
        const p = exp(s - expandDims(m_new, 1));
        l_i = l_i * alpha + sum(p, 1);
        acc = acc * expandDims(alpha, 1) + dot(p, v);
        m_i = m_new;
      }
      store(O, expandDims(offs_m, 1) * D + expandDims(offs_d, 0), acc / expandDims(l_i, 1), expandDims(offs_m, 1) < N);
    }`;
    const sig = { Q: 'ptr', K: 'ptr', V: 'ptr', O: 'ptr', N: 'i32', scale: 'f32', BM: 'constexpr', BN: 'constexpr', D: 'constexpr' } as const;
    const ir = compile(src, sig, { constexprs: { BM: 4, BN: 4, D: 8 } });
    const loop = ir.body.find((i): i is ForI => i.op === 'for')!;
    // Carried in order of first assignment: l_i, acc, m_i.
    expect(loop.carried.map((c) => c.shape)).toEqual([[4], [4, 8], [4]]);
    const N = 7;
    const D = 8;
    const q = randomF32(N * D, 11);
    const k = randomF32(N * D, 12);
    const v = randomF32(N * D, 13);
    const scale = 1 / Math.sqrt(D);
    const [, , , o] = run(ir, [2], [q, k, v, new Float32Array(N * D), N, scale]);
    const ref = new Float32Array(N * D);
    for (let i = 0; i < N; i++) {
      const s = Array.from({ length: N }, (_, j) => {
        let d = 0;
        for (let t = 0; t < D; t++) d += q[i * D + t]! * k[j * D + t]!;
        return d * scale;
      });
      const mx = Math.max(...s);
      const p = s.map((x) => Math.exp(x - mx));
      const den = p.reduce((a, b) => a + b, 0);
      for (let t = 0; t < D; t++) ref[i * D + t] = p.reduce((acc, pj, j) => acc + pj * v[j * D + t]!, 0) / den;
    }
    expectClose(o!, ref, 1e-5, 1e-4);
  });

  test('dropout with rand', () => {
    const src = `function dropout(X, Out, n, seed, p, BLOCK) {
      const offs = programId(0) * BLOCK + arange(BLOCK);
      const m = offs < n;
      const x = load(X, offs, m);
      const keep = rand(seed, offs) > p;
      store(Out, offs, where(keep, x / (1.0 - p), 0.0), m);
    }`;
    const ir = compile(src, { X: 'ptr', Out: 'ptr', n: 'i32', seed: 'i32', p: 'f32', BLOCK: 'constexpr' }, { constexprs: { BLOCK: 8 } });
    expect(count(ir, 'rand')).toBe(1);
    const x = Float32Array.from({ length: 16 }, () => 1);
    const [, out] = run(ir, [2], [x, new Float32Array(16), 16, 42, 0.5]);
    const kept = Array.from(out!).filter((v) => v !== 0);
    expect(kept.every((v) => v === 2)).toBe(true);
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(16);
  });

  test('helpers inline (constexpr arguments stay constexpr), nest, and can return inside constexpr ifs', () => {
    const act = `function act(x, KIND) {
      if (KIND === 'relu') { return maximum(x, 0.0); }
      return scaleBy(x, 2);
    }`;
    const scaleBy = 'function scaleBy(x, s) { return x * s; }';
    const src = `function k(X, Out, KIND) {
      const i = arange(4);
      store(Out, i, act(load(X, i), KIND));
    }`;
    const sig = { X: 'ptr', Out: 'ptr', KIND: 'constexpr' } as const;
    const helpers = { act, scaleBy };
    const x = Float32Array.from([-1, 2, -3, 4]);
    const relu = compile(src, sig, { constexprs: { KIND: 'relu' }, helpers });
    expect(count(relu, 'binary')).toBe(1);
    expect(Array.from(run(relu, [1], [x, new Float32Array(4)])[1]!)).toEqual([0, 2, 0, 4]);
    const lin = compile(src, sig, { constexprs: { KIND: 'linear' }, helpers });
    expect(Array.from(run(lin, [1], [x, new Float32Array(4)])[1]!)).toEqual([-2, 4, -6, 8]);
    expect(printIR(lin)).not.toContain('max');
  });

  test('broadcast nodes make every elementwise operand the result shape', () => {
    const src = `function k(Out) {
      const r = expandDims(arange(4), 1);
      const c = expandDims(arange(8), 0);
      store(Out, r * 8 + c, cast(r + c, 'f32') * 0.5);
    }`;
    const ir = compile(src, { Out: 'ptr' });
    verify(ir);
    for (const i of all(ir.body)) {
      if (i.op === 'binary') expect([i.a.shape, i.b.shape]).toEqual([i.shape, i.shape]);
    }
    expect(count(ir, 'broadcast')).toBeGreaterThanOrEqual(4);
    const [out] = run(ir, [1], [new Float32Array(32)]);
    expect(out![8 * 3 + 5]).toBe(4);
  });

  test('literals and promotion: weak integers, f32 literals, bool arithmetic, idiv, cdiv', () => {
    const src = `function k(Out, n, x) {
      const i = arange(4);
      const a = i + 1;           // i32
      const b = i * 0.5;         // f32
      const c = (i < 2) + 1;     // bool -> i32
      const d = idiv(n, 3) + cdiv(n, 4) + cdiv(10, 4);
      store(Out, i, cast(a, 'f32') + b + cast(c, 'f32') + cast(d, 'f32') + x);
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32', x: 'f32' });
    const [out] = run(ir, [1], [new Float32Array(4), 10, 0.25]);
    // a + b + c + (3 + 3 + 3) + 0.25
    expect(Array.from(out!)).toEqual([0, 1, 2, 3].map((i) => i + 1 + i * 0.5 + (i < 2 ? 2 : 1) + 9 + 0.25));
    const consts = all(ir.body).filter((i) => i.op === 'const');
    expect(consts.some((c) => c.dtype === 'f32' && c.op === 'const' && c.value === 0.5)).toBe(true);
  });

  test('reductions to a scalar, trans, reshape, broadcastTo, minimum, math builtins', () => {
    const src = `function k(X, Out) {
      const x = load(X, expandDims(arange(2), 1) * 4 + expandDims(arange(4), 0));
      const t = trans(x);
      const total = sum(x);
      const flat = reshape(t, [8]);
      const big = broadcastTo(expandDims(arange(2), 0), [4, 2]);
      store(Out, arange(8), flat + total + cast(reshape(big, [8]), 'f32') + minimum(abs(flat), 2.0) + floor(sqrt(4.0)));
    }`;
    const ir = compile(src, { X: 'ptr', Out: 'ptr' });
    const x = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    const [, out] = run(ir, [1], [x, new Float32Array(8)]);
    const flat = [0, 4, 1, 5, 2, 6, 3, 7];
    expect(Array.from(out!)).toEqual(flat.map((v, i) => v + 28 + (i % 2) + Math.min(v, 2) + 2));
    expect(all(ir.body).filter((i) => i.op === 'reduce').map((r) => r.shape)).toEqual([[2], []]);
  });

  test('ternary: constexpr condition folds, run-time condition becomes where', () => {
    const src = `function k(Out, n, BIG) {
      const i = arange(4);
      const v = BIG ? 100 : 1;
      store(Out, i, cast(i < n ? i * v : -1, 'f32'));
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32', BIG: 'constexpr' }, { constexprs: { BIG: true } });
    expect(count(ir, 'where')).toBe(1);
    expect(Array.from(run(ir, [1], [new Float32Array(4), 2])[0]!)).toEqual([0, 100, -1, -1]);
  });

  test('i32 tensors load as i32 and stores convert', () => {
    const src = `function k(I, F) {
      const i = arange(4);
      const v = load(I, i);
      store(F, i, v * 2);
      store(I, i, load(F, i) + 0.75);
    }`;
    const ir = compile(src, { I: 'ptr', F: 'ptr' }, { dtypes: { I: 'i32' } });
    const loads = all(ir.body).filter((i) => i.op === 'load');
    expect(loads.map((l) => l.dtype)).toEqual(['i32', 'f32']);
    const [iOut, fOut] = run(ir, [1], [Int32Array.from([1, 2, 3, 4]), new Float32Array(4)]);
    expect(Array.from(fOut!)).toEqual([2, 4, 6, 8]);
    expect(Array.from(iOut!)).toEqual([2, 4, 6, 8]);
  });

  test('every IR value has a location inside the source', () => {
    const ir = compile(SAXPY, SAXPY_SIG, { constexprs: { BLOCK: 8 } });
    const lines = SAXPY.split('\n').length;
    for (const i of all(ir.body)) {
      expect(i.loc.line).toBeGreaterThanOrEqual(1);
      expect(i.loc.line).toBeLessThanOrEqual(lines);
      expect(i.loc.column).toBeGreaterThanOrEqual(1);
    }
    // Scalar params point at their declaration: `a` and `n` in the first line.
    expect(ir.body.filter((i) => i.op === 'arg').map((a) => a.loc)).toEqual([{ line: 1, column: 27 }, { line: 1, column: 30 }]);
    const store = ir.body.find((i) => i.op === 'store')!;
    expect(store.loc).toEqual({ line: 4, column: 3 });
    expect(new Set(all(ir.body).filter(isValue).map((v) => v.id)).size).toBe(all(ir.body).filter(isValue).length);
  });
});

describe('language details', () => {
  const run1 = (src: string, sig: Record<string, 'ptr' | 'i32' | 'f32' | 'constexpr'>, n: number, args: number[] = [], o = {}): number[] => {
    const ir = compile(src, sig, o);
    return Array.from(run(ir, [1], [new Float32Array(n), ...args])[0]!);
  };

  test('operators on tiles: arithmetic, %, bitwise, shifts, logic, unary', () => {
    const src = `function k(Out, n) {
      const i = arange(8);
      const m = (i < n) && !(i == 2) || (i === 7);
      const bits = ((i << 2) | 1) ^ (i >> 1) & ~0;
      const r = (i - 3) % 3;
      store(Out, i, where(m, cast(bits + r, 'f32'), -(+1.5)) + cast(i >>> 1, 'f32') * 0.0);
    }`;
    const got = run1(src, { Out: 'ptr', n: 'i32' }, 8, [5]);
    const ref = [0, 1, 2, 3, 4, 5, 6, 7].map((i) => {
      const m = (i < 5 && i !== 2) || i === 7;
      return m ? (((i << 2) | 1) ^ ((i >> 1) & ~0)) + ((i - 3) % 3) : -1.5;
    });
    expect(got).toEqual(ref);
  });

  test('constexpr && and || short-circuit (the other side is never built)', () => {
    const src = `function k(Out, FLAG) {
      const a = FLAG || arange(3);
      const b = !FLAG && zeros([3]);
      store(Out, 0, a ? 1.0 : 2.0);
    }`;
    expect(run1(src, { Out: 'ptr', FLAG: 'constexpr' }, 1, [], { constexprs: { FLAG: true } })).toEqual([1]);
  });

  test('for loop forms: i = i + s, i--, >= with a negative step, constexpr bounds stay a run-time loop', () => {
    const src = `function k(Out, N) {
      let a = 0;
      for (let i = 0; i < N; i = i + 3) { a += 1; }
      let b = 0;
      for (let i = 4; i >= 0; i--) { b = b * 10 + i; }
      let c = 0;
      for (let i = 10; i > 0; i -= 4) { c += i; }
      store(Out, arange(4), cast(full([4], 0, 'i32') + where(arange(4) == 0, a, where(arange(4) == 1, b, c)), 'f32'));
    }`;
    const ir = compile(src, { Out: 'ptr', N: 'constexpr' }, { constexprs: { N: 10 } });
    expect(ir.body.filter((i) => i.op === 'for').length).toBe(3);
    expect(Array.from(run(ir, [1], [new Float32Array(4)])[0]!)).toEqual([4, 43210, 18, 18]);
  });

  test('zeros/full with a 1-D constexpr shape, full with a run-time value, numPrograms, idiv of tiles', () => {
    const src = `function k(Out, x, B) {
      const f = full(B, x * 2.0) + zeros(B) + cast(numPrograms(0), 'f32');
      const q = cast(idiv(arange(B) + 7, 2), 'f32');
      store(Out, programId(0) * B + arange(B), f + q);
    }`;
    const ir = compile(src, { Out: 'ptr', x: 'f32', B: 'constexpr' }, { constexprs: { B: 4 } });
    const [out] = run(ir, [2], [new Float32Array(8), 1.5]);
    // full: 1.5 * 2 + 0 + numPrograms (2); q = idiv(j + 7, 2)
    expect(Array.from(out!)).toEqual([3, 4, 4, 5, 3, 4, 4, 5].map((q) => 5 + q));
  });

  test('math builtins cast i32 to f32 (abs keeps i32), reductions of 2-D tiles, keepdims of everything', () => {
    const ok = `function k(Out) {
      const i = arange(4) - 2;
      const x = expandDims(cast(arange(4), 'f32'), 1) * 4.0 + expandDims(cast(arange(4), 'f32'), 0);
      store(Out, arange(4), sqrt(abs(i) * 4) + floor(i) * 0.0 + min(x, 0) + max(x, 1) * 0.0);
      store(Out, 4 + arange(4), sum(x, 1) + cast(max(abs(i)), 'f32') * 100.0);
    }`;
    const ir = compile(ok, { Out: 'ptr' });
    const absNode = all(ir.body).filter(isValue).find((i) => i.op === 'unary' && i.fn === 'abs')!;
    expect(absNode.dtype).toBe('i32');
    expect(all(ir.body).filter(isValue).find((i) => i.op === 'unary' && i.fn === 'floor')!.dtype).toBe('f32');
    const [out] = run(ir, [1], [new Float32Array(8)]);
    const first = [0, 1, 2, 3].map((j) => Math.fround(Math.sqrt(Math.abs(j - 2) * 4)) + j);
    expect(Array.from(out!)).toEqual(first.concat([6, 22, 38, 54].map((v) => v + 200)));
  });

  test('sum of a 2-D tile to a scalar is two reduces; keepdims reshapes back with a 1', () => {
    const src = `function k(Out) {
      const x = broadcastTo(cast(arange(4), 'f32'), [2, 4]);
      store(Out, 0, sum(x));
      const cols = max(x, 0, true);
      const rows = sum(x, -1, true);
      store(Out, reshape(arange(1), [1, 1]) + 1, sum(cols, 1, true) + sum(rows, 0, true) * 0.0);
    }`;
    const ir = compile(src, { Out: 'ptr' });
    const reduces = all(ir.body).filter((i) => i.op === 'reduce');
    expect(reduces.slice(0, 2).map((r) => (r.op === 'reduce' ? [r.axis, r.shape] : []))).toEqual([[1, [2]], [0, []]]);
    const shapes = all(ir.body).filter(isValue).filter((i) => i.op === 'reshape' && i.src.op === 'reduce').map((r) => r.shape);
    expect(shapes).toEqual([[1, 4], [2, 1], [1, 1], [1, 1]]);
    expect(Array.from(run(ir, [1], [new Float32Array(2)])[0]!)).toEqual([12, 6]);
  });

  test('helpers: run-time if and for inside, called for their stores, bare return', () => {
    const accumulate = `function accumulate(x, n) {
      let s = zeros([4]);
      for (let i = 0; i < n; i++) { s = s + x; }
      if (n > 2) { s = s * 2.0; }
      return s;
    }`;
    const write = `function write(Out, v, SKIP) {
      if (SKIP) { return; }
      store(Out, arange(4), v);
    }`;
    const src = `function k(Out, n, SKIP) {
      write(Out, accumulate(cast(arange(4), 'f32'), n), SKIP);
    }`;
    const sig = { Out: 'ptr', n: 'i32', SKIP: 'constexpr' } as const;
    const ir = compile(src, sig, { constexprs: { SKIP: false }, helpers: { accumulate, write } });
    expect(Array.from(run(ir, [1], [new Float32Array(4), 3])[0]!)).toEqual([0, 6, 12, 18]);
    expect(Array.from(run(ir, [1], [new Float32Array(4), 2])[0]!)).toEqual([0, 2, 4, 6]);
    const skipped = compile(src, sig, { constexprs: { SKIP: true }, helpers: { accumulate, write } });
    expect(skipped.body.some((i) => i.op === 'store')).toBe(false);
  });

  test('a store in a run-time loop with a run-time if inside, i32 counters with ++', () => {
    const src = `function k(Out, n) {
      let count = 0;
      for (let i = 0; i < n; i++) {
        if (i % 2 == 0) { count++; store(Out, i, 1.0); } else { store(Out, i, -1.0); }
      }
      store(Out, n, cast(count, 'f32'));
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32' });
    expect(Array.from(run(ir, [1], [new Float32Array(6), 5])[0]!)).toEqual([1, -1, 1, -1, 1, 3]);
  });

  test('a const node is reused per (value, dtype) within a block', () => {
    const src = `function k(Out, n) {
      const a = n + 1;
      const b = n * 1 + 1;
      store(Out, a + b, 1.0);
      store(Out, a - b, 1.0);
    }`;
    const ir = compile(src, { Out: 'ptr', n: 'i32' });
    const consts = ir.body.filter((i) => i.op === 'const');
    expect(consts.map((c) => (c.op === 'const' ? `${c.dtype}:${c.value}` : ''))).toEqual(['i32:1', 'f32:1']);
  });

  test('load with a scalar offset, a broadcast mask and a scalar `other`; i32 / constexpr is real division', () => {
    const src = `function k(X, Out, n) {
      const s = load(X, 1);
      const row = load(X, expandDims(arange(4), 0) + expandDims(arange(2), 1) * 4, expandDims(arange(4), 0) < n, 9.0);
      store(Out, expandDims(arange(4), 0) + expandDims(arange(2), 1) * 4, row + s + arange(4) / 2);
    }`;
    const ir = compile(src, { X: 'ptr', Out: 'ptr', n: 'i32' });
    const x = Float32Array.from([0, 1, 2, 3, 4, 5, 6, 7]);
    const [, out] = run(ir, [1], [x, new Float32Array(8), 3]);
    expect(Array.from(out!)).toEqual([0, 1, 2, 9, 4, 5, 6, 9].map((v, i) => v + 1 + (i % 4) / 2));
  });
});
