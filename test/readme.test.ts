/**
 * @fileoverview The README's worked example, read from the README itself: the tiled matmul
 * kernel compiles, and under checked launches (every access bounds-checked) it matches a plain
 * product on shapes that divide no tile.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, expect, test } from 'vitest';
import { jit } from '../src/kernel.js';
import { Runtime } from '../src/runtime/runtime.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('### Worked example: a tiled matmul'));
const source = /jit\(`([^`]*)`/.exec(section)![1]!;

let rt: Runtime;
beforeAll(async () => {
  rt = await Runtime.create({ threads: 0 });
});
afterAll(() => rt.dispose());

test.each([[64, 64, 32], [65, 70, 33], [100, 3, 17], [1, 1, 1]])("the worked example's matmul, checked, %ix%ix%i", async (M, N, K) => {
  const matmul = jit(source, { signature: { A: 'ptr', B: 'ptr', C: 'ptr', M: 'i32', N: 'i32', K: 'i32', BM: 'constexpr', BN: 'constexpr', BK: 'constexpr' } });
  const a = Float32Array.from({ length: M * K }, (_, i) => ((i * 37) % 11) - 5);
  const b = Float32Array.from({ length: K * N }, (_, i) => ((i * 53) % 7) - 3);
  const c = rt.empty([M, N]);
  await matmul.launch({ grid: [Math.ceil(M / 64), Math.ceil(N / 64)], BM: 64, BN: 64, BK: 32, checked: true, runtime: rt }, rt.tensor(a, [M, K]), rt.tensor(b, [K, N]), c, M, N, K);
  const want = new Float32Array(M * N);
  for (let i = 0; i < M; i++) for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) want[i * N + j]! += a[i * K + k]! * b[k * N + j]!;
  expect(Array.from(c.toArray())).toEqual(Array.from(want));
});
