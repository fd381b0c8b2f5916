/**
 * @fileoverview Turning a trap into a KernelRuntimeError, the same for the calling thread and
 * the pool: the program id and, for a checked kernel's bounds fault, the access's place, the
 * tensor, the offset and the tensor's size.
 */
import { faultPlace, KernelRuntimeError } from '../errors.js';
import type { CompiledKernel } from './compiled.js';

/** The scratch header words a trap leaves behind: [linear pid, site + 1 (0 = none), offset]. */
export interface TrapRecord {
  readonly lin: number;
  readonly site: number;
  readonly offset: number;
}

/** The [p0, p1, p2] of a linear program id (p0 fastest). */
export function programOf(lin: number, grid: readonly [number, number, number]): number[] {
  return [lin % grid[0], Math.floor(lin / grid[0]) % grid[1], Math.floor(lin / (grid[0] * grid[1]))];
}

/** The error a launch rejects with after a trap (`message`: the engine's). */
export function trapError(
  ck: CompiledKernel, grid: readonly [number, number, number], rec: TrapRecord, params: readonly number[], message: string, cause?: unknown,
): KernelRuntimeError {
  const pid = programOf(rec.lin, grid);
  const site = rec.site > 0 ? ck.checked?.sites[rec.site - 1] : undefined;
  if (!site) {
    // Unchecked code keeps no places; say where to get one.
    const hint = ck.checked ? '' : " (the launch option checked: true names the line of an out-of-bounds access; kernel.interpret(...) with the same arguments names the line of any fault)";
    return new KernelRuntimeError(`kernel '${ck.name}' trapped in program (${pid.join(', ')}): ${message}${hint}`, ck.name, pid, { cause });
  }
  const size = params[site.sizeParam] ?? 0;
  const what = site.kind === 'load' ? 'load from' : 'store to';
  const { at, frame } = faultPlace(site, ck.checked?.source, ck.checked?.helpers);
  const head = `kernel '${ck.name}' program (${pid.join(', ')}) ${at}: out-of-bounds ${what} tensor '${site.tensor}' at offset ${rec.offset}, outside [0, ${size}): the tensor has ${size} elements`;
  return new KernelRuntimeError(`${head}${frame}`, ck.name, pid, {
    cause,
    fault: { kind: site.kind, tensor: site.tensor, offset: rec.offset, size, line: site.line, column: site.column, ...(site.helper ? { helper: site.helper } : {}) },
  });
}
