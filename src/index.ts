/**
 * @fileoverview The public API of tilejit, and nothing else.
 */
export { jit, Kernel, TILEJIT_VERSION } from './kernel.js';
export type { JitOptions, LaunchOptions, KernelArg, CompileRecord } from './kernel.js';
export { KernelCompileError, KernelRuntimeError, codeFrame } from './errors.js';
export type { Diagnostic } from './errors.js';
export { Runtime } from './runtime/runtime.js';
export { Tensor } from './runtime/tensor.js';
export { detectFeatures } from './runtime/features.js';
export { ops } from './ops/index.js';
export type { MatmulOptions } from './ops/index.js';
export type { Signature, ParamKind, ConstexprValue } from './lang/index.js';
export type { StorageDType as DType } from './ir/ir.js';
