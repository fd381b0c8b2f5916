/**
 * @fileoverview Tuning results on disk: one portable JSON file per kernel (named by its source
 * hash) that a team can commit and share. Inside, one entry per machine signature + key bucket,
 * each holding one result per config, so adding a config times only that config. Writes are
 * atomic (temp file + rename) and merge with what another process wrote meanwhile; a file that
 * does not parse or does not have the expected shape is ignored and rebuilt.
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import type { KeyValue, MachineSignature } from './key.js';

/** The format tag; a file with another tag is treated as absent. */
export const TUNE_FORMAT = 'tilejit-tune/1';

/** The outcome of one config for one key bucket. */
export interface ConfigResult {
  readonly config: Readonly<Record<string, number | string | boolean>>;
  /** 'ok': verified (or verification off) and timed; 'rejected': failed verification or failed to run. */
  readonly status: 'ok' | 'rejected';
  /** Median ms of one launch (null when rejected). */
  readonly ms: number | null;
  /** Whether the candidate was checked against the interpreter before timing. */
  readonly verified: boolean;
  /** Why it was rejected. */
  readonly reason?: string;
}

/** All results of one machine signature + key bucket. */
export interface TuneEntry {
  readonly signature: MachineSignature;
  readonly key: Readonly<Record<string, KeyValue>>;
  readonly results: Record<string, ConfigResult>;
}

/** The file's shape. */
export interface TuneFile {
  readonly format: typeof TUNE_FORMAT;
  readonly kernel: string;
  readonly hash: string;
  readonly entries: Record<string, TuneEntry>;
}

/** A kernel's tuning results, kept in memory and (when `file` is set) on disk. */
export class TuneStore {
  private data: TuneFile;
  /** True when the file existed but was unreadable or malformed (it is rebuilt on the next save). */
  recovered = false;

  constructor(readonly file: string | undefined, readonly kernel: string, readonly hash: string) {
    this.data = this.empty();
    if (file) {
      const read = this.read();
      if (read) this.data = read;
    }
  }

  private empty(): TuneFile {
    return { format: TUNE_FORMAT, kernel: this.kernel, hash: this.hash, entries: {} };
  }

  /** The file's content, or undefined when absent or corrupt (then `recovered` is set). */
  private read(): TuneFile | undefined {
    let text: string;
    try {
      text = readFileSync(this.file!, 'utf8');
    } catch {
      return undefined;
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (isTuneFile(parsed) && parsed.hash === this.hash) return parsed;
    } catch {
      // fall through: corrupt
    }
    this.recovered = true;
    return undefined;
  }

  /** The entry for a signature + key bucket (created empty on first use). */
  entry(id: string, signature: MachineSignature, key: Readonly<Record<string, KeyValue>>): TuneEntry {
    let e = this.data.entries[id];
    if (!e) {
      e = { signature, key, results: {} };
      this.data.entries[id] = e;
    }
    return e;
  }

  /** Every entry (read-only use). */
  get entries(): Readonly<Record<string, TuneEntry>> {
    return this.data.entries;
  }

  /**
   * Write to disk: results another process saved meanwhile are kept (ours win on the same
   * config). A disk that cannot be written leaves the results in memory only.
   */
  save(): void {
    if (!this.file) return;
    const onDisk = this.read();
    if (onDisk) {
      for (const [id, e] of Object.entries(onDisk.entries)) {
        const mine = this.data.entries[id];
        if (!mine) this.data.entries[id] = e;
        else for (const [c, r] of Object.entries(e.results)) mine.results[c] ??= r;
      }
    }
    const tmp = `${this.file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(dirname(this.file), { recursive: true });
      writeFileSync(tmp, `${JSON.stringify(this.data, null, 1)}\n`);
      renameSync(tmp, this.file);
      this.recovered = false;
    } catch {
      rmSync(tmp, { force: true });
    }
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isResult(x: unknown): x is ConfigResult {
  return isRecord(x) && isRecord(x.config) && (x.status === 'ok' || x.status === 'rejected')
    && (x.ms === null || typeof x.ms === 'number') && typeof x.verified === 'boolean';
}

function isTuneFile(x: unknown): x is TuneFile {
  if (!isRecord(x) || x.format !== TUNE_FORMAT || typeof x.hash !== 'string' || !isRecord(x.entries)) return false;
  return Object.values(x.entries).every((e) => isRecord(e) && isRecord(e.signature) && isRecord(e.key)
    && isRecord(e.results) && Object.values(e.results).every(isResult));
}
