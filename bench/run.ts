/**
 * @fileoverview `npm run bench -- [--json] [--quick] [--suite NAME]...` (and `tilejit bench`):
 * runs the suites, one process, implementations side by side. With --json, stdout carries
 * only BENCH_JSON lines; progress goes to stderr.
 */
import { pathToFileURL } from 'node:url';
import { type BenchContext, type BenchLine } from './harness.js';
import { attentionBwdSuite, attentionSuite } from './suites/attention.js';
import { checkedSuite } from './suites/checked.js';
import { compileSuite, dispatchSuite, dotSuite } from './suites/core.js';
import { gemmSuite, gemvSuite } from './suites/gemm.js';
import { trainSuite } from './suites/train-e2e.js';
import { activationsSuite, ampSuite, layernormSuite, lossesSuite, optimSuite, softmaxSuite } from './suites/train.js';

export const SUITES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  compile: compileSuite,
  dot: dotSuite,
  gemm: gemmSuite,
  gemv: gemvSuite,
  activations: activationsSuite,
  softmax: softmaxSuite,
  layernorm: layernormSuite,
  losses: lossesSuite,
  optim: optimSuite,
  amp: ampSuite,
  attention: attentionSuite,
  'attention-bwd': attentionBwdSuite,
  train: trainSuite,
  dispatch: dispatchSuite,
  checked: checkedSuite,
};

/** Where a run writes: lines (or the table) to `out`, progress and errors to `err`. */
export interface BenchIO {
  out(text: string): void;
  err(text: string): void;
}

const STDIO: BenchIO = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

/** Parse `[--json] [--quick] [--suite NAME]...` and run; returns the exit code (2: bad arguments). */
export async function runBench(args: readonly string[], io: BenchIO = STDIO, usagePrefix = 'npm run bench --'): Promise<number> {
  const usage = (msg: string): number => {
    io.err(`${msg}\nusage: ${usagePrefix} [--json] [--quick] [--suite ${Object.keys(SUITES).join('|')}]...\n`);
    return 2;
  };
  let json = false;
  let quick = false;
  const chosen: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--json') json = true;
    else if (a === '--quick') quick = true;
    else if (a === '--suite') {
      const s = args[++i];
      if (!s || !(s in SUITES)) return usage(`unknown suite '${s ?? ''}'`);
      chosen.push(s);
    } else return usage(`unknown argument '${a}'`);
  }
  const ctx: BenchContext = {
    quick,
    json,
    emit(l: BenchLine) {
      if (json) io.out(`${JSON.stringify(l)}\n`);
      else {
        const rate = l.gflops !== null ? `${l.gflops} GFLOP/s` : l.gbps !== null ? `${l.gbps} GB/s` : '';
        const t = l.median_ms === null ? `error: ${l.error}` : `${l.median_ms} ms ${rate}`;
        io.out(`${l.suite.padEnd(12)} ${l.case.padEnd(44)} ${l.impl.padEnd(10)} t=${l.threads} ${t}${l.max_abs_err !== null ? `  err ${l.max_abs_err.toExponential(1)}` : ''}\n`);
      }
    },
    note(text: string) {
      if (!json) io.out(`${text}\n`);
    },
  };
  for (const name of chosen.length ? chosen : Object.keys(SUITES)) {
    io.err(`[bench] ${name}...\n`);
    await SUITES[name]!(ctx);
  }
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await runBench(process.argv.slice(2));
}
