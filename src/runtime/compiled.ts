/**
 * @fileoverview What the compiler hands the runtime: a WebAssembly module with a fixed entry
 * point, plus what the runtime needs to call it.
 */
import type { WorkFn } from './profile.js';

/**
 * A compiled specialisation. The module imports `env.memory` (shared) and exports
 * `run(pidStart, pidEnd, g0, g1, g2, scratch, ...params)`, which runs linear program ids
 * [pidStart, pidEnd) (p0 = lin % g0 fastest). The first 16 bytes of scratch are reserved: the
 * kernel writes the id of the program it is running there, so a trap can name it.
 */
export interface CompiledKernel {
  readonly name: string;
  readonly module: WebAssembly.Module;
  /** Scratch bytes one runner needs (header + tile buffers). */
  readonly scratchBytes: number;
  /** wasm types of the trailing params (tensors are i32 byte offsets). */
  readonly paramTypes: readonly ('i32' | 'f32')[];
  /** The kernel's work estimate, for the profiler (`jit(..., { work })`). */
  readonly work?: WorkFn;
}
