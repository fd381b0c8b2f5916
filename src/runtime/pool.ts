/**
 * @fileoverview The worker pool: workers share the runtime's memory; each compiled module is
 * posted once per worker and instantiated there. A launch is published through a shared
 * control block (no postMessage on the hot path): workers take chunks of the grid with
 * Atomics.add, the last one to finish notifies, and the caller awaits with Atomics.waitAsync.
 * The calling thread may take chunks too (`CallerPart`): then a pool of N - 1 workers keeps N
 * cores busy with no thread left over, and a short launch ends while every thread is still
 * running (measured on 2 cores: an empty launch 31-52 us with two workers and a sleeping caller,
 * against a few us this way). A trap rejects its launch only; a dead worker is replaced and its
 * launch rejected.
 */
import { availableParallelism } from 'node:os';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { KernelRuntimeError } from '../errors.js';
import type { CompiledKernel } from './compiled.js';
import { trapError } from './fault.js';
import { WORKER_SOURCE } from './worker-source.js';

/** Control block layout (Int32 slots). */
export const CTL = {
  GEN: 0, CMD: 1, NEXT: 2, TOTAL: 3, CHUNK: 4, FINISHED: 5, EXPECTED: 6, DONE: 7, ERR: 8, ERR_PID: 9,
  MODULE: 10, G0: 11, G1: 12, G2: 13, ERR_SITE: 14, ERR_OFFSET: 15, RUN_GEN: 16, PARAMS: 17,
} as const;
const MAX_PARAMS = 112;
const CMD_RUN = 1;
const CMD_EXIT = 2;
/** CTL.ERR when the calling thread's part faulted (a worker's trap sets 1). */
const ERR_CALLER = 2;

/** Scratch allocation callbacks (the runtime's heap). */
export interface ScratchHeap {
  alloc(bytes: number): number;
  release(ptr: number): void;
}

interface Slot {
  worker: Worker;
  port: MessagePort;
  modules: Set<number>;
  scratch: number;
  scratchSize: number;
  acks: Map<number, { resolve: (err?: string) => void }[]>;
  trap?: (message: string) => void;
  alive: boolean;
}

/** One worker's part in a launch: wall-clock (epoch ms) start and end, programs it ran. */
export interface WorkerSpan {
  readonly worker: number;
  readonly start: number;
  readonly end: number;
  readonly programs: number;
}

interface Running {
  fail?: Error;
  expected: number;
  /** CTL.DONE before the launch: it has ended once DONE differs. */
  doneBefore: number;
  /** dispose() ended the wait before the threads were done. */
  abandoned?: boolean;
  /** The launch's generation: a worker that counted itself finished marks it in `marks`. */
  gen?: number;
}

/**
 * The calling thread's part in a launch: `run` executes programs [start, end) on its own
 * instance and scratch, throwing on a trap; `fault` turns that throw into the launch's error.
 */
export interface CallerPart {
  run(start: number, end: number): void;
  fault(err: unknown): Error;
}

/** The caller's index in WorkerSpan.worker (workers are 0..size-1). */
export const CALLER = -1;

export class WorkerPool {
  /**
   * Test hook: workers spawned while this is non-zero sleep this many ms after each drain of
   * their messages, so that tests can hit the races between set-up messages and launches.
   */
  static testPauseAfterDrainMs = 0;

  private readonly ctl: Int32Array;
  private readonly ctlF: Float32Array;
  readonly busy: Float64Array;
  /** Milliseconds the calling thread spent on its part of launches. */
  callerBusyMs = 0;
  /** Per worker [start, end, programs, generation] of its part in the last launch (epoch ms). */
  private readonly spans: Float64Array;
  /**
   * Per worker, the generation of the last launch it counted itself finished in (set just
   * before its FINISHED add), so a worker lost after finishing is not counted twice.
   */
  private readonly marks: Int32Array;
  private readonly slots: Slot[] = [];
  private readonly moduleIds = new WeakMap<WebAssembly.Module, number>();
  private readonly modules = new Map<number, CompiledKernel>();
  private nextModule = 1;
  private queue: Promise<unknown> = Promise.resolve();
  private running: Running | undefined;
  private disposed = false;
  private readonly keepAlive = setInterval(() => undefined, 1 << 30).unref();
  private pending = 0;

  private readonly spareCore: boolean;

  constructor(readonly size: number, private readonly memory: WebAssembly.Memory, private readonly heap: ScratchHeap) {
    this.spareCore = size < availableParallelism();
    this.ctl = new Int32Array(new SharedArrayBuffer(4 * (CTL.PARAMS + MAX_PARAMS)));
    this.ctlF = new Float32Array(this.ctl.buffer);
    this.busy = new Float64Array(new SharedArrayBuffer(8 * Math.max(1, size)));
    this.spans = new Float64Array(new SharedArrayBuffer(8 * 4 * Math.max(1, size)));
    this.marks = new Int32Array(new SharedArrayBuffer(4 * Math.max(1, size)));
    for (let i = 0; i < size; i++) this.slots.push(this.spawn(i));
  }

  private spawn(index: number): Slot {
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(WORKER_SOURCE, {
      eval: true,
      // The worker is plain JS: it needs none of the parent's loaders or flags (test runners
      // and TypeScript loaders put theirs there).
      execArgv: [],
      workerData: {
        ctl: this.ctl.buffer, busy: this.busy.buffer, spans: this.spans.buffer, marks: this.marks.buffer, memory: this.memory, port: port2, index, C: CTL,
        gen0: Atomics.load(this.ctl, CTL.GEN), pauseAfterDrainMs: WorkerPool.testPauseAfterDrainMs,
      },
      transferList: [port2],
    });
    const slot: Slot = { worker, port: port1, modules: new Set(), scratch: 0, scratchSize: 0, acks: new Map(), alive: true };
    port1.on('message', (msg: { type: string; id?: number; error?: string; message?: string }) => {
      if (msg.type === 'ack') {
        const waiting = slot.acks.get(msg.id!);
        slot.acks.delete(msg.id!);
        waiting?.forEach((w) => w.resolve(msg.error));
      } else if (msg.type === 'trap') {
        slot.trap?.(msg.message ?? 'trap');
      }
    });
    worker.on('error', () => this.lost(slot, index));
    worker.on('exit', () => this.lost(slot, index));
    // A script that never disposes the runtime must still exit (unref after the listeners:
    // adding a 'message' listener starts, and refs, the port).
    worker.unref();
    port1.unref();
    return slot;
  }

  /** A worker died: fail the launch it was part of, count it as finished, replace it. */
  private lost(slot: Slot, index: number): void {
    if (!slot.alive) return;
    slot.alive = false;
    for (const list of slot.acks.values()) list.forEach((w) => w.resolve('worker exited'));
    slot.acks.clear();
    if (slot.scratch) this.heap.release(slot.scratch);
    if (this.running) {
      this.running.fail ??= new Error(`worker ${index} exited during the launch`);
      // A worker that finished its part already counted itself: counting it again would end
      // the launch while the others still run it (and they would then take the next one's programs).
      const counted = this.running.gen !== undefined && Atomics.load(this.marks, index) === this.running.gen;
      if (!counted && Atomics.add(this.ctl, CTL.FINISHED, 1) + 1 === this.running.expected) {
        Atomics.add(this.ctl, CTL.DONE, 1);
        Atomics.notify(this.ctl, CTL.DONE);
      }
    }
    if (!this.disposed) this.slots[index] = this.spawn(index);
  }

  /** Deliver a message and wait for the worker's ack. */
  private send(slot: Slot, id: number, msg: unknown, transfer?: never[]): Promise<string | undefined> {
    return new Promise((resolve) => {
      const list = slot.acks.get(id) ?? [];
      list.push({ resolve });
      slot.acks.set(id, list);
      slot.port.postMessage(msg, transfer);
      // Wake the worker (command 0 = just read your messages).
      Atomics.store(this.ctl, CTL.CMD, 0);
      Atomics.add(this.ctl, CTL.GEN, 1);
      Atomics.notify(this.ctl, CTL.GEN);
    });
  }

  /** The module id if every worker already has this module and enough scratch (no await needed). */
  private ready(ck: CompiledKernel): number | undefined {
    const id = this.moduleIds.get(ck.module);
    if (id === undefined) return undefined;
    for (const s of this.slots) if (!s.modules.has(id) || s.scratchSize < ck.scratchBytes) return undefined;
    return id;
  }

  private async prepare(ck: CompiledKernel): Promise<number> {
    let id = this.moduleIds.get(ck.module);
    if (id === undefined) {
      id = this.nextModule++;
      this.moduleIds.set(ck.module, id);
      this.modules.set(id, ck);
    }
    for (const slot of this.slots) {
      if (slot.scratchSize < ck.scratchBytes) {
        const old = slot.scratch;
        const ptr = this.heap.alloc(ck.scratchBytes);
        const err = await this.send(slot, -1, { type: 'scratch', ptr });
        if (this.disposed) throw disposedError(ck, 'during');
        if (err) {
          this.heap.release(ptr);
          throw new KernelRuntimeError(`${ck.name}: a worker could not take its scratch: ${err}`, ck.name);
        }
        slot.scratch = ptr;
        slot.scratchSize = ck.scratchBytes;
        if (old) this.heap.release(old);
      }
      if (!slot.modules.has(id)) {
        const err = await this.send(slot, id, { type: 'module', id, module: ck.module, paramTypes: ck.paramTypes });
        if (this.disposed) throw disposedError(ck, 'during');
        if (err) throw new KernelRuntimeError(`${ck.name}: a worker could not instantiate the kernel: ${err}`, ck.name);
        slot.modules.add(id);
      }
    }
    return id;
  }

  /**
   * Run a launch on the workers (and on the calling thread, given `caller`). Launches from
   * concurrent callers are serialised.
   */
  run(
    ck: CompiledKernel, grid: readonly [number, number, number], params: readonly number[], onSpans?: (spans: WorkerSpan[]) => void, caller?: CallerPart,
    live?: () => void,
  ): Promise<void> {
    // Keep the process alive while launches are pending: workers and ports are unref'd, and
    // neither set-up acks nor a pending Atomics.waitAsync hold the event loop.
    this.pending++;
    this.keepAlive.ref();
    const next = this.queue.then(() => this.runNow(ck, grid, params, onSpans, caller, live)).finally(() => {
      if (--this.pending > 0) return;
      if (this.disposed) clearInterval(this.keepAlive);
      else this.keepAlive.unref();
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async runNow(
    ck: CompiledKernel, grid: readonly [number, number, number], params: readonly number[], onSpans?: (spans: WorkerSpan[]) => void, caller?: CallerPart,
    live?: () => void,
  ): Promise<void> {
    // Launches queued behind one that dispose() cut short.
    if (this.disposed) throw disposedError(ck, 'before');
    if (params.length > MAX_PARAMS) throw new RangeError(`${ck.name}: more than ${MAX_PARAMS} kernel parameters`);
    const id = this.ready(ck) ?? (await this.prepare(ck));
    // Its tensors may have been freed while it waited its turn (their memory is someone else's now).
    live?.();
    const total = grid[0] * grid[1] * grid[2];
    const workers = this.slots.filter((s) => s.alive).length;
    const participants = workers + (caller ? 1 : 0);
    const c = this.ctl;
    // Dynamic chunks: about 4 per thread, so a slow or preempted one does not hold the rest.
    const chunk = Math.max(1, Math.floor(total / (participants * 4)));
    c[CTL.MODULE] = id;
    c[CTL.TOTAL] = total;
    c[CTL.CHUNK] = chunk;
    c[CTL.G0] = grid[0];
    c[CTL.G1] = grid[1];
    c[CTL.G2] = grid[2];
    ck.paramTypes.forEach((t, i) => {
      if (t === 'f32') this.ctlF[CTL.PARAMS + i] = params[i]!;
      else c[CTL.PARAMS + i] = params[i]!;
    });
    Atomics.store(c, CTL.NEXT, 0);
    Atomics.store(c, CTL.FINISHED, 0);
    Atomics.store(c, CTL.ERR, 0);
    Atomics.store(c, CTL.EXPECTED, participants);
    let trapMessage: Promise<string> | undefined;
    let onTrap: (m: string) => void = () => undefined;
    trapMessage = new Promise<string>((resolve) => (onTrap = resolve));
    for (const s of this.slots) s.trap = onTrap;
    const doneBefore = Atomics.load(c, CTL.DONE);
    const running: Running = { expected: participants, doneBefore };
    this.running = running;
    const waiter = Atomics.waitAsync(c, CTL.DONE, doneBefore);
    // Only this thread writes GEN, so the launch's generation is known before it is published;
    // a worker runs the launch only on waking for that generation (see WORKER_SOURCE).
    const gen = (Atomics.load(c, CTL.GEN) + 1) | 0;
    running.gen = gen;
    Atomics.store(c, CTL.RUN_GEN, gen);
    Atomics.store(c, CTL.CMD, CMD_RUN);
    Atomics.store(c, CTL.GEN, gen);
    Atomics.notify(c, CTL.GEN);
    let callerSpan: WorkerSpan | undefined;
    let callerError: unknown;
    try {
      if (caller) {
        // The caller's part: chunks like a worker's, then it counts itself finished.
        const t0 = performance.now();
        let programs = 0;
        try {
          for (;;) {
            const start = Atomics.add(c, CTL.NEXT, chunk);
            if (start >= total) break;
            const end = Math.min(total, start + chunk);
            caller.run(start, end);
            programs += end - start;
          }
        } catch (err) {
          callerError = err;
          // First failure wins (ERR_CALLER: the fault is the caller's own); the rest stop taking chunks.
          Atomics.compareExchange(c, CTL.ERR, 0, ERR_CALLER);
          Atomics.store(c, CTL.NEXT, total);
        }
        const t1 = performance.now();
        this.callerBusyMs += t1 - t0;
        callerSpan = { worker: CALLER, start: performance.timeOrigin + t0, end: performance.timeOrigin + t1, programs };
        if (Atomics.add(c, CTL.FINISHED, 1) + 1 === participants) {
          Atomics.add(c, CTL.DONE, 1);
          Atomics.notify(c, CTL.DONE);
        }
      }
      // A short launch ends within microseconds. When the caller ran a part, or a core is
      // spare, every thread has a core of its own, so it spins a little (measured: a round
      // trip drops from ~16 us to ~5 us); otherwise spinning would steal a worker's core, so it
      // sleeps on the futex for up to 0.1 ms. After that the wait goes to the event loop (where
      // a dead worker's exit is noticed).
      if (caller || this.spareCore) for (let k = 0; k < 20000 && Atomics.load(c, CTL.DONE) === doneBefore; k++);
      if (waiter.async && Atomics.load(c, CTL.DONE) === doneBefore && Atomics.wait(c, CTL.DONE, doneBefore, 0.1) === 'timed-out') await waiter.value;
    } finally {
      this.running = undefined;
    }
    // The workers are being terminated, so the outputs are incomplete (a launch that ended
    // before dispose() keeps its result).
    if (running.abandoned) throw disposedError(ck, 'during');
    if (onSpans) onSpans(callerSpan ? [callerSpan, ...this.readSpans(gen)] : this.readSpans(gen));
    if (running.fail) throw new KernelRuntimeError(`kernel '${ck.name}': ${running.fail.message}; the launch was abandoned`, ck.name, undefined, { cause: running.fail });
    if (Atomics.load(c, CTL.ERR) === ERR_CALLER) throw caller!.fault(callerError);
    if (Atomics.load(c, CTL.ERR)) {
      const rec = { lin: c[CTL.ERR_PID]!, site: ck.checked ? c[CTL.ERR_SITE]! : 0, offset: c[CTL.ERR_OFFSET]! };
      const message = await Promise.race([trapMessage, new Promise<string>((r) => setTimeout(() => r('trap'), 1000))]);
      trapMessage = undefined;
      throw trapError(ck, grid, rec, params, message);
    }
  }

  /** The workers' parts in the launch of generation `gen` (workers that took no part are left out). */
  private readSpans(gen: number): WorkerSpan[] {
    const out: WorkerSpan[] = [];
    const s = this.spans;
    for (let i = 0; i < this.size; i++) {
      const o = i * 4;
      // Generations are Int32 in the control block; compare as such.
      if ((s[o + 3]! | 0) === (gen | 0)) out.push({ worker: i, start: s[o]!, end: s[o + 1]!, programs: s[o + 2]! });
    }
    return out;
  }

  /** Test hook: how many threads counted themselves finished in the last launch, and how many were expected. */
  get finishedCounts(): { finished: number; expected: number } {
    return { finished: Atomics.load(this.ctl, CTL.FINISHED), expected: Atomics.load(this.ctl, CTL.EXPECTED) };
  }

  /** Test hook: the worker threads. */
  get threads(): readonly Worker[] {
    return this.slots.map((s) => s.worker);
  }

  /**
   * Stop every worker. Idempotent. A launch in flight rejects (its set-up acks and its wait
   * are woken here: the workers' exits are not reported as losses once `alive` is false), and
   * the queued ones reject as they come up; the keep-alive stays until they have.
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (this.pending === 0) clearInterval(this.keepAlive);
    const c = this.ctl;
    // Workers in a launch take no more chunks; idle ones wake and exit.
    Atomics.store(c, CTL.NEXT, Atomics.load(c, CTL.TOTAL));
    Atomics.store(c, CTL.CMD, CMD_EXIT);
    Atomics.add(c, CTL.GEN, 1);
    Atomics.notify(c, CTL.GEN);
    for (const s of this.slots) {
      s.alive = false;
      for (const list of s.acks.values()) list.forEach((w) => w.resolve('the runtime was disposed'));
      s.acks.clear();
      void s.worker.terminate();
    }
    // A launch still waiting for its threads: end the wait as its last thread would.
    const r = this.running;
    if (r && Atomics.load(c, CTL.DONE) === r.doneBefore) {
      r.abandoned = true;
      Atomics.add(c, CTL.DONE, 1);
      Atomics.notify(c, CTL.DONE);
    }
  }
}

/** The error of a launch cut short (`during`) or never started (`before`) by dispose(). */
function disposedError(ck: CompiledKernel, when: 'during' | 'before'): KernelRuntimeError {
  const what = when === 'during' ? 'was disposed during the launch, which was abandoned' : 'was disposed before the launch could start';
  return new KernelRuntimeError(`kernel '${ck.name}': the runtime ${what}`, ck.name);
}
