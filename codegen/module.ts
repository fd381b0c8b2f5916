/**
 * @fileoverview Assembles a specialised kernel into a WebAssembly module: the shared memory
 * import, the program function, and the exported `run` that walks a range of program ids.
 * Binaryen is loaded here on first use only, so a process that hits the cache never loads it.
 */
import type { KernelIR } from '../src/ir/ir.js';
import { LimitError, MAX_LOCALS } from '../src/ir/limits.js';
import type { AccessSite } from './bounds.js';
import type { Target } from './emit.js';

export type { AccessSite } from './bounds.js';

/** What compiling one specialisation produces. */
export interface CompiledModule {
  readonly bytes: Uint8Array;
  /** Per-runner scratch: 16 reserved bytes (current program id) + tile buffers. */
  readonly scratchBytes: number;
  readonly paramTypes: readonly ('i32' | 'f32')[];
  /**
   * Checked modules: the load and store sites, indexed by the site id a fault records. Their
   * paramTypes end with one hidden i32 per tensor param: its element count.
   */
  readonly sites?: readonly AccessSite[];
  /** Optimised WebAssembly text, when asked for. */
  readonly wat?: string;
}

/**
 * Bytes reserved at the start of a runner's scratch: the linear program id being run (bytes
 * 0-3); in checked modules, a bounds fault's site id + 1 (4-7, 0 = none) and offset (8-11).
 */
export const SCRATCH_HEADER = 16;

/** Options of `compileIR`. */
export interface CompileIROptions {
  /** Also return the module's text. */
  readonly wat?: boolean;
  /**
   * Run binaryen's -O3 over the module first (default false). TurboFan compiles the module as
   * lowered to code as fast as the optimised one (measured side by side on GEMM, GEMV, GELU,
   * softmax, layer norm, attention and casts, within noise), and the optimiser was 90% of a
   * compile: an SGEMM specialisation 49 -> 3 ms to bytes, an attention backward 255 -> 20 ms
   * to a TurboFan module.
   */
  readonly optimize?: boolean;
  /** Refuse a module bigger than this before optimising it (MAX_CODE_BYTES). */
  readonly maxCodeBytes?: number;
  /** `performance.now()` after which the compile is abandoned between stages (MAX_COMPILE_MS). */
  readonly deadline?: number;
  /** The compile-time budget the deadline came from, for the message. */
  readonly budgetMs?: number;
  /** Bounds-check every tensor load and store (see bounds.ts); adds hidden size params. */
  readonly checked?: boolean;
}

/**
 * Lower `ir` to a validated module (optimised by binaryen only when asked).
 * `run(pidStart, pidEnd, g0, g1, g2, scratch, ...params)` runs programs [pidStart, pidEnd).
 * Throws LimitError when the module outgrows `maxCodeBytes` or the compile passes `deadline`.
 */
export async function compileIR(ir: KernelIR, target: Target, opts: CompileIROptions = {}): Promise<CompiledModule> {
  const checkTime = (stage: string): void => {
    if (opts.deadline !== undefined && performance.now() > opts.deadline) {
      throw new LimitError('MAX_COMPILE_MS', `compiling kernel '${ir.name}' took longer than its budget (MAX_COMPILE_MS) of ${opts.budgetMs ?? '?'} ms, stopped after ${stage}`);
    }
  };
  const { default: binaryen } = await import('binaryen');
  const { Emit, moduleFeatures } = await import('./emit.js');
  const { KernelLowering, PROGRAM_FIXED_PARAMS } = await import('./lower.js');
  const { FAULT_SITE } = await import('./bounds.js');
  const m = new binaryen.Module();
  try {
    m.setFeatures(moduleFeatures(target));
    m.setMemory(1, 65536, null, [], true, false, 'mem');
    m.addMemoryImport('mem', 'env', 'memory', true);
    const i32 = binaryen.i32;
    const paramTypes = ir.params.map((p) => (p.kind === 'scalar' && p.dtype === 'f32' ? 'f32' : 'i32') as 'i32' | 'f32');
    if (opts.checked) for (const p of ir.params) if (p.kind === 'tensor') paramTypes.push('i32');
    const wasmParams = paramTypes.map((t) => (t === 'f32' ? binaryen.f32 : i32));

    const progParams = [...new Array<number>(PROGRAM_FIXED_PARAMS).fill(i32), ...wasmParams];
    const pe = new Emit(m, progParams, target);
    const lowering = new KernelLowering(pe, ir, { checked: opts.checked === true, scratchHeader: SCRATCH_HEADER });
    const body = lowering.lower();
    m.addFunction('program', binaryen.createType(progParams), binaryen.none, pe.vars, body);

    // run: params pidStart pidEnd g0 g1 g2 scratch ...params; local lin, t.
    const runParams = [i32, i32, i32, i32, i32, i32, ...wasmParams];
    const re = new Emit(m, runParams, target);
    const lin = re.local(i32);
    const t = re.local(i32);
    const get = (l: number): number => m.local.get(l, i32);
    const call = m.call('program', [
      m.i32.rem_u(get(lin), get(2)),
      m.i32.rem_u(get(t), get(3)),
      m.i32.div_u(get(t), get(3)),
      get(2), get(3), get(4),
      m.i32.add(get(5), m.i32.const(SCRATCH_HEADER)),
      ...wasmParams.map((ty, i) => m.local.get(6 + i, ty)),
    ], binaryen.none);
    const runBody = m.block(null, [
      // No fault yet: a trap with site 0 is not a bounds fault, whatever scratch held before.
      ...(opts.checked ? [m.i32.store(FAULT_SITE, 4, get(5), m.i32.const(0))] : []),
      m.local.set(lin, get(0)),
      m.if(m.i32.lt_u(get(lin), get(1)), m.loop('programs', m.block(null, [
        // The id of the running program, so a trap can name it.
        m.i32.store(0, 4, get(5), get(lin)),
        m.local.set(t, m.i32.div_u(get(lin), get(2))),
        call,
        m.local.set(lin, m.i32.add(get(lin), m.i32.const(1))),
        m.br('programs', m.i32.lt_u(get(lin), get(1))),
      ]))),
    ]);
    m.addFunction('run', binaryen.createType(runParams), binaryen.none, re.vars, runBody);
    m.addFunctionExport('run', 'run');
    if (!m.validate()) throw new Error(`codegen produced an invalid module for kernel '${ir.name}'`);
    checkTime('lowering');
    if (opts.maxCodeBytes !== undefined) {
      // Measured before optimising: the optimiser's time grows faster than the code it gets.
      const size = m.emitBinary().length;
      if (size > opts.maxCodeBytes) {
        throw new LimitError('MAX_CODE_BYTES', `kernel '${ir.name}' generates ${size} bytes of WebAssembly before optimisation; the limit (MAX_CODE_BYTES) is ${opts.maxCodeBytes}: use smaller tiles or unroll less`);
      }
    }
    if (opts.optimize === true) {
      binaryen.setOptimizeLevel(3);
      binaryen.setShrinkLevel(0);
      m.optimize();
    }
    checkTime('optimisation');
    // The optimiser may have inlined 'program' into 'run': look at every function left.
    let locals = 0;
    for (let i = 0; i < m.getNumFunctions(); i++) locals = Math.max(locals, binaryen.getFunctionInfo(m.getFunctionByIndex(i)).vars.length);
    if (locals > MAX_LOCALS) {
      throw new LimitError('MAX_LOCALS', `kernel '${ir.name}' needs ${locals} locals in one function; the engine's limit (MAX_LOCALS) is ${MAX_LOCALS}: unroll less`);
    }
    const bytes = m.emitBinary();
    return {
      bytes,
      scratchBytes: SCRATCH_HEADER + lowering.scratchBytes,
      paramTypes,
      ...(lowering.checks ? { sites: lowering.checks.sites } : {}),
      ...(opts.wat ? { wat: m.emitText() } : {}),
    };
  } finally {
    m.dispose();
  }
}
