/**
 * @fileoverview What the compiler hands the runtime: a WebAssembly module with a fixed entry
 * point, plus what the runtime needs to call it.
 */
import type { WorkFn } from './profile.js';

/**
 * A compiled specialisation. The module imports `env.memory` (shared) and exports
 * `run(pidStart, pidEnd, g0, g1, g2, scratch, ...params)`, which runs linear program ids
 * [pidStart, pidEnd) (p0 = lin % g0 fastest). The first 16 bytes of scratch are reserved: the
 * kernel writes the id of the program it is running there (i32 0), so a trap can name it; a
 * checked kernel that finds an access out of bounds writes the site's index + 1 (i32 1) and the
 * element offset (i32 2) there before it traps.
 */

/** A load or store of a checked kernel, as a bounds fault names it. */
export interface CheckedSite {
  readonly kind: 'load' | 'store';
  /** The tensor parameter's name. */
  readonly tensor: string;
  /** Index in the launch's params of that tensor's element count (a hidden param). */
  readonly sizeParam: number;
  readonly line: number;
  readonly column: number;
  /** The helper the access is written in (absent: the kernel). */
  readonly helper?: string;
}

/** What a checked kernel's faults are reported with. */
export interface CheckedInfo {
  readonly sites: readonly CheckedSite[];
  /** The kernel source, for the code frame. */
  readonly source: string;
  /** The helpers' sources by name (a site in a helper is framed in its own). */
  readonly helpers: Readonly<Record<string, string>>;
}

export interface CompiledKernel {
  readonly name: string;
  readonly module: WebAssembly.Module;
  /** Scratch bytes one runner needs (header + tile buffers). */
  readonly scratchBytes: number;
  /** wasm types of the trailing params (tensors are i32 byte offsets). */
  readonly paramTypes: readonly ('i32' | 'f32')[];
  /** The kernel's work estimate, for the profiler (`jit(..., { work })`). */
  readonly work?: WorkFn;
  /** Present when every load and store is bounds-checked (a checked launch). */
  readonly checked?: CheckedInfo;
}
