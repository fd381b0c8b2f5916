/**
 * @fileoverview Argument parsing for the `tilejit` command: flags declared per command, so a
 * misspelt or missing value is a usage error (exit 2) that says what was expected.
 */

/** A usage mistake: printed with the command's usage, exit status 2. */
export class UsageError extends Error {
  constructor(message: string, readonly command?: string) {
    super(message);
  }
}

/** Where the command writes. `tty`: stderr is a terminal (progress redraws in place). */
export interface CliIO {
  out(text: string): void;
  err(text: string): void;
  readonly tty?: boolean;
}

/** Flags a command accepts: boolean switches and flags that take a value. */
export interface FlagSpec {
  readonly switches?: readonly string[];
  readonly values?: readonly string[];
}

/** Parsed arguments: positionals in order, flags by name (without the dashes). */
export interface Parsed {
  readonly positionals: string[];
  readonly flags: Map<string, string | true>;
}

/** Parse `args` against `spec`; unknown flags and missing values are usage errors. */
export function parseArgs(args: readonly string[], spec: FlagSpec, command: string): Parsed {
  const positionals: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    if (spec.switches?.includes(name)) {
      if (eq >= 0) throw new UsageError(`--${name} takes no value`, command);
      flags.set(name, true);
    } else if (spec.values?.includes(name)) {
      const v = eq >= 0 ? a.slice(eq + 1) : args[++i];
      if (v === undefined || v === '' || (eq < 0 && v.startsWith('--'))) throw new UsageError(`--${name} needs a value`, command);
      flags.set(name, v);
    } else {
      throw new UsageError(`unknown option '${a}'`, command);
    }
  }
  return { positionals, flags };
}

/** A non-negative integer flag, or the default. */
export function intFlag(p: Parsed, name: string, dflt: number, command: string): number {
  const v = p.flags.get(name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !/^\d+$/.test(v) || !Number.isSafeInteger(n)) throw new UsageError(`--${name} must be a non-negative integer, got '${String(v)}'`, command);
  return n;
}

/** `MxNxK` (or `M,N,K`) as three positive integers. */
export function parseShape(text: string, command: string): [number, number, number] {
  return parseDims(text, 'MxNxK', command) as [number, number, number];
}

/** `--shape` with as many dims as `form` names (e.g. 'MxN'), each a positive integer <= 65536. */
export function parseDims(text: string, form: string, command: string): number[] {
  const parts = text.split(/[x,]/);
  const dims = parts.map(Number);
  if (parts.length !== form.split('x').length || !dims.every((d) => Number.isInteger(d) && d > 0 && d <= 1 << 16)) {
    throw new UsageError(`--shape must be ${form} with positive integers (at most 65536), got '${text}'`, command);
  }
  return dims;
}
