/**
 * @fileoverview What a tuning result is keyed by: key values bucketed to powers of two (so a
 * sequence length of 1000 and one of 1010 share a result instead of re-tuning), a stable id per
 * config (so adding a config never invalidates the others), and the machine signature (a result
 * measured on one CPU or feature set is never reused on another).
 */
import { arch, availableParallelism, cpus } from 'node:os';
import { detectFeatures } from '../runtime/features.js';

/** A key value after bucketing. */
export type KeyValue = number | string | boolean;

/**
 * The bucket of a key value: the smallest power of two >= |x| (keeping the sign), 0 for 0;
 * strings and booleans are their own bucket.
 */
export function bucket(x: number | string | boolean): KeyValue {
  if (typeof x !== 'number') return x;
  if (!Number.isFinite(x)) throw new RangeError(`autotune: key value ${x} is not finite`);
  const a = Math.abs(x);
  if (a === 0) return 0;
  if (a <= 1) return Math.sign(x);
  return Math.sign(x) * 2 ** Math.ceil(Math.log2(a));
}

/** A config as a stable string: sorted keys, so {a, b} and {b, a} are the same config. */
export function configId(cfg: object): string {
  const c = cfg as Readonly<Record<string, unknown>>;
  return JSON.stringify(Object.keys(c).sort().map((k) => [k, c[k]]));
}

/** The bucketed key as a stable string. */
export function keyId(key: Readonly<Record<string, KeyValue>>): string {
  return Object.keys(key).sort().map((k) => `${k}=${String(key[k])}`).join(',');
}

/** Where timings were measured: they are only comparable on the same machine, features and threads. */
export interface MachineSignature {
  readonly arch: string;
  readonly cpu: string;
  readonly cores: number;
  readonly relaxedSimd: boolean;
  readonly threads: number;
  readonly node: string;
}

/** The signature of this process for a runtime with `threads` workers. */
export function machineSignature(threads: number): MachineSignature {
  return {
    arch: arch(),
    cpu: (cpus()[0]?.model ?? 'unknown').trim().replace(/\s+/g, ' '),
    cores: availableParallelism(),
    relaxedSimd: detectFeatures().relaxedSimd,
    threads,
    node: process.versions.node.split('.')[0]!,
  };
}

/** The signature as a stable string. */
export function signatureId(s: MachineSignature): string {
  return `${s.arch}|${s.cpu}|cores ${s.cores}|${s.relaxedSimd ? 'relaxed-simd' : 'simd'}|threads ${s.threads}|node ${s.node}`;
}
