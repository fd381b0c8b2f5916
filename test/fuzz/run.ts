/**
 * @fileoverview The long fuzz run: `npm run fuzz -- --count 10000 [--seed N] [--threads T]`.
 * Runs batches of random programs, shrinks each failure to a minimal kernel and prints it, and
 * ends with the count, the time and the number of mismatches (exit code 1 if any).
 */
import fc from 'fast-check';
import { Runtime } from '../../src/runtime/runtime.js';
import { fuzzProperty } from './property.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name} takes a non-negative integer`);
  return v;
}

const count = option('count', 1000);
const seed = option('seed', Date.now() % 2 ** 31);
const threads = option('threads', 0);
const BATCH = 100;

const rt = await Runtime.create({ threads });
const t0 = performance.now();
let done = 0;
let mismatches = 0;
for (let b = 0; done < count; b++) {
  const runs = Math.min(BATCH, count - done);
  const r = await fc.check(fuzzProperty(rt), { numRuns: runs, seed: seed + b });
  done += r.failed ? r.numRuns : runs;
  if (r.failed) {
    mismatches++;
    console.log(`\nmismatch in batch ${b} (seed ${seed + b}), shrunk ${r.numShrinks} times:\n${r.errorInstance instanceof Error ? r.errorInstance.message : String(r.errorInstance)}\n`);
  }
  process.stdout.write(`\r${done}/${count} programs, ${mismatches} mismatches, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}
rt.dispose();
const secs = (performance.now() - t0) / 1000;
console.log(`\nfuzz: ${done} programs in ${secs.toFixed(1)} s (seed ${seed}), ${mismatches} mismatches`);
process.exitCode = mismatches ? 1 : 0;
