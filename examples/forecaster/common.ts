/**
 * @fileoverview What the tilejit forecaster and its plain-JS twin share: the configuration, the
 * parameter list with its seeded initialisation, and the data (the monthly airline passengers
 * series, a long synthetic multi-seasonal series, windows and batches).
 */
import { existsSync, readFileSync } from 'node:fs';

/** A transformer encoder forecaster: patches of `patch` steps x `channels` in, `horizon` steps out. */
export interface ForecastConfig {
  /** Past steps the model sees; a multiple of `patch`. */
  readonly context: number;
  readonly patch: number;
  readonly channels: number;
  readonly dModel: number;
  readonly heads: number;
  readonly ffn: number;
  readonly layers: number;
  readonly horizon: number;
}

/** Tokens per window. */
export const tokens = (c: ForecastConfig): number => c.context / c.patch;

/** One named parameter: its shape and how it starts. */
export interface ParamSpec {
  readonly name: string;
  readonly shape: readonly number[];
  /** 'linear': U(-1/sqrt(fanIn), 1/sqrt(fanIn)) as PyTorch's nn.Linear; 'one'/'zero' for norms; 'pos': U(-0.02, 0.02). */
  readonly init: 'linear' | 'one' | 'zero' | 'pos';
  readonly fanIn?: number;
}

/** Every parameter in a fixed order (the optimiser's and the gradients' order). */
export function paramSpecs(c: ForecastConfig): ParamSpec[] {
  const N = tokens(c), d = c.dModel, fin = c.patch * c.channels;
  const lin = (name: string, i: number, o: number): ParamSpec[] => [
    { name: `${name}.w`, shape: [i, o], init: 'linear', fanIn: i },
    { name: `${name}.b`, shape: [o], init: 'linear', fanIn: i },
  ];
  const norm = (name: string): ParamSpec[] => [{ name: `${name}.w`, shape: [d], init: 'one' }, { name: `${name}.b`, shape: [d], init: 'zero' }];
  const specs: ParamSpec[] = [...lin('embed', fin, d), { name: 'pos', shape: [N, d], init: 'pos' }];
  for (let l = 0; l < c.layers; l++) {
    specs.push(...norm(`l${l}.ln1`), ...lin(`l${l}.qkv`, d, 3 * d), ...lin(`l${l}.out`, d, d));
    specs.push(...norm(`l${l}.ln2`), ...lin(`l${l}.fc1`, d, c.ffn), ...lin(`l${l}.fc2`, c.ffn, d));
  }
  specs.push(...norm('lnf'), ...lin('head', N * d, c.horizon * c.channels));
  return specs;
}

/** A small seeded generator (mulberry32): uniform in [0, 1). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Initial values of every parameter, in `paramSpecs` order. */
export function initParams(c: ForecastConfig, seed: number): Float32Array[] {
  const r = rng(seed);
  return paramSpecs(c).map((s) => {
    const n = s.shape.reduce((p, x) => p * x, 1);
    const bound = s.init === 'linear' ? 1 / Math.sqrt(s.fanIn!) : 0.02;
    return Float32Array.from({ length: n }, () => (s.init === 'one' ? 1 : s.init === 'zero' ? 0 : (2 * r() - 1) * bound));
  });
}

/** The monthly international airline passengers, 1949-1960 (144 values, thousands). */
export function airline(): Float32Array {
  // Next to this file when run from source; four levels up from the compiled copy in out/run.
  const here = [new URL('./airline.csv', import.meta.url), new URL('../../../../examples/forecaster/airline.csv', import.meta.url)];
  const file = here.find((u) => existsSync(u));
  if (!file) throw new Error('airline.csv not found next to examples/forecaster/common.ts');
  const text = readFileSync(file, 'utf8');
  const rows = text.trim().split('\n').slice(1);
  return Float32Array.from(rows, (r) => Number(r.split(',')[1]));
}

/** A long synthetic series: trend, daily and weekly seasons (hourly steps), noise; seeded. */
export function synthetic(n: number, seed = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, (_, t) => 10 + 0.001 * t + 3 * Math.sin((2 * Math.PI * t) / 24) + 1.5 * Math.sin((2 * Math.PI * t) / 168) + 0.3 * (r() - 0.5));
}

/** Scale to zero mean and unit spread using statistics of the first `fit` values. */
export function standardise(x: Float32Array, fit: number): { z: Float32Array; mean: number; std: number } {
  let m = 0;
  for (let i = 0; i < fit; i++) m += x[i]!;
  m /= fit;
  let v = 0;
  for (let i = 0; i < fit; i++) v += (x[i]! - m) ** 2;
  const std = Math.sqrt(v / fit) || 1;
  return { z: x.map((v2) => (v2 - m) / std), mean: m, std };
}

/** Windows starting at `starts`: inputs [B, tokens, patch·channels] and targets [B, horizon·channels]. */
export function batch(series: Float32Array, c: ForecastConfig, starts: readonly number[]): { x: Float32Array; y: Float32Array } {
  const B = starts.length;
  const x = new Float32Array(B * c.context * c.channels), y = new Float32Array(B * c.horizon * c.channels);
  starts.forEach((s, b) => {
    x.set(series.subarray(s * c.channels, (s + c.context) * c.channels), b * c.context * c.channels);
    y.set(series.subarray((s + c.context) * c.channels, (s + c.context + c.horizon) * c.channels), b * c.horizon * c.channels);
  });
  return { x, y };
}
