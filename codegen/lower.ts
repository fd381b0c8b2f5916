/**
 * @fileoverview Lowers one specialised kernel (the IR of one program) to a binaryen function.
 * Scalars live in locals and are computed at their position; tiles are fused into the loops of
 * the statements that consume them (tile.ts), except those the plan materialises into scratch.
 */
import binaryen from 'binaryen';
import {
  isValue, numel, type DotV, type ForI, type IfI, type Instr, type KernelIR, type LoadV, type ReduceV, type Value,
} from '../src/ir/ir.js';
import { LimitError, MAX_SCRATCH_BYTES } from '../src/ir/limits.js';
import { BoundsChecks } from './bounds.js';
import type { Emit, Ref } from './emit.js';
import { emitDot, type MatBuf } from './microkernels/gemm.js';
import { emitBinary, wasmType } from './ops.js';
import { lazyOperands, planKernel, type Plan } from './plan.js';
import { TileLoop, type Buffer, type TensorSize, type TileEnv } from './tile.js';
import { constValue, type Coef } from './affine.js';

/** Fixed leading params of the program function: p0 p1 p2 g0 g1 g2 sbase. */
export const PROGRAM_FIXED_PARAMS = 7;

let nextLabel = 0;

/** Scratch bytes above which a kernel is refused (tiles live in scratch; keep them in cache). */
export { MAX_SCRATCH_BYTES };

/** Where a reduction's result goes: a scalar local, or a buffer for a tile. */
type ReduceOut = { kind: 'local'; local: number } | { kind: 'buf'; buf: Buffer };

/** Materialised ops written by one plain loop over their shape (a reduction can ride along). */
const PLAIN_MATERIALISE = new Set(['load', 'unary', 'binary', 'where', 'cast', 'broadcast', 'rand', 'arange']);

export class KernelLowering implements TileEnv {
  readonly sbase = 6;
  private readonly plan: Plan;
  private readonly locals = new Map<number, number>();
  private readonly buffers = new Map<number, Buffer>();
  /** Materialised value id -> the reductions of it computed in its own loop (see `block`). */
  private readonly fusedReduces = new Map<number, ReduceV[]>();
  /** Reductions already computed in their source's loop: nothing left to emit at their own place. */
  private readonly fusedDone = new Set<number>();
  private top = 0;
  /** Most scratch in use at any point (buffers of finished loop bodies and branches are reused). */
  private peak = 0;

  /** Present in a checked kernel: every tensor access is bounds-checked (see bounds.ts). */
  readonly checks?: BoundsChecks;
  /** Each tensor parameter's element count (checked kernels: hidden params after the rest). */
  private readonly sizes = new Map<number, TensorSize>();

  /**
   * @param checked bounds-check every load and store; the element counts of the tensor params
   *   are then extra i32 params after the kernel's own, in param order
   * @param scratchHeader bytes of scratch header below the program's scratch base
   */
  constructor(readonly e: Emit, readonly ir: KernelIR, opts: { checked?: boolean; scratchHeader?: number } = {}) {
    this.plan = planKernel(ir, { inPlaceDots: !opts.checked });
    if (opts.checked) {
      this.checks = new BoundsChecks(e, this.sbase, opts.scratchHeader ?? 0);
      ir.params.forEach((p, i) => {
        if (p.kind === 'tensor') this.sizes.set(i, { n: PROGRAM_FIXED_PARAMS + ir.params.length + this.sizes.size, run4: e.local(binaryen.i32) });
      });
    }
  }

  /** Scratch bytes one program needs (tile buffers), 64-byte aligned. */
  get scratchBytes(): number {
    return Math.ceil(Math.max(this.peak, this.top) / 64) * 64;
  }

  /** Give back every buffer reserved since `mark` (the values they held are out of scope). */
  private release(mark: number): void {
    this.peak = Math.max(this.peak, this.top);
    this.top = mark;
  }

  scalarLocal(v: Value): number {
    const l = this.locals.get(v.id);
    if (l === undefined) throw new Error(`codegen: scalar %${v.id} (${v.op}) used before it is defined`);
    return l;
  }

  buffer(v: Value): Buffer | undefined {
    return this.buffers.get(v.id);
  }

  addOnlyProduct(v: Value): boolean {
    return this.plan.addOnlyProducts.has(v.id);
  }

  tensor(index: number): { local: number; dtype: 'f32' | 'f16' | 'bf16' | 'i32'; size?: TensorSize } {
    const p = this.ir.params[index];
    if (!p || p.kind !== 'tensor') throw new Error(`codegen: param ${index} is not a tensor`);
    const size = this.sizes.get(index);
    return { local: PROGRAM_FIXED_PARAMS + index, dtype: p.dtype, ...(size !== undefined ? { size } : {}) };
  }

  /** The program body. */
  lower(): Ref {
    const body = this.block(this.ir.body);
    const checks = this.checks;
    if (checks) {
      const m = this.e.m;
      for (const sz of this.sizes.values()) body.unshift(m.local.set(sz.run4, checks.run4Limit(() => m.local.get(sz.n, binaryen.i32))));
    }
    if (this.scratchBytes > MAX_SCRATCH_BYTES) {
      throw new LimitError('MAX_SCRATCH_BYTES', `kernel '${this.ir.name}' needs ${this.scratchBytes} bytes of tile scratch per program; the limit (MAX_SCRATCH_BYTES) is ${MAX_SCRATCH_BYTES}: use smaller tiles`);
    }
    return this.e.m.block(null, body);
  }

  /** A fresh scratch buffer for a tile of `v`'s shape (not bound to any value). */
  private reserve(v: Value): Buffer {
    const buf: Buffer = { offset: this.top, shape: v.shape, pitch: v.shape[v.shape.length - 1]!, dtype: v.dtype };
    this.top += Math.ceil((numel(v.shape) * 4) / 16) * 16;
    if (this.top > MAX_SCRATCH_BYTES) {
      // Refused at the tile that crossed the limit, so the error can point at its source.
      throw new LimitError('MAX_SCRATCH_BYTES', `kernel '${this.ir.name}' needs more than ${MAX_SCRATCH_BYTES} bytes of tile scratch per program (limit MAX_SCRATCH_BYTES) at this [${v.shape.join(', ')}] tile: use smaller tiles`, v.loc);
    }
    return buf;
  }

  /** A fresh buffer that holds `v`. */
  private alloc(v: Value): Buffer {
    const buf = this.reserve(v);
    this.buffers.set(v.id, buf);
    return buf;
  }

  private newLocal(v: Value): number {
    const l = this.e.local(wasmType(v.dtype, 's'));
    this.locals.set(v.id, l);
    return l;
  }

  private block(instrs: readonly Instr[]): Ref[] {
    // A sum/max/min along the last axis of a tile that this block materialises with a plain loop
    // is folded into that loop: the elements are in registers as they are written, so the
    // reduction costs no second pass over the buffer (softmax's sum of exponentials, a norm's sums).
    for (const ins of instrs) {
      if (!isValue(ins) || ins.op !== 'reduce') continue;
      const src = ins.src;
      const def = this.plan.defSite.get(src.id);
      const lastAxis = src.shape.length === 1 || (src.shape.length === 2 && ins.axis === 1);
      if (!def || def.block !== instrs || !lastAxis || src.dtype === 'bool' || !this.plan.materialised.has(src.id)) continue;
      if (!PLAIN_MATERIALISE.has(src.op) || this.plan.dotInPlace.has(src.id)) continue;
      const list = this.fusedReduces.get(src.id) ?? [];
      list.push(ins);
      this.fusedReduces.set(src.id, list);
    }
    const out: Ref[] = [];
    for (const ins of instrs) out.push(...this.instr(ins));
    return out;
  }

  private instr(ins: Instr): Ref[] {
    const m = this.e.m;
    if (isValue(ins)) {
      if (this.fusedDone.has(ins.id)) return [];
      if (ins.shape.length === 0) return this.scalar(ins);
      if (!this.plan.materialised.has(ins.id)) return [];
      return [this.materialise(ins)];
    }
    switch (ins.op) {
      case 'store': {
        if (ins.offsets.shape.length === 0) {
          const tl = new TileLoop(this, [1]);
          return [tl.store(ins, [])];
        }
        const tl = new TileLoop(this, ins.offsets.shape);
        return [tl.build(() => [tl.store(ins, tl.pos)])];
      }
      case 'for':
        return this.forLoop(ins);
      case 'if':
        return this.ifElse(ins);
      case 'return':
        return [m.return()];
    }
  }

  private scalar(v: Value): Ref[] {
    const m = this.e.m;
    switch (v.op) {
      case 'arg':
        this.locals.set(v.id, PROGRAM_FIXED_PARAMS + v.index);
        return [];
      case 'programId':
        this.locals.set(v.id, v.axis);
        return [];
      case 'numPrograms':
        this.locals.set(v.id, 3 + v.axis);
        return [];
      case 'const': {
        const l = this.newLocal(v);
        return [m.local.set(l, v.dtype === 'f32' ? m.f32.const(v.value) : m.i32.const(v.value | 0))];
      }
      case 'reduce': {
        const l = this.newLocal(v);
        return [this.reduce(v, { kind: 'local', local: l })];
      }
      default: {
        const tl = new TileLoop(this, [1]);
        const x = tl.computeScalar(v);
        const l = this.newLocal(v);
        return [...tl.pre, m.local.set(l, x)];
      }
    }
  }

  /** Write tile `v` into its own buffer (computing it if it is a dot, reduce, trans, ...). */
  private materialise(v: Value): Ref {
    const buf = this.buffers.get(v.id) ?? this.allocFor(v);
    switch (v.op) {
      case 'dot':
        return this.dot(v, buf);
      case 'reduce':
        return this.reduce(v, { kind: 'buf', buf });
      case 'trans': {
        const src = this.buffers.get(v.src.id);
        if (src && v.shape.every((d) => d >= 4)) return this.transpose4(src, buf);
        const tl = new TileLoop(this, v.shape, 'rc', true);
        return tl.build([tl.writeBuffer(buf, ['r', 'c'], tl.eval(v.src, ['c', 'r']))]);
      }
      case 'reshape':
        return this.generalReshape(v, buf);
      default: {
        const tl = new TileLoop(this, v.shape);
        const fused = this.fusedReduces.get(v.id) ?? [];
        if (fused.length === 0) return tl.build(() => [tl.writeBuffer(buf, tl.pos, tl.computeRoot(v, tl.pos))]);
        const parts = fused.map((r) => {
          this.fusedDone.add(r.id);
          const out = r.shape.length === 0
            ? { kind: 'local' as const, local: this.newLocal(r) }
            : { kind: 'buf' as const, buf: this.alloc(r) };
          return this.reduceParts(r, out, tl);
        });
        const ty = wasmType(v.dtype, tl.modeAt(tl.pos));
        const loop = tl.build(() => {
          const x = this.e.bind(ty, tl.computeRoot(v, tl.pos));
          return [x.set, tl.writeBuffer(buf, tl.pos, x.get()), ...parts.flatMap((p) => p.body(x.get))];
        });
        return this.e.m.block(null, [loop, ...parts.flatMap((p) => p.after)]);
      }
    }
  }

  private allocFor(v: Value): Buffer {
    const inPlace = this.plan.dotInPlace.get(v.id);
    if (inPlace !== undefined) {
      const b = this.buffers.get(inPlace);
      if (!b) throw new Error('codegen: in-place dot before its carried buffer');
      this.buffers.set(v.id, b);
      return b;
    }
    return this.alloc(v);
  }

  /** A fused loop writing `v` (lazy, or read from its own buffer) into `buf`. */
  private write(v: Value, buf: Buffer): Ref {
    const tl = new TileLoop(this, v.shape);
    return tl.build(() => [tl.writeBuffer(buf, tl.pos, tl.eval(v, tl.pos))]);
  }

  private dot(v: DotV, d: Buffer): Ref {
    const m = this.e.m;
    // A transpose only dots read: its source's buffer, read down the columns.
    const stmts: Ref[] = [];
    const inPlace = this.plan.dotReadsInPlace.get(v.a.id);
    const inPlaceT = v.a.op === 'trans' ? this.plan.dotReadsInPlace.get(v.a.src.id) : undefined;
    const a = inPlace && v.a.op === 'load' ? this.inPlaceMat(v.a, inPlace, stmts)
      : v.a.op === 'trans' && this.plan.transReadByDot.has(v.a.id)
        ? { ...(inPlaceT && v.a.src.op === 'load' ? this.inPlaceMat(v.a.src, inPlaceT, stmts) : this.matBuf(v.a.src)), rows: v.a.shape[0]!, cols: v.a.shape[1]!, transposed: true }
        : this.matBuf(v.a);
    const inPlaceB = this.plan.dotReadsInPlace.get(v.b.id);
    const b = inPlaceB && v.b.op === 'load' ? this.inPlaceMat(v.b, inPlaceB, stmts) : this.matBuf(v.b);
    let accumulate = false;
    if (v.acc) {
      accumulate = true;
      if (this.plan.dotInPlace.get(v.id) !== v.acc.id) stmts.push(this.write(v.acc, d));
    }
    const dm: MatBuf = { offset: d.offset, rows: v.shape[0]!, cols: v.shape[1]!, pitch: d.pitch };
    stmts.push(emitDot(this.e, this.sbase, a, b, dm, accumulate));
    return m.block(null, stmts);
  }

  /**
   * A dot operand read in place from its tensor (Plan.dotReadsInPlace): the byte address of
   * element (0, 0) and the row pitch in bytes, into locals set by `stmts`.
   */
  private inPlaceMat(v: LoadV, pitch: Coef, stmts: Ref[]): MatBuf {
    const m = this.e.m;
    const i32 = binaryen.i32;
    const tl = new TileLoop(this, v.shape, 'rc', true);
    const off00 = tl.eval(v.offsets, ['0', '0']);
    const addr = this.e.local(i32);
    const pitchBytes = this.e.local(i32);
    const term = (t: Coef[number]): Ref => t.syms.reduce<Ref>((acc, s) => m.i32.mul(acc, m.local.get(this.scalarLocal(s), i32)), m.i32.const(t.c));
    const elems = pitch.reduce<Ref>((acc, t) => m.i32.add(acc, term(t)), m.i32.const(0));
    const t = this.tensor(v.ptr);
    const shift = t.dtype === 'f32' ? 2 : 1;
    stmts.push(
      ...tl.pre, ...tl.outerPre, ...tl.inner,
      m.local.set(addr, m.i32.add(m.local.get(t.local, i32), m.i32.shl(off00, m.i32.const(shift)))),
      m.local.set(pitchBytes, m.i32.shl(elems, m.i32.const(shift))),
    );
    // A constant pitch (a right operand's, always) also rides in the microkernel's immediates.
    const constPitch = t.dtype === 'f32' ? constValue(pitch) ?? 0 : 0;
    const half = t.dtype === 'f16' || t.dtype === 'bf16' ? t.dtype : undefined;
    return { offset: 0, rows: v.shape[0]!, cols: v.shape[1]!, pitch: constPitch, inPlace: { addr, pitchBytes, ...(half ? { half } : {}) } };
  }

  private matBuf(v: Value): MatBuf {
    const b = this.buffers.get(v.id);
    if (!b || v.shape.length !== 2) throw new Error(`codegen: dot operand %${v.id} is not a materialised 2-D tile`);
    return { offset: b.offset, rows: v.shape[0]!, cols: v.shape[1]!, pitch: b.pitch };
  }

  private reduce(v: ReduceV, out: ReduceOut): Ref {
    const src = v.src;
    if (src.dtype === 'bool') throw new Error('codegen: reductions over bool tiles are not supported');
    const order = src.shape.length === 2 && v.axis === 0 ? 'cr' : 'rc';
    const tl = new TileLoop(this, src.shape, order);
    const parts = this.reduceParts(v, out, tl);
    const loop = tl.build(() => parts.body(() => tl.eval(src, tl.pos)));
    return parts.after.length ? this.e.m.block(null, [loop, ...parts.after]) : loop;
  }

  /**
   * A reduction as pieces of the loop nest `tl` walks over its source: the accumulator set-up
   * and the per-row write go into tl's hooks; `body(x)` folds one element (called once per
   * unrolled copy); `after` runs once the nest is done (1-D: the scalar result).
   */
  private reduceParts(v: ReduceV, out: ReduceOut, tl: TileLoop): { body: (x: () => Ref) => Ref[]; after: Ref[] } {
    const e = this.e;
    const m = e.m;
    const src = v.src;
    const dt = src.dtype;
    if (dt === 'bool') throw new Error('codegen: reductions over bool tiles are not supported');
    const pos = tl.pos;
    const mode = tl.modeAt(pos);
    const ty = wasmType(dt, mode);
    // Two accumulators when the unrolled loop gives two copies per iteration: a reduction is a
    // dependency chain, and two independent chains run about twice as fast.
    const accs = [e.local(ty), e.local(ty)];
    const get = (k = 0): Ref => m.local.get(accs[k]!, ty);
    const initS = v.fn === 'sum' ? 0 : v.fn === 'max' ? (dt === 'f32' ? -Infinity : -2147483648) : dt === 'f32' ? Infinity : 2147483647;
    const initScalar = (): Ref => (dt === 'f32' ? m.f32.const(initS) : m.i32.const(initS));
    const init = accs.map((a) => m.local.set(a, mode === 'v' ? (dt === 'f32' ? m.f32x4.splat(initScalar()) : m.i32x4.splat(initScalar())) : initScalar()));
    const fn = v.fn === 'sum' ? 'add' : v.fn;
    // f32 max/min over vectors: f32x4.max/min are long instruction sequences with a long latency
    // (they order NaN and -0 < +0), which bound the loop. Accumulate with pmax/pmin (one
    // instruction) and record, per lane, whether a NaN or the winning zero (+0 for max, -0 for
    // min) went by; the fix-up after the loop restores f32x4.max/min's answer exactly.
    const minmax = dt === 'f32' && (v.fn === 'max' || v.fn === 'min');
    // skipNan: pmax/pmin alone (acc < x ? x : acc) never let a NaN in, which is the contract.
    const skip = minmax && v.skipNan === true;
    const fast = minmax && mode === 'v' && !skip;
    const nanSeen = fast ? e.local(binaryen.v128) : -1;
    const zeroSeen = fast ? e.local(binaryen.v128) : -1;
    const vget = (l: number): Ref => m.local.get(l, binaryen.v128);
    if (fast) init.push(m.local.set(nanSeen, m.v128.const([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])), m.local.set(zeroSeen, m.v128.const([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])));
    // The skipNan fold: pmax/pmin on vectors, the same select on scalars (acc first, so a NaN x loses).
    const skipFold = (md: 'v' | 's', acc: Ref, x: Ref): Ref => {
      if (md === 'v') return v.fn === 'max' ? m.f32x4.pmax(acc, x) : m.f32x4.pmin(acc, x);
      const xb = e.bind(binaryen.f32, x);
      const ab = e.bind(binaryen.f32, acc);
      const wins = v.fn === 'max' ? m.f32.lt(ab.get(), xb.get()) : m.f32.lt(xb.get(), ab.get());
      return m.block(null, [xb.set, ab.set, m.select(wins, xb.get(), ab.get())], binaryen.f32);
    };
    let copy = 0;
    const body = (value: () => Ref): Ref[] => {
      const k = copy++ % 2;
      if (skip) return [m.local.set(accs[k]!, skipFold(mode, get(k), value()))];
      if (!fast) return [m.local.set(accs[k]!, emitBinary(e, fn, dt, mode, get(k), value()))];
      const x = e.bind(binaryen.v128, value());
      const zeroBits = m.i32x4.splat(m.i32.const(v.fn === 'max' ? 0 : -2147483648));
      return [
        x.set,
        m.local.set(accs[k]!, v.fn === 'max' ? m.f32x4.pmax(get(k), x.get()) : m.f32x4.pmin(get(k), x.get())),
        m.local.set(nanSeen, m.v128.or(vget(nanSeen), m.f32x4.ne(x.get(), x.get()))),
        m.local.set(zeroSeen, m.v128.or(vget(zeroSeen), m.i32x4.eq(x.get(), zeroBits))),
      ];
    };
    const merge = fast
      ? m.block(null, [
        m.local.set(accs[0]!, emitBinary(e, fn, dt, mode, get(0), get(1))),
        m.local.set(accs[0]!, m.v128.bitselect(m.f32x4.splat(m.f32.const(NaN)), get(0), vget(nanSeen))),
        m.local.set(accs[0]!, m.v128.bitselect(
          m.f32x4.splat(m.f32.const(v.fn === 'max' ? 0 : -0)), get(0),
          m.v128.and(m.f32x4.eq(get(0), m.f32x4.splat(m.f32.const(0))), vget(zeroSeen)),
        )),
      ])
      : m.local.set(accs[0]!, skip ? skipFold(mode, get(0), get(1)) : emitBinary(e, fn, dt, mode, get(0), get(1)));
    // Lanes fold pairwise: ((l0 op l1) op (l2 op l3)).
    const horizontal = (): Ref => {
      if (mode === 's') return get();
      const lane = (l: number): Ref => (dt === 'f32' ? m.f32x4.extract_lane(get(), l) : m.i32x4.extract_lane(get(), l));
      const op = (a: Ref, b: Ref): Ref => (skip ? skipFold('s', a, b) : emitBinary(e, fn, dt, 's', a, b));
      return op(op(lane(0), lane(1)), op(lane(2), lane(3)));
    };
    if (src.shape.length === 1) {
      tl.pre.push(...init);
      if (out.kind !== 'local') throw new Error('codegen: 1-D reduce yields a scalar');
      return { body, after: [merge, m.local.set(out.local, horizontal())] };
    }
    if (out.kind !== 'buf') throw new Error('codegen: 2-D reduce yields a tile');
    tl.outerPre.push(...init);
    tl.outerPost.push(merge);
    if (v.axis === 1) tl.outerPost.push(tl.writeBuffer(out.buf, ['r'], horizontal()));
    else tl.outerPost.push(tl.writeBuffer(out.buf, ['c'], get()));
    return { body, after: [] };
  }

  /**
   * dst = src^T for dims that are multiples of 4: each 4x4 block is four vector loads, eight
   * lane shuffles and four vector stores (about 6x fewer instructions than element by element).
   */
  private transpose4(src: Buffer, dst: Buffer): Ref {
    const m = this.e.m;
    const i32 = binaryen.i32;
    const v128 = binaryen.v128;
    const R = src.shape[0]!;
    const C = src.shape[1]!;
    const r = this.e.local(i32);
    const c = this.e.local(i32);
    const get = (l: number): Ref => m.local.get(l, i32);
    // Byte masks for i8x16.shuffle built from i32 lane picks (lanes 4..7 are the second operand).
    const pick = (lanes: number[]): number[] => lanes.flatMap((l) => [4 * l, 4 * l + 1, 4 * l + 2, 4 * l + 3]);
    const rows = [0, 1, 2, 3].map(() => this.e.local(v128));
    const t = [0, 1, 2, 3].map(() => this.e.local(v128));
    const vget = (l: number): Ref => m.local.get(l, v128);
    // Element (row, col) of a buffer: sbase + (row * pitch + col) * 4 (+ the buffer's offset).
    const at = (b: Buffer, row: Ref, col: Ref): Ref =>
      m.i32.add(m.local.get(this.sbase, i32), m.i32.shl(m.i32.add(m.i32.mul(row, m.i32.const(b.pitch)), col), m.i32.const(2)));
    const body: Ref[] = [];
    for (let k = 0; k < 4; k++) body.push(m.local.set(rows[k]!, m.v128.load(src.offset + k * src.pitch * 4, 16, at(src, get(r), get(c)))));
    body.push(
      m.local.set(t[0]!, m.i8x16.shuffle(vget(rows[0]!), vget(rows[1]!), pick([0, 4, 1, 5]))),
      m.local.set(t[1]!, m.i8x16.shuffle(vget(rows[0]!), vget(rows[1]!), pick([2, 6, 3, 7]))),
      m.local.set(t[2]!, m.i8x16.shuffle(vget(rows[2]!), vget(rows[3]!), pick([0, 4, 1, 5]))),
      m.local.set(t[3]!, m.i8x16.shuffle(vget(rows[2]!), vget(rows[3]!), pick([2, 6, 3, 7]))),
    );
    const outs = [
      m.i8x16.shuffle(vget(t[0]!), vget(t[2]!), pick([0, 1, 4, 5])),
      m.i8x16.shuffle(vget(t[0]!), vget(t[2]!), pick([2, 3, 6, 7])),
      m.i8x16.shuffle(vget(t[1]!), vget(t[3]!), pick([0, 1, 4, 5])),
      m.i8x16.shuffle(vget(t[1]!), vget(t[3]!), pick([2, 3, 6, 7])),
    ];
    // Block (r, c) of src lands at (c, r) of dst.
    outs.forEach((o, k) => body.push(m.v128.store(dst.offset + k * dst.pitch * 4, 16, at(dst, get(c), get(r)), o)));
    const id = nextLabel++;
    const loop = (ix: number, n: number, inner: Ref[], label: string): Ref => m.block(null, [
      m.local.set(ix, m.i32.const(0)),
      m.loop(label, m.block(null, [...inner, m.local.set(ix, m.i32.add(get(ix), m.i32.const(4))), m.br(label, m.i32.lt_s(get(ix), m.i32.const(n)))])),
    ]);
    return loop(r, R, [loop(c, C, body, `tc${id}`)], `tr${id}`);
  }

  /** Reshape that moves elements between rows: element by element from the source buffer. */
  private generalReshape(v: Value & { op: 'reshape' }, buf: Buffer): Ref {
    const m = this.e.m;
    const src = this.buffers.get(v.src.id);
    if (!src) throw new Error('codegen: reshape source must be materialised');
    const n = numel(v.shape);
    const i = this.e.local(binaryen.i32);
    const get = (): Ref => m.local.get(i, binaryen.i32);
    // `flat` is a getter: binaryen expressions are trees, a node must not appear twice.
    const addrOf = (b: Buffer, flat: () => Ref): Ref => {
      const cols = b.shape[b.shape.length - 1]!;
      const index = b.shape.length === 2
        ? m.i32.add(m.i32.mul(m.i32.div_u(flat(), m.i32.const(cols)), m.i32.const(b.pitch)), m.i32.rem_u(flat(), m.i32.const(cols)))
        : flat();
      return m.i32.add(m.local.get(this.sbase, binaryen.i32), m.i32.shl(index, m.i32.const(2)));
    };
    const label = `reshape${v.id}`;
    return m.block(null, [
      m.local.set(i, m.i32.const(0)),
      m.loop(label, m.block(null, [
        m.i32.store(buf.offset, 4, addrOf(buf, get), m.i32.load(src.offset, 4, addrOf(src, get))),
        m.local.set(i, m.i32.add(get(), m.i32.const(1))),
        m.br(label, m.i32.lt_s(get(), m.i32.const(n))),
      ])),
    ]);
  }

  /** Give a loop-carried or branch result its storage. */
  private bindSlot(v: Value, share?: Value): void {
    if (v.shape.length === 0) {
      if (share) this.locals.set(v.id, this.scalarLocal(share));
      else this.newLocal(v);
    } else if (share) {
      this.buffers.set(v.id, this.buffers.get(share.id)!);
    } else {
      this.alloc(v);
    }
  }

  /** Assign values to slots (scalars via temporaries: the values may read each other's slots). */
  private assign(values: readonly Value[], slots: readonly Value[], skip: (i: number) => boolean = () => false): Ref[] {
    const m = this.e.m;
    const out: Ref[] = [];
    const carriedIds = new Set(slots.map((s) => s.id));
    const tileIdx = values.map((_, i) => i).filter((i) => values[i]!.shape.length > 0 && !skip(i) && values[i] !== slots[i]);
    // Which slots does each value read lazily (or directly, if it is a slot itself)?
    const reads = new Map<number, Set<number>>();
    for (const i of tileIdx) reads.set(i, this.slotReads(values[i]!, carriedIds));
    const direct: number[] = [];
    const staged: number[] = [];
    for (const i of tileIdx) {
      const mine = slots[i]!.id;
      const readByOther = tileIdx.some((j) => j !== i && reads.get(j)!.has(mine));
      (readByOther ? staged : direct).push(i);
    }
    const temps = new Map<number, Buffer>();
    for (const i of staged) {
      const t = this.reserve(values[i]!);
      temps.set(i, t);
      out.push(this.write(values[i]!, t));
    }
    for (const i of direct) out.push(this.write(values[i]!, this.buffers.get(slots[i]!.id)!));
    for (const i of staged) out.push(this.copy(temps.get(i)!, this.buffers.get(slots[i]!.id)!));
    // Scalars last (tile yields may read scalar slots).
    const scalarIdx = values.map((_, i) => i).filter((i) => values[i]!.shape.length === 0 && values[i] !== slots[i]);
    const tmp = scalarIdx.map((i) => {
      const t = this.e.local(wasmType(values[i]!.dtype, 's'));
      out.push(m.local.set(t, m.local.get(this.scalarLocal(values[i]!), wasmType(values[i]!.dtype, 's'))));
      return t;
    });
    scalarIdx.forEach((i, k) => out.push(m.local.set(this.scalarLocal(slots[i]!), m.local.get(tmp[k]!, wasmType(values[i]!.dtype, 's')))));
    return out;
  }

  private slotReads(v: Value, slots: ReadonlySet<number>): Set<number> {
    const found = new Set<number>();
    const seen = new Set<number>();
    const visit = (x: Value): void => {
      if (seen.has(x.id)) return;
      seen.add(x.id);
      if (slots.has(x.id)) found.add(x.id);
      if (x.shape.length > 0 && this.buffers.has(x.id) && !slots.has(x.id)) return;
      lazyOperands(x).forEach(visit);
    };
    visit(v);
    return found;
  }

  private copy(from: Buffer, to: Buffer): Ref {
    const m = this.e.m;
    const bytes = Math.ceil((numel(from.shape) * 4) / 16) * 16;
    const base = (): Ref => m.local.get(this.sbase, binaryen.i32);
    return m.memory.copy(m.i32.add(base(), m.i32.const(to.offset)), m.i32.add(base(), m.i32.const(from.offset)), m.i32.const(bytes));
  }

  private forLoop(f: ForI): Ref[] {
    const m = this.e.m;
    const i32 = binaryen.i32;
    const out: Ref[] = [];
    f.carried.forEach((c) => this.bindSlot(c));
    out.push(...this.assign(f.inits, f.carried));
    const iv = this.e.local(i32);
    this.locals.set(f.iv.id, iv);
    const cond = (): Ref => (f.descending ? m.i32.gt_s : m.i32.lt_s)(m.local.get(iv, i32), m.local.get(this.scalarLocal(f.end), i32));
    // Buffers of values defined in the body die with each iteration: the body's region is
    // reused by whatever comes after the loop.
    const mark = this.top;
    const body = this.block(f.body);
    const inPlace = (i: number): boolean => this.plan.dotInPlace.get(f.yields[i]!.id) === f.carried[i]!.id;
    body.push(...this.assign(f.yields, f.carried, inPlace));
    this.release(mark);
    const step = (): Ref => m.local.get(this.scalarLocal(f.step), i32);
    // Stop instead of wrapping when the next value would leave the i32 range (the interpreter's
    // rule): iv + step overflows exactly when iv > INT_MAX - step (or < INT_MIN - step going down).
    const room = f.descending
      ? m.i32.ge_s(m.local.get(iv, i32), m.i32.sub(m.i32.const(-2147483648), step()))
      : m.i32.le_s(m.local.get(iv, i32), m.i32.sub(m.i32.const(2147483647), step()));
    const label = `for${f.iv.id}`;
    body.push(m.br(`${label}_end`, m.i32.eqz(room)));
    body.push(m.local.set(iv, m.i32.add(m.local.get(iv, i32), step())));
    out.push(m.local.set(iv, m.local.get(this.scalarLocal(f.start), i32)));
    // A zero or wrongly signed step must not spin forever: it runs no iteration.
    const stepOk = f.descending
      ? m.i32.lt_s(m.local.get(this.scalarLocal(f.step), i32), m.i32.const(0))
      : m.i32.gt_s(m.local.get(this.scalarLocal(f.step), i32), m.i32.const(0));
    out.push(m.if(m.i32.and(stepOk, cond()), m.block(`${label}_end`, [m.loop(label, m.block(null, [...body, m.br(label, cond())]))])));
    f.results.forEach((r, i) => this.bindSlot(r, f.carried[i]!));
    return out;
  }

  private ifElse(s: IfI): Ref[] {
    const m = this.e.m;
    s.results.forEach((r) => this.bindSlot(r));
    // The two branches never run together: they share one region of scratch.
    const mark = this.top;
    const thenB = [...this.block(s.then), ...this.assign(s.thenYields, s.results)];
    this.release(mark);
    const elseB = [...this.block(s.else), ...this.assign(s.elseYields, s.results)];
    this.release(mark);
    return [m.if(m.local.get(this.scalarLocal(s.cond), binaryen.i32), m.block(null, thenB), m.block(null, elseB))];
  }
}
