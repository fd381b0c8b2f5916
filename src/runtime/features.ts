/**
 * @fileoverview WebAssembly engine features: switching on relaxed SIMD and eager TurboFan
 * compilation (V8 flags, set once per thread before any kernel compiles), and detecting what
 * the engine then supports, with tiny hand-assembled modules (no binaryen needed).
 */
import v8 from 'node:v8';

let flagsSet = false;

/**
 * Relaxed SIMD is behind a flag on Node 20. `--no-liftoff` makes V8 compile kernels with
 * TurboFan up front: measured here, a GEMM kernel's first calls otherwise run 5-7x slower at
 * Liftoff, and a tiered-up function is not replaced inside a running loop.
 */
export function enableWasmFlags(): void {
  if (flagsSet) return;
  flagsSet = true;
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  v8.setFlagsFromString('--no-liftoff');
}

const HEADER = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
// type: () -> v128; one function of that type.
const TYPES = [0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7b, 0x03, 0x02, 0x01, 0x00];
const V128_ZERO = [0xfd, 0x0c, ...new Array<number>(16).fill(0)];

function moduleWith(body: number[]): Uint8Array {
  const fn = [0x00, ...body, 0x0b];
  const code = [0x01, fn.length, ...fn];
  return new Uint8Array([...HEADER, ...TYPES, 0x0a, code.length, ...code]);
}

/** What this engine runs. */
export interface WasmFeatures {
  readonly simd: boolean;
  readonly relaxedSimd: boolean;
  readonly threads: boolean;
}

let cached: WasmFeatures | undefined;

/** Detect (once) SIMD, relaxed SIMD (off when TILEJIT_NO_RELAXED=1) and shared memory. */
export function detectFeatures(): WasmFeatures {
  if (cached) return cached;
  enableWasmFlags();
  const simd = WebAssembly.validate(moduleWith(V128_ZERO));
  // f32x4.relaxed_madd (0xfd 0x105) of three zero vectors.
  const relaxed = WebAssembly.validate(moduleWith([...V128_ZERO, ...V128_ZERO, ...V128_ZERO, 0xfd, 0x85, 0x02]));
  let threads = false;
  try {
    threads = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true }).buffer instanceof SharedArrayBuffer;
  } catch {
    threads = false;
  }
  const forcedOff = process.env.TILEJIT_NO_RELAXED === '1';
  cached = { simd, relaxedSimd: relaxed && !forcedOff, threads };
  if (!simd) throw new Error('tilejit needs WebAssembly SIMD, which this engine does not support');
  return cached;
}
