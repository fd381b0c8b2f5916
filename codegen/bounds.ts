/**
 * @fileoverview Bounds checks of checked launches. Each tensor load or store site gets an id;
 * before the access runs, its element offsets are compared with the tensor's element count (a
 * hidden i32 parameter). A violation records (site id + 1, offset) in the scratch header and
 * traps, so nothing is read or written out of bounds and the host can name the place. Only
 * lanes that really access memory are checked: masked-off lanes never fault.
 */
import binaryen from 'binaryen';
import type { LoadV, StoreI } from '../src/ir/ir.js';
import type { Emit, Ref } from './emit.js';

/** Scratch header layout (bytes from the runner's scratch base): see SCRATCH_HEADER. */
export const FAULT_SITE = 4;
export const FAULT_OFFSET = 8;

/** One load or store of a checked kernel, as the host reports it. */
export interface AccessSite {
  readonly kind: 'load' | 'store';
  /** Index of the tensor parameter in the kernel's run-time parameters. */
  readonly param: number;
  readonly line: number;
  readonly column: number;
  /** The helper it is written in (absent: the kernel). */
  readonly helper?: string;
}

/** The check emitters of one program function. */
export class BoundsChecks {
  readonly sites: AccessSite[] = [];
  private readonly ids = new Map<LoadV | StoreI, number>();

  /**
   * @param sbase local holding the program's scratch base (header + SCRATCH_HEADER)
   * @param header bytes between the scratch header's start and sbase
   */
  constructor(readonly e: Emit, readonly sbase: number, readonly header: number) {}

  /** The id of an access (one per IR node, however many copies of it codegen emits). */
  site(node: LoadV | StoreI): number {
    let id = this.ids.get(node);
    if (id === undefined) {
      id = this.sites.length;
      this.sites.push({ kind: node.op, param: node.ptr, line: node.loc.line, column: node.loc.column, ...(node.loc.helper ? { helper: node.loc.helper } : {}) });
      this.ids.set(node, id);
    }
    return id;
  }

  /** Record (site, offset) in the scratch header, then trap. */
  fault(site: number, offset: Ref): Ref {
    const m = this.e.m;
    const hdr = (): Ref => m.i32.sub(m.local.get(this.sbase, binaryen.i32), m.i32.const(this.header));
    return m.block(null, [
      m.i32.store(FAULT_OFFSET, 4, hdr(), offset),
      m.i32.store(FAULT_SITE, 4, hdr(), m.i32.const(site + 1)),
      m.unreachable(),
    ]);
  }

  /** One element at `off` (an i32 getter): 0 <= off < n, compared unsigned. */
  scalar(site: number, off: () => Ref, n: () => Ref): Ref {
    const m = this.e.m;
    return m.if(m.i32.ge_u(off(), n()), this.fault(site, off()));
  }

  /**
   * Four contiguous elements from `base`: base <u max(n - 3, 0) (`run4`, computed once per
   * program) is one compare for 0 <= base && base + 3 < n, without overflow.
   */
  run4(site: number, base: () => Ref, run4: () => Ref, n: () => Ref): Ref {
    const m = this.e.m;
    // The first lane outside: base itself when it is below 0 or at/after the end, else lane n.
    const first = m.select(m.i32.or(m.i32.lt_s(base(), m.i32.const(0)), m.i32.ge_s(base(), n())), base(), n());
    return m.if(m.i32.ge_u(base(), run4()), this.fault(site, first));
  }

  /** The value of a tensor's `run4` local: max(n - 3, 0). */
  run4Limit(n: () => Ref): Ref {
    const m = this.e.m;
    return m.select(m.i32.gt_s(n(), m.i32.const(3)), m.i32.sub(n(), m.i32.const(3)), m.i32.const(0));
  }

  /**
   * Four lanes with offsets `offs` (v128 getter); with `mask`, only lanes whose mask is set. One
   * vector compare in the common case; the lane that faults is found only on the way to the trap.
   */
  lanes(site: number, offs: () => Ref, n: () => Ref, mask?: () => Ref): Ref {
    const m = this.e.m;
    const inside = m.i32x4.lt_u(offs(), m.i32x4.splat(n()));
    const ok = this.e.bind(binaryen.v128, mask ? m.v128.or(inside, m.v128.not(mask())) : inside);
    const find: Ref[] = [];
    for (let l = 0; l < 4; l++) {
      find.push(m.if(m.i32.eqz(m.i32x4.extract_lane(ok.get(), l)), this.fault(site, m.i32x4.extract_lane(offs(), l))));
    }
    return m.block(null, [ok.set, m.if(m.i32.eqz(m.i32x4.all_true(ok.get())), m.block(null, find))]);
  }
}
