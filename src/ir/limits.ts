/**
 * @fileoverview The compile limits, in one place. Kernel source may come from people the host
 * does not trust (playgrounds, notebooks), so every way a small source can make the compiler
 * do unbounded work has a stated bound; a kernel over one gets a KernelCompileError with code
 * E_LIMIT that names the limit and points at the source that crossed it.
 */

/** Characters of kernel (or helper) source text. */
export const MAX_SOURCE_LENGTH = 1 << 20;

/**
 * Syntax nesting depth (statements and expressions inside each other). Real kernels nest a few
 * dozen deep; the bound keeps every recursive walk of the compiler far from the stack limit.
 * A left-deep chain of binary operators (a + b + c ...) counts a level per 16 terms, so a flat
 * sum of up to 4096 terms compiles.
 */
export const MAX_NESTING_DEPTH = 256;

/** Total `staticRange` iterations one specialisation may unroll (every iteration of every loop, outer ones included). */
export const MAX_UNROLL = 4096;

/** Helper kernels inlined inside each other (recursion is refused long before). */
export const MAX_INLINE_DEPTH = 16;

/** Elements of one tile (2^16: a [256, 256] f32 tile is 256 KiB). */
export const MAX_TILE_ELEMENTS = 1 << 16;

/**
 * IR values in one specialisation, after unrolling and inlining. Bounds the work of every pass
 * before the code generator sees the kernel.
 */
export const MAX_IR_VALUES = 1 << 16;

/** Bytes of tile scratch memory one program may need. */
export const MAX_SCRATCH_BYTES = 16 << 20;

/**
 * Bytes of generated WebAssembly before optimisation. The optimiser's time grows faster than
 * linearly with the code it is given, so this is what keeps compile time bounded: it is checked
 * before the optimiser runs.
 */
export const MAX_CODE_BYTES = 1 << 20;

/**
 * Locals of the generated program function after optimisation: the WebAssembly engine's own
 * limit (V8 refuses a function with more than 50,000), checked so that it is a compile error
 * with a name rather than a module the engine rejects.
 */
export const MAX_LOCALS = 50_000;

/**
 * Milliseconds one compilation (specialisation, lowering, optimisation) may take. Checked
 * between stages: a stage that has started runs to its end, and MAX_CODE_BYTES bounds the
 * longest one.
 */
export const MAX_COMPILE_MS = 30_000;

/**
 * The limits a caller may set per kernel with `jit(src, { limits })`: a host running untrusted
 * kernels may lower them, one that trusts its kernels may raise them.
 */
export interface CompileLimits {
  readonly maxCodeBytes: number;
  readonly maxCompileMs: number;
  readonly maxIrValues: number;
}

export const DEFAULT_LIMITS: CompileLimits = {
  maxCodeBytes: MAX_CODE_BYTES,
  maxCompileMs: MAX_COMPILE_MS,
  maxIrValues: MAX_IR_VALUES,
};

/**
 * A limit crossed below the front end (code generation, the compile as a whole); `jit` reports
 * it as a KernelCompileError with code E_LIMIT. `loc` is where in the source, when known.
 */
export class LimitError extends Error {
  override readonly name = 'LimitError';
  constructor(
    /** The limit's name, as exported here (e.g. 'MAX_CODE_BYTES'). */
    readonly limit: string,
    message: string,
    readonly loc?: { readonly line: number; readonly column: number },
  ) {
    super(message);
  }
}
