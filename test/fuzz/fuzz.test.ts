/**
 * @fileoverview The short fuzz run: a few hundred random programs, compiled vs interpreted.
 * The seed is fixed so the suite is repeatable; FUZZ_SEED picks another, and `npm run fuzz`
 * runs thousands.
 */
import fc from 'fast-check';
import { afterAll, beforeAll, test } from 'vitest';
import { Runtime } from '../../src/runtime/runtime.js';
import { fuzzProperty } from './property.js';

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.create({ threads: 0 });
});
afterAll(() => rt.dispose());

test('200 random programs: compiled and interpreted agree', async () => {
  const seed = Number(process.env.FUZZ_SEED ?? 20240610);
  await fc.assert(fuzzProperty(rt), { numRuns: 200, seed });
});
