/**
 * @fileoverview The two error classes users catch. Compile errors carry every diagnostic of a
 * kernel (code, line:column, code frame); run-time errors name the kernel and the program.
 */
import type { Loc } from './ir/ir.js';

/** One problem found in kernel source. */
export interface Diagnostic {
  /** Stable machine-readable code, e.g. 'E_SHAPE'. */
  readonly code: string;
  readonly message: string;
  /** 1-based line and column in the kernel source (0 when not tied to a place). */
  readonly line: number;
  readonly column: number;
}

/** Columns of source a code frame shows per line. */
const FRAME_WIDTH = 120;

/**
 * Where a run-time fault happened, for its message: `at L:C` (`in helper 'h' at L:C` for a place
 * in a helper) and the code frame from that place's own source (empty without one).
 */
export function faultPlace(loc: Loc, source: string | undefined, helpers: Readonly<Record<string, string>> | undefined): { at: string; frame: string } {
  const text = loc.helper ? helpers?.[loc.helper] : source;
  return {
    at: `${loc.helper ? `in helper '${loc.helper}' ` : ''}at ${loc.line}:${loc.column}`,
    frame: text !== undefined && loc.line > 0 ? `\n${codeFrame(text, loc)}` : '',
  };
}

/** Source lines around `loc` with a caret under the column, like Triton's errors. */
export function codeFrame(source: string, loc: Loc, context = 1): string {
  const lines = source.split('\n');
  const first = Math.max(1, loc.line - context);
  const last = Math.min(lines.length, loc.line + context);
  const width = String(last).length;
  // A long line (a minified kernel is one) shows a window around the column, the same window on
  // every line of the frame so they stay aligned.
  const col = Math.max(0, loc.column - 1);
  const start = Math.max(0, col - FRAME_WIDTH / 2);
  const clip = (text: string): string => {
    if (text.length <= FRAME_WIDTH && start === 0) return text;
    const part = text.slice(start, start + FRAME_WIDTH);
    return `${start > 0 ? '…' : ''}${part}${start + FRAME_WIDTH < text.length ? '…' : ''}`;
  };
  const out: string[] = [];
  for (let n = first; n <= last; n++) {
    const mark = n === loc.line ? '>' : ' ';
    const text = lines[n - 1] ?? '';
    out.push(`${mark} ${String(n).padStart(width)} | ${clip(text)}`);
    if (n === loc.line) {
      // Tabs stay tabs under the caret, so it lines up however the terminal expands them.
      const seen = text.slice(start, col);
      const lead = (start > 0 ? ' ' : '') + seen.replace(/[^\t]/g, ' ') + ' '.repeat(Math.max(0, col - start - seen.length));
      out.push(`  ${' '.repeat(width)} | ${lead}^`);
    }
  }
  return out.join('\n');
}

/** A kernel that is not valid tilejit: every diagnostic found, each with a code frame. */
export class KernelCompileError extends Error {
  override readonly name = 'KernelCompileError';
  /** The first diagnostic's code (all of them are in `diagnostics`). */
  readonly code: string;
  readonly line: number;
  readonly column: number;
  constructor(
    readonly kernelName: string,
    readonly diagnostics: readonly Diagnostic[],
    source?: string,
  ) {
    const parts = diagnostics.map((d) => {
      const head = `${d.code} at ${kernelName}:${d.line}:${d.column}: ${d.message}`;
      return source && d.line > 0 ? `${head}\n${codeFrame(source, d)}` : head;
    });
    const count = diagnostics.length === 1 ? '' : ` (${diagnostics.length} errors)`;
    super(`kernel '${kernelName}' does not compile${count}\n${parts.join('\n\n')}`);
    const first = diagnostics[0];
    this.code = first?.code ?? 'E_UNKNOWN';
    this.line = first?.line ?? 0;
    this.column = first?.column ?? 0;
  }
}

/** An access outside its tensor, found by a checked launch. */
export interface BoundsFault {
  readonly kind: 'load' | 'store';
  /** The tensor parameter's name. */
  readonly tensor: string;
  /** The element offset accessed. */
  readonly offset: number;
  /** The tensor's element count: valid offsets are [0, size). */
  readonly size: number;
  /** 1-based place of the load or store in the kernel source, or in `helper`'s. */
  readonly line: number;
  readonly column: number;
  /** The helper the load or store is written in (absent: the kernel itself). */
  readonly helper?: string;
}

/** A launch that failed at run time: a trap, an out-of-bounds access, a dead worker. */
export class KernelRuntimeError extends Error {
  override readonly name = 'KernelRuntimeError';
  /** Set when a checked launch found an access outside its tensor (nothing was written there). */
  readonly fault?: BoundsFault;
  constructor(
    message: string,
    readonly kernelName: string,
    /** The program that failed as [p0, p1, p2], when known. */
    readonly programId?: readonly number[],
    options?: { cause?: unknown; fault?: BoundsFault },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    if (options?.fault) this.fault = options.fault;
  }
}
