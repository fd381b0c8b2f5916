/**
 * @fileoverview The emission context shared by every codegen file: the binaryen module, the
 * locals of the function being built, and the target's features. Together with module.ts this
 * is the only place that knows how binaryen functions are assembled.
 */
import binaryen from 'binaryen';

export type Ref = binaryen.ExpressionRef;

/** The part of binaryen's C API that the typed JS builder does not expose. */
const relaxedApi = binaryen as unknown as {
  _BinaryenSIMDTernary(module: number, op: number, a: Ref, b: Ref, c: Ref): Ref;
  RelaxedMaddVecF32x4: number;
};
export type BType = binaryen.Type;

/** Target features a specialisation is compiled for (part of the cache key). */
export interface Target {
  /** Use f32x4.relaxed_madd (FMA) where a fused multiply-add is wanted. */
  readonly relaxed: boolean;
  /**
   * Contract the kernel's own f32 `a * b + c` (vector lanes) into one multiply-add, which on a
   * relaxed target rounds once instead of twice (the jit option `fpFusion`; default off).
   */
  readonly fpFusion?: boolean;
}

/** Builds one function: hands out locals and knows the target. */
export class Emit {
  readonly vars: BType[] = [];
  constructor(
    readonly m: binaryen.Module,
    readonly params: readonly BType[],
    readonly target: Target,
  ) {}

  /** A fresh local of `type`; returns its index. */
  local(type: BType): number {
    this.vars.push(type);
    return this.params.length + this.vars.length - 1;
  }

  /** `a * b + c` on f32x4: one relaxed_madd when the target has it, else mul then add. */
  madd(a: Ref, b: Ref, c: Ref): Ref {
    if (this.target.relaxed) {
      // The JS builder has no relaxed ops; the C API does.
      return relaxedApi._BinaryenSIMDTernary(this.m.ptr, relaxedApi.RelaxedMaddVecF32x4, a, b, c);
    }
    return this.m.f32x4.add(this.m.f32x4.mul(a, b), c);
  }

  /**
   * |x| on f32x4 as a bitwise and with a constant. V8 lowers f32x4.abs to three instructions
   * (build all-ones, shift it into the mask, and), the shift on a floating-point port; the
   * constant here is built once outside the loop, so what remains is one and.
   */
  fabs(x: Ref): Ref {
    return this.m.v128.and(x, this.m.i32x4.splat(this.m.i32.const(0x7fffffff)));
  }

  /** -x on f32x4 as a bitwise xor with the sign bit (see fabs). */
  fneg(x: Ref): Ref {
    return this.m.v128.xor(x, this.m.i32x4.splat(this.m.i32.const(0x80000000 | 0)));
  }

  /** Evaluate `value` once into a fresh local and return [set, get-factory]. */
  bind(type: BType, value: Ref): { set: Ref; get: () => Ref } {
    const idx = this.local(type);
    return { set: this.m.local.set(idx, value), get: () => this.m.local.get(idx, type) };
  }
}

/** The feature set every tilejit module is built with (relaxed SIMD added per target). */
export function moduleFeatures(target: Target): number {
  let f =
    binaryen.Features.SIMD128 |
    binaryen.Features.Atomics |
    binaryen.Features.BulkMemory |
    binaryen.Features.BulkMemoryOpt |
    binaryen.Features.NontrappingFPToInt |
    binaryen.Features.SignExt |
    binaryen.Features.MutableGlobals;
  if (target.relaxed) f |= binaryen.Features.RelaxedSIMD;
  return f;
}
