/**
 * @fileoverview The Runtime: one shared memory, the tensors in it, and the execution of
 * compiled kernels over a grid.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { availableParallelism } from 'node:os';
import type { StorageDType } from '../ir/ir.js';
import type { CompiledKernel } from './compiled.js';
import { enableWasmFlags } from './features.js';
import { trapError } from './fault.js';
import { Heap } from './memory.js';
import { WorkerPool, type CallerPart, type WorkerSpan } from './pool.js';
import { Profile, Profiler, type ProfileOptions } from './profile.js';
import { checkData, checkDtype, checkShape, DTYPE_BYTES, Tensor, writeElements, type TensorOwner } from './tensor.js';

/** Options of `Runtime.create`. */
export interface RuntimeOptions {
  /**
   * Threads that run kernels (default: the machine's available parallelism; 0 or 1 = the
   * calling thread only). With `callerRuns` (the default) the calling thread is one of them:
   * `threads: N` starts N - 1 workers.
   */
  readonly threads?: number;
  /**
   * The calling thread takes chunks of every pooled launch beside the workers (default true):
   * a short launch then costs a few microseconds instead of two futex wake-ups, and N cores
   * run N threads. Its event loop is busy meanwhile, as for a launch that runs inline; false
   * keeps it free (every program goes to `threads` workers) at that cost.
   */
  readonly callerRuns?: boolean;
  /** The memory's maximum (default 2 GiB; 64 KiB to 4 GiB); allocations past it throw. */
  readonly maxMemoryBytes?: number;
  /** Initial memory (default 16 MiB, or the maximum if that is less); it grows on demand. */
  readonly initialMemoryBytes?: number;
  /**
   * Launches whose tensors total fewer bytes than this run on the calling thread (default
   * 128 KiB): waking workers costs more than such small work. 0 sends every launch to the pool.
   */
  readonly inlineBelowBytes?: number;
  /**
   * Bounds-check every load and store of every launch on this runtime (default false; see
   * `LaunchOptions.checked`, which overrides it per launch). Also settable later: `rt.checked`.
   */
  readonly checked?: boolean;
}

/** Counters of `rt.stats()`. */
export interface RuntimeStats {
  launches: number;
  inline: number;
  pooled: number;
  programs: number;
  busyMs: number;
  memoryBytes: number;
  inUseBytes: number;
  threads: number;
}

type RunFn = (...args: number[]) => void;

let defaultRuntime: Runtime | undefined;

/** Launches with fewer programs than this run on the calling thread. */
const INLINE_BELOW = 2;

/** A running `rt.scope`: the tensors it owns, and the scope it was entered from. */
interface ScopeFrame {
  readonly rt: Runtime;
  readonly made: Set<Tensor>;
  readonly parent: ScopeFrame | undefined;
  open: boolean;
}

/**
 * The scope of the running async context (one store for every runtime: each extra
 * AsyncLocalStorage adds work to every promise). It is enabled only while some scope is open:
 * an enabled store makes Node's promise hooks run for every promise of the process.
 */
const scopeStorage = new AsyncLocalStorage<ScopeFrame>();
let openScopes = 0;

/** A byte-count option of Runtime.create: a non-negative integer (or Infinity where `infinite`). */
function checkBytes(name: string, v: unknown, infinite = false): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'number') throw new TypeError(`Runtime.create: ${name} must be a number of bytes, got ${typeof v}`);
  if (!(v >= 0) || !(Number.isInteger(v) || (infinite && v === Infinity))) {
    throw new RangeError(`Runtime.create: ${name} must be a non-negative integer number of bytes${infinite ? ' (or Infinity)' : ''}, got ${v}`);
  }
  return v;
}

export class Runtime implements TensorOwner {
  readonly threads: number;
  /** See RuntimeOptions.callerRuns. */
  readonly callerRuns: boolean;
  /** See RuntimeOptions.inlineBelowBytes. */
  readonly inlineBelowBytes: number;
  /**
   * Launches on this runtime are bounds-checked unless they say `checked: false` (see
   * RuntimeOptions.checked). Checked and unchecked code are compiled and cached separately.
   */
  checked: boolean;
  private readonly heap: Heap;
  private readonly instances = new WeakMap<WebAssembly.Module, RunFn>();
  private scratch = 0;
  private scratchSize = 0;
  private disposed = false;
  /** The last launch issued: the next one starts after it settles (issue order). */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly counters: RuntimeStats;
  /** This runtime's open scopes (a tensor is owned by at most one). */
  private readonly scopes = new Set<ScopeFrame>();
  private readonly pool: WorkerPool | undefined;
  private profiler: Profiler | undefined;

  private constructor(opts: RuntimeOptions) {
    if (opts === null || typeof opts !== 'object') throw new TypeError(`Runtime.create: options must be an object, got ${opts === null ? 'null' : typeof opts}`);
    const threads = opts.threads ?? availableParallelism();
    if (!Number.isInteger(threads) || threads < 0 || threads > 256) {
      throw new RangeError(`Runtime.create: threads must be an integer from 0 to 256, got ${threads}`);
    }
    this.threads = threads;
    if (opts.callerRuns !== undefined && typeof opts.callerRuns !== 'boolean') throw new TypeError(`Runtime.create: callerRuns must be a boolean, got ${typeof opts.callerRuns}`);
    this.callerRuns = opts.callerRuns ?? true;
    this.inlineBelowBytes = checkBytes('inlineBelowBytes', opts.inlineBelowBytes, true) ?? 128 << 10;
    if (opts.checked !== undefined && typeof opts.checked !== 'boolean') throw new TypeError(`Runtime.create: checked must be a boolean, got ${typeof opts.checked}`);
    this.checked = opts.checked ?? false;
    const max = checkBytes('maxMemoryBytes', opts.maxMemoryBytes) ?? 2 ** 31;
    const initial = checkBytes('initialMemoryBytes', opts.initialMemoryBytes) ?? Math.min(16 << 20, max);
    if (max < 1 << 16 || max > 2 ** 32) throw new RangeError(`Runtime.create: maxMemoryBytes must be from 64 KiB (65536) to 4 GiB, got ${max}`);
    if (initial > max) throw new RangeError(`Runtime.create: initialMemoryBytes (${initial}) is above maxMemoryBytes (${max}${opts.maxMemoryBytes === undefined ? ', the default' : ''})`);
    this.heap = new Heap(initial, max);
    this.counters = { launches: 0, inline: 0, pooled: 0, programs: 0, busyMs: 0, memoryBytes: 0, inUseBytes: 0, threads };
    const workers = this.callerRuns ? Math.max(0, threads - 1) : threads;
    this.pool = workers > 0 ? new WorkerPool(workers, this.heap.memory, this.heap) : undefined;
  }

  /** A runtime with its own shared memory. */
  static async create(opts: RuntimeOptions = {}): Promise<Runtime> {
    enableWasmFlags();
    return new Runtime(opts);
  }

  /** The process-wide runtime for code that never creates one. */
  static default(): Runtime {
    if (!defaultRuntime || defaultRuntime.disposed) {
      enableWasmFlags();
      defaultRuntime = new Runtime({});
    }
    return defaultRuntime;
  }

  /** The shared memory every tensor of this runtime lives in. */
  get memory(): WebAssembly.Memory {
    return this.heap.memory;
  }

  /** Refuse `what` (what the caller tried, in words) once the runtime is disposed. */
  private live(what: string): void {
    if (this.disposed) throw new Error(`${what}: this runtime was disposed (rt.dispose() was called before); create another with Runtime.create()`);
  }

  /** A new tensor holding a copy of `data` (converted to `dtype`). */
  tensor(data: ArrayLike<number>, shape: readonly number[], dtype: StorageDType = 'f32'): Tensor {
    this.live('rt.tensor: cannot create a tensor');
    const n = checkShape(shape, 'tensor');
    checkDtype(dtype, 'tensor');
    checkData(data, 'tensor');
    if (data.length !== n) throw new RangeError(`tensor: shape [${shape.join(', ')}] needs ${n} values, got ${data.length}`);
    const t = this.alloc(shape, dtype, n);
    try {
      writeElements(this.heap.memory, t.byteOffset, dtype, data);
    } catch (err) {
      t.free();
      throw err;
    }
    return t;
  }

  /** A new tensor with unspecified contents. */
  empty(shape: readonly number[], dtype: StorageDType = 'f32'): Tensor {
    this.live('rt.empty: cannot allocate a tensor');
    const n = checkShape(shape, 'empty');
    checkDtype(dtype, 'empty');
    return this.alloc(shape, dtype, n);
  }

  /** A new tensor of zeros. */
  zeros(shape: readonly number[], dtype: StorageDType = 'f32'): Tensor {
    const t = this.empty(shape, dtype);
    new Uint8Array(this.heap.memory.buffer, t.byteOffset, t.byteLength).fill(0);
    return t;
  }

  private alloc(shape: readonly number[], dtype: StorageDType, n: number): Tensor {
    const ptr = this.heap.alloc(n * DTYPE_BYTES[dtype]);
    const t = new Tensor(this, ptr, shape, dtype);
    // Outside every scope this costs the size check.
    if (this.scopes.size) this.frameOf(scopeStorage.getStore())?.made.add(t);
    return t;
  }

  /**
   * The open scope of this runtime that `frame` is or was entered from. A closed frame is
   * skipped: a callback that outlives its scope (a timer it set) allocates into the scope
   * around it, which frees it in turn.
   */
  private frameOf(frame: ScopeFrame | undefined): ScopeFrame | undefined {
    while (frame && (frame.rt !== this || !frame.open)) frame = frame.parent;
    return frame;
  }

  /** @internal Called by Tensor.free. */
  releaseTensor(t: Tensor): void {
    if (this.disposed) return;
    this.heap.release(t.byteOffset);
    for (const s of this.scopes) if (s.made.delete(t)) break;
  }

  /**
   * Run `fn`; tensors it creates are freed when it finishes, except those it returns (a
   * tensor, or tensors anywhere inside the arrays, objects, Maps and Sets it returns, such as
   * packed weights). Returned tensors move to the scope this one was entered from, if any. If
   * `fn` throws, everything it created is freed and the error rethrown.
   *
   * "Creates" means: allocated in `fn`'s async context (its own code, and what it awaits or
   * calls), so scopes that run concurrently each free only their own tensors.
   */
  async scope<T>(fn: () => T | Promise<T>): Promise<T> {
    this.live('rt.scope: cannot open a scope');
    const frame: ScopeFrame = { rt: this, made: new Set(), parent: scopeStorage.getStore(), open: true };
    this.scopes.add(frame);
    openScopes++;
    let result: T;
    try {
      result = await scopeStorage.run(frame, fn);
    } catch (err) {
      this.closeScope(frame, undefined);
      throw err;
    }
    this.closeScope(frame, result);
    return result;
  }

  /** End a scope: free what it made, except what `result` holds, which moves to the scope around. */
  private closeScope(frame: ScopeFrame, result: unknown): void {
    frame.open = false;
    this.scopes.delete(frame);
    // With no scope open anywhere, nothing reads the store: turn Node's promise hooks off.
    if (--openScopes === 0) scopeStorage.disable();
    const keep = keptTensors(result);
    const outer = this.frameOf(frame.parent);
    for (const t of frame.made) {
      if (keep.has(t)) outer?.made.add(t);
      else t.free();
    }
  }

  /**
   * Run `fn` and record every launch on this runtime while it runs: per kernel calls, total
   * and median ms, GFLOP/s and GB/s where `opts.work` says the work, and a Chrome trace with
   * a track per worker. Profiles do not nest.
   */
  async profile<T>(fn: () => T | Promise<T>, opts: ProfileOptions = {}): Promise<Profile<Awaited<T>>> {
    this.live('rt.profile: cannot profile');
    if (this.profiler) throw new Error('profile: this runtime is already being profiled');
    const p = new Profiler(opts, this.pool?.size ?? 0);
    this.profiler = p;
    try {
      const result = await fn();
      return new Profile(result, p.launches, this.pool?.size ?? 0);
    } finally {
      this.profiler = undefined;
    }
  }

  private async executeProfiled(prof: Profiler, ck: CompiledKernel, grid: readonly [number, number, number], params: readonly number[], bytes: number, live?: () => void): Promise<void> {
    const origin = performance.timeOrigin;
    const t0 = origin + performance.now();
    let spans: WorkerSpan[] = [];
    const pooled = this.pool !== undefined && grid[0] * grid[1] * grid[2] >= INLINE_BELOW && bytes >= this.inlineBelowBytes;
    try {
      await this.execute(ck, grid, params, bytes, (s) => (spans = s), live);
    } catch (err) {
      prof.record(ck.name, t0, origin + performance.now(), grid, params, pooled, spans, err, ck.work);
      throw err;
    }
    prof.record(ck.name, t0, origin + performance.now(), grid, params, pooled, spans, undefined, ck.work);
  }

  /**
   * @internal Run `launch` once every launch issued on this runtime before it has settled, as a
   * stream does: a launch that must compile first is not overtaken by a later one that need not.
   * A failed launch does not stop the ones after it.
   */
  inOrder<T>(launch: () => Promise<T>): Promise<T> {
    const run = this.tail.then(launch);
    this.tail = run.catch(() => undefined);
    return run;
  }

  /**
   * @internal Run a compiled kernel over a grid (`bytes`: what its tensors total, for the inline
   * choice; `onSpans`, when profiling: the workers' parts; `live`: throws if a tensor of the
   * launch was freed, called just before the programs run).
   */
  async execute(
    ck: CompiledKernel, grid: readonly [number, number, number], params: readonly number[], bytes = Infinity, onSpans?: (s: WorkerSpan[]) => void,
    live?: () => void,
  ): Promise<void> {
    // Profiling costs this one check when it is off.
    if (this.profiler && !onSpans) return this.executeProfiled(this.profiler, ck, grid, params, bytes, live);
    this.live(`cannot launch kernel '${ck.name}'`);
    const total = grid[0] * grid[1] * grid[2];
    this.counters.launches++;
    if (total === 0) return;
    // One program cannot be split: waking a worker would only add a round trip.
    if (this.pool && total >= INLINE_BELOW && bytes >= this.inlineBelowBytes) {
      this.counters.pooled++;
      this.counters.programs += total;
      const busy0 = this.pool.callerBusyMs;
      try {
        await this.pool.run(ck, grid, params, onSpans, this.callerRuns ? this.callerPart(ck, grid, params) : undefined, live);
      } finally {
        this.counters.busyMs += this.pool.callerBusyMs - busy0;
      }
      return;
    }
    this.counters.inline++;
    live?.();
    const part = this.callerPart(ck, grid, params);
    const t0 = performance.now();
    try {
      part.run(0, total);
    } catch (err) {
      throw part.fault(err);
    } finally {
      this.counters.busyMs += performance.now() - t0;
      this.counters.programs += total;
    }
  }

  /** Running programs of a launch on this thread: its instance, its scratch, its faults. */
  private callerPart(ck: CompiledKernel, grid: readonly [number, number, number], params: readonly number[]): CallerPart {
    const run = this.instance(ck);
    if (ck.scratchBytes > this.scratchSize) {
      // The new block first: if it cannot be had, the old one (and its size) stay as they were.
      const ptr = this.heap.alloc(ck.scratchBytes);
      if (this.scratch) this.heap.release(this.scratch);
      this.scratch = ptr;
      this.scratchSize = ck.scratchBytes;
    }
    const scratch = this.scratch;
    return {
      run: (start, end) => run(start, end, grid[0], grid[1], grid[2], scratch, ...params),
      fault: (err) => {
        if (!(err instanceof WebAssembly.RuntimeError)) return err instanceof Error ? err : new Error(String(err));
        const [lin, site, offset] = new Int32Array(this.heap.memory.buffer, scratch, 3);
        return trapError(ck, grid, { lin: lin!, site: ck.checked ? site! : 0, offset: offset! }, params, err.message, err);
      },
    };
  }

  private instance(ck: CompiledKernel): RunFn {
    let run = this.instances.get(ck.module);
    if (!run) {
      const inst = new WebAssembly.Instance(ck.module, { env: { memory: this.heap.memory } });
      run = inst.exports.run as RunFn;
      this.instances.set(ck.module, run);
    }
    return run;
  }

  /** Launch counters, memory use and per-worker busy time (ms). */
  stats(): RuntimeStats & { workerBusyMs: number[] } {
    return {
      ...this.counters,
      memoryBytes: this.heap.byteLength,
      inUseBytes: this.heap.inUse,
      workerBusyMs: this.pool ? Array.from(this.pool.busy) : [],
    };
  }

  /** @internal Test hook: the pool's worker threads. */
  get workers(): readonly import('node:worker_threads').Worker[] {
    return this.pool?.threads ?? [];
  }

  /** Release everything (stops the workers). Idempotent; the runtime cannot be used afterwards. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.pool?.dispose();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }
}

/**
 * The tensors a scope's result holds anywhere inside it (arrays, objects and their own fields,
 * Maps, Sets: packed weights, a model's layers), with the memory of views. A runtime met on the
 * way is not entered: its fields list every scope's tensors.
 */
function keptTensors(result: unknown): Set<Tensor> {
  const keep = new Set<Tensor>();
  const seen = new Set<object>();
  const walk = (v: unknown): void => {
    if (v instanceof Tensor) {
      keep.add(v);
      // A returned view keeps the memory it views.
      if (v.base) keep.add(v.base);
      return;
    }
    if (v === null || typeof v !== 'object' || seen.has(v) || v instanceof Runtime || ArrayBuffer.isView(v) || v instanceof ArrayBuffer) return;
    seen.add(v);
    if (v instanceof Map) for (const x of v.values()) walk(x);
    else if (v instanceof Set) for (const x of v) walk(x);
    else for (const x of Object.values(v)) walk(x);
  };
  walk(result);
  return keep;
}
