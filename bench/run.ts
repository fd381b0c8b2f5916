/**
 * @fileoverview `npm run bench -- [--json] [--quick] [--suite NAME]...`: runs the suites, one
 * process, implementations side by side. With --json, stdout carries only BENCH_JSON lines;
 * progress goes to stderr.
 */
import { type BenchContext, type BenchLine } from './harness.js';
import { attentionBwdSuite, attentionSuite } from './suites/attention.js';
import { compileSuite, dispatchSuite, dotSuite } from './suites/core.js';
import { gemmSuite } from './suites/gemm.js';
import { trainSuite } from './suites/train-e2e.js';
import { activationsSuite, ampSuite, layernormSuite, lossesSuite, optimSuite, softmaxSuite } from './suites/train.js';

const SUITES: Record<string, (ctx: BenchContext) => Promise<void>> = {
  compile: compileSuite,
  dot: dotSuite,
  gemm: gemmSuite,
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
};

function usage(msg: string): never {
  process.stderr.write(`${msg}\nusage: npm run bench -- [--json] [--quick] [--suite ${Object.keys(SUITES).join('|')}]...\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let json = false;
let quick = false;
const chosen: string[] = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i]!;
  if (a === '--json') json = true;
  else if (a === '--quick') quick = true;
  else if (a === '--suite') {
    const s = args[++i];
    if (!s || !(s in SUITES)) usage(`unknown suite '${s ?? ''}'`);
    chosen.push(s);
  } else usage(`unknown argument '${a}'`);
}

const ctx: BenchContext = {
  quick,
  json,
  emit(l: BenchLine) {
    if (json) process.stdout.write(`${JSON.stringify(l)}\n`);
    else {
      const rate = l.gflops !== null ? `${l.gflops} GFLOP/s` : l.gbps !== null ? `${l.gbps} GB/s` : '';
      const t = l.median_ms === null ? `error: ${l.error}` : `${l.median_ms} ms ${rate}`;
      process.stdout.write(`${l.suite.padEnd(12)} ${l.case.padEnd(44)} ${l.impl.padEnd(10)} t=${l.threads} ${t}${l.max_abs_err !== null ? `  err ${l.max_abs_err.toExponential(1)}` : ''}\n`);
    }
  },
};

for (const name of chosen.length ? chosen : Object.keys(SUITES)) {
  process.stderr.write(`[bench] ${name}...\n`);
  await SUITES[name]!(ctx);
}
