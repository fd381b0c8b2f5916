/**
 * @fileoverview Affine index tiles: offsets(i, j) = offsets(0, 0) + i·R + j·C with R and C the
 * same for every element (run-time scalars allowed). `dot` reads an operand loaded at such
 * offsets, with C = 1, straight from the tensor (see Plan.dotReadsInPlace) instead of from a
 * scratch copy.
 */
import type { Value } from '../src/ir/ir.js';

/** An i32 coefficient Σ c·Π syms: `syms` are rank-0 values (run-time scalars); [] is 0. */
export type Coef = readonly { readonly c: number; readonly syms: readonly Value[] }[];

const ZERO: Coef = [];
const ONE: Coef = [{ c: 1, syms: [] }];

function add(a: Coef, b: Coef, sign = 1): Coef {
  const out = a.map((t) => ({ ...t }));
  for (const t of b) {
    const same = out.find((u) => u.syms.length === t.syms.length && u.syms.every((s, k) => s === t.syms[k]));
    if (same) same.c += sign * t.c;
    else out.push({ c: sign * t.c, syms: t.syms });
  }
  return out.filter((t) => t.c !== 0);
}

function scale(a: Coef, k: Coef): Coef {
  let out: Coef = ZERO;
  for (const t of a) for (const u of k) out = add(out, [{ c: t.c * u.c, syms: [...t.syms, ...u.syms] }]);
  return out;
}

/** The compile-time value of `c`, or undefined when it has run-time factors. */
export function constValue(c: Coef): number | undefined {
  if (c.length === 0) return 0;
  return c.length === 1 && c[0]!.syms.length === 0 ? c[0]!.c : undefined;
}

/** True when `c` is exactly the constant `k`. */
export function isConst(c: Coef, k: number): boolean {
  return constValue(c) === k;
}

/** The same value at every position (a scalar or a broadcast of one), as a coefficient; else undefined. */
function uniformValue(v: Value): Coef | undefined {
  if (v.shape.length === 0) return v.op === 'const' ? (v.value === 0 ? ZERO : [{ c: v.value, syms: [] }]) : [{ c: 1, syms: [v] }];
  if (v.op === 'broadcast' || v.op === 'reshape') return uniformValue(v.src);
  return undefined;
}

/**
 * The per-axis coefficients of an i32 tile (one per axis of v.shape), or undefined when v is
 * not affine in its position: only arange, broadcasts, unit reshapes (expandDims), +, - and
 * multiplication by a uniform value are followed. Wrapping i32 arithmetic keeps the identity.
 */
export function affineCoefs(v: Value): Coef[] | undefined {
  if (v.dtype !== 'i32') return undefined;
  if (v.shape.length === 0) return [];
  switch (v.op) {
    case 'arange':
      return [ONE];
    case 'broadcast': {
      const src = affineCoefs(v.src);
      if (!src) return undefined;
      const lead = v.shape.length - v.src.shape.length;
      return v.shape.map((_, d) => (d < lead || v.src.shape[d - lead] === 1 ? ZERO : src[d - lead]!));
    }
    case 'reshape': {
      const src = affineCoefs(v.src);
      if (!src) return undefined;
      // Unit dims only: the non-unit dims keep their order (and their coefficients).
      const kept = v.src.shape.flatMap((d, k) => (d === 1 ? [] : [src[k]!]));
      const from = v.src.shape.filter((d) => d !== 1);
      const to = v.shape.filter((d) => d !== 1);
      if (to.length !== from.length || to.some((d, k) => d !== from[k])) return undefined;
      let k = 0;
      return v.shape.map((d) => (d === 1 ? ZERO : kept[k++]!));
    }
    case 'binary': {
      if (v.fn === 'add' || v.fn === 'sub') {
        const a = affineCoefs(v.a), b = affineCoefs(v.b);
        if (!a || !b) return undefined;
        return a.map((c, d) => add(c, b[d]!, v.fn === 'add' ? 1 : -1));
      }
      if (v.fn === 'mul') {
        const ua = uniformValue(v.a), ub = uniformValue(v.b);
        if (ub) {
          const a = affineCoefs(v.a);
          return a?.map((c) => scale(c, ub));
        }
        if (ua) {
          const b = affineCoefs(v.b);
          return b?.map((c) => scale(c, ua));
        }
      }
      return undefined;
    }
    default:
      // Anything else is affine only when it does not vary (a broadcast scalar is caught above).
      return undefined;
  }
}
