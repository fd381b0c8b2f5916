/**
 * @fileoverview The public API of tilejit, and nothing else.
 */
import { jit as baseJit } from './kernel.js';
import { map } from './map.js';

/**
 * Make a kernel from a `function` (or its source text); `jit.map(fn)` turns a scalar function
 * into an elementwise kernel over tensors.
 */
export const jit: typeof baseJit & { readonly map: typeof map } = Object.assign(baseJit, { map });
export { Kernel, TILEJIT_VERSION } from './kernel.js';
export type { MapFunction, MapOptions, MapCallOptions } from './map.js';
export type { JitOptions, LaunchOptions, KernelArg, CompileRecord } from './kernel.js';
export { KernelCompileError, KernelRuntimeError, codeFrame } from './errors.js';
export type { Diagnostic, BoundsFault } from './errors.js';
export { Runtime } from './runtime/runtime.js';
export type { RuntimeOptions, RuntimeStats } from './runtime/runtime.js';
export { Tensor } from './runtime/tensor.js';
export { detectFeatures } from './runtime/features.js';
export { ops, PackedWeights } from './ops/index.js';
export type {
  MatmulOptions, PackWeightsOptions, AttentionOptions, AttentionBackwardOptions, AttentionQKVBackwardOptions, AttentionResult, AttentionGrads, Activation, ElementwiseOptions, GeluOptions, LossOptions, LossResult, Reduction,
  NormOptions, NormResult, NormBackwardOptions, NormGrads, AdamStepOptions, SgdStepOptions,
} from './ops/index.js';
export { Adam, AdamW, SGD, LossScaler } from './optim.js';
export type { AdamOptions, SgdOptions, StepOptions, LossScalerOptions } from './optim.js';
export type { Signature, ParamKind, ConstexprValue } from './lang/index.js';
export type { StorageDType as DType } from './ir/ir.js';
export {
  MAX_SOURCE_LENGTH, MAX_NESTING_DEPTH, MAX_UNROLL, MAX_INLINE_DEPTH, MAX_TILE_ELEMENTS, MAX_IR_VALUES, MAX_SCRATCH_BYTES,
  MAX_CODE_BYTES, MAX_LOCALS, MAX_COMPILE_MS, DEFAULT_LIMITS,
} from './ir/limits.js';
export type { CompileLimits } from './ir/limits.js';
export { autotune, TunedKernel, plotTuneReport } from './tune/index.js';
export type { AutotuneOptions, TunedLaunchOptions, TuneConfig, TuneEvent, TuneMeta, TuneReport, VerifyOptions, NamedArgs, PruneContext, ConfigResult, KeyValue, MachineSignature } from './tune/index.js';
export { Profile } from './runtime/profile.js';
export type { ProfileOptions, KernelProfile, LaunchRecord, LaunchWork, WorkFn, TraceEvent } from './runtime/profile.js';

/**
 * ceil(a / b) for grid sizes, as the kernel language's `cdiv` (and triton.cdiv): `grid:
 * [cdiv(n, BLOCK)]`. Both must be integers, b > 0.
 */
export function cdiv(a: number, b: number): number {
  if (!Number.isInteger(a) || !Number.isInteger(b) || b <= 0) throw new RangeError(`cdiv: expected integers a and b > 0, got ${String(a)} and ${String(b)}`);
  return Math.ceil(a / b);
}
