/**
 * @fileoverview The `tilejit` command: each command's exit status and output shape, run in
 * process (and the executable once, for its wiring), with a cache directory of its own.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runCli } from '../src/cli/main.js';

async function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '', err = '';
  const code = await runCli(args, { out: (t) => (out += t), err: (t) => (err += t) });
  return { code, out, err };
}

const saved = process.env.TILEJIT_CACHE_DIR;
const dir = mkdtempSync(join(tmpdir(), 'tilejit-cli-'));
beforeAll(() => {
  process.env.TILEJIT_CACHE_DIR = dir;
});
afterAll(() => {
  process.env.TILEJIT_CACHE_DIR = saved;
});

const BENCH_FIELDS = ['suite', 'case', 'impl', 'threads', 'median_ms', 'gflops', 'gbps', 'peak_bytes', 'max_abs_err', 'params'];

describe('tilejit', () => {
  test('--help lists every command; no command or an unknown one is a usage error', async () => {
    const help = await cli('--help');
    expect(help.code).toBe(0);
    for (const c of ['info', 'cache clear', 'inspect', 'bench', 'tune']) expect(help.out).toContain(c);
    expect((await cli('tune', '--help')).out).toMatch(/^usage: tilejit tune <op>/);
    const none = await cli();
    expect(none.code).toBe(2);
    expect(none.err).toContain('usage: tilejit <command>');
    const bad = await cli('frobnicate');
    expect([bad.code, bad.err]).toEqual([2, "tilejit: unknown command 'frobnicate'\nrun 'tilejit --help' for the commands\n"]);
  });

  test.each([
    [['info', '--verbose'], /unknown option '--verbose'/],
    [['info', 'extra'], /unexpected argument 'extra'/],
    [['cache'], /expected 'cache clear'/],
    [['cache', 'purge'], /got 'cache purge'/],
    [['inspect', 'matmul'], /choose one of --wat or --ir/],
    [['inspect', 'matmul', '--wat', '--ir'], /choose one of --wat or --ir/],
    [['inspect', 'no-such-thing', '--ir'], /neither an op \(matmul, gelu, softmax, layernorm, attention\) nor a file/],
    [['inspect', 'softmax', '--ir', '--shape', '4x4x4'], /--shape must be MxN with positive integers/],
    [['tune'], /expected one op to tune/],
    [['tune', 'conv'], /unknown op 'conv'/],
    [['tune', 'matmul', '--shape', '12x'], /--shape must be MxNxK/],
    [['tune', 'matmul', '--shape'], /--shape needs a value/],
    [['tune', 'matmul', '--threads', 'two'], /--threads must be a non-negative integer/],
    [['bench', '--suite', 'nope'], /unknown suite 'nope'/],
    [['bench', '--fast'], /unknown argument '--fast'/],
    [['bench', '--report'], /--report needs a directory/],
  ])('%j exits 2 with a clear message', async (args, msg) => {
    const r = await cli(...args);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(msg);
    expect(r.err).toMatch(/usage: /);
    expect(r.out).toBe('');
  });

  test('info reports features, threads and the cache', async () => {
    const r = await cli('info', '--json');
    expect(r.code).toBe(0);
    const j = JSON.parse(r.out);
    expect(j.simd).toBe(true);
    expect(typeof j.relaxedSimd).toBe('boolean');
    expect(j.threads).toBeGreaterThan(0);
    expect(j.cacheDir).toBe(dir);
    const text = await cli('info');
    expect(text.out).toMatch(/^relaxed SIMD \(FMA\)\s+(yes|no)/m);
    expect(text.out).toContain(`cache dir            ${dir}`);
  });

  test.each([['gelu', '1000'], ['softmax', '7x100'], ['layernorm', '8x1024'], ['attention', '100x32']])('inspect %s --shape %s prints its IR and WebAssembly', async (op, shape) => {
    const ir = await cli('inspect', op, '--ir', '--shape', shape);
    expect(ir.code).toBe(0);
    expect(ir.out).toMatch(/store/);
    const wat = await cli('inspect', op, '--wat', '--shape', shape);
    expect(wat.code).toBe(0);
    expect(wat.out).toMatch(/^\(module/);
  });

  test('inspect prints IR or WebAssembly text for an op or a kernel file', async () => {
    const ir = await cli('inspect', 'matmul', '--ir', '--shape', '32x32x32');
    expect(ir.code).toBe(0);
    expect(ir.out).toMatch(/^kernel gemm\(/);
    const wat = await cli('inspect', 'matmul', '--wat');
    expect(wat.code).toBe(0);
    expect(wat.out).toMatch(/^\(module/);
    expect(wat.out).toContain('(export "run"');
    const file = await cli('inspect', join(__dirname, 'fixtures', 'inspect-kernel.ts'), '--ir');
    expect(file.code).toBe(0);
    expect(file.out).toMatch(/^kernel double\(/);
    const notKernel = await cli('inspect', join(__dirname, 'util', 'irb.ts'), '--ir');
    expect(notKernel.code).toBe(1);
    expect(notKernel.err).toMatch(/must export 'inspect'/);
    // A kernel of another copy of tilejit (an installed package beside this build) is named as such.
    const other = join(mkdtempSync(join(tmpdir(), 'tilejit-inspect-')), 'other.mjs');
    writeFileSync(other, 'class Kernel {}\nexport const inspect = { kernel: new Kernel(), options: { grid: [1] }, args: () => [] };\n');
    const foreign = await cli('inspect', other, '--ir');
    expect(foreign.code).toBe(1);
    expect(foreign.err).toMatch(/kernel was made by another copy of tilejit than this CLI's/);
  });

  test('tune prints a result table, saves the results, and cache clear removes them', async () => {
    const svg = join(mkdtempSync(join(tmpdir(), 'tilejit-svg-')), 'search.svg');
    const r = await cli('tune', 'matmul', '--shape', '24x40x16', '--threads', '0', '--warmup', '0', '--rep', '1', '--svg', svg);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/tuning gemm \(matmul\) for M=24 N=40 K=16 \(bucket M=32 N=64 K=16\): \d+ configs, 0 cached/);
    expect(r.err).toMatch(/\[#+\] \d+\/\d+ BM=/);
    const lines = r.out.trim().split('\n');
    expect(lines[0]!.split(/\s+/).filter(Boolean)).toEqual(['BM', 'BN', 'BK', 'median', 'ms', 'GFLOP/s', 'verified', 'status']);
    expect(lines.filter((l) => l.startsWith('*'))).toHaveLength(1);
    const plot = readFileSync(svg, 'utf8');
    expect(plot).toMatch(/^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"[\s\S]*<\/svg>\n$/);
    expect(plot.match(/class="bar"/g)).toHaveLength(lines.length - 2);
    expect(plot).toContain('matmul 24x40x16 on 0 threads');
    expect(lines.at(-1)).toMatch(/^best: BM=\d+ BN=\d+ BK=\d+ [\d.]+ ms, [\d.]+ GFLOP\/s on 0 threads \(\d+ measured now; saved in /);
    const j = await cli('tune', 'matmul', '--shape', '24x40x16', '--threads', '0', '--json');
    const report = JSON.parse(j.out);
    expect(report.measured).toBe(0); // all from the file the first run wrote
    expect(report.results.length).toBe(lines.length - 2);
    expect(report.results.every((x: { verified: boolean; status: string }) => x.verified && x.status === 'ok')).toBe(true);
    expect(existsSync(report.file)).toBe(true);
    const clear = await cli('cache', 'clear');
    expect(clear.code).toBe(0);
    expect(clear.out).toMatch(/^removed \d+ compiled modules and 1 tuning files from /);
    expect(readdirSync(join(dir, 'tune'))).toEqual([]);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tjc'))).toEqual([]);
  });

  test('tune knows the other templates: softmax rows in GB/s, attention tiles in GFLOP/s, as JSON', async () => {
    const sm = await cli('tune', 'softmax', '--shape', '20x300', '--threads', '0', '--warmup', '0', '--rep', '1', '--no-cache');
    expect(sm.code).toBe(0);
    const head = sm.out.trim().split('\n')[0]!.split(/\s+/).filter(Boolean);
    expect(head).toEqual(['R', 'SINGLE', 'median', 'ms', 'GB/s', 'verified', 'status']);
    expect(sm.out).toMatch(/best: R=\d+ SINGLE=true [\d.]+ ms, [\d.]+ GB\/s on 0 threads \(\d+ measured now\)/);
    const at = await cli('tune', 'attention-causal', '--shape', '70x16', '--threads', '0', '--warmup', '0', '--rep', '1', '--no-cache', '--json');
    expect(at.code).toBe(0);
    const j = JSON.parse(at.out);
    expect(j).toMatchObject({ op: 'attention-causal', shape: { N: 70, D: 16 }, key: { N: 128, D: 16, CAUSAL: true }, file: null });
    expect(j.results.every((x: { gflops: number | null }) => typeof x.gflops === 'number')).toBe(true);
    expect(Object.keys(j.best).sort()).toEqual(['BM', 'BN']);
    expect((await cli('tune', 'softmax', '--shape', '4x4x4')).err).toMatch(/--shape must be MxN/);
  });

  test('tune of another shape in a cached bucket shows where each time comes from, with no rate for this shape', async () => {
    const first = await cli('tune', 'softmax', '--shape', '20x300', '--threads', '0', '--warmup', '0', '--rep', '1');
    expect(first.code).toBe(0);
    const again = await cli('tune', 'softmax', '--shape', '24x300', '--threads', '0');
    expect(again.code).toBe(0);
    expect(again.out).toMatch(/ok, cached: timed at M=20 N=300/);
    expect(again.out).toMatch(/best: R=\d+ SINGLE=true [\d.]+ ms, \(timed at M=20 N=300\) on 0 threads \(0 measured now; saved in /);
    const j = JSON.parse((await cli('tune', 'softmax', '--shape', '24x300', '--threads', '0', '--json')).out);
    expect(j.results.every((r: { gbps: number | null; at: object }) => r.gbps === null && JSON.stringify(r.at) === '{"M":20,"N":300}')).toBe(true);
  });

  test('bench --json --quick --suite dispatch prints only contract lines', async () => {
    const r = await cli('bench', '--json', '--quick', '--suite', 'dispatch');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => [l.case, l.threads, l.params.callerRuns])).toEqual([
      ['empty launch, 2 programs', 1, true], ['empty launch, 2 programs', 2, true], ['empty launch, 2 programs, caller waiting', 2, false],
    ]);
    for (const l of lines) {
      for (const f of BENCH_FIELDS) expect(l).toHaveProperty(f);
      expect(l.suite).toBe('dispatch');
      expect(l.impl).toBe('tilejit');
      expect(l.median_ms).toBeGreaterThan(0);
      expect(typeof l.case).toBe('string');
      expect(Number.isInteger(l.threads)).toBe(true);
      for (const f of ['gflops', 'gbps', 'peak_bytes', 'max_abs_err']) expect(l[f] === null || typeof l[f] === 'number').toBe(true);
      expect(typeof l.params).toBe('object');
    }
    expect(r.err).toContain('[bench] dispatch');
  });

  test('bench --json --quick --suite gemm --suite gemv: tilejit, peers and plain JS lines follow the contract', async () => {
    const r = await cli('bench', '--json', '--quick', '--suite', 'gemm', '--suite', 'gemv');
    expect(r.code).toBe(0);
    const lines = r.out.trim().split('\n').map((l) => JSON.parse(l));
    for (const l of lines) {
      for (const f of BENCH_FIELDS) expect(l).toHaveProperty(f);
      // One row (M = 1) is GEMV, under its own suite as BENCH_JSON names it.
      expect(l.suite).toBe(l.params.M === 1 ? 'gemv' : 'gemm');
      // A peer that cannot run is a line with an error, never a crash.
      if (l.median_ms === null) expect(typeof l.error).toBe('string');
      else expect(l.median_ms).toBeGreaterThan(0);
      if (l.impl.startsWith('tilejit') && l.params.M > 1) expect(l.gflops).toBeGreaterThan(0);
    }
    const impls = new Set(lines.map((l) => l.impl));
    for (const impl of ['tilejit', 'tilejit-mul+add', 'ort-web', 'tfjs-wasm', 'naive-js']) expect(impls.has(impl), impl).toBe(true);
    expect(new Set(lines.filter((l) => l.impl === 'tilejit').map((l) => l.threads))).toEqual(new Set([1, 2]));
  }, 120_000);

  test('the executable exits with the statuses above', () => {
    const bin = join(__dirname, '..', 'src', 'cli', 'bin.ts');
    const run = (...args: string[]) => spawnSync(process.execPath, ['--import', 'tsx', bin, ...args], { encoding: 'utf8', env: { ...process.env, TILEJIT_CACHE_DIR: dir } });
    const help = run('--help');
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('usage: tilejit <command>');
    const bad = run('tune', 'matmul', '--bogus');
    expect(bad.status).toBe(2);
    expect(bad.stderr).toContain("tilejit: unknown option '--bogus'");
    expect(JSON.parse(execFileSync(process.execPath, ['--import', 'tsx', bin, 'info', '--json'], { encoding: 'utf8' })).simd).toBe(true);
  });
});
