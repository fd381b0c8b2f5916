/**
 * @fileoverview `ops`: the built-in kernels as functions on tensors (shape checks, config
 * choice, launch). One file per op.
 */
import { matmul } from './matmul.js';

export type { MatmulOptions } from './matmul.js';

/** The built-in ops. */
export const ops = { matmul } as const;
