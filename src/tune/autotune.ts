/**
 * @fileoverview `autotune(kernel, { configs, key, grid, prune, warmup, rep })`: Triton's
 * autotuner, with the fixes its users ask for. Results are kept per config (adding a config
 * times only the new one), key values are bucketed to powers of two, every candidate is checked
 * against the reference interpreter on a small input before it is timed (a wrong one is
 * rejected, never chosen), candidates write into scratch copies of the outputs (one cannot hide
 * another's bug, and tuning never touches the caller's tensors), and results persist in a
 * portable JSON file keyed by kernel hash + key bucket + machine signature.
 */
import { join } from 'node:path';
import type { Kernel, KernelArg, LaunchOptions } from '../kernel.js';
import type { ConstexprValue } from '../lang/index.js';
import { defaultCacheDir } from '../runtime/cache.js';
import { Runtime } from '../runtime/runtime.js';
import { Tensor } from '../runtime/tensor.js';
import { bucket, configId, keyId, machineSignature, signatureId, type KeyValue, type MachineSignature } from './key.js';
import { TuneStore, type ConfigResult } from './store.js';

/** A candidate: constexpr values by name. */
export type TuneConfig = Readonly<Record<string, number | string | boolean>>;
/** Constexpr values of a launch: the fixed ones, the config's and the derived ones. */
export type TuneMeta = Readonly<Record<string, ConstexprValue>>;
/** A launch's arguments by parameter name. */
export type NamedArgs = Readonly<Record<string, KernelArg>>;

/** What autotune needs of a kernel (a `Kernel` from `jit`). */
export type TunableKernel = Pick<Kernel, 'name' | 'hash' | 'params' | 'launch' | 'interpret'>;

/** Progress and results, as they happen. */
export type TuneEvent =
  | { readonly type: 'start'; readonly kernel: string; readonly key: Readonly<Record<string, KeyValue>>; readonly configs: number; readonly cached: number }
  | { readonly type: 'cached'; readonly result: ConfigResult }
  | { readonly type: 'candidate'; readonly index: number; readonly total: number; readonly config: TuneConfig }
  | { readonly type: 'rejected'; readonly result: ConfigResult }
  | { readonly type: 'timed'; readonly result: ConfigResult }
  | { readonly type: 'done'; readonly best: ConfigResult; readonly results: readonly ConfigResult[] };

/** Options of `autotune`. */
export interface AutotuneOptions {
  /** The candidates. */
  readonly configs: readonly TuneConfig[];
  /** Parameter (or fixed constexpr) names whose values select the result; numbers are bucketed to powers of two, tensors by their bucketed shape. */
  readonly key: readonly string[];
  /** The grid of a launch, from the constexprs and the arguments. */
  readonly grid: (meta: TuneMeta, args: NamedArgs) => readonly number[];
  /** More constexprs computed from a config and the arguments (e.g. "the shapes divide the tiles"). */
  readonly derive?: (meta: TuneMeta, args: NamedArgs) => Record<string, ConstexprValue>;
  /**
   * Drop candidates before timing (e.g. tiles larger than the problem); may be async (e.g. to
   * compile a candidate and look at its scratch). `meta` holds the launch's fixed constexprs.
   */
  readonly prune?: (configs: readonly TuneConfig[], ctx: PruneContext) => readonly TuneConfig[] | Promise<readonly TuneConfig[]>;
  /** Warm-up per candidate, ms (default 10). */
  readonly warmup?: number;
  /** Timed repetitions per candidate, ms (default 40; at least 3 launches). */
  readonly rep?: number;
  /** `ptr` parameters the kernel writes (default: every `ptr`): these get scratch copies while tuning. */
  readonly outputs?: readonly string[];
  /**
   * Check each candidate against the interpreter first: `args` builds a small problem in the
   * runtime for a candidate's constexprs (it may shape the problem to the tiles); default:
   * copies of the real arguments, which is slow for big ones. `false` skips the check.
   */
  readonly verify?: false | VerifyOptions;
  /** Directory of the results file (default: the module cache's directory); false: memory only. */
  readonly cacheDir?: string | false;
  /** Called on every event. */
  readonly listener?: (e: TuneEvent) => void;
}

/** What `prune` is told about the launch being tuned. */
export interface PruneContext {
  readonly key: Readonly<Record<string, KeyValue>>;
  readonly args: NamedArgs;
  readonly meta: TuneMeta;
  readonly runtime: Runtime;
}

/** How candidates are checked against the interpreter. */
export interface VerifyOptions {
  /** A small problem (its tensors are freed afterwards), given the constexprs of the real launch (fixed, the candidate's, derived). */
  readonly args?: (rt: Runtime, meta: TuneMeta) => KernelArg[];
  /** Tolerances (default 1e-4 / 1e-3; 1e-2 for f16/bf16 outputs). */
  readonly atol?: number;
  readonly rtol?: number;
}

/** Options of a tuned launch: the runtime and the constexprs that are not tuned. */
export interface TunedLaunchOptions {
  readonly runtime?: Runtime;
  readonly [constexpr: string]: unknown;
}

/** The outcome of `tune`. */
export interface TuneReport {
  readonly kernel: string;
  readonly key: Readonly<Record<string, KeyValue>>;
  readonly signature: MachineSignature;
  readonly best: ConfigResult;
  /** One per candidate (after pruning), in config order. */
  readonly results: readonly ConfigResult[];
  /** Candidates measured by this call (the rest came from the cache). */
  readonly measured: number;
  /** The key's values (not bucketed) of this call's problem; a cached result's `at` may differ. */
  readonly at: Readonly<Record<string, KeyValue>>;
  /** Whether the results file holds these results (false: memory only, or its save failed). */
  readonly saved: boolean;
}

/** Make a kernel that picks its fastest verified config per key bucket, then launches it. */
export function autotune(kernel: TunableKernel, options: AutotuneOptions): TunedKernel {
  return new TunedKernel(kernel, options);
}

export class TunedKernel {
  /** Where results persist (undefined: memory only). */
  readonly file: string | undefined;
  private readonly store: TuneStore;
  private readonly listeners = new Set<(e: TuneEvent) => void>();
  private readonly chosen = new Map<string, TuneConfig>();
  /** Tunings under way: concurrent launches of one bucket share one search. */
  private readonly inflight = new Map<string, Promise<TuneReport>>();
  private readonly runParams: readonly { name: string; kind: string }[];
  /** Buckets whose results a save failed to write (they live in memory only). */
  private readonly unsaved = new Set<string>();

  constructor(readonly kernel: TunableKernel, readonly options: AutotuneOptions) {
    const where = `autotune(${kernel.name})`;
    if (!Array.isArray(options?.configs) || options.configs.length === 0) throw new TypeError(`${where}: configs must be a non-empty array`);
    if (!Array.isArray(options.key)) throw new TypeError(`${where}: key must be an array of parameter names`);
    if (typeof options.grid !== 'function') throw new TypeError(`${where}: grid must be a function (meta, args) => number[]`);
    const constexprs = new Set(kernel.params.filter((p) => p.kind === 'constexpr').map((p) => p.name));
    for (const cfg of options.configs) {
      for (const k of Object.keys(cfg)) if (!constexprs.has(k)) throw new TypeError(`${where}: config ${configId(cfg)} sets '${k}', which is not a constexpr parameter`);
    }
    const ptrs = kernel.params.filter((p) => p.kind === 'ptr').map((p) => p.name);
    for (const o of options.outputs ?? []) if (!ptrs.includes(o)) throw new TypeError(`${where}: output '${o}' is not a ptr parameter`);
    this.runParams = kernel.params.filter((p) => p.kind !== 'constexpr');
    const dir = options.cacheDir === undefined ? defaultCacheDir() : options.cacheDir;
    this.file = dir === false ? undefined : join(dir, 'tune', `${kernel.name.replace(/[^\w.-]/g, '_')}-${kernel.hash.slice(0, 16)}.json`);
    this.store = new TuneStore(this.file, kernel.name, kernel.hash);
    if (options.listener) this.listeners.add(options.listener);
  }

  /** Subscribe to tuning events; returns the unsubscribe function. */
  addListener(fn: (e: TuneEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Whether the results file was found corrupt (it is rebuilt on the next save). */
  get recoveredCorruptFile(): boolean {
    return this.store.recovered;
  }

  /** Launch with the best config for these arguments' key bucket (tuning first if needed). */
  async launch(opts: TunedLaunchOptions, ...args: KernelArg[]): Promise<void> {
    const ctx = this.context(opts, args);
    let cfg = this.chosen.get(ctx.entryId);
    if (!cfg) cfg = (await this.tuneCtx(ctx)).best.config;
    const meta = this.meta(ctx.fixed, cfg, ctx.named);
    await this.kernel.launch(this.launchOpts(meta, ctx.named, ctx.rt), ...args);
  }

  /** Tune for these arguments (cached results are reused) without launching on them. */
  async tune(opts: TunedLaunchOptions, ...args: KernelArg[]): Promise<TuneReport> {
    return this.tuneCtx(this.context(opts, args));
  }

  private emit(e: TuneEvent): void {
    for (const l of this.listeners) l(e);
  }

  private context(opts: TunedLaunchOptions, args: readonly KernelArg[]) {
    const where = `${this.kernel.name} (tuned)`;
    if (args.length !== this.runParams.length) {
      throw new TypeError(`${where}: expected ${this.runParams.length} arguments (${this.runParams.map((p) => p.name).join(', ')}), got ${args.length}`);
    }
    const { runtime, ...fixed } = opts ?? {};
    if ('grid' in fixed) throw new TypeError(`${where}: the grid comes from autotune's grid function, not the launch options`);
    const named = this.name(args);
    const rt = runtime ?? (args.find((a) => a instanceof Tensor) as Tensor | undefined)?.runtime ?? Runtime.default();
    const key: Record<string, KeyValue> = {};
    const at: Record<string, KeyValue> = {};
    for (const k of this.options.key) {
      const v = k in named ? named[k] : fixed[k];
      if (v instanceof Tensor) {
        key[k] = v.shape.map((d) => bucket(d)).join('x');
        at[k] = v.shape.join('x');
      } else if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') {
        key[k] = bucket(v);
        at[k] = v;
      } else throw new TypeError(`${where}: key '${k}' is neither an argument nor a constexpr of this launch`);
    }
    const signature = machineSignature(rt.threads);
    return { rt, fixed: fixed as Record<string, ConstexprValue>, named, key, at, signature, entryId: `${signatureId(signature)}#${keyId(key)}` };
  }

  private name(args: readonly KernelArg[]): NamedArgs {
    const named: Record<string, KernelArg> = {};
    this.runParams.forEach((p, i) => (named[p.name] = args[i]!));
    return named;
  }

  private meta(fixed: TuneMeta, cfg: TuneConfig, named: NamedArgs): TuneMeta {
    const m = { ...fixed, ...cfg };
    return this.options.derive ? { ...m, ...this.options.derive(m, named) } : m;
  }

  private launchOpts(meta: TuneMeta, named: NamedArgs, rt: Runtime): LaunchOptions {
    return { ...meta, grid: [...this.options.grid(meta, named)], runtime: rt };
  }

  private tuneCtx(ctx: ReturnType<TunedKernel['context']>): Promise<TuneReport> {
    const running = this.inflight.get(ctx.entryId);
    if (running) return running;
    const p = this.search(ctx).finally(() => this.inflight.delete(ctx.entryId));
    this.inflight.set(ctx.entryId, p);
    return p;
  }

  private async search(ctx: ReturnType<TunedKernel['context']>): Promise<TuneReport> {
    const { rt, fixed, named, key, at, signature, entryId } = ctx;
    let configs = this.options.configs;
    if (this.options.prune) configs = await this.options.prune(configs, { key, args: named, meta: fixed, runtime: rt });
    if (configs.length === 0) throw new Error(`${this.kernel.name}: autotune's prune left no config for key ${keyId(key)}`);
    const entry = this.store.entry(entryId, signature, key);
    const cached = configs.filter((c) => entry.results[configId(c)]).length;
    this.emit({ type: 'start', kernel: this.kernel.name, key, configs: configs.length, cached });
    let measured = 0;
    const results: ConfigResult[] = [];
    for (const [index, cfg] of configs.entries()) {
      const id = configId(cfg);
      const hit = entry.results[id];
      if (hit) {
        this.emit({ type: 'cached', result: hit });
        results.push(hit);
        continue;
      }
      this.emit({ type: 'candidate', index, total: configs.length, config: cfg });
      const r = { ...await this.evaluate(cfg, fixed, named, rt), at };
      entry.results[id] = r;
      measured++;
      this.emit({ type: r.status === 'ok' ? 'timed' : 'rejected', result: r });
      results.push(r);
    }
    if (measured && this.file) {
      if (this.store.save()) this.unsaved.clear();
      else this.unsaved.add(entryId);
    }
    const ok = results.filter((r) => r.status === 'ok');
    if (ok.length === 0) {
      throw new Error(`${this.kernel.name}: no config passed for key ${keyId(key)}:\n${results.map((r) => `  ${configId(r.config)}: ${r.reason}`).join('\n')}`);
    }
    const best = ok.reduce((a, b) => (b.ms! < a.ms! ? b : a));
    this.chosen.set(entryId, best.config);
    this.emit({ type: 'done', best, results });
    return { kernel: this.kernel.name, key, at, signature, best, results, measured, saved: this.file !== undefined && !this.unsaved.has(entryId) };
  }

  /** Verify, then time one candidate on scratch outputs. */
  private async evaluate(cfg: TuneConfig, fixed: TuneMeta, named: NamedArgs, rt: Runtime): Promise<ConfigResult> {
    const verify = this.options.verify ?? {};
    let verified = false;
    if (verify !== false) {
      const reason = await this.check(cfg, fixed, named, rt, verify);
      if (reason) return { config: cfg, status: 'rejected', ms: null, verified: false, reason };
      verified = true;
    }
    const outputs = new Set(this.options.outputs ?? this.runParams.filter((p) => p.kind === 'ptr').map((p) => p.name));
    const scratch: Tensor[] = [];
    try {
      const targs = this.runParams.map((p) => {
        const a = named[p.name]!;
        if (!(a instanceof Tensor) || !outputs.has(p.name)) return a;
        const c = cloneTensor(a);
        scratch.push(c);
        return c;
      });
      const meta = this.meta(fixed, cfg, named);
      const lo = this.launchOpts(meta, named, rt);
      const ms = await timeLaunch(() => this.kernel.launch(lo, ...targs), this.options.warmup ?? 10, this.options.rep ?? 40);
      return { config: cfg, status: 'ok', ms, verified };
    } catch (err) {
      return { config: cfg, status: 'rejected', ms: null, verified, reason: `launch failed: ${(err as Error).message}` };
    } finally {
      for (const t of scratch) t.free();
    }
  }

  /** Run the candidate compiled and interpreted on a small problem; a reason when they differ. */
  private async check(
    cfg: TuneConfig, fixed: TuneMeta, named: NamedArgs, rt: Runtime,
    verify: VerifyOptions,
  ): Promise<string | undefined> {
    let made: KernelArg[];
    try {
      made = verify.args ? verify.args(rt, this.meta(fixed, cfg, named)) : this.runParams.map((p) => named[p.name]!);
    } catch (err) {
      // The caller's problem builder failed for this candidate: it is rejected with the reason (others may still pass).
      return `verify.args threw for this config: ${(err as Error).message}`;
    }
    const owned: Tensor[] = [];
    const copy = (): KernelArg[] => made.map((a) => {
      if (!(a instanceof Tensor)) return a;
      const c = cloneTensor(a);
      owned.push(c);
      return c;
    });
    try {
      const vnamed = this.name(made);
      const meta = this.meta(fixed, cfg, vnamed);
      const lo = this.launchOpts(meta, vnamed, rt);
      const ref = copy();
      const got = copy();
      try {
        await this.kernel.interpret(lo, ...ref);
      } catch (err) {
        return `the interpreter failed on the verification input: ${(err as Error).message}`;
      }
      try {
        await this.kernel.launch(lo, ...got);
      } catch (err) {
        return `launch failed on the verification input: ${(err as Error).message}`;
      }
      const outputs = this.options.outputs ?? this.runParams.filter((p) => p.kind === 'ptr').map((p) => p.name);
      for (const name of outputs) {
        const i = this.runParams.findIndex((p) => p.name === name);
        const a = got[i] as Tensor, b = ref[i] as Tensor;
        const half = a.dtype === 'f16' || a.dtype === 'bf16';
        const bad = firstMismatch(a.toArray(), b.toArray(), verify.atol ?? (half ? 1e-2 : 1e-4), verify.rtol ?? (half ? 1e-2 : 1e-3));
        if (bad) return `output '${name}' differs from the interpreter at element ${bad.index}: ${bad.got} vs ${bad.want}`;
      }
      return undefined;
    } finally {
      for (const t of owned) t.free();
      if (verify.args) for (const a of made) if (a instanceof Tensor) a.free();
    }
  }
}

/** A new tensor in the same runtime with the same bytes. */
function cloneTensor(t: Tensor): Tensor {
  const c = t.runtime.empty(t.shape, t.dtype);
  const buf = t.runtime.memory.buffer;
  Buffer.from(buf, t.byteOffset, t.byteLength).copy(Buffer.from(buf, c.byteOffset, c.byteLength));
  return c;
}

function firstMismatch(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number): { index: number; got: number; want: number } | undefined {
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    if (g === w) continue;
    if (!(Math.abs(g - w) <= atol + rtol * Math.abs(w))) return { index: i, got: g, want: w };
  }
  return undefined;
}

/**
 * Median ms of one launch: the first call compiles (untimed), then launches run for `warmupMs`,
 * then for about `repMs` (at least 3, at most 10,000 samples).
 */
export async function timeLaunch(fn: () => Promise<void>, warmupMs: number, repMs: number): Promise<number> {
  await fn();
  const wEnd = performance.now() + warmupMs;
  let calls = 0;
  const w0 = performance.now();
  do {
    await fn();
    calls++;
  } while (performance.now() < wEnd);
  const est = (performance.now() - w0) / calls;
  const n = Math.min(10_000, Math.max(3, Math.ceil(repMs / Math.max(est, 1e-4))));
  const samples = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await fn();
    samples[i] = performance.now() - t0;
  }
  samples.sort();
  return n % 2 ? samples[(n - 1) / 2]! : (samples[n / 2 - 1]! + samples[n / 2]!) / 2;
}
