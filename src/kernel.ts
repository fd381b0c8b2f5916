/**
 * @fileoverview `jit`: a kernel object that specialises, compiles, caches and launches. The
 * cache key holds everything that changes the generated code and nothing else, so a user can
 * see from `compileLog` why a launch compiled.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KernelCompileError, KernelRuntimeError } from './errors.js';
import type { KernelIR, StorageDType } from './ir/ir.js';
import type { AccessSite } from '../codegen/module.js';
import { DEFAULT_LIMITS, LimitError, type CompileLimits } from './ir/limits.js';
import { printIR } from './ir/print.js';
import { interpret, type InterpArg } from './interp/index.js';
import { helperSources, parseKernel, specialize, type ConstexprValue, type ParamKind, type ParsedKernel, type ParseOptions, type Signature } from './lang/index.js';
import { moduleCache, hashKey } from './runtime/cache.js';
import type { CheckedSite, CompiledKernel } from './runtime/compiled.js';
import { detectFeatures, enableWasmFlags } from './runtime/features.js';
import type { WorkFn } from './runtime/profile.js';
import { Runtime } from './runtime/runtime.js';
import { Tensor } from './runtime/tensor.js';

/** Bumped whenever generated code changes meaning; part of every cache key. */
export const TILEJIT_VERSION = '0.1.0';
const BINARYEN_VERSION = '132';

/** Options of `jit`. */
export interface JitOptions extends ParseOptions {
  /** Name used in errors (defaults to the function's name). */
  readonly name?: string;
  /**
   * Per-kernel compile limits (defaults: MAX_CODE_BYTES, MAX_COMPILE_MS, MAX_IR_VALUES). A host
   * compiling untrusted source may lower them; one that trusts its kernels may raise them.
   */
  readonly limits?: Partial<CompileLimits>;
  /** A launch's work (flops, bytes) from its grid and run-time params, for the profiler's rates. */
  readonly work?: WorkFn;
  /**
   * Contract `a * b + c` on f32 tiles (where the add is the product's only use, so a value
   * rounds the same wherever it is evaluated) into one fused multiply-add where the target has relaxed
   * SIMD (FMA), as C compilers do under `-ffp-contract=fast` and Triton does by default: fewer
   * instructions, one rounding instead of two, so results may differ from the unfused form (and
   * from the interpreter) in the last bit. Default false: every product is rounded as written.
   */
  readonly fpFusion?: boolean;
}

/** Launch options: the grid, constexpr values by name, and where to run. */
export interface LaunchOptions {
  /** Programs along each axis: [g0], [g0, g1] or [g0, g1, g2]. */
  readonly grid: readonly number[];
  /** The runtime whose memory the tensors live in (default: the tensors' runtime). */
  readonly runtime?: Runtime;
  /** Compile for relaxed SIMD (FMA); default: detected. */
  readonly relaxedSimd?: boolean;
  /**
   * Bounds-check every load and store against the tensor it addresses (default: the runtime's
   * `checked`, false unless set). An access outside its tensor rejects the launch with a
   * KernelRuntimeError naming the kernel, the access's line:column, the program id, the offset
   * and the tensor's size (also in `err.fault`); nothing outside the tensor is written. Lanes a
   * mask turns off are never checked. Checked code is compiled separately (unchecked launches
   * run exactly the code they ran before) and costs a compare per access.
   */
  readonly checked?: boolean;
  /** Constexpr parameters by name. */
  readonly [constexpr: string]: unknown;
}

/** An argument of a launch: a tensor for `ptr` params, a number for `i32`/`f32`. */
export type KernelArg = Tensor | number;

/** One compilation, as reported by `compileLog`. */
export interface CompileRecord {
  readonly key: string;
  readonly reason: string;
  readonly ms: number;
  readonly fromDisk: boolean;
}

interface Spec {
  readonly grid: [number, number, number];
  readonly constexprs: Record<string, ConstexprValue>;
  readonly tensorDtypes: Record<string, StorageDType>;
  readonly divisibility: Record<string, number>;
  readonly relaxed: boolean;
  /** Bounds-checked: `params` then end with each tensor's element count. */
  readonly checked: boolean;
  readonly runtime: Runtime;
  readonly params: number[];
  readonly interpArgs: InterpArg[];
  /** Bytes of the distinct tensors passed (how much memory the launch can touch). */
  readonly bytes: number;
  /** The tensor arguments by parameter name (checked again just before the launch runs). */
  readonly tensors: readonly (readonly [string, Tensor])[];
}

const RESERVED = new Set(['grid', 'runtime', 'relaxedSimd', 'checked']);

let fingerprint: string | undefined;
/**
 * A hash of the compiler's own files (front end and code generator): a disk cache written by
 * another build of the compiler must never be reused, even when the version string did not change.
 */
export function compilerFingerprint(): string {
  if (fingerprint) return fingerprint;
  const h = createHash('sha256');
  try {
    // The front end (src/lang, src/ir) decides the IR and codegen/ the module: both are hashed,
    // with src/util, whose math (erf's coefficients, half-precision rounding) both use.
    const roots = ['../codegen/', './lang/', './ir/', './util/'].map((d) => fileURLToPath(new URL(d, import.meta.url)));
    const files: string[] = [];
    const walk = (dir: string): void => {
      for (const ent of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, ent.name);
        if (ent.isDirectory()) walk(p);
        else if (/\.(js|ts)$/.test(ent.name) && !ent.name.endsWith('.d.ts')) files.push(p);
      }
    };
    for (const root of roots) walk(root);
    for (const f of files.sort()) h.update(readFileSync(f));
  } catch {
    h.update(TILEJIT_VERSION);
  }
  fingerprint = h.digest('hex').slice(0, 16);
  return fingerprint;
}

let compilerImported = false;
/** The code generator (and with it binaryen) is loaded only on a cache miss. */
async function loadCompiler(): Promise<typeof import('../codegen/module.js')> {
  compilerImported = true;
  return import('../codegen/module.js');
}

/** Whether this process has loaded the code generator (false while every launch hits the cache). */
export function compilerLoaded(): boolean {
  return compilerImported;
}

/** A compiled-on-demand kernel. */
export class Kernel {
  readonly name: string;
  readonly source: string;
  readonly signature: Signature;
  private readonly parsed: ParsedKernel;
  private readonly compiled = new Map<string, CompiledKernel>();
  private readonly irs = new Map<string, KernelIR>();
  private lastParts: Record<string, string> | undefined;
  private baseHash: string | undefined;
  /** The jit option `fpFusion` (part of the hash: it changes the generated code). */
  private readonly fpFusion: boolean;
  private readonly log: CompileRecord[] = [];
  /** The compile limits of this kernel. */
  readonly limits: CompileLimits;
  private readonly work: WorkFn | undefined;

  constructor(fnOrSource: string | ((...args: never[]) => unknown), opts: JitOptions) {
    if (!opts || typeof opts !== 'object' || !opts.signature) {
      throw new TypeError('jit(fn, { signature }) needs a signature naming every parameter: ptr | i32 | f32 | constexpr');
    }
    const limits: Record<string, number> = { ...DEFAULT_LIMITS };
    for (const [k, v] of Object.entries(opts.limits ?? {})) {
      if (!Object.prototype.hasOwnProperty.call(DEFAULT_LIMITS, k)) throw new TypeError(`jit: unknown limit '${k}' (limits: ${Object.keys(DEFAULT_LIMITS).join(', ')})`);
      if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`jit: limit '${k}' must be a positive number, got ${String(v)}`);
      limits[k] = v;
    }
    this.limits = limits as unknown as CompileLimits;
    this.parsed = parseKernel(fnOrSource as string | ((...args: unknown[]) => unknown), opts);
    this.name = opts.name ?? this.parsed.name;
    this.source = this.parsed.source;
    this.signature = opts.signature;
    this.work = opts.work;
    this.fpFusion = opts.fpFusion === true;
  }

  /** The parameters in declaration order, with their kinds. */
  get params(): readonly { readonly name: string; readonly kind: ParamKind }[] {
    return this.parsed.params;
  }

  /**
   * A hash of the source, the inlined helpers and the compiler (tilejit's version, its codegen,
   * binaryen's version): what a tuning result belongs to. Timings measured on other code are
   * not reused.
   */
  get hash(): string {
    this.baseHash ??= hashKey([this.parsed.source, ...this.parsed.helperSources, TILEJIT_VERSION, compilerFingerprint(), BINARYEN_VERSION, ...(this.fpFusion ? ['fpFusion'] : [])]);
    return this.baseHash;
  }

  /** Every compilation so far with its reason (first launch, a constexpr changed, ...). */
  get compileLog(): readonly CompileRecord[] {
    return this.log;
  }

  /** Number of compilations (cache misses in memory; disk hits count, with fromDisk). */
  get compileCount(): number {
    return this.log.length;
  }

  /** Run the grid. Resolves when every program has finished. */
  async launch(opts: LaunchOptions, ...args: KernelArg[]): Promise<void> {
    const spec = this.spec(opts, args);
    // A tensor freed while the launch compiled or queued: its block may already be another's.
    const live = (): void => {
      for (const [name, t] of spec.tensors) {
        if (t.isFreed) throw new Error(`${this.name}: tensor '${name}' was freed before the launch ran (await a launch before freeing what it uses)`);
      }
    };
    // Launches of one runtime run in the order they were issued, compiling or not.
    await spec.runtime.inOrder(async () => spec.runtime.execute(await this.compile(spec), spec.grid, spec.params, spec.bytes, undefined, live));
  }

  /** Same effect as `launch`, through the reference interpreter (debugging, tests). */
  async interpret(opts: LaunchOptions, ...args: KernelArg[]): Promise<void> {
    const spec = this.spec(opts, args);
    const ir = this.specialise(spec);
    interpret(ir, spec.grid, spec.interpArgs, spec.runtime.memory.buffer, { kernelName: this.name, source: this.source, helpers: helperSources(this.parsed) });
  }

  /** The WebAssembly text of this specialisation (the module that runs). */
  async wat(opts: LaunchOptions, ...args: KernelArg[]): Promise<string> {
    const spec = this.spec(opts, args);
    const out = await this.codegen(this.specialise(spec), spec, performance.now(), true);
    return out.wat!;
  }

  /** Compile this specialisation (or find it in the caches) without running it. */
  async prepare(opts: LaunchOptions, ...args: KernelArg[]): Promise<CompiledKernel> {
    return this.compile(this.spec(opts, args));
  }

  /** The specialised IR itself (for tools; see `ir` for text). */
  specialisedIR(opts: LaunchOptions, ...args: KernelArg[]): KernelIR {
    return this.specialise(this.spec(opts, args));
  }

  /** The specialised IR as text. */
  async ir(opts: LaunchOptions, ...args: KernelArg[]): Promise<string> {
    return printIR(this.specialise(this.spec(opts, args)));
  }

  private spec(opts: LaunchOptions, args: readonly KernelArg[]): Spec {
    if (!opts || typeof opts !== 'object') throw new TypeError(`${this.name}: launch options must be an object with a grid`);
    const grid = normaliseGrid(this.name, opts.grid);
    const constexprs: Record<string, ConstexprValue> = {};
    const runParams = this.parsed.params.filter((p) => p.kind !== 'constexpr');
    for (const p of this.parsed.params) {
      if (p.kind !== 'constexpr') continue;
      const v = opts[p.name];
      if (v === undefined) {
        // A misspelt name is the likely cause: say which given option no constexpr takes.
        const names = new Set(this.parsed.params.filter((q) => q.kind === 'constexpr').map((q) => q.name));
        const stray = Object.keys(opts).filter((k) => !RESERVED.has(k) && !names.has(k));
        throw new TypeError(`${this.name}: constexpr '${p.name}' is missing from the launch options${stray.length ? ` (unknown option${stray.length > 1 ? 's' : ''}: ${stray.map((k) => `'${k}'`).join(', ')})` : ''}`);
      }
      if (typeof v !== 'number' && typeof v !== 'boolean' && typeof v !== 'string') {
        throw new TypeError(`${this.name}: constexpr '${p.name}' must be a number, boolean or string, got ${typeof v}`);
      }
      constexprs[p.name] = v;
    }
    for (const k of Object.keys(opts)) {
      if (!RESERVED.has(k) && !(k in constexprs)) {
        throw new TypeError(`${this.name}: unknown launch option '${k}' (constexprs: ${Object.keys(constexprs).join(', ') || 'none'})`);
      }
    }
    if (args.length !== runParams.length) {
      throw new TypeError(`${this.name}: expected ${runParams.length} arguments (${runParams.map((p) => p.name).join(', ')}), got ${args.length}`);
    }
    let runtime = opts.runtime;
    if (runtime !== undefined && !(runtime instanceof Runtime)) throw new TypeError(`${this.name}: launch option 'runtime' must be a Runtime, got ${describe(runtime)}`);
    if (opts.relaxedSimd !== undefined && typeof opts.relaxedSimd !== 'boolean') throw new TypeError(`${this.name}: launch option 'relaxedSimd' must be a boolean, got ${describe(opts.relaxedSimd)}`);
    const tensorDtypes: Record<string, StorageDType> = {};
    const divisibility: Record<string, number> = {};
    const params: number[] = [];
    const sizes: number[] = [];
    const interpArgs: InterpArg[] = [];
    const tensors: [string, Tensor][] = [];
    let bytes = 0;
    runParams.forEach((p, i) => {
      const a = args[i];
      if (p.kind === 'ptr') {
        if (!(a instanceof Tensor)) throw new TypeError(`${this.name}: argument '${p.name}' must be a Tensor, got ${describe(a)}`);
        if (a.isFreed) throw new Error(`${this.name}: tensor '${p.name}' was freed`);
        runtime ??= a.runtime;
        if (a.runtime !== runtime) throw new TypeError(`${this.name}: tensor '${p.name}' belongs to another runtime`);
        tensorDtypes[p.name] = a.dtype;
        // The same tensor often fills several pointer slots (unused ones): count it once.
        if (!params.includes(a.byteOffset)) bytes += a.byteLength;
        params.push(a.byteOffset);
        tensors.push([p.name, a]);
        sizes.push(a.size);
        interpArgs.push({ kind: 'tensor', byteOffset: a.byteOffset, length: a.size });
      } else {
        if (typeof a !== 'number' || Number.isNaN(a) && p.kind === 'i32') {
          throw new TypeError(`${this.name}: argument '${p.name}' must be a number (${p.kind}), got ${describe(a)}`);
        }
        if (p.kind === 'i32') {
          if (!Number.isInteger(a) || a < -2147483648 || a > 2147483647) {
            throw new RangeError(`${this.name}: argument '${p.name}' must be an i32 integer, got ${a}`);
          }
          divisibility[p.name] = a % 16 === 0 ? 16 : a % 4 === 0 ? 4 : 1;
        }
        params.push(a);
        interpArgs.push(a);
      }
    });
    runtime ??= Runtime.default();
    if (opts.checked !== undefined && typeof opts.checked !== 'boolean') throw new TypeError(`${this.name}: launch option 'checked' must be a boolean, got ${typeof opts.checked}`);
    const checked = opts.checked ?? runtime.checked;
    // The hidden params of a checked kernel: the tensors' element counts, in param order.
    if (checked) params.push(...sizes);
    const relaxed = opts.relaxedSimd ?? detectFeatures().relaxedSimd;
    if (relaxed && !detectFeatures().relaxedSimd) {
      throw new Error(`${this.name}: relaxedSimd requested but this WebAssembly engine does not support relaxed SIMD`);
    }
    return { grid, constexprs, tensorDtypes, divisibility, relaxed, checked, runtime, params, interpArgs, bytes, tensors };
  }

  /** Everything that changes the generated code, as named parts (compared to explain recompiles). */
  private keyParts(s: Spec): Record<string, string> {
    const parts: Record<string, string> = {
      source: this.parsed.source,
      helpers: this.parsed.helperSources.join('\u0000'),
      target: s.relaxed ? 'simd+relaxed' : 'simd',
      fpFusion: this.fpFusion ? 'mul+add contracted' : 'off',
      checked: s.checked ? 'bounds-checked' : 'unchecked',
      versions: `tilejit ${TILEJIT_VERSION} (${compilerFingerprint()}), binaryen ${BINARYEN_VERSION}`,
    };
    for (const k of Object.keys(s.constexprs).sort()) parts[`constexpr ${k}`] = JSON.stringify(s.constexprs[k]);
    for (const k of Object.keys(s.tensorDtypes).sort()) parts[`dtype of ${k}`] = s.tensorDtypes[k]!;
    for (const k of Object.keys(s.divisibility).sort()) parts[`divisibility of ${k}`] = String(s.divisibility[k]);
    return parts;
  }

  /**
   * The specialisation key as a plain string (cheap: no hashing on the launch path). The
   * source, helpers and versions enter as one hash computed once per kernel object.
   */
  private fastKey(s: Spec): string {
    let k = `${this.hash}|${s.relaxed ? 'r' : 's'}${s.checked ? 'c' : ''}`;
    for (const [name, v] of Object.entries(s.constexprs)) k += `|${name}=${typeof v === 'string' ? JSON.stringify(v) : String(v)}`;
    for (const [name, v] of Object.entries(s.tensorDtypes)) k += `|${name}:${v}`;
    for (const [name, v] of Object.entries(s.divisibility)) k += `|${name}%${v}`;
    return k;
  }

  private specialise(s: Spec): KernelIR {
    const key = this.fastKey(s);
    let ir = this.irs.get(key);
    if (!ir) {
      ir = specialize(this.parsed, { constexprs: s.constexprs, tensorDtypes: s.tensorDtypes, scalarDivisibility: s.divisibility, maxIrValues: this.limits.maxIrValues });
      this.irs.set(key, ir);
    }
    return ir;
  }

  private async compile(s: Spec): Promise<CompiledKernel> {
    const fast = this.fastKey(s);
    const hit = this.compiled.get(fast);
    if (hit) return hit;
    const parts = this.keyParts(s);
    const key = hashKey([fast]);
    const t0 = performance.now();
    const reason = this.explain(parts);
    this.lastParts = parts;
    enableWasmFlags();
    let cached = moduleCache().get(key);
    let ck: CompiledKernel | undefined;
    if (cached) {
      // An entry whose checksum holds but whose module or metadata does not (another build's
      // bytes, a hand-edited file) is discarded and rebuilt, like one that fails its checksum.
      const meta = cached.meta as { scratchBytes?: unknown; paramTypes?: unknown; sites?: AccessSite[] } | null;
      const okMeta = meta !== null && typeof meta === 'object' && Number.isInteger(meta.scratchBytes) && (meta.scratchBytes as number) >= 0
        && Array.isArray(meta.paramTypes) && meta.paramTypes.every((t) => t === 'i32' || t === 'f32')
        && (meta.sites === undefined || Array.isArray(meta.sites));
      let module: WebAssembly.Module | undefined;
      try {
        if (okMeta) module = new WebAssembly.Module(cached.bytes);
      } catch {
        module = undefined;
      }
      if (module && okMeta) {
        ck = { name: this.name, module, scratchBytes: meta.scratchBytes as number, paramTypes: meta.paramTypes as ('i32' | 'f32')[], work: this.work, ...this.checkedInfo(meta.sites) };
      } else {
        moduleCache().discard(key);
        cached = undefined;
      }
    }
    if (!ck) {
      const out = await this.codegen(this.specialise(s), s, t0, false);
      let module: WebAssembly.Module;
      try {
        module = new WebAssembly.Module(out.bytes);
      } catch (err) {
        throw new KernelRuntimeError(`${this.name}: the generated module did not compile: ${(err as Error).message}`, this.name, undefined, { cause: err });
      }
      ck = { name: this.name, module, scratchBytes: out.scratchBytes, paramTypes: out.paramTypes, work: this.work, ...this.checkedInfo(out.sites) };
      moduleCache().put(key, out.bytes, { scratchBytes: out.scratchBytes, paramTypes: out.paramTypes, name: this.name, ...(out.sites ? { sites: out.sites } : {}) });
    }
    this.compiled.set(fast, ck);
    this.log.push({ key, reason, ms: performance.now() - t0, fromDisk: cached !== undefined });
    return ck;
  }

  /** What a checked module's faults are reported with: each site's tensor name and size param. */
  private checkedInfo(sites: readonly AccessSite[] | undefined): { checked?: CompiledKernel['checked'] } {
    if (!sites) return {};
    const runParams = this.parsed.params.filter((p) => p.kind !== 'constexpr');
    const tensors = runParams.flatMap((p, i) => (p.kind === 'ptr' ? [i] : []));
    const named: CheckedSite[] = sites.map((s) => ({
      kind: s.kind,
      tensor: runParams[s.param]?.name ?? `#${s.param}`,
      sizeParam: runParams.length + tensors.indexOf(s.param),
      line: s.line,
      column: s.column,
      ...(s.helper ? { helper: s.helper } : {}),
    }));
    return { checked: { sites: named, source: this.source, helpers: helperSources(this.parsed) } };
  }

  /** Lower and optimise within the kernel's limits; a limit crossed is a KernelCompileError. */
  private async codegen(ir: KernelIR, s: Spec, t0: number, wat: boolean): Promise<import('../codegen/module.js').CompiledModule> {
    const { compileIR } = await loadCompiler();
    const { maxCodeBytes, maxCompileMs } = this.limits;
    try {
      return await compileIR(ir, { relaxed: s.relaxed, fpFusion: this.fpFusion }, { wat, maxCodeBytes, deadline: t0 + maxCompileMs, budgetMs: maxCompileMs, checked: s.checked });
    } catch (err) {
      if (!(err instanceof LimitError)) throw err;
      const at = err.loc ?? this.parsed.fn.loc;
      throw new KernelCompileError(this.name, [{ code: 'E_LIMIT', message: err.message, line: at.line, column: at.column }], this.source);
    }
  }

  private explain(parts: Record<string, string>): string {
    const prev = this.lastParts;
    if (!prev) return 'first launch';
    const changed = Object.keys({ ...prev, ...parts }).filter((k) => prev[k] !== parts[k]);
    return changed.map((k) => (k === 'source' || k === 'helpers' ? `${k} changed` : `${k}: ${prev[k] ?? '-'} -> ${parts[k] ?? '-'}`)).join('; ');
  }
}

function normaliseGrid(name: string, grid: unknown): [number, number, number] {
  if (!Array.isArray(grid) || grid.length < 1 || grid.length > 3) {
    throw new TypeError(`${name}: grid must be an array of 1 to 3 positive integers, got ${JSON.stringify(grid)}`);
  }
  const g = [1, 1, 1] as [number, number, number];
  grid.forEach((x: unknown, i: number) => {
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 2 ** 31 - 1) {
      throw new RangeError(`${name}: grid[${i}] must be a non-negative integer, got ${String(x)}`);
    }
    g[i] = x;
  });
  if (g[0] * g[1] * g[2] > 2 ** 31 - 1) throw new RangeError(`${name}: grid ${g.join('x')} has more than 2^31-1 programs`);
  return g;
}

function describe(x: unknown): string {
  if (x === null) return 'null';
  if (Array.isArray(x)) return 'an array';
  return typeof x === 'object' ? (x.constructor?.name ?? 'an object') : `${typeof x} ${String(x)}`;
}

/**
 * Make a kernel from a `function` (or its source text). The source is parsed, never run.
 * @example
 * const saxpy = jit(function saxpy(X, Y, Out, a, n, BLOCK) { ... },
 *   { signature: { X: 'ptr', Y: 'ptr', Out: 'ptr', a: 'f32', n: 'i32', BLOCK: 'constexpr' } });
 */
export function jit(fnOrSource: string | ((...args: never[]) => unknown), opts: JitOptions): Kernel {
  return new Kernel(fnOrSource, opts);
}

