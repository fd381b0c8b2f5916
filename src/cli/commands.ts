/**
 * @fileoverview The `tilejit` commands other than `bench`: `info`, `cache clear`, `inspect` and
 * `tune`. Each returns its exit status; usage mistakes throw UsageError (exit 2).
 */
import { existsSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Kernel, TILEJIT_VERSION, type KernelArg, type LaunchOptions } from '../kernel.js';
import { chooseGemmConfig } from '../ops/matmul.js';
import { defaultCacheDir, ModuleCache } from '../runtime/cache.js';
import { detectFeatures } from '../runtime/features.js';
import { Runtime } from '../runtime/runtime.js';
import { deterministic, gemmArgs, PLAIN_GEMM } from '../tune/gemm.js';
import { freeProblem, TUNE_OPS } from '../tune/ops.js';
import { plotTuneReport } from '../tune/plot.js';
import type { ConfigResult } from '../tune/store.js';
import { keyId } from '../tune/key.js';
import type { TuneEvent } from '../tune/autotune.js';
import { intFlag, parseArgs, parseDims, UsageError, type CliIO } from './args.js';
import { gemmKernel } from '../../templates/gemm.js';
import { activationKernel, ELEMENTWISE_BLOCK } from '../../templates/activation.js';
import { attnFwdKernel, chooseAttentionFwdConfig, headMajorStrides } from '../../templates/attention.js';
import { normFwdKernel } from '../../templates/norm.js';
import { chooseRowConfig, softmaxKernel } from '../../templates/softmax.js';

/** Ops the `tune` command knows by name. */
export const CLI_OPS = Object.keys(TUNE_OPS);

/** Ops `inspect` knows: the shape form, its default, and the kernel launch `ops.*` would make. */
const INSPECT_OPS: Record<string, { form: string; fallback: string; spec: (d: number[]) => InspectSpec }> = {
  matmul: {
    form: 'MxNxK', fallback: '64x64x64',
    spec: ([M, N, K]) => {
      const c = chooseGemmConfig(M!, N!, K!);
      const even = M! % c.BM === 0 && N! % c.BN === 0 && K! % c.BK === 0;
      return { kernel: gemmKernel, options: { grid: [Math.ceil(M! / c.BM), Math.ceil(N! / c.BN), 1], ...c, ...PLAIN_GEMM, EVEN: even }, args: (r) => gemmArgs(r, M!, N!, K!) };
    },
  },
  gelu: {
    form: 'N', fallback: '4096',
    spec: ([n]) => ({
      kernel: activationKernel,
      options: { grid: [Math.ceil(n! / ELEMENTWISE_BLOCK)], BLOCK: ELEMENTWISE_BLOCK, ACT: 'gelu', BWD: false, EVEN: n! % ELEMENTWISE_BLOCK === 0 },
      args: (r) => { const x = r.tensor(deterministic(n!, 1), [n!]); return [x, x, r.empty([n!]), n!]; },
    }),
  },
  softmax: {
    form: 'MxN', fallback: '64x1024',
    spec: ([M, N]) => {
      const c = chooseRowConfig(M!, N!);
      return {
        kernel: softmaxKernel,
        options: { grid: [c.SINGLE ? Math.ceil(M! / c.R) : M!], R: c.R, BN: c.BN, LOG: false, BWD: false, SINGLE: c.SINGLE, EVEN: c.EVEN },
        args: (r) => { const x = r.tensor(deterministic(M! * N!, 1), [M!, N!]); return [x, x, r.empty([M!, N!]), M!, N!]; },
      };
    },
  },
  layernorm: {
    form: 'MxN', fallback: '64x1024',
    spec: ([M, N]) => {
      const c = chooseRowConfig(M!, N!, 'norm');
      return {
        kernel: normFwdKernel,
        options: { grid: [c.SINGLE ? Math.ceil(M! / c.R) : M!], R: c.R, BN: c.BN, RMS: false, HAS_W: true, HAS_B: true, SINGLE: c.SINGLE, EVEN: c.EVEN },
        args: (r) => {
          const x = r.tensor(deterministic(M! * N!, 1), [M!, N!]), w = r.tensor(deterministic(N!, 1), [N!]), st = r.empty([M!]);
          return [x, w, w, r.empty([M!, N!]), st, r.empty([M!]), M!, N!, 1e-5];
        },
      };
    },
  },
  attention: {
    form: 'NxD', fallback: '1024x64',
    spec: ([N, D]) => {
      const { BM, BN } = chooseAttentionFwdConfig(N!, D!, true);
      return {
        kernel: attnFwdKernel,
        options: { grid: [Math.ceil(N! / BM), 1], BM, BN, D: D!, CAUSAL: true, WINDOW: 0, HAS_LENS: false, DROPOUT: false },
        args: (r) => {
          const q = r.tensor(deterministic(N! * D!, 1), [1, 1, N!, D!]), lse = r.empty([N!]);
          return [q, q, q, r.empty([1, 1, N!, D!]), lse, lse, N!, 1, 1, 1 / Math.sqrt(D!), 0, 0, ...headMajorStrides(1, 1, N!, D!)];
        },
      };
    },
  },
};

function tuneFiles(dir: string): string[] {
  try {
    return readdirSync(join(dir, 'tune')).filter((f) => f.endsWith('.json'));
  } catch {
    return [];
  }
}

function size(bytes: number): string {
  return bytes < 1024 ? `${bytes} B` : bytes < 1 << 20 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / (1 << 20)).toFixed(1)} MiB`;
}

/** `tilejit info [--json]`: engine features, threads, the cache. */
export function info(args: readonly string[], io: CliIO): number {
  const p = parseArgs(args, { switches: ['json'] }, 'info');
  if (p.positionals.length) throw new UsageError(`unexpected argument '${p.positionals[0]}'`, 'info');
  const f = detectFeatures();
  const dir = defaultCacheDir();
  const modules = new ModuleCache(dir).stats();
  const tunes = tuneFiles(dir);
  const tuneBytes = tunes.reduce((s, t) => s + statSync(join(dir, 'tune', t)).size, 0);
  const data = {
    version: TILEJIT_VERSION,
    node: process.versions.node,
    cpu: (cpus()[0]?.model ?? 'unknown').trim(),
    simd: f.simd,
    relaxedSimd: f.relaxedSimd,
    sharedMemory: f.threads,
    threads: availableParallelism(),
    cacheDir: dir,
    cacheEntries: modules.entries,
    cacheBytes: modules.bytes,
    tuneFiles: tunes.length,
    tuneBytes,
  };
  if (p.flags.has('json')) {
    io.out(`${JSON.stringify(data)}\n`);
    return 0;
  }
  const yes = (b: boolean): string => (b ? 'yes' : 'no');
  const rows: [string, string][] = [
    ['tilejit', `${data.version} (Node ${data.node})`],
    ['cpu', data.cpu],
    ['WebAssembly SIMD', yes(data.simd)],
    ['relaxed SIMD (FMA)', `${yes(data.relaxedSimd)}${process.env.TILEJIT_NO_RELAXED === '1' ? ' (off: TILEJIT_NO_RELAXED=1)' : ''}`],
    ['shared memory', yes(data.sharedMemory)],
    ['threads (default)', String(data.threads)],
    ['cache dir', data.cacheDir],
    ['compiled modules', `${data.cacheEntries} (${size(data.cacheBytes)})`],
    ['tuning results', `${data.tuneFiles} files (${size(data.tuneBytes)})`],
  ];
  for (const [k, v] of rows) io.out(`${k.padEnd(20)} ${v}\n`);
  return 0;
}

/** `tilejit cache clear`: remove compiled modules and tuning results. */
export function cache(args: readonly string[], io: CliIO): number {
  const p = parseArgs(args, {}, 'cache');
  if (p.positionals.length !== 1 || p.positionals[0] !== 'clear') throw new UsageError(`expected 'cache clear'${p.positionals.length ? `, got 'cache ${p.positionals.join(' ')}'` : ''}`, 'cache');
  const dir = defaultCacheDir();
  const mc = new ModuleCache(dir);
  const { entries } = mc.stats();
  mc.clear();
  const tunes = tuneFiles(dir);
  for (const t of tunes) rmSync(join(dir, 'tune', t), { force: true });
  io.out(`removed ${entries} compiled modules and ${tunes.length} tuning files from ${dir}\n`);
  return 0;
}

/** What a file given to `inspect` exports as `inspect` (or default): a kernel and an example launch. */
export interface InspectSpec {
  readonly kernel: Kernel;
  readonly options: LaunchOptions;
  readonly args: (rt: Runtime) => KernelArg[];
}

/** `tilejit inspect <op|file> --wat|--ir [--shape ...]` (ops: matmul MxNxK, gelu N, softmax/layernorm MxN, attention NxD). */
export async function inspect(args: readonly string[], io: CliIO): Promise<number> {
  const p = parseArgs(args, { switches: ['wat', 'ir'], values: ['shape'] }, 'inspect');
  if (p.positionals.length !== 1) throw new UsageError('expected one op name or file', 'inspect');
  const wat = p.flags.has('wat'), ir = p.flags.has('ir');
  if (wat === ir) throw new UsageError('choose one of --wat or --ir', 'inspect');
  const target = p.positionals[0]!;
  const rt = await Runtime.create({ threads: 0 });
  try {
    let spec: InspectSpec;
    const known = INSPECT_OPS[target];
    if (known && Object.prototype.hasOwnProperty.call(INSPECT_OPS, target)) {
      spec = known.spec(parseDims(String(p.flags.get('shape') ?? known.fallback), known.form, 'inspect'));
    } else {
      if (p.flags.has('shape')) throw new UsageError('--shape applies to ops, not files', 'inspect');
      const file = resolve(target);
      if (!existsSync(file)) throw new UsageError(`'${target}' is neither an op (${Object.keys(INSPECT_OPS).join(', ')}) nor a file`, 'inspect');
      const mod = (await import(pathToFileURL(file).href)) as { inspect?: InspectSpec; default?: InspectSpec };
      const s = mod.inspect ?? mod.default;
      const k: unknown = s?.kernel;
      if (!(k instanceof Kernel) && typeof k === 'object' && k !== null && (k as { constructor?: { name?: string } }).constructor?.name === 'Kernel') {
        // jit() of another copy of tilejit (an installed package beside this build): its kernels
        // take that copy's tensors, so this CLI cannot launch them.
        io.err(`inspect: ${target}'s kernel was made by another copy of tilejit than this CLI's (${fileURLToPath(new URL('../..', import.meta.url))}); import jit from the same tilejit, or run that copy's CLI (npx tilejit)\n`);
        return 1;
      }
      if (!s || !(s.kernel instanceof Kernel) || typeof s.args !== 'function' || !s.options) {
        io.err(`inspect: ${target} must export 'inspect' (or a default) = { kernel: jit(...), options: { grid, ...constexprs }, args: (rt) => [...] }\n`);
        return 1;
      }
      spec = s;
    }
    const kargs = spec.args(rt);
    const opts = { ...spec.options, runtime: rt };
    io.out(`${wat ? await spec.kernel.wat(opts, ...kargs) : await spec.kernel.ir(opts, ...kargs)}\n`);
    return 0;
  } finally {
    rt.dispose();
  }
}

function bar(done: number, total: number, width = 24): string {
  const filled = Math.round((done / Math.max(1, total)) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}`;
}

/** `tilejit tune <op> [--shape ...] [--threads N] [--warmup MS] [--rep MS] [--json] [--no-cache] [--svg FILE]`. */
export async function tune(args: readonly string[], io: CliIO): Promise<number> {
  const p = parseArgs(args, { switches: ['json', 'no-cache'], values: ['shape', 'threads', 'warmup', 'rep', 'svg'] }, 'tune');
  if (p.positionals.length !== 1) throw new UsageError(`expected one op to tune (${CLI_OPS.join(', ')})`, 'tune');
  const op = p.positionals[0]!;
  if (!(CLI_OPS as readonly string[]).includes(op)) throw new UsageError(`unknown op '${op}' (ops: ${CLI_OPS.join(', ')})`, 'tune');
  const spec = TUNE_OPS[op]!;
  const dims = parseDims(String(p.flags.get('shape') ?? spec.fallback), spec.form, 'tune');
  const shape = Object.fromEntries(spec.form.split('x').map((k, i) => [k, dims[i]!]));
  const shapeText = Object.entries(shape).map(([k, v]) => `${k}=${v}`).join(' ');
  const threads = intFlag(p, 'threads', availableParallelism(), 'tune');
  const warmup = intFlag(p, 'warmup', 10, 'tune');
  const rep = intFlag(p, 'rep', 40, 'tune');
  let total = 0, done = 0;
  const progress = (e: TuneEvent): void => {
    if (e.type === 'start') {
      total = e.configs;
      done = e.cached;
      io.err(`tuning ${e.kernel} (${op}) for ${shapeText} (bucket ${Object.entries(e.key).map(([k, v]) => `${k}=${v}`).join(' ')}): ${e.configs} configs, ${e.cached} cached\n`);
    } else if (e.type === 'timed' || e.type === 'rejected') {
      done++;
      const what = `${configText(e.result.config)} ${e.result.status === 'ok' ? `${e.result.ms!.toFixed(3)} ms` : 'rejected'}`;
      io.err(io.tty ? `\r${bar(done, total)} ${what.padEnd(40)}` : `${bar(done, total)} ${what}\n`);
    } else if (e.type === 'done' && io.tty) io.err('\n');
  };
  const rt = await Runtime.create({ threads });
  const problem = spec.problem(rt, dims);
  try {
    const tuned = spec.tuned({ cacheDir: p.flags.has('no-cache') ? false : undefined, warmup, rep, listener: progress });
    const report = await tuned.tune({ ...problem.fixed, runtime: rt }, ...problem.args);
    const work = spec.work(dims);
    const unit = work.flops !== undefined ? 'GFLOP/s' : 'GB/s';
    // A cached result timed on another shape of the bucket has no rate for this one.
    const here = (r: ConfigResult): boolean => r.at !== undefined && keyId(r.at) === keyId(report.at);
    const rate = (r: ConfigResult): number | null => (r.ms === null || !here(r) ? null : (work.flops ?? work.bytes!) / r.ms / 1e6);
    const svg = p.flags.get('svg');
    if (typeof svg === 'string') {
      // Rates only when every time is this shape's; else the bars are the times, as cached.
      const allHere = report.results.every((r) => r.ms === null || here(r));
      writeFileSync(svg, plotTuneReport(report, allHere
        ? { flops: work.flops, bytes: work.bytes, title: `${op} ${dims.join('x')} on ${threads} threads: ${unit} per config` }
        : { title: `${op} ${dims.join('x')} on ${threads} threads: median ms per config (some cached from other shapes of the bucket)` }));
      io.err(`wrote ${svg}\n`);
    }
    const saved = report.saved ? `; saved in ${tuned.file}` : tuned.file ? `; NOT saved: ${tuned.file} could not be written` : '';
    if (p.flags.has('json')) {
      const results = report.results.map((r) => {
        const x = rate(r);
        return { ...r, [unit === 'GFLOP/s' ? 'gflops' : 'gbps']: x === null ? null : round(x) };
      });
      io.out(`${JSON.stringify({ op, shape, threads, key: report.key, best: report.best.config, measured: report.measured, file: report.saved ? tuned.file : null, results })}\n`);
    } else {
      io.out(table(report.results, report.best, rate, unit, here));
      const b = report.best, bRate = rate(b);
      const timed = bRate === null ? `(timed at ${atText(b)})` : `${bRate.toFixed(1)} ${unit}`;
      io.out(`best: ${configText(b.config)} ${b.ms!.toFixed(3)} ms, ${timed} on ${threads} thread${threads === 1 ? '' : 's'} (${report.measured} measured now${saved})\n`);
      if (!report.saved && tuned.file) io.err(`tilejit tune: could not write ${tuned.file}; the results were kept in memory only\n`);
    }
    return 0;
  } finally {
    freeProblem(problem.args);
    rt.dispose();
  }
}

const configText = (c: Readonly<Record<string, unknown>>): string => Object.entries(c).map(([k, v]) => `${k}=${String(v)}`).join(' ');

function round(x: number): number {
  return Number(x.toPrecision(4));
}

/** Where a cached result was timed: its key values (files written before results recorded them say so). */
const atText = (r: ConfigResult): string => (r.at ? Object.entries(r.at).map(([k, v]) => `${k}=${String(v)}`).join(' ') : 'an unrecorded shape of this bucket');

function table(results: readonly ConfigResult[], best: ConfigResult, rate: (r: ConfigResult) => number | null, unit: string, here: (r: ConfigResult) => boolean): string {
  const keys = [...new Set(results.flatMap((r) => Object.keys(r.config)))];
  const rows = [['', ...keys, 'median ms', unit, 'verified', 'status']];
  for (const r of results) {
    const x = rate(r);
    const status = r.status === 'ok' ? (here(r) ? 'ok' : `ok, cached: timed at ${atText(r)}`) : `rejected: ${r.reason ?? ''}`;
    rows.push([
      r === best ? '*' : '', ...keys.map((k) => String(r.config[k] ?? '')),
      r.ms === null ? '-' : r.ms.toFixed(3), x === null ? '-' : x.toFixed(1),
      r.verified ? 'yes' : 'no', status,
    ]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padStart(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}
