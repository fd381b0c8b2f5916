/**
 * @fileoverview Codegen planning: which tile values are *materialised* (written to a scratch
 * buffer at their position) and which stay *lazy* (fused into the loops of the statements that
 * consume them). Fusion is the default; a value is materialised only when it must be (dot,
 * reductions, transposes, loop-carried state) or when recomputing it would be wrong (a load
 * that a store could overtake) or wasteful (expensive work used twice or inside a loop).
 */
import { isValue, type ForI, type Instr, type KernelIR, type Value } from '../src/ir/ir.js';
import { affineCoefs, constValue, isConst, type Coef } from './affine.js';

/** Where a sink sits: the block it is in and its index there. */
interface Site {
  readonly block: readonly Instr[];
  readonly index: number;
}

export interface Plan {
  /** Tile values written to scratch at their position. */
  readonly materialised: ReadonlySet<number>;
  /** Value id -> the block and index that define it (tiles only; scalars always live in locals). */
  readonly defSite: ReadonlyMap<number, Site>;
  /** Dot value id -> carried value whose buffer the dot accumulates into (no copies). */
  readonly dotInPlace: ReadonlyMap<number, number>;
  /**
   * Transposes read by nothing but dots, as their left operand: not materialised; the dots read
   * the source's buffer column-wise (the microkernel's splats walk a column instead of a row).
   */
  readonly transReadByDot: ReadonlySet<number>;
  /**
   * Unmasked f32 loads at affine offsets (consecutive along the columns) that only dots read
   * (f16/bf16 too for a right operand read once, below),
   * with no store, loop or branch between the load and the dots: not materialised; the
   * microkernel reads the tensor in place, its rows `pitch` elements apart. A left operand
   * may have any pitch: MR rows at a time sit in MR cache lines per k step. A right operand,
   * whose BK-row strips every row block reads again, needs a compile-time pitch of at most
   * IN_PLACE_B_PITCH (a packed panel): rows 4 KB apart would all map to one L1 set and evict
   * each other, which is what the scratch copy avoids; unless the dot has one row block (M <=
   * 4: GEMV-like), which reads each strip once. Load id -> row pitch.
   */
  readonly dotReadsInPlace: ReadonlyMap<number, Coef>;
  /**
   * f32 tile products whose one use is an operand of an f32 add: the products `fpFusion`
   * contracts into that add. Fixed per value, so every loop that evaluates the add rounds it
   * the same way (a product also used elsewhere is never fused).
   */
  readonly addOnlyProducts: ReadonlySet<number>;
}

/**
 * Longest chain of lazy tile values fused into one loop. Real kernels fuse a few dozen ops; an
 * unrolled chain of thousands would make every recursive walk here and in tile.ts as deep,
 * and the fused loop's code grow quadratically in time to build, so a deeper chain is cut by
 * materialising the value at the cut.
 */
export const MAX_FUSED_DEPTH = 64;

const INHERENT = new Set(['dot', 'reduce', 'trans', 'carried', 'result']);
const EXPENSIVE_UNARY = new Set(['exp', 'expFtz', 'exp2', 'exp2Ftz', 'log', 'log2', 'tanh', 'sigmoid', 'erf', 'sqrt', 'rsqrt']);

/** Operands a lazy value reads (for fused evaluation). */
export function lazyOperands(v: Value): Value[] {
  switch (v.op) {
    case 'broadcast': case 'reshape': case 'unary': case 'cast':
      return [v.src];
    case 'binary':
      return [v.a, v.b];
    case 'where':
      return [v.cond, v.a, v.b];
    case 'load':
      return [v.offsets, ...(v.mask ? [v.mask] : []), ...(v.other ? [v.other] : [])];
    case 'rand':
      return [v.seed, v.offsets];
    default:
      return [];
  }
}

/** True if a reshape only inserts or removes unit dims (so positions map without arithmetic). */
export function isUnitReshape(src: readonly number[], dst: readonly number[]): boolean {
  const a = src.filter((d) => d !== 1);
  const b = dst.filter((d) => d !== 1);
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

/** `inPlaceDots` false (checked kernels, whose loads are bounds-checked): every dot operand is copied. */
export function planKernel(ir: KernelIR, opts: { inPlaceDots?: boolean } = {}): Plan {
  const defSite = new Map<number, Site>();
  const materialised = new Set<number>();
  const dotInPlace = new Map<number, number>();
  const loopOf = new Map<readonly Instr[], readonly Instr[] | null>(); // block -> parent block
  const blockIsLoopBody = new Set<readonly Instr[]>();

  // Pass 1: definition sites, inherent materialisation.
  const walk = (block: readonly Instr[], parent: readonly Instr[] | null): void => {
    loopOf.set(block, parent);
    block.forEach((ins, index) => {
      if (isValue(ins)) {
        if (ins.shape.length > 0) {
          defSite.set(ins.id, { block, index });
          if (INHERENT.has(ins.op)) materialised.add(ins.id);
          // A transpose of a tile whose dims are multiples of 4 moves 4x4 blocks with shuffles,
          // which needs its source in a buffer.
          if (ins.op === 'trans' && ins.shape.every((d) => d >= 4) && ins.src.shape.length > 0) materialised.add(ins.src.id);
          if (ins.op === 'reshape' && !isUnitReshape(ins.src.shape, ins.shape)) {
            // A general reshape copies element by element from a buffer.
            materialised.add(ins.id);
            if (ins.src.shape.length > 0) materialised.add(ins.src.id);
          }
          if (ins.op === 'dot') {
            materialised.add(ins.a.id);
            materialised.add(ins.b.id);
          }
        }
      } else if (ins.op === 'for') {
        blockIsLoopBody.add(ins.body);
        walk(ins.body, block);
        for (const c of ins.carried) if (c.shape.length > 0) materialised.add(c.id);
        for (const r of ins.results) if (r.shape.length > 0) materialised.add(r.id);
      } else if (ins.op === 'if') {
        walk(ins.then, block);
        walk(ins.else, block);
        for (const r of ins.results) if (r.shape.length > 0) materialised.add(r.id);
      }
    });
  };
  walk(ir.body, null);
  findInPlaceDots(ir.body, dotInPlace);
  const transOperands = findTransOperands(ir.body);
  for (const [id, t] of transOperands) {
    materialised.delete(id);
    materialised.add(t.src.id);
  }
  const transReadByDot = new Set(transOperands.keys());
  const dotReadsInPlace = opts.inPlaceDots === false ? new Map<number, Coef>() : findInPlaceOperands(ir, defSite, transReadByDot);
  for (const id of dotReadsInPlace.keys()) materialised.delete(id);
  cutDeepChains(ir.body, materialised);

  // Pass 2 (to a fixpoint): lazy values whose consumers make recomputation wrong or wasteful.
  const expensive = new Map<number, boolean>();
  const isExpensive = (v: Value): boolean => {
    if (v.shape.length === 0 || materialised.has(v.id)) return false;
    const known = expensive.get(v.id);
    if (known !== undefined) return known;
    const e = selfExpensive(v) || lazyOperands(v).some(isExpensive);
    expensive.set(v.id, e);
    return e;
  };
  // An unmasked f32/i32 load is one vector load wherever it is evaluated: reading the tensor
  // again costs no more than reading a scratch copy, so it is not worth a copy pass.
  const plainLoad = (v: Value & { op: 'load' }): boolean => {
    const p = ir.params[v.ptr];
    return !v.mask && p?.kind === 'tensor' && (p.dtype === 'f32' || p.dtype === 'i32');
  };
  const selfExpensive = (v: Value): boolean =>
    (v.op === 'load' && !plainLoad(v)) || v.op === 'rand' || (v.op === 'unary' && EXPENSIVE_UNARY.has(v.fn)) ||
    (v.op === 'binary' && (v.fn === 'div' || v.fn === 'rem'));
  const hasLoad = (v: Value, seen = new Set<number>()): boolean => {
    if (v.shape.length === 0 || materialised.has(v.id) || seen.has(v.id)) return false;
    seen.add(v.id);
    return v.op === 'load' || lazyOperands(v).some((o) => hasLoad(o, seen));
  };

  for (let changed = true; changed; ) {
    changed = false;
    expensive.clear();
    const uses = new Map<number, Site[]>();
    // Every sink: the lazy values reachable from it, each recorded once per sink.
    const addSink = (roots: readonly Value[], site: Site): void => {
      const seen = new Set<number>();
      const visit = (v: Value): void => {
        if (v.shape.length === 0 || seen.has(v.id)) return;
        seen.add(v.id);
        if (materialised.has(v.id)) return;
        let list = uses.get(v.id);
        if (!list) uses.set(v.id, (list = []));
        list.push(site);
        lazyOperands(v).forEach(visit);
      };
      roots.forEach(visit);
    };
    const sinks = (block: readonly Instr[]): void => {
      block.forEach((ins, index) => {
        const site = { block, index };
        if (isValue(ins)) {
          if (ins.shape.length === 0) addSink(ins.op === 'reduce' ? [ins.src] : [], site);
          else if (materialised.has(ins.id)) addSink(materialisedInputs(ins), site);
        } else if (ins.op === 'store') {
          addSink([ins.offsets, ins.value, ...(ins.mask ? [ins.mask] : [])], site);
        } else if (ins.op === 'for') {
          addSink(ins.inits, site);
          sinks(ins.body);
          addSink(ins.yields, { block: ins.body, index: ins.body.length });
        } else if (ins.op === 'if') {
          sinks(ins.then);
          sinks(ins.else);
          addSink(ins.thenYields, { block: ins.then, index: ins.then.length });
          addSink(ins.elseYields, { block: ins.else, index: ins.else.length });
        }
      });
    };
    sinks(ir.body);

    for (const [id, sites] of uses) {
      const def = defSite.get(id);
      if (!def) continue;
      const v = def.block[def.index] as Value;
      const exp = isExpensive(v);
      const load = hasLoad(v);
      // Only the values where the cost or the hazard starts are materialised: the expensive op
      // itself, the load itself. What is built on them (a broadcast of a row statistic, a cheap
      // op on a loaded tile) stays lazy and reads their buffers, instead of becoming a full tile
      // copy of its own. Their own sites include every site of v, so the same rule fires for them.
      let mustExp = exp && selfExpensive(v) && sites.length > 1;
      let mustLoad = false;
      for (const s of sites) {
        if (s.block !== def.block) {
          // Crossing into a nested block: a loop body would recompute it every iteration, and a
          // load could be overtaken by a store in between.
          if (load) mustLoad = true;
          if (exp && selfExpensive(v) && crossesLoop(s.block, def.block, loopOf, blockIsLoopBody)) mustExp = true;
        } else if (load) {
          for (let i = def.index + 1; i < s.index; i++) {
            const op = def.block[i]!.op;
            if (op === 'store' || op === 'for' || op === 'if') mustLoad = true;
          }
          // The sink itself may store to the tensor v reads: fused into the store's loop, a
          // load at other offsets would read what the store's earlier chunks just wrote.
          const sink = s.block[s.index];
          if (v.op === 'load' && sink?.op === 'store' && sink.ptr === v.ptr && !sameElementUpdate(v, sink)) mustLoad = true;
        }
      }
      if (mustExp || (mustLoad && v.op === 'load')) {
        materialised.add(id);
        changed = true;
      }
    }
  }
  return { materialised, defSite, dotInPlace, transReadByDot, dotReadsInPlace, addOnlyProducts: findAddOnlyProducts(ir.body) };
}

/** Lazy ops that keep every element at its position (what a fused loop reads at chunk i comes from chunk i). */
const POSITIONAL = new Set(['unary', 'binary', 'where', 'cast']);

/**
 * True if `store` writes each element of `load` back where it was read from, so a fused loop
 * reads every element before writing it: the same offsets value, and the load reached from the
 * stored value through elementwise ops only (not from the offsets or the mask, and not through
 * a broadcast or reshape, which move elements).
 */
function sameElementUpdate(load: Value & { op: 'load' }, store: Instr & { op: 'store' }): boolean {
  if (store.offsets.id !== load.offsets.id) return false;
  const memo = new Map<number, boolean>();
  const reaches = (v: Value): boolean => {
    if (v.id === load.id) return true;
    if (v.shape.length === 0) return false;
    const known = memo.get(v.id);
    if (known !== undefined) return known;
    memo.set(v.id, false); // the IR is acyclic; this only stops a re-walk
    const r = lazyOperands(v).some(reaches);
    memo.set(v.id, r);
    return r;
  };
  if (reaches(store.offsets) || (store.mask && reaches(store.mask))) return false;
  const checked = new Set<number>();
  const onlyPositional = (v: Value): boolean => {
    if (v.id === load.id || !reaches(v) || checked.has(v.id)) return true;
    checked.add(v.id);
    return POSITIONAL.has(v.op) && lazyOperands(v).every(onlyPositional);
  };
  return onlyPositional(store.value);
}

/** See Plan.addOnlyProducts. */
function findAddOnlyProducts(body: readonly Instr[]): Set<number> {
  const uses = new Map<number, number>();
  const byAdd = new Set<number>();
  forEachUse(body, (o, user) => {
    if (o.op !== 'binary' || o.fn !== 'mul' || o.dtype !== 'f32' || o.shape.length === 0) return;
    uses.set(o.id, (uses.get(o.id) ?? 0) + 1);
    if (isValue(user) && user.op === 'binary' && user.fn === 'add' && user.dtype === 'f32') byAdd.add(o.id);
  });
  return new Set([...byAdd].filter((id) => uses.get(id) === 1));
}

/** Largest row pitch (elements, a compile-time constant) of a dot's right operand read in place. */
export const IN_PLACE_B_PITCH = 256;

/** The loads dots may read in place (see Plan.dotReadsInPlace), with their row pitch. */
function findInPlaceOperands(ir: KernelIR, defSite: ReadonlyMap<number, Site>, transByDot: ReadonlySet<number>): Map<number, Coef> {
  const cands = new Map<number, { v: Value & { op: 'load' }; ok: boolean; side: number; oneRowBlock: boolean }>();
  // The dots reading each transpose that only dots read (as their left operand, Plan.transReadByDot).
  const transUsers = new Map<number, Instr[]>();
  forEachUse(ir.body, (o, user) => {
    if (transByDot.has(o.id)) transUsers.set(o.id, [...(transUsers.get(o.id) ?? []), user]);
  });
  forEachUse(ir.body, (o, user, k) => {
    if (o.op !== 'load' || o.shape.length !== 2) return;
    const prev = cands.get(o.id);
    if (prev && !prev.ok) return;
    // A load under such a transpose is read in place too, transposed: its dots are its users.
    const viaTrans = isValue(user) && user.op === 'trans' && transByDot.has(user.id);
    const dots = viaTrans ? transUsers.get(user.id) ?? [] : [user];
    const side = viaTrans ? 0 : k;
    let ok = (viaTrans || (isValue(user) && user.op === 'dot' && k <= 1)) && (prev === undefined || prev.side === side) && !o.mask;
    const p = ir.params[o.ptr];
    ok &&= p?.kind === 'tensor' && p.dtype !== 'i32';
    // The dot reads memory where it stands: nothing may write in between.
    const def = defSite.get(o.id);
    for (const d of dots) {
      // Dots are tile values: defSite has them.
      const at = isValue(d) ? defSite.get(d.id) : undefined;
      ok &&= def !== undefined && at !== undefined && at.block === def.block && at.index > def.index;
      if (ok) for (let i = def!.index + 1; i < at!.index; i++) if (['store', 'for', 'if'].includes(def!.block[i]!.op)) ok = false;
    }
    // A right operand that one block of output rows reads (M <= 4, the microkernel's MR) is read once: no reuse to protect.
    const oneRowBlock = (prev?.oneRowBlock ?? true) && dots.every((d) => isValue(d) && d.op === 'dot' && d.shape[0]! <= 4);
    cands.set(o.id, { v: o, ok, side, oneRowBlock });
  });
  const out = new Map<number, Coef>();
  for (const [id, { v, ok, side, oneRowBlock }] of cands) {
    if (!ok) continue;
    // f16/bf16 storage: only a right operand read once (converted as it is loaded, 4 at a time).
    const param = ir.params[v.ptr];
    if (param?.kind === 'tensor' && param.dtype !== 'f32' && !(side === 1 && oneRowBlock)) continue;
    const c = affineCoefs(v.offsets);
    if (!c || !isConst(c[1]!, 1)) continue;
    const pitch = constValue(c[0]!);
    if (side === 1 && !oneRowBlock && !(pitch !== undefined && pitch > 0 && pitch <= IN_PLACE_B_PITCH)) continue;
    out.set(id, c[0]!);
  }
  return out;
}

/** Transposes of 2-D tiles whose every use is the left operand of a dot (see Plan.transReadByDot). */
function findTransOperands(body: readonly Instr[]): Map<number, Value & { op: 'trans' }> {
  const trans = new Map<number, { v: Value & { op: 'trans' }; onlyDotA: boolean }>();
  forEachUse(body, (o, user, index) => {
    if (o.op !== 'trans' || o.shape.length !== 2) return;
    const asDotA = isValue(user) && user.op === 'dot' && index === 0;
    trans.set(o.id, { v: o, onlyDotA: (trans.get(o.id)?.onlyDotA ?? true) && asDotA });
  });
  return new Map([...trans].filter(([, t]) => t.onlyDotA).map(([id, t]) => [id, t.v]));
}

/**
 * Every direct operand reference in `block` and the blocks nested in it: `fn(operand, user,
 * index)`, index being the operand's place in the user's operand list (a dot's: a, b, acc).
 */
function forEachUse(block: readonly Instr[], fn: (operand: Value, user: Instr, index: number) => void): void {
  for (const ins of block) {
    const ops = isValue(ins) ? operandsOf(ins)
      : ins.op === 'store' ? [ins.offsets, ins.value, ...(ins.mask ? [ins.mask] : [])]
        : ins.op === 'for' ? [ins.start, ins.end, ins.step, ...ins.inits, ...ins.yields]
          : ins.op === 'if' ? [ins.cond, ...ins.thenYields, ...ins.elseYields]
            : [];
    ops.forEach((o, k) => fn(o, ins, k));
    if (ins.op === 'for') forEachUse(ins.body, fn);
    else if (ins.op === 'if') {
      forEachUse(ins.then, fn);
      forEachUse(ins.else, fn);
    }
  }
}

/**
 * Materialise tiles that would sit more than MAX_FUSED_DEPTH lazy values deep. Operands come
 * before their users in program order, so one in-order pass sees every operand's depth first.
 */
function cutDeepChains(body: readonly Instr[], materialised: Set<number>): void {
  const depth = new Map<number, number>();
  const visit = (block: readonly Instr[]): void => {
    for (const ins of block) {
      if (isValue(ins)) {
        if (ins.shape.length === 0 || materialised.has(ins.id)) continue;
        let d = 1;
        for (const o of lazyOperands(ins)) d = Math.max(d, 1 + (depth.get(o.id) ?? 0));
        if (d > MAX_FUSED_DEPTH) materialised.add(ins.id);
        else depth.set(ins.id, d);
      } else if (ins.op === 'for') visit(ins.body);
      else if (ins.op === 'if') {
        visit(ins.then);
        visit(ins.else);
      }
    }
  };
  visit(body);
}

/** The operands a materialised value's own sink loop reads lazily. */
export function materialisedInputs(v: Value): Value[] {
  switch (v.op) {
    case 'dot': return v.acc ? [v.acc] : [];
    case 'reduce': case 'trans': case 'reshape': return [v.src];
    case 'carried': case 'result': return [];
    default: return lazyOperands(v);
  }
}

function crossesLoop(
  inner: readonly Instr[],
  outer: readonly Instr[],
  parent: ReadonlyMap<readonly Instr[], readonly Instr[] | null>,
  loops: ReadonlySet<readonly Instr[]>,
): boolean {
  for (let b: readonly Instr[] | null | undefined = inner; b && b !== outer; b = parent.get(b)) {
    if (loops.has(b)) return true;
  }
  return false;
}

/**
 * `acc = dot(a, b, acc)` inside a loop, where the carried acc is read by nothing else: the dot
 * accumulates straight into the carried buffer (saves two tile copies per iteration).
 */
function findInPlaceDots(block: readonly Instr[], out: Map<number, number>): void {
  for (const ins of block) {
    if (ins.op === 'for') {
      findInPlaceDots(ins.body, out);
      forLoopDots(ins, out);
    } else if (ins.op === 'if') {
      findInPlaceDots(ins.then, out);
      findInPlaceDots(ins.else, out);
    }
  }
}

function forLoopDots(loop: ForI, out: Map<number, number>): void {
  loop.yields.forEach((y, i) => {
    const c = loop.carried[i]!;
    if (y.op !== 'dot' || y.acc !== c) return;
    if (!loop.body.includes(y)) return;
    let count = 0;
    // Direct operand references only: every instruction of the body is scanned once.
    forEachUse(loop.body, (o) => { if (o === c) count++; });
    loop.yields.forEach((o, j) => { if (j !== i && o === c) count++; });
    if (count === 1) out.set(y.id, c.id);
  });
}

/** Every operand of a value (lazy or not). */
export function operandsOf(v: Value): Value[] {
  switch (v.op) {
    case 'dot': return [v.a, v.b, ...(v.acc ? [v.acc] : [])];
    case 'reduce': case 'trans': return [v.src];
    default: return lazyOperands(v);
  }
}
