/**
 * @fileoverview `ops.packWeights`: a weight matrix laid out once in column panels for the
 * products that reuse it (inference: `ops.matmul(x, packed)` for every token).
 */
import { PANEL_K_STEP, packWeightsKernel, panelWidth } from '../../templates/packed.js';
import type { StorageDType } from '../ir/ir.js';
import type { Runtime } from '../runtime/runtime.js';
import type { Tensor } from '../runtime/tensor.js';
import { fail, floatTensor, oneOf } from './common.js';

/** Options of `ops.packWeights`. */
export interface PackWeightsOptions {
  /** b is [N, K] (a linear layer's weight): pack its transpose. */
  readonly transB?: boolean;
  /** Storage of the panels (default b's): 'bf16' or 'f16' halves the bytes a product streams. */
  readonly dtype?: 'f32' | 'f16' | 'bf16';
}

/**
 * A [K, N] weight matrix packed by `ops.packWeights`, for `ops.matmul(a, packed, opts)`. It
 * owns its memory: `free()` it when done (the source tensor is not needed after packing).
 */
export class PackedWeights {
  /** @internal Use `ops.packWeights`. */
  constructor(
    /** The panels: ceil(N / nr) panels of `panelK` rows of `nr`, zero past K and N. */
    readonly panels: Tensor,
    /** Rows of op(B): the inner dimension a product needs. */
    readonly K: number,
    /** Columns of op(B): the output's last dimension. */
    readonly N: number,
    /** Rows a panel holds: K rounded up to a multiple of 16. */
    readonly panelK: number,
    /** Columns a panel holds (16 for f32, 32 for halves: one 64-byte line a row). */
    readonly nr: number,
    /**
     * Storage dtype of the weights packed (the output's dtype follows it as with the unpacked
     * weights: a's dtype when they match, else f32).
     */
    readonly sourceDtype: StorageDType = panels.dtype,
  ) {
    const dtype = panels.dtype;
    const ok = dtype !== 'i32' && Number.isInteger(K) && Number.isInteger(N) && K > 0 && N > 0 && nr === panelWidth(dtype) &&
      panelK === Math.ceil(K / PANEL_K_STEP) * PANEL_K_STEP && panels.size === Math.ceil(N / nr) * panelK * nr;
    if (!ok) throw new TypeError(`PackedWeights: panels [${panels.shape.join(', ')}] (${dtype}) do not hold a [${K}, ${N}] matrix in panels of ${nr} x ${panelK}; make them with ops.packWeights`);
  }

  /** [K, N], the shape of op(B). */
  get shape(): readonly [number, number] {
    return [this.K, this.N];
  }

  /** Storage dtype of the panels. */
  get dtype(): 'f32' | 'f16' | 'bf16' {
    return this.panels.dtype as 'f32' | 'f16' | 'bf16';
  }

  get runtime(): Runtime {
    return this.panels.runtime;
  }

  get isFreed(): boolean {
    return this.panels.isFreed;
  }

  free(): void {
    this.panels.free();
  }
}

/**
 * Packs op(b) ([K, N]; b is [N, K] with `transB`) into column panels once, so that products
 * with it stream each panel as one sequential run: GEMV and small-M GEMM read a 64-byte line
 * a k step instead of K rows a row-pitch apart. Pass the result to `ops.matmul` as its b.
 */
export async function packWeights(b: Tensor, opts: PackWeightsOptions = {}): Promise<PackedWeights> {
  const op = 'packWeights';
  floatTensor(op, 'b', b);
  if (b.shape.length !== 2) fail(op, `b must be 2-D ([K, N], or [N, K] with transB), got shape [${b.shape.join(', ')}]`);
  const transB = opts.transB ?? false;
  if (typeof transB !== 'boolean') fail(op, `transB must be a boolean, got ${typeof transB}`);
  const dtype = opts.dtype === undefined ? (b.dtype as 'f32' | 'f16' | 'bf16') : oneOf(op, 'dtype', opts.dtype, ['f32', 'f16', 'bf16'] as const);
  const [K, N] = transB ? [b.shape[1]!, b.shape[0]!] : [b.shape[0]!, b.shape[1]!];
  if (K === 0 || N === 0) fail(op, `b must have at least one row and column, got shape [${b.shape.join(', ')}]`);
  const nr = panelWidth(dtype);
  const panelK = Math.ceil(K / PANEL_K_STEP) * PANEL_K_STEP;
  const panelCount = Math.ceil(N / nr);
  const panels = b.runtime.empty([panelCount * panelK * nr], dtype);
  try {
    await packWeightsKernel.launch({ grid: [panelK / PANEL_K_STEP, panelCount, 1], NR: nr, BK: PANEL_K_STEP, TRANS_B: transB, runtime: b.runtime }, b, panels, K, N, panelK);
  } catch (err) {
    panels.free();
    throw err;
  }
  return new PackedWeights(panels, K, N, panelK, nr, b.dtype);
}
