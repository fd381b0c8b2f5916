/**
 * @fileoverview Fused tile loops. A *sink* (a store, a buffer write, a reduction) runs one loop
 * nest over its shape; the lazy values it reads are evaluated inside that nest, four lanes at a
 * time along the last axis, each computed once per position and hoisted to the outermost loop
 * level it depends on (row-invariant work runs once per row, invariant work once per sink).
 */
import binaryen from 'binaryen';
import type { DType, LoadV, RandV, Shape, StorageDType, StoreI, Value } from '../src/ir/ir.js';
import type { BoundsChecks } from './bounds.js';
import { loadHalf4, storeHalf4, vF16ToF32, vF32ToBf16, vF32ToF16 } from './convert.js';
import type { Emit, Ref } from './emit.js';
import { emitBinary, emitCast, emitMinMaxConst, emitSplat, emitUnary, emitWhere, wasmType, type Mode } from './ops.js';
import { vExpFtz } from './math.js';
import { isUnitReshape } from './plan.js';

/** Which loop variable indexes an axis: the row var, the column var, or the constant 0. */
export type Idx = 'r' | 'c' | '0';

/** A tile value living in scratch: row-major, `pitch` elements per row, at sbase + offset. */
export interface Buffer {
  readonly offset: number;
  readonly shape: Shape;
  readonly pitch: number;
  readonly dtype: DType;
}

/** What the lowering provides to tile loops. */
export interface TileEnv {
  readonly e: Emit;
  /** Local holding the program's scratch base address. */
  readonly sbase: number;
  /** Scalar (rank-0) values: the local that holds them. */
  scalarLocal(v: Value): number;
  /** Materialised tiles: their buffer, or undefined if lazy. */
  buffer(v: Value): Buffer | undefined;
  /**
   * Tensor parameter `index`: the local with its byte address, its storage dtype and, in a
   * checked kernel, the local with its element count.
   */
  tensor(index: number): { local: number; dtype: StorageDType; size?: TensorSize };
  /** The bounds-check emitters of a checked kernel (undefined: accesses are not checked). */
  readonly checks?: BoundsChecks;
  /** Whether the product `v` is used once, by an add (Plan.addOnlyProducts): fpFusion's candidates. */
  addOnlyProduct(v: Value): boolean;
}

/** Locals of a checked tensor's element count n and of max(n - 3, 0) (the end of 4-wide runs). */
export interface TensorSize {
  readonly n: number;
  readonly run4: number;
}

interface LoopVar {
  readonly local: number;
  readonly extent: number;
  readonly step: number;
}

const ESIZE: Record<StorageDType, number> = { f32: 4, i32: 4, f16: 2, bf16: 2 };

/** One loop nest over a sink shape, with its hoisting levels. */
export class TileLoop {
  readonly vec: boolean;
  readonly vars: Partial<Record<'r' | 'c', LoopVar>> = {};
  /** Code run once before the nest, once per outer iteration (before/after the inner loop), and per inner iteration. */
  readonly pre: Ref[] = [];
  readonly outerPre: Ref[] = [];
  readonly outerPost: Ref[] = [];
  readonly inner: Ref[] = [];
  readonly outer: 'r' | 'c' | null;
  readonly innerVar: 'r' | 'c';
  private readonly cache = new Map<string, { local: number; type: number; inner: boolean; keep?: boolean }>();
  /**
   * While the body of an unrolled copy k > 0 is built (see `build`): k · step, the columns that
   * copy is ahead of copy 0. The column var reads as var + colShift, and a contiguous access
   * reuses copy 0's address with colShift elements more in its static offset.
   */
  private colShift = 0;
  /**
   * While > 0, new values are computed in place instead of memoised and hoisted: for code that
   * only a rare branch runs (a partial vector's mask), whose work must not land on the hot path.
   */
  private inline = 0;
  /**
   * Loop splitting (see `build`): while `split` is set, masked vector accesses and `where`s whose
   * all-lanes test exists are recorded (the masked pass, `assumeFull` false) or take their
   * all-lanes path with no test (the fast pass, `assumeFull` true).
   */
  private split: { assumeFull: boolean; tests: Map<string, { mask: Value; pos: readonly Idx[] }> } | undefined;

  /**
   * @param shape the sink's shape (rank 1 or 2)
   * @param order 'rc' (rows outer, columns inner: the usual) or 'cr' (columns outer)
   */
  constructor(readonly env: TileEnv, readonly shape: Shape, order: 'rc' | 'cr' = 'rc', forceScalar = false) {
    const e = env.e;
    const last = shape[shape.length - 1]!;
    this.vec = !forceScalar && last >= 4;
    this.vars.c = { local: e.local(binaryen.i32), extent: last, step: this.vec ? 4 : 1 };
    if (shape.length === 2) {
      this.vars.r = { local: e.local(binaryen.i32), extent: shape[0]!, step: 1 };
      this.outer = order === 'rc' ? 'r' : 'c';
      this.innerVar = order === 'rc' ? 'c' : 'r';
    } else {
      this.outer = null;
      this.innerVar = 'c';
    }
  }

  /** The natural position of an element of the sink. */
  get pos(): Idx[] {
    return this.shape.length === 2 ? ['r', 'c'] : ['c'];
  }

  /** Mode of a value evaluated at `pos`: vector iff its last axis walks the vectorised column var. */
  modeAt(pos: readonly Idx[]): Mode {
    return this.vec && pos.length > 0 && pos[pos.length - 1] === 'c' ? 'v' : 's';
  }

  private levelOf(pos: readonly Idx[]): Ref[] {
    if (pos.includes(this.innerVar)) return this.inner;
    if (this.outer && pos.includes(this.outer)) return this.outerPre;
    return this.pre;
  }

  /** Index expression (i32) of loop var `x` (the lane-0 element index for the vector var). */
  idx(x: Idx): Ref {
    const m = this.env.e.m;
    if (x === '0') return m.i32.const(0);
    const v = m.local.get(this.vars[x]!.local, binaryen.i32);
    return x === 'c' && this.colShift ? m.i32.add(v, m.i32.const(this.colShift)) : v;
  }

  /** Bind `expr` to a local at the level of `pos`, memoised by `key`. */
  private memo(key: string, pos: readonly Idx[], type: number, make: () => Ref, keep = false): Ref {
    const m = this.env.e.m;
    let hit = this.cache.get(key);
    if (!hit && this.inline > 0) return make();
    if (!hit) {
      const expr = make();
      const level = this.levelOf(pos);
      hit = { local: this.env.e.local(type), type, inner: level === this.inner, keep };
      level.push(m.local.set(hit.local, expr));
      this.cache.set(key, hit);
    }
    return m.local.get(hit.local, hit.type);
  }

  /** The value of `v` at `pos`, in `modeAt(pos)`. */
  eval(v: Value, pos: readonly Idx[]): Ref {
    const e = this.env.e;
    if (v.shape.length === 0) return e.m.local.get(this.env.scalarLocal(v), wasmType(v.dtype, 's'));
    const mode = this.modeAt(pos);
    return this.memo(`${v.id}:${pos.join('')}`, pos, wasmType(v.dtype, mode), () => this.compute(v, pos, mode));
  }

  /** `v` at `pos` converted to `mode` (scalar -> splat when a broadcast widens it). */
  evalAs(v: Value, pos: readonly Idx[], mode: Mode): Ref {
    const x = this.eval(v, pos);
    const have = v.shape.length === 0 ? 's' : this.modeAt(pos);
    if (have === mode) return x;
    if (have === 's' && mode === 'v') return emitSplat(this.env.e, v.dtype, x);
    throw new Error('codegen: cannot narrow a vector to a scalar');
  }

  /**
   * `a * b + c` (either operand of the add a product) as one multiply-add, under the target's
   * fpFusion with relaxed SIMD: vector lanes of f32 only, and only for a product the add alone
   * uses and that has no buffer. Both are fixed per value, so every loop that evaluates the add
   * (a reduction's, a store's) computes the same bits.
   */
  private fusedMulAdd(v: Value & { op: 'binary' }, pos: readonly Idx[], mode: Mode): Ref | undefined {
    const e = this.env.e;
    if (mode !== 'v' || !e.target.fpFusion || !e.target.relaxed) return undefined;
    // An add-only product (an f32 tile mul) has this add, an f32 add, as its one user.
    const free = (x: Value): x is Value & { op: 'binary' } => x.op === 'binary' && this.env.addOnlyProduct(x) && !this.env.buffer(x);
    const [mul, c] = free(v.a) ? [v.a, v.b] : free(v.b) ? [v.b, v.a] : [undefined, undefined];
    if (!mul) return undefined;
    return e.madd(this.evalAs(mul.a, pos, mode), this.evalAs(mul.b, pos, mode), this.evalAs(c!, pos, mode));
  }

  /** A rank-0 value from its (scalar) operands' locals. */
  computeScalar(v: Value): Ref {
    return this.compute(v, [], 's');
  }

  /** `v` at `pos` from its operands, ignoring v's own buffer (used to fill that buffer). */
  computeRoot(v: Value, pos: readonly Idx[]): Ref {
    return this.compute(v, pos, this.modeAt(pos), true);
  }

  private compute(v: Value, pos: readonly Idx[], mode: Mode, ignoreBuffer = false): Ref {
    const e = this.env.e;
    const m = e.m;
    const buf = ignoreBuffer ? undefined : this.env.buffer(v);
    if (buf) return this.readBuffer(buf, pos, mode);
    switch (v.op) {
      case 'arange': {
        const base = m.i32.add(m.i32.const(v.start), this.idx(pos[0]!));
        if (mode === 's') return base;
        return m.i32x4.add(m.i32x4.splat(base), m.v128.const([0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0]));
      }
      case 'broadcast':
        return this.evalAs(v.src, broadcastPos(v.src.shape, v.shape, pos), mode);
      case 'reshape':
        if (!isUnitReshape(v.src.shape, v.shape)) throw new Error('codegen: general reshape must be materialised');
        return this.evalAs(v.src, reshapePos(v.src.shape, v.shape, pos), mode);
      case 'unary':
        if (v.fn === 'expFtz' && mode === 'v' && belowItsMax(v.src)) return vExpFtz(e, this.evalAs(v.src, pos, mode), true);
        return emitUnary(e, v.fn, v.src.dtype, mode, this.evalAs(v.src, pos, mode));
      case 'binary': {
        const fused = this.fusedMulAdd(v, pos, mode);
        if (fused !== undefined) return fused;
        const a = this.evalAs(v.a, pos, mode);
        const shiftByScalar = (v.fn === 'shl' || v.fn === 'shr' || v.fn === 'shru') && v.b.op === 'broadcast' && v.b.src.shape.length === 0;
        if (shiftByScalar && mode === 'v' && v.b.op === 'broadcast') {
          return emitBinary(e, v.fn, v.a.dtype, mode, a, m.i32.const(0), this.eval(v.b.src, []));
        }
        if ((v.fn === 'min' || v.fn === 'max') && v.a.dtype === 'f32') {
          const kb = constValue(v.b);
          const ka = kb === null ? constValue(v.a) : null;
          const r = kb !== null ? emitMinMaxConst(e, v.fn, mode, a, kb)
            : ka !== null ? emitMinMaxConst(e, v.fn, mode, this.evalAs(v.b, pos, mode), ka) : undefined;
          if (r !== undefined) return r;
        }
        return emitBinary(e, v.fn, v.a.dtype, mode, a, this.evalAs(v.b, pos, mode));
      }
      case 'cast':
        return emitCast(e, v.src.dtype, v.dtype, mode, this.evalAs(v.src, pos, mode));
      case 'where':
        if (this.knownFull(v.cond, pos)) return this.evalAs(v.a, pos, mode);
        return emitWhere(e, mode, this.evalAs(v.cond, pos, mode), this.evalAs(v.a, pos, mode), this.evalAs(v.b, pos, mode));
      case 'load':
        return this.load(v, pos, mode);
      case 'rand':
        return this.rand(v, pos, mode);
      default:
        throw new Error(`codegen: ${v.op} tile must be materialised`);
    }
  }

  /** Byte address (i32) of element `pos` of a buffer (lane 0 in vector mode). */
  bufferAddr(buf: Buffer, pos: readonly Idx[]): Ref {
    return this.bufferAt(buf, pos).addr;
  }

  /**
   * Address and extra static byte offset of element `pos` of a buffer: an unrolled copy's
   * vector sits `colShift` elements after copy 0's, whose address it reuses.
   */
  private bufferAt(buf: Buffer, pos: readonly Idx[]): { addr: Ref; off: number } {
    const s = this.colShift;
    if (s && this.modeAt(pos) === 'v') {
      this.colShift = 0;
      try {
        return { addr: this.bufferAddrNow(buf, pos), off: s * 4 };
      } finally {
        this.colShift = s;
      }
    }
    return { addr: this.bufferAddrNow(buf, pos), off: 0 };
  }

  private bufferAddrNow(buf: Buffer, pos: readonly Idx[]): Ref {
    const m = this.env.e.m;
    let index: Ref;
    if (buf.shape.length === 2) {
      const row = pos[0]!;
      const rowPart = row === '0' ? m.i32.const(0) : m.i32.mul(this.idx(row), m.i32.const(buf.pitch));
      index = pos[1] === '0' ? rowPart : m.i32.add(rowPart, this.idx(pos[1]!));
    } else {
      index = this.idx(pos[0]!);
    }
    return m.i32.add(m.local.get(this.env.sbase, binaryen.i32), m.i32.shl(index, m.i32.const(2)));
  }

  readBuffer(buf: Buffer, pos: readonly Idx[], mode: Mode): Ref {
    const m = this.env.e.m;
    if (mode === 'v') {
      const { addr, off } = this.bufferAt(buf, pos);
      return m.v128.load(buf.offset + off, 16, addr);
    }
    const addr = this.bufferAddr(buf, pos);
    if (buf.dtype === 'f32') return m.f32.load(buf.offset, 4, addr);
    const x = m.i32.load(buf.offset, 4, addr);
    return buf.dtype === 'bool' ? m.i32.ne(x, m.i32.const(0)) : x;
  }

  /** Statement writing `value` (in the mode of `pos`) into `buf` at `pos`. */
  writeBuffer(buf: Buffer, pos: readonly Idx[], value: Ref): Ref {
    const m = this.env.e.m;
    if (this.modeAt(pos) === 'v') {
      const { addr, off } = this.bufferAt(buf, pos);
      return m.v128.store(buf.offset + off, 16, addr, value);
    }
    const addr = this.bufferAddr(buf, pos);
    if (buf.dtype === 'f32') return m.f32.store(buf.offset, 4, addr, value);
    // Buffers hold bool as 0/-1 so that vector reads are masks.
    return m.i32.store(buf.offset, 4, addr, buf.dtype === 'bool' ? m.i32.sub(m.i32.const(0), value) : value);
  }

  /**
   * How the i32 tile `v` at `pos` changes when the vectorised column var grows by one: 0, a
   * known constant, or null when unknown. Coefficient 1 means four lanes are contiguous.
   */
  coefC(v: Value, pos: readonly Idx[]): number | null {
    if (!pos.includes('c') || v.shape.length === 0) return 0;
    if (this.env.buffer(v)) return null;
    switch (v.op) {
      case 'arange': return pos[0] === 'c' ? 1 : 0;
      case 'broadcast': return this.coefC(v.src, broadcastPos(v.src.shape, v.shape, pos));
      case 'reshape': return isUnitReshape(v.src.shape, v.shape) ? this.coefC(v.src, reshapePos(v.src.shape, v.shape, pos)) : null;
      case 'binary': {
        const a = this.coefC(v.a, pos);
        const b = this.coefC(v.b, pos);
        if (a === null || b === null) return null;
        if (v.fn === 'add') return a + b;
        if (v.fn === 'sub') return a - b;
        if (v.fn === 'mul') {
          if (a === 0 && b === 0) return 0;
          const ka = constValue(v.a);
          const kb = constValue(v.b);
          if (a === 0 && ka !== null) return ka * b;
          if (b === 0 && kb !== null) return kb * a;
        }
        return null;
      }
      default:
        return null;
    }
  }

  /**
   * Lane 0 of an i32 tile whose lanes are affine in the column var (coefC known), computed as a
   * scalar: contiguous loads and stores then need no offset vector at all.
   */
  scalarAt(v: Value, pos: readonly Idx[]): Ref | null {
    const m = this.env.e.m;
    if (v.shape.length === 0) return m.local.get(this.env.scalarLocal(v), binaryen.i32);
    if (this.env.buffer(v)) return null;
    switch (v.op) {
      case 'arange': return m.i32.add(m.i32.const(v.start), this.idx(pos[0]!));
      case 'broadcast': return this.memoScalar(v.src, broadcastPos(v.src.shape, v.shape, pos));
      case 'reshape': return isUnitReshape(v.src.shape, v.shape) ? this.memoScalar(v.src, reshapePos(v.src.shape, v.shape, pos)) : null;
      case 'binary': {
        if (v.fn !== 'add' && v.fn !== 'sub' && v.fn !== 'mul') return null;
        const a = this.memoScalar(v.a, pos);
        const b = a && this.memoScalar(v.b, pos);
        if (!a || !b) return null;
        return v.fn === 'add' ? m.i32.add(a, b) : v.fn === 'sub' ? m.i32.sub(a, b) : m.i32.mul(a, b);
      }
      default: return null;
    }
  }

  /** Whether `scalarAt` has a form for `v` at `pos` (asked without binding anything). */
  private hasScalarForm(v: Value, pos: readonly Idx[]): boolean {
    if (v.shape.length === 0) return true;
    if (this.env.buffer(v)) return false;
    switch (v.op) {
      case 'arange': return true;
      case 'broadcast': return this.hasScalarForm(v.src, broadcastPos(v.src.shape, v.shape, pos));
      case 'reshape': return isUnitReshape(v.src.shape, v.shape) && this.hasScalarForm(v.src, reshapePos(v.src.shape, v.shape, pos));
      case 'binary': return (v.fn === 'add' || v.fn === 'sub' || v.fn === 'mul') && this.hasScalarForm(v.a, pos) && this.hasScalarForm(v.b, pos);
      default: return false;
    }
  }

  private memoScalar(v: Value, pos: readonly Idx[]): Ref | null {
    if (v.shape.length === 0) return this.scalarAt(v, pos);
    // An unrolled copy's column shift is part of the key: its lane 0 is another element, and
    // address code run as copy 0 (atCopy0, in a rare branch that caches nothing) must not read
    // copy k's value.
    const key = `s${v.id}:${pos.join('')}${this.colShift ? `+${this.colShift}` : ''}`;
    const hit = this.cache.get(key);
    if (hit) return this.env.e.m.local.get(hit.local, hit.type);
    const x = this.scalarAt(v, pos);
    if (!x) return null;
    // Lane-0 values of the vectorised column var: a scalar at the level of pos.
    return this.memo(key, pos, binaryen.i32, () => x);
  }

  /**
   * A scalar i32 that is nonzero iff all four lanes of the bool tile `mask` at `pos` are true,
   * for masks built of lane-invariant bools, `and`s and i32 compares of a contiguous index with
   * a lane-invariant bound (`cols < N`); null for anything else. A masked access then takes its
   * vector path on a scalar compare and builds the lane mask only for the partial vector.
   */
  private allLanes(mask: Value, pos: readonly Idx[]): Ref | null {
    const m = this.env.e.m;
    if (mask.shape.length === 0) return m.local.get(this.env.scalarLocal(mask), binaryen.i32);
    if (this.env.buffer(mask)) return null;
    switch (mask.op) {
      case 'broadcast': {
        const sp = broadcastPos(mask.src.shape, mask.shape, pos);
        return sp.includes('c') ? this.allLanes(mask.src, sp) : this.evalAs(mask.src, sp, 's');
      }
      case 'reshape':
        return isUnitReshape(mask.src.shape, mask.shape) ? this.allLanes(mask.src, reshapePos(mask.src.shape, mask.shape, pos)) : null;
      case 'binary': {
        if (mask.fn === 'and') {
          const a = this.allLanes(mask.a, pos);
          const b = a && this.allLanes(mask.b, pos);
          return a && b ? m.i32.and(a, b) : null;
        }
        const lc = this.laneCompare(mask, pos);
        if (!lc) return null;
        const { rising, a0, b0, small } = lc;
        // The extreme lane decides: lane 3 of the rising side where it must stay small, lane 0
        // where it must stay large. Lane 3 must not wrap past 2^31 - 1 (then: not all).
        const r0 = rising === 'a' ? a0 : b0;
        // Lane 0 of the rising side again (a fresh expression: one may not sit in two places).
        const noWrap = m.i32.le_s(this.memoScalar(rising === 'a' ? mask.a : mask.b, pos)!, m.i32.const(0x7ffffffc));
        const r = small ? m.i32.add(r0, m.i32.const(3)) : r0;
        const [x, y] = rising === 'a' ? [r, b0] : [a0, r];
        const cmp = { lt: m.i32.lt_s, le: m.i32.le_s, gt: m.i32.gt_s, ge: m.i32.ge_s }[mask.fn as 'lt' | 'le' | 'gt' | 'ge'].call(m.i32, x, y);
        return m.i32.and(noWrap, cmp);
      }
      default:
        return null;
    }
  }

  /**
   * An i32 compare (lt, le, gt, ge) of which one side walks the lanes (lane l is lane 0 + l)
   * and the other is the same in every lane: which side rises, both sides' lane-0 values, and
   * whether the rising side must stay below the other (`small`: cols < N, N > cols, the <=
   * forms). Null for any other compare.
   */
  private laneCompare(mask: Value, pos: readonly Idx[]): { rising: 'a' | 'b'; a0: Ref; b0: Ref; small: boolean } | null {
    if (mask.op !== 'binary' || mask.a.dtype !== 'i32' || !['lt', 'le', 'gt', 'ge'].includes(mask.fn)) return null;
    const ca = this.coefC(mask.a, pos), cb = this.coefC(mask.b, pos);
    const rising = ca === 1 && cb === 0 ? 'a' : ca === 0 && cb === 1 ? 'b' : null;
    if (!rising) return null;
    const a0 = this.memoScalar(mask.a, pos), b0 = a0 && this.memoScalar(mask.b, pos);
    if (!a0 || !b0) return null;
    return { rising, a0, b0, small: (rising === 'a') === (mask.fn === 'lt' || mask.fn === 'le') };
  }

  /**
   * Whether the vector access or `where` under `mask` at `pos` runs its all-lanes path with no
   * test (the fast pass of a split loop); in the masked pass, records the mask for the loop's
   * split test.
   */
  private knownFull(mask: Value, pos: readonly Idx[]): boolean {
    const sp = this.split;
    if (!sp || this.modeAt(pos) !== 'v') return false;
    if (!this.inRareBranch(() => this.allLanes(mask, pos) !== null)) return false;
    if (sp.assumeFull) return true;
    const leaves: { mask: Value; pos: readonly Idx[] }[] = [];
    this.maskLeaves(mask, pos, leaves);
    for (const l of leaves) sp.tests.set(`${l.mask.id}@${l.pos.join('')}`, l);
    return false;
  }

  /**
   * The leaves of an all-lanes-testable mask (see `allLanes`): the `and`s taken apart and the
   * broadcasts and unit reshapes followed, so that one compare shared by several accesses is
   * tested once, and lane-invariant leaves (no 'c' in their position) once per loop.
   */
  private maskLeaves(mask: Value, pos: readonly Idx[], out: { mask: Value; pos: readonly Idx[] }[]): void {
    if (mask.shape.length > 0 && mask.op === 'broadcast') {
      const sp = broadcastPos(mask.src.shape, mask.shape, pos);
      if (sp.includes('c')) this.maskLeaves(mask.src, sp, out);
      else out.push({ mask: mask.src, pos: sp });
    } else if (mask.shape.length > 0 && mask.op === 'reshape') {
      this.maskLeaves(mask.src, reshapePos(mask.src.shape, mask.shape, pos), out);
    } else if (mask.shape.length > 0 && mask.op === 'binary' && mask.fn === 'and') {
      this.maskLeaves(mask.a, pos, out);
      this.maskLeaves(mask.b, pos, out);
    } else {
      out.push({ mask, pos });
    }
  }

  /**
   * For a leaf compare whose rising side must stay below the other (`cols < N`, `N > cols`, and
   * the <= forms): the first column var value, in i64, at which its four lanes are no longer all
   * true, computed from the column var's current value 0 (the leaf is true for every vector
   * before it, false from it on); null for other leaves. Exact in i64, so no lane wraps where
   * it says true.
   */
  private leafLimit(leaf: { mask: Value; pos: readonly Idx[] }): Ref | null {
    const m = this.env.e.m;
    const lc = this.laneCompare(leaf.mask, leaf.pos);
    if (!lc || !lc.small) return null;
    const [r0, o] = lc.rising === 'a' ? [lc.a0, lc.b0] : [lc.b0, lc.a0];
    // All lanes true at column c iff r0 + c + 3 < o (or <= for the inclusive compares).
    const strict = leaf.mask.op === 'binary' && (leaf.mask.fn === 'lt' || leaf.mask.fn === 'gt');
    return m.i64.sub(m.i64.sub(m.i64.extend_s(o), m.i64.extend_s(r0)), m.i64.const(strict ? 3 : 2));
  }

  /** A leaf's test (see `maskLeaves`): the leaf's own all-lanes test, or its scalar value. */
  private leafTest(leaf: { mask: Value; pos: readonly Idx[] }): Ref {
    if (leaf.mask.shape.length > 0 && !leaf.pos.includes('c')) return this.evalAs(leaf.mask, leaf.pos, 's');
    return this.allLanes(leaf.mask, leaf.pos)!;
  }

  /** `make()` with new values computed in place (see `inline`): code for a rare branch. */
  private inRareBranch<T>(make: () => T): T {
    this.inline++;
    try {
      return make();
    } finally {
      this.inline--;
    }
  }

  /**
   * Per-lane byte addresses of tensor elements at `offsets` (vector mode). Contiguous offsets
   * need one scalar address (lane l is at +l*esize); others extract each lane's offset.
   */
  private lanes(offsets: Value, pos: readonly Idx[], ptrLocal: number, es: number, checked = false): {
    pre: Ref[]; laneAddr: (l: number) => Ref; laneOff: (l: number) => number; contiguous: boolean;
    /** Static byte offset of lane 0 from laneAddr(0) (an unrolled copy's, see `colShift`). */
    off: number;
    /** (checked only) lane 0's element offset when the lanes are contiguous from it. */
    base?: () => Ref;
    /** The four element offsets (when there is no `base`). */
    offs?: () => Ref;
  } {
    const e = this.env.e;
    const m = e.m;
    // A fresh constant per use: a binaryen expression belongs to one parent.
    const shift = (): Ref => m.i32.const(Math.log2(es));
    const ptr = (): Ref => m.local.get(ptrLocal, binaryen.i32);
    const contiguous = this.coefC(offsets, pos) === 1;
    if (contiguous && !checked) {
      // One address per access for all the unrolled copies: copy k's lanes sit colShift
      // elements after copy 0's, in the access's static offset (no address arithmetic of its own).
      const s = this.colShift;
      const key = `a${ptrLocal}:${offsets.id}:${pos.join('')}`;
      const atCopy0 = <T>(f: () => T): T => {
        this.colShift = 0;
        try {
          return f();
        } finally {
          this.colShift = s;
        }
      };
      if (atCopy0(() => this.cache.has(key) || this.hasScalarForm(offsets, pos))) {
        const addr = (): Ref => atCopy0(() => this.memo(key, pos, binaryen.i32, () => this.splitAddress(offsets, pos, ptrLocal, es) ?? m.i32.add(ptr(), m.i32.shl(this.memoScalar(offsets, pos)!, shift())), true));
        addr();
        return { pre: [], laneAddr: addr, laneOff: (l) => (s + l) * es, contiguous, off: s * es };
      }
    }
    const base = contiguous ? this.memoScalar(offsets, pos) : null;
    if (base) {
      // A checked kernel keeps the element offset too (the address alone cannot be checked).
      const B = checked ? e.bind(binaryen.i32, base) : undefined;
      const A = e.bind(binaryen.i32, m.i32.add(ptr(), m.i32.shl(B ? B.get() : base, shift())));
      return { pre: B ? [B.set, A.set] : [A.set], laneAddr: () => A.get(), laneOff: (l) => l * es, contiguous, off: 0, ...(B ? { base: B.get } : {}) };
    }
    const O = e.bind(binaryen.v128, this.evalAs(offsets, pos, 'v'));
    return {
      pre: [O.set],
      laneAddr: (l) => m.i32.add(ptr(), m.i32.shl(m.i32x4.extract_lane(O.get(), contiguous ? 0 : l), shift())),
      laneOff: (l) => (contiguous ? l * es : 0),
      contiguous,
      off: 0,
      offs: O.get,
    };
  }

  /**
   * A contiguous access's lane-0 address as (ptr + the offset's terms that do not move with the
   * column var, scaled), bound where those terms are (outside the column loop), plus the terms
   * that do, scaled once for every access that shares them: one add an access in the loop
   * instead of an add and a scaled add. Null when a term has no scalar form (the caller then
   * scales the whole offset).
   */
  private splitAddress(offsets: Value, pos: readonly Idx[], ptrLocal: number, es: number): Ref | null {
    const m = this.env.e.m;
    const i32 = binaryen.i32;
    const terms: { v: Value; pos: readonly Idx[]; neg: boolean; still: boolean }[] = [];
    const walk = (v: Value, p: readonly Idx[], neg: boolean): void => {
      if (v.shape.length > 0 && !this.env.buffer(v)) {
        if (v.op === 'broadcast') return walk(v.src, broadcastPos(v.src.shape, v.shape, p), neg);
        if (v.op === 'reshape' && isUnitReshape(v.src.shape, v.shape)) return walk(v.src, reshapePos(v.src.shape, v.shape, p), neg);
        if (v.op === 'binary' && (v.fn === 'add' || v.fn === 'sub')) {
          walk(v.a, p, neg);
          walk(v.b, p, v.fn === 'sub' ? !neg : neg);
          return;
        }
      }
      terms.push({ v, pos: p, neg, still: this.coefC(v, p) === 0 });
    };
    walk(offsets, pos, false);
    const moving = terms.filter((t) => !t.still);
    const still = terms.filter((t) => t.still).map((t) => ({ ...t, pos: t.pos.map((x) => (x === 'c' ? '0' : x)) }));
    // Nothing to hoist, or a moving term that is not just +column: the plain form.
    if (!still.length || moving.some((t) => t.neg)) return null;
    const sum = (ts: readonly { v: Value; pos: readonly Idx[]; neg: boolean }[]): Ref | null => {
      let acc: Ref | null = null;
      for (const t of ts) {
        const x = this.memoScalar(t.v, t.pos);
        if (!x) return null;
        acc = acc === null ? (t.neg ? m.i32.sub(m.i32.const(0), x) : x) : t.neg ? m.i32.sub(acc, x) : m.i32.add(acc, x);
      }
      return acc;
    };
    const shift = (): Ref => m.i32.const(Math.log2(es));
    const termKey = (ts: readonly { v: Value; pos: readonly Idx[]; neg: boolean }[]): string => ts.map((t) => `${t.neg ? '-' : '+'}${t.v.id}@${t.pos.join('')}`).join('');
    const stillPos = pos.map((x) => (x === 'c' ? '0' : x));
    // Every term has a scalar form (the caller asked hasScalarForm); null only defends that.
    const stillSum = sum(still);
    const movingSum = stillSum && sum(moving);
    if (!stillSum || !movingSum) return null;
    // The keys hold the access's position too: a local is bound at its position's loop level,
    // and an access elsewhere (a 1-D tile inside a 'cr' nest) must not read one bound deeper.
    const base = this.memo(`ab${ptrLocal}:${es}:${termKey(still)}@${stillPos.join('')}`, stillPos, i32, () => m.i32.add(m.local.get(ptrLocal, i32), m.i32.shl(stillSum, shift())));
    const col = this.memo(`ac${es}:${termKey(moving)}@${pos.join('')}`, pos, i32, () => m.i32.shl(movingSum, shift()));
    return m.i32.add(base, col);
  }

  /**
   * Bounds checks of a vector access (checked kernels only; otherwise every part is empty).
   * `all`: the check when every lane is accessed (one unsigned compare when the lanes run
   * contiguously from a known lane 0, else one vector compare); `lane(l)`: the check of lane l
   * alone, for the masked paths, which put it inside the lane's own `if`.
   */
  private vectorChecks(site: LoadV | StoreI, size: TensorSize | undefined, ln: { base?: () => Ref; offs?: () => Ref }): {
    all: Ref[]; lane: (l: number) => Ref[];
  } {
    const c = this.env.checks;
    if (!c || size === undefined) return { all: [], lane: () => [] };
    const m = this.env.e.m;
    const id = c.site(site);
    const n = (): Ref => m.local.get(size.n, binaryen.i32);
    const base = ln.base;
    const laneOff = base ? (l: number) => (): Ref => m.i32.add(base(), m.i32.const(l)) : (l: number) => (): Ref => m.i32x4.extract_lane(ln.offs!(), l);
    return {
      all: [base ? c.run4(id, base, () => m.local.get(size.run4, binaryen.i32), n) : c.lanes(id, ln.offs!, n)],
      lane: (l) => [c.scalar(id, laneOff(l), n)],
    };
  }

  /** A scalar access's offset, bound once when it is checked; the check itself (or nothing). */
  private checkScalar(site: LoadV | StoreI, size: TensorSize | undefined, offs: Ref): { off: Ref; check: Ref[]; pre: Ref[] } {
    const c = this.env.checks;
    if (!c || size === undefined) return { off: offs, check: [], pre: [] };
    const m = this.env.e.m;
    const O = this.env.e.bind(binaryen.i32, offs);
    return { off: O.get(), pre: [O.set], check: [c.scalar(c.site(site), O.get, () => m.local.get(size.n, binaryen.i32))] };
  }

  private load(v: LoadV, pos: readonly Idx[], mode: Mode): Ref {
    const e = this.env.e;
    const m = e.m;
    const t = this.env.tensor(v.ptr);
    const es = ESIZE[t.dtype];
    const ptr = (): Ref => m.local.get(t.local, binaryen.i32);
    if (mode === 's') {
      const { off, pre, check } = this.checkScalar(v, t.size, this.evalAs(v.offsets, pos, mode));
      const addr = m.i32.add(ptr(), m.i32.shl(off, m.i32.const(Math.log2(es))));
      const ld = check.length ? m.block(null, [...check, scalarLoad(e, t.dtype, addr)], wasmType(v.dtype, 's')) : scalarLoad(e, t.dtype, addr);
      if (!v.mask) return pre.length ? m.block(null, [...pre, ld], wasmType(v.dtype, 's')) : ld;
      const other = v.other ? this.evalAs(v.other, pos, 's') : scalarZero(e, v.dtype);
      const sel = m.if(this.evalAs(v.mask, pos, 's'), ld, other);
      return pre.length ? m.block(null, [...pre, sel], wasmType(v.dtype, 's')) : sel;
    }
    const ln = this.lanes(v.offsets, pos, t.local, es, t.size !== undefined);
    const { pre, laneAddr, laneOff, contiguous, off } = ln;
    const check = this.vectorChecks(v, t.size, ln);
    const full = (): Ref => {
      const a = laneAddr(0);
      if (t.dtype === 'f16' || t.dtype === 'bf16') return loadHalf4(e, a, t.dtype, off);
      return m.v128.load(off, 4, a);
    };
    const gather = (init: Ref, M?: () => Ref): Ref => {
      const R = e.local(binaryen.v128);
      const stmts: Ref[] = [m.local.set(R, init)];
      for (let l = 0; l < 4; l++) {
        const val = scalarLoad(e, t.dtype, laneAddr(l), laneOff(l));
        const set = m.local.set(R, v.dtype === 'f32'
          ? m.f32x4.replace_lane(m.local.get(R, binaryen.v128), l, val)
          : m.i32x4.replace_lane(m.local.get(R, binaryen.v128), l, val));
        const lane = M ? check.lane(l) : [];
        stmts.push(M ? m.if(m.i32x4.extract_lane(M(), l), lane.length ? m.block(null, [...lane, set]) : set) : set);
      }
      stmts.push(m.local.get(R, binaryen.v128));
      return m.block(null, stmts, binaryen.v128);
    };
    if (!v.mask) {
      return m.block(null, [...pre, ...check.all, contiguous ? full() : gather(m.v128.const(new Array(16).fill(0)))], binaryen.v128);
    }
    const fullChecked = (): Ref => (check.all.length ? m.block(null, [...check.all, full()], binaryen.v128) : full());
    if (contiguous && this.knownFull(v.mask, pos)) return m.block(null, [...pre, fullChecked()], binaryen.v128);
    const all = contiguous ? this.allLanes(v.mask, pos) : null;
    if (all) {
      // All four lanes valid, known from a scalar compare: the vector load, and no lane mask.
      const partial = this.inRareBranch(() => {
        const Mk = e.bind(binaryen.v128, this.evalAs(v.mask!, pos, 'v'));
        const other = v.other ? this.evalAs(v.other, pos, 'v') : m.v128.const(new Array(16).fill(0));
        return m.block(null, [Mk.set, gather(other, Mk.get)], binaryen.v128);
      });
      return m.block(null, [...pre, m.if(all, fullChecked(), partial)], binaryen.v128);
    }
    const Mk = e.bind(binaryen.v128, this.evalAs(v.mask, pos, 'v'));
    const other = v.other ? this.evalAs(v.other, pos, 'v') : m.v128.const(new Array(16).fill(0));
    // Tails: only lanes whose mask is set are read, so a load never reads past a tensor's end.
    // Checked: lanes that are read are checked, in the all-lanes branch at once, else one by one.
    const body = contiguous ? m.if(m.i32x4.all_true(Mk.get()), fullChecked(), gather(other, Mk.get)) : gather(other, Mk.get);
    return m.block(null, [...pre, Mk.set, body], binaryen.v128);
  }

  private rand(v: RandV, pos: readonly Idx[], mode: Mode): Ref {
    const m = this.env.e.m;
    const seed = this.eval(v.seed, []);
    const offs = this.evalAs(v.offsets, pos, mode);
    const seedMix = m.i32.mul(seed, m.i32.const(0x85ebca77 | 0));
    if (mode === 's') {
      const e = this.env.e;
      const X = e.local(binaryen.i32);
      const g = (): Ref => m.local.get(X, binaryen.i32);
      const s = (x: Ref): Ref => m.local.set(X, x);
      return m.block(null, [
        s(m.i32.add(m.i32.mul(offs, m.i32.const(0x9e3779b1 | 0)), seedMix)),
        s(m.i32.xor(g(), m.i32.shr_u(g(), m.i32.const(16)))),
        s(m.i32.mul(g(), m.i32.const(0x7feb352d))),
        s(m.i32.xor(g(), m.i32.shr_u(g(), m.i32.const(15)))),
        s(m.i32.mul(g(), m.i32.const(0x846ca68b | 0))),
        s(m.i32.xor(g(), m.i32.shr_u(g(), m.i32.const(16)))),
        m.f32.mul(m.f32.convert_s.i32(m.i32.shr_u(g(), m.i32.const(8))), m.f32.const(2 ** -24)),
      ], binaryen.f32);
    }
    const e = this.env.e;
    const X = e.local(binaryen.v128);
    const g = (): Ref => m.local.get(X, binaryen.v128);
    const s = (x: Ref): Ref => m.local.set(X, x);
    const k = (c: number): Ref => m.i32x4.splat(m.i32.const(c | 0));
    return m.block(null, [
      s(m.i32x4.add(m.i32x4.mul(offs, k(0x9e3779b1)), m.i32x4.splat(seedMix))),
      s(m.v128.xor(g(), m.i32x4.shr_u(g(), m.i32.const(16)))),
      s(m.i32x4.mul(g(), k(0x7feb352d))),
      s(m.v128.xor(g(), m.i32x4.shr_u(g(), m.i32.const(15)))),
      s(m.i32x4.mul(g(), k(0x846ca68b))),
      s(m.v128.xor(g(), m.i32x4.shr_u(g(), m.i32.const(16)))),
      m.f32x4.mul(m.f32x4.convert_i32x4_s(m.i32x4.shr_u(g(), m.i32.const(8))), m.f32x4.splat(m.f32.const(2 ** -24))),
    ], binaryen.v128);
  }

  /** Statement storing `value` at tensor offsets, honouring the mask (never writes a masked lane). */
  store(s: StoreI, pos: readonly Idx[]): Ref {
    const { offsets, value, mask } = s;
    const e = this.env.e;
    const m = e.m;
    const t = this.env.tensor(s.ptr);
    const es = ESIZE[t.dtype];
    const ptr = (): Ref => m.local.get(t.local, binaryen.i32);
    const mode = this.modeAt(pos);
    const valueDt = t.dtype === 'i32' ? 'i32' : 'f32';
    const val = emitCast(e, value.dtype, valueDt, mode, this.evalAs(value, pos, mode));
    if (mode === 's') {
      const { off, pre, check } = this.checkScalar(s, t.size, this.evalAs(offsets, pos, mode));
      const addr = m.i32.add(ptr(), m.i32.shl(off, m.i32.const(Math.log2(es))));
      const st = check.length ? m.block(null, [...check, scalarStore(e, t.dtype, addr, val)]) : scalarStore(e, t.dtype, addr, val);
      const guarded = mask ? m.if(this.evalAs(mask, pos, 's'), st) : st;
      return pre.length ? m.block(null, [...pre, guarded]) : guarded;
    }
    const V = e.bind(binaryen.v128, val);
    const ln = this.lanes(offsets, pos, t.local, es, t.size !== undefined);
    const { pre, laneAddr, laneOff, contiguous, off } = ln;
    const check = this.vectorChecks(s, t.size, ln);
    const full = (): Ref => {
      const a = laneAddr(0);
      if (t.dtype === 'f16' || t.dtype === 'bf16') return storeHalf4(e, a, V.get(), t.dtype, off);
      return m.v128.store(off, 4, a, V.get());
    };
    const scatter = (M?: () => Ref): Ref => {
      const stmts: Ref[] = [];
      for (let l = 0; l < 4; l++) {
        const lane = valueDt === 'f32' ? m.f32x4.extract_lane(V.get(), l) : m.i32x4.extract_lane(V.get(), l);
        const st = scalarStore(e, t.dtype, laneAddr(l), lane, laneOff(l));
        const ck = M ? check.lane(l) : [];
        stmts.push(M ? m.if(m.i32x4.extract_lane(M(), l), ck.length ? m.block(null, [...ck, st]) : st) : st);
      }
      return m.block(null, stmts);
    };
    // Checked kernels check every lane before the first byte is written.
    if (!mask) return m.block(null, [V.set, ...pre, ...check.all, contiguous ? full() : scatter()]);
    const fullChecked = (): Ref => (check.all.length ? m.block(null, [...check.all, full()]) : full());
    if (contiguous && this.knownFull(mask, pos)) return m.block(null, [V.set, ...pre, fullChecked()]);
    const all = contiguous ? this.allLanes(mask, pos) : null;
    if (all) {
      const partial = this.inRareBranch(() => {
        const Mk = e.bind(binaryen.v128, this.evalAs(mask, pos, 'v'));
        return m.block(null, [Mk.set, scatter(Mk.get)]);
      });
      return m.block(null, [V.set, ...pre, m.if(all, fullChecked(), partial)]);
    }
    const Mk = e.bind(binaryen.v128, this.evalAs(mask, pos, 'v'));
    const body = contiguous ? m.if(m.i32x4.all_true(Mk.get()), fullChecked(), scatter(Mk.get)) : scatter(Mk.get);
    return m.block(null, [V.set, ...pre, Mk.set, body]);
  }

  /**
   * The fast part of a split loop (see `build`): `fullStmts` (the body with the masks of
   * `leaves` taken as all true) from the column var's current value 0 up to the end computed
   * before the loop from prefix leaves, or while the leaves' test holds; skipped when a
   * lane-invariant leaf is false. Leaves the column var at the first vector it did not take.
   */
  private fastLoop(leaves: readonly { mask: Value; pos: readonly Idx[] }[], fullStmts: Ref[], copies: number, id: number): Ref {
    const m = this.env.e.m;
    const i32 = binaryen.i32;
    const i64 = binaryen.i64;
    const iv = this.vars[this.innerVar]!;
    const ivGet = (): Ref => m.local.get(iv.local, i32);
    const and = (refs: Ref[]): Ref => refs.reduce((a, b) => m.i32.and(a, b));
    // Lane-invariant leaves (row masks) hold for the whole loop or not at all: tested once.
    const once = leaves.filter((l) => l.mask.shape.length === 0 || !l.pos.includes('c'));
    const rising = leaves.filter((l) => !once.includes(l));
    const limits = this.inRareBranch(() => rising.map((l) => this.leafLimit(l)));
    const T = this.env.e.local(i32);
    const getT = (): Ref => m.local.get(T, i32);
    // The loop's stop: iv >= T (T computed before it), or iv >= extent and a test each iteration.
    const before: Ref[] = [];
    const each: Ref[] = [];
    let stop = m.i32.const(iv.extent);
    if (rising.length && limits.every((x) => x !== null)) {
      // Prefix leaves only (cols < N, ...): T = min(extent, each limit less the unrolled copies' reach), at least 0.
      const L = this.env.e.local(i64);
      const getL = (): Ref => m.local.get(L, i64);
      before.push(m.local.set(L, m.i64.const(iv.extent)));
      for (const lim of limits) {
        const x = this.env.e.bind(i64, m.i64.sub(lim!, m.i64.const(iv.step * (copies - 1))));
        before.push(x.set, m.local.set(L, m.select(m.i64.lt_s(x.get(), getL()), x.get(), getL())));
      }
      before.push(m.local.set(T, m.i32.wrap(m.select(m.i64.lt_s(getL(), m.i64.const(0)), m.i64.const(0), getL()))));
      stop = getT();
    } else if (rising.length) {
      // Some leaf is not a prefix (cols >= lo): test every copy's vector at the top of each iteration.
      for (let k = 0; k < copies; k++) {
        if (k > 0) each.push(m.local.set(iv.local, m.i32.add(ivGet(), m.i32.const(iv.step))));
        const all = this.inRareBranch(() => and(rising.map((l) => this.leafTest(l))));
        each.push(m.local.set(T, k === 0 ? all : m.i32.and(getT(), all)));
      }
      if (copies > 1) each.push(m.local.set(iv.local, m.i32.sub(ivGet(), m.i32.const(iv.step * (copies - 1)))));
    }
    const done = `fdone${id}`;
    const label = `fast${id}`;
    const loop = m.block(done, [...before, m.loop(label, m.block(null, [
      m.br(done, m.i32.ge_s(ivGet(), stop)),
      ...each,
      ...(each.length ? [m.br(done, m.i32.eqz(getT()))] : []),
      ...fullStmts,
      m.local.set(iv.local, m.i32.add(ivGet(), m.i32.const(iv.step))),
      m.br(label),
    ]))]);
    return once.length ? m.if(this.inRareBranch(() => and(once.map((l) => this.leafTest(l)))), loop) : loop;
  }

  /**
   * Assemble the nest around `body` (statements run per inner iteration, after `inner`). Given
   * a generator, a vectorised inner loop is unrolled twice: two independent copies per
   * iteration let the CPU overlap the long dependency chains of vector math (measured 1.6-2x
   * on exp/tanh chains).
   */
  build(body: Ref[] | (() => Ref[]) = []): Ref {
    const m = this.env.e.m;
    const i32 = binaryen.i32;
    let innerStmts: Ref[];
    const iv = this.vars[this.innerVar]!;
    const ivGet = (): Ref => m.local.get(iv.local, i32);
    // Between unrolled copies the shared addresses stay (see `colShift`); between passes all go.
    const forget = (all = true): void => {
      for (const [key, hit] of this.cache) if (hit.inner && (all || !hit.keep)) this.cache.delete(key);
    };
    const id = nextLabel++;
    let fast: Ref | undefined;
    let whole = false;
    if (typeof body === 'function') {
      const vectors = iv.extent / iv.step;
      const vecCols = this.innerVar === 'c' && this.vec;
      const twice = vecCols && vectors % 2 === 0 ? 2 : 1;
      // A short row is unrolled whole unless masks along its lanes need the split loops below
      // (then eight masked copies would be mostly code): tried first, redone twice-unrolled.
      let copies = vecCols && vectors <= FULL_UNROLL_VECTORS ? vectors : twice;
      const unrolled = (): Ref[] => {
        const stmts: Ref[] = [];
        try {
          for (let k = 0; k < copies; k++) {
            if (k > 0) {
              // Copy k works k vectors on: inner-level values are recomputed, addresses shared.
              forget(false);
              this.colShift = k * iv.step;
            }
            const b = body();
            stmts.push(...this.inner.splice(0), ...b);
          }
        } finally {
          this.colShift = 0;
        }
        if (copies > 1) stmts.push(m.local.set(iv.local, m.i32.add(ivGet(), m.i32.const(iv.step * (copies - 1)))));
        return stmts;
      };
      // Loop splitting: when masks along the lanes have scalar all-lanes tests (cols < N, ...),
      // the loop first runs a copy of the body with every such mask taken as all true, for as
      // long as one combined test says so, then the masked body for the rest. For a prefix mask
      // that is the whole vectors, then the tail: one test an iteration instead of one an access.
      const sp = this.vec && this.innerVar === 'c' ? { assumeFull: false, tests: new Map<string, { mask: Value; pos: readonly Idx[] }>() } : undefined;
      this.split = sp;
      try {
        innerStmts = unrolled();
        if (sp && sp.tests.size && copies > twice) {
          forget();
          sp.tests.clear();
          copies = twice;
          innerStmts = unrolled();
        }
        whole = vecCols && copies === vectors && !sp?.tests.size;
        if (sp && sp.tests.size) {
          sp.assumeFull = true;
          forget();
          const fullStmts = unrolled();
          forget();
          fast = this.fastLoop([...sp.tests.values()], fullStmts, copies, id);
        }
      } finally {
        this.split = undefined;
      }
    } else {
      innerStmts = [...this.inner, ...body];
    }
    const loop = (v: LoopVar, stmts: Ref[], label: string): Ref[] => {
      const i = v.local;
      return [
        m.local.set(i, m.i32.const(0)),
        m.loop(label, m.block(null, [
          ...stmts,
          m.local.set(i, m.i32.add(m.local.get(i, binaryen.i32), m.i32.const(v.step))),
          m.br(label, m.i32.lt_s(m.local.get(i, binaryen.i32), m.i32.const(v.extent))),
        ])),
      ];
    };
    let nest: Ref[];
    if (fast) {
      // The fast part leaves the var at the first vector it did not take; the masked part runs
      // from there (possibly not at all).
      const done = `sdone${id}`;
      const label = `in${id}`;
      nest = [
        m.local.set(iv.local, m.i32.const(0)),
        fast,
        m.block(done, [m.loop(label, m.block(null, [
          m.br(done, m.i32.ge_s(ivGet(), m.i32.const(iv.extent))),
          ...innerStmts,
          m.local.set(iv.local, m.i32.add(ivGet(), m.i32.const(iv.step))),
          m.br(label),
        ]))]),
      ];
    } else if (whole) {
      // Unrolled whole: one pass of the copies covers the row, so no loop around them.
      nest = [m.local.set(iv.local, m.i32.const(0)), ...innerStmts];
    } else {
      nest = loop(iv, innerStmts, `in${id}`);
    }
    if (this.outer) nest = loop(this.vars[this.outer]!, [...this.outerPre, ...nest, ...this.outerPost], `out${id}`);
    return m.block(null, [...this.pre, ...nest]);
  }
}

let nextLabel = 0;

/**
 * Whether `z` is x - max(x) along an axis, broadcast back over that axis (softmax's shift):
 * then z <= 0 or NaN in every lane, as f32 subtraction is monotonic.
 */
function belowItsMax(z: Value): boolean {
  if (z.op !== 'binary' || z.fn !== 'sub' || z.dtype !== 'f32' || z.b.op !== 'broadcast') return false;
  let src = z.b.src;
  if (src.op === 'reshape') {
    const r = src;
    src = r.src;
    if (src.op !== 'reduce') return false;
    // keepdims: the reduced axis back as 1, nothing else moved.
    const want = [...z.shape];
    want[src.axis] = 1;
    if (r.shape.length !== want.length || r.shape.some((d, i) => d !== want[i])) return false;
  } else if (src.shape.length !== 0) {
    return false;
  }
  return src.op === 'reduce' && src.fn === 'max' && src.src.id === z.a.id;
}

/**
 * A vectorised inner loop this many vectors long or shorter is unrolled whole (rows of a
 * [R, 32] tile: eight copies and no loop), longer ones twice.
 */
const FULL_UNROLL_VECTORS = 8;

/** Position of a broadcast's source (right-aligned; size-1 source dims read index 0). */
export function broadcastPos(src: Shape, dst: Shape, pos: readonly Idx[]): Idx[] {
  const off = dst.length - src.length;
  return src.map((d, j) => (d === 1 ? '0' : pos[j + off]!));
}

/** Position of a unit-dim reshape's source: the non-unit axes correspond in order. */
export function reshapePos(src: Shape, dst: Shape, pos: readonly Idx[]): Idx[] {
  const carried = dst.map((d, j) => ({ d, p: pos[j]! })).filter((x) => x.d !== 1).map((x) => x.p);
  let k = 0;
  return src.map((d) => (d === 1 ? '0' : carried[k++]!));
}

/** The value of a constant, or of a broadcast constant; null for anything else. */
function constValue(v: Value): number | null {
  if (v.op === 'const') return v.value;
  if (v.op === 'broadcast') return constValue(v.src);
  return null;
}

function scalarZero(e: Emit, dt: DType): Ref {
  return dt === 'f32' ? e.m.f32.const(0) : e.m.i32.const(0);
}

/** One element of storage dtype `dt` at `addr` as its compute value (f32 or i32). */
export function scalarLoad(e: Emit, dt: StorageDType, addr: Ref, offset = 0): Ref {
  const m = e.m;
  switch (dt) {
    case 'f32': return m.f32.load(offset, 4, addr);
    case 'i32': return m.i32.load(offset, 4, addr);
    case 'bf16': return m.f32.reinterpret(m.i32.shl(m.i32.load16_u(offset, 2, addr), m.i32.const(16)));
    case 'f16': return m.f32x4.extract_lane(vF16ToF32(e, m.i32x4.splat(m.i32.load16_u(offset, 2, addr))), 0);
  }
}

/** Store one compute value as storage dtype `dt` (f16/bf16 rounded to nearest even). */
export function scalarStore(e: Emit, dt: StorageDType, addr: Ref, value: Ref, offset = 0): Ref {
  const m = e.m;
  switch (dt) {
    case 'f32': return m.f32.store(offset, 4, addr, value);
    case 'i32': return m.i32.store(offset, 4, addr, value);
    case 'bf16': return m.i32.store16(offset, 2, addr, m.i32x4.extract_lane(vF32ToBf16(e, m.f32x4.splat(value)), 0));
    case 'f16': return m.i32.store16(offset, 2, addr, m.i32x4.extract_lane(vF32ToF16(e, m.f32x4.splat(value)), 0));
  }
}

