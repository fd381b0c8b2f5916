/**
 * @fileoverview `npm run tune:tables -- [--only OP,...] [--quick]`: regenerates the config
 * tables `ops.*` choose from (templates/gemm-table.ts, templates/tuned-tables.ts) by running the
 * autotuner (every candidate verified against the interpreter, then timed) over each op's table
 * shapes (src/tune/ops.ts) on this machine's threads. `--only` re-tunes some ops and keeps the
 * other rows as they are. Results also land in the tuning cache, so a second run only times what
 * changed. Tune on a quiet machine: a loaded one picks slow configs.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Runtime } from '../src/index.js';
import { freeProblem, TUNE_OPS } from '../src/tune/ops.js';
import { machineSignature, signatureId } from '../src/tune/key.js';
import { GEMM_TABLE } from '../templates/gemm-table.js';
import { ATTENTION_TABLE, GEMV_TABLE, NORM_TABLE, SOFTMAX_TABLE, TUNED_THREADS } from '../templates/tuned-tables.js';

type Row = Readonly<Record<string, number | boolean | string>>;

/** Which table each op's rows go to. */
const TABLE_OF: Readonly<Record<string, string>> = {
  matmul: 'GEMM_TABLE', 'matmul-plain': 'GEMM_TABLE', gemv: 'GEMV_TABLE', 'gemv-bt': 'GEMV_TABLE', softmax: 'SOFTMAX_TABLE',
  layernorm: 'NORM_TABLE', attention: 'ATTENTION_TABLE', 'attention-causal': 'ATTENTION_TABLE',
  'attention-dkv': 'ATTENTION_TABLE', 'attention-dkv-causal': 'ATTENTION_TABLE', 'attention-dq': 'ATTENTION_TABLE', 'attention-dq-causal': 'ATTENTION_TABLE',
  'attention-bwd': 'ATTENTION_TABLE', 'attention-bwd-causal': 'ATTENTION_TABLE',
};

const argv = process.argv.slice(2);
const usage = (msg: string): never => {
  process.stderr.write(`tune-tables: ${msg}\nusage: npm run tune:tables -- [--only OP,...] [--quick]\n`);
  process.exit(2);
};
const quick = argv.includes('--quick');
const onlyAt = argv.indexOf('--only');
for (const [i, a] of argv.entries()) if (a !== '--quick' && a !== '--only' && !(onlyAt >= 0 && i === onlyAt + 1)) usage(`unknown argument '${a}'`);
const only = onlyAt >= 0 ? (argv[onlyAt + 1] ?? '').split(',').filter(Boolean) : Object.keys(TUNE_OPS);
if (only.length === 0) usage('--only needs a comma-separated list of ops');
for (const op of only) if (!(op in TUNE_OPS)) usage(`unknown op '${op}' (ops: ${Object.keys(TUNE_OPS).join(', ')})`);

const threads = availableParallelism();
// GEMV's rows hold only on the thread count they were measured on (TUNED_THREADS): re-tuning one
// GEMV op on another count would leave the other's rows labelled with the wrong one.
const gemvOps = only.filter((op) => op === 'gemv' || op === 'gemv-bt');
if (gemvOps.length === 1 && threads !== TUNED_THREADS) {
  usage(`the GEMV rows were measured on ${TUNED_THREADS} threads and this machine has ${threads}: re-tune gemv and gemv-bt together`);
}
const tunedThreads = gemvOps.length ? threads : TUNED_THREADS;
const file = (rel: string): string => fileURLToPath(new URL(`../../../${rel}`, import.meta.url));
const rowText = (r: Row): string => `{ ${Object.entries(r).map(([k, v]) => `${k}: ${typeof v === 'string' ? `'${v}'` : String(v)}`).join(', ')} }`;
// The rates noted beside the rows that stay, read back from the files, per table (two tables
// can hold the same row text: softmax and layer norm both have { M, N, R, BN, SINGLE } rows).
const TABLE_FILES = ['templates/gemm-table.ts', 'templates/tuned-tables.ts'];
const oldText = TABLE_FILES.map((f) => readFileSync(file(f), 'utf8'));
const oldNotes = new Map<string, string>();
for (const text of oldText) {
  for (const section of text.split(/^export const /m).slice(1)) {
    const table = /^\w+/.exec(section)![0];
    for (const m of section.matchAll(/^ {2}(\{.*\}), \/\/ (.*)$/gm)) oldNotes.set(`${table} ${m[1]!}`, m[2]!);
  }
}
const tables: Record<string, { rows: Row[]; notes: string[] }> = {};
const keep = (name: string, rows: readonly Row[]): void => void (tables[name] = { rows: [...rows], notes: rows.map((r) => oldNotes.get(`${name} ${rowText(r)}`) ?? '') });
keep('GEMM_TABLE', GEMM_TABLE.map((r) => ({ ...r })));
keep('GEMV_TABLE', GEMV_TABLE);
keep('SOFTMAX_TABLE', SOFTMAX_TABLE);
keep('NORM_TABLE', NORM_TABLE);
keep('ATTENTION_TABLE', ATTENTION_TABLE);
// Re-tuned ops replace their own rows (a table shared by two ops keeps the other op's rows).
const owner = (op: string, r: Row): boolean => {
  if (op === 'gemv' || op === 'gemv-bt') return r.transB === (op === 'gemv-bt');
  if (op === 'matmul' || op === 'matmul-plain') return r.relaxed === (op === 'matmul');
  if (op.startsWith('attention')) return r.causal === op.endsWith('-causal') && r.pass === (op.includes('-dkv') ? 'dkv' : op.includes('-dq') ? 'dq' : op.includes('-bwd') ? 'bwd' : 'fwd');
  return true;
};
for (const op of only) {
  const t = tables[TABLE_OF[op]!]!;
  const kept = t.rows.map((r, i) => [r, t.notes[i]!] as const).filter(([r]) => !owner(op, r));
  t.rows = kept.map(([r]) => r);
  t.notes = kept.map(([, n]) => n);
}

const rt = await Runtime.create({ threads });
for (const op of only) {
  const spec = TUNE_OPS[op]!;
  for (const dims of spec.tableShapes) {
    // Measured fresh, in memory only: the tuner's results are keyed by power-of-two buckets, so
    // a cached result would stand in for every shape of its bucket (8192x384x128 for
    // 8192x512x128) and for the last machine state.
    const tuned = spec.tuned({
      warmup: quick ? 0 : 10, rep: quick ? 5 : 40, cacheDir: false,
      listener: (e) => {
        if (e.type === 'start') process.stderr.write(`[tune] ${op} ${dims.join('x')}: ${e.configs} configs (${e.cached} cached)\n`);
        if (e.type === 'rejected') process.stderr.write(`  rejected ${JSON.stringify(e.result.config)}: ${e.result.reason}\n`);
      },
    });
    const problem = spec.problem(rt, dims);
    const r = await tuned.tune({ ...problem.fixed, runtime: rt }, ...problem.args);
    freeProblem(problem.args);
    const work = spec.work(dims);
    const rate = work.flops !== undefined ? `${(work.flops / r.best.ms! / 1e6).toFixed(1)} GFLOP/s` : `${(work.bytes! / r.best.ms! / 1e6).toFixed(1)} GB/s`;
    process.stderr.write(`  best ${JSON.stringify(r.best.config)}: ${r.best.ms!.toFixed(3)} ms, ${rate}\n`);
    const t = tables[TABLE_OF[op]!]!;
    t.rows.push(spec.tableRow(dims, r.best.config));
    t.notes.push(rate);
  }
}
rt.dispose();

const here = signatureId(machineSignature(threads)).replace(/\|/g, ', ');
// Where each table was measured: here if this run tuned it, else what its file says.
const measured: Record<string, string> = {};
for (const text of oldText) {
  for (const m of text.matchAll(/measured on ([^\n]*?)\.\n(?:.*\n)*?export const (\w+_TABLE)/g)) measured[m[2]!] ??= m[1]!;
}
// A table re-tuned in part (one of the ops that share it) says which rows are from where.
for (const table of new Set(only.map((op) => TABLE_OF[op]!))) {
  const retuned = only.filter((op) => TABLE_OF[op] === table);
  const all = Object.keys(TABLE_OF).filter((op) => TABLE_OF[op] === table);
  const before = measured[table];
  measured[table] = retuned.length === all.length || before === undefined || before === here
    ? here : `${here} (${retuned.join(', ')}); the other rows on ${before}`;
}
const on = (name: string): string => measured[name] ?? 'no machine yet';
const body = (name: string): string => {
  const t = tables[name]!;
  return t.rows.map((r, i) => `\n  ${rowText(r)},${t.notes[i] ? ` // ${t.notes[i]}` : ''}`).join('') + (t.rows.length ? '\n' : '');
};

writeFileSync(file('templates/gemm-table.ts'), `/**
 * @fileoverview GENERATED by \`npm run tune:tables\` (bench/tune-tables.ts): the fastest
 * verified GEMM tile config per shape, measured by the autotuner. Do not edit by hand; re-run
 * the script.
 */
import type { GemmConfig } from './gemm.js';

/** One tuned shape and its winning tiles. */
export interface GemmTableRow extends GemmConfig {
  readonly M: number;
  readonly N: number;
  readonly K: number;
  /** Measured with relaxed-SIMD FMA (true) or the plain mul+add path (false). */
  readonly relaxed: boolean;
}

/**
 * GEMM tiles, measured on ${on('GEMM_TABLE')}.
 */
export const GEMM_TABLE: readonly GemmTableRow[] = [${body('GEMM_TABLE')}];
`);

writeFileSync(file('templates/tuned-tables.ts'), `/**
 * @fileoverview GENERATED by \`npm run tune:tables\` (bench/tune-tables.ts): the fastest verified
 * config per shape for GEMV, the row kernels and attention, measured by the autotuner. Do not
 * edit by hand; re-run the script (\`-- --only gemv\` re-tunes one op and keeps the other rows).
 */

/** Threads the tables were measured on (GEMV's split depends on it). */
export const TUNED_THREADS = ${tunedThreads};

/**
 * GEMV: columns per program and K rows (or Bᵀ columns) per step, measured on ${on('GEMV_TABLE')}.
 */
export const GEMV_TABLE: readonly { N: number; K: number; transB: boolean; BN: number; BK: number }[] = [${body('GEMV_TABLE')}];

/**
 * Softmax forward: rows per program; BN the tile width (whole rows) or the chunk (streamed),
 * measured on ${on('SOFTMAX_TABLE')}.
 */
export const SOFTMAX_TABLE: readonly { M: number; N: number; R: number; BN: number; SINGLE: boolean }[] = [${body('SOFTMAX_TABLE')}];

/**
 * Layer norm forward, as for softmax, measured on ${on('NORM_TABLE')}.
 */
export const NORM_TABLE: readonly { M: number; N: number; R: number; BN: number; SINGLE: boolean }[] = [${body('NORM_TABLE')}];

/**
 * Attention, per pass (forward, the backward's dK/dV and dQ passes, the one-pass backward): query
 * rows and keys per block, measured on ${on('ATTENTION_TABLE')}.
 */
export const ATTENTION_TABLE: readonly { N: number; D: number; causal: boolean; pass: 'fwd' | 'dkv' | 'dq' | 'bwd'; BM: number; BN: number }[] = [${body('ATTENTION_TABLE')}];
`);
process.stderr.write('wrote templates/gemm-table.ts and templates/tuned-tables.ts\n');
