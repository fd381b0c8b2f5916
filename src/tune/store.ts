/**
 * @fileoverview Tuning results on disk: one portable JSON file per kernel (named by its source
 * hash) that a team can commit and share. Inside, one entry per machine signature + key bucket,
 * each holding one result per config, so adding a config times only that config. Writes are
 * atomic (temp file + rename) and, under a lock file, merge with what another process wrote
 * meanwhile; a file that does not parse or does not have the expected shape is ignored and
 * rebuilt.
 */
import { closeSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { configId, type KeyValue, type MachineSignature } from './key.js';

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
  /**
   * The key's values (not bucketed) of the problem it was timed on: another shape of the same
   * bucket reuses the result, and this says where its time comes from. Absent in older files.
   */
  readonly at?: Readonly<Record<string, KeyValue>>;
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
   * config). A disk that cannot be written leaves the results in memory only. True when the
   * file now holds them.
   */
  save(): boolean {
    if (!this.file) return false;
    const unlock = lock(`${this.file}.lock`);
    try {
      return this.merged();
    } finally {
      unlock();
    }
  }

  /** Read, merge and rename under the lock (see save). */
  private merged(): boolean {
    const file = this.file!;
    const onDisk = this.read();
    if (onDisk) {
      for (const [id, e] of Object.entries(onDisk.entries)) {
        const mine = this.data.entries[id];
        if (!mine) this.data.entries[id] = e;
        else for (const [c, r] of Object.entries(e.results)) mine.results[c] ??= r;
      }
    }
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(dirname(file), { recursive: true });
      writeFileSync(tmp, `${JSON.stringify(this.data, null, 1)}\n`);
      renameSync(tmp, file);
      this.recovered = false;
      return true;
    } catch {
      try {
        rmSync(tmp, { force: true });
      } catch {
        // The temp file's directory is not one (a file stands where it should be): nothing to remove.
      }
      return false;
    }
  }
}

/** A lock older than this is a dead writer's: it is broken. */
const STALE_LOCK_MS = 10_000;
/** How long a save waits for another process's lock before writing without it. */
const LOCK_WAIT_MS = 2_000;

/**
 * Take the lock file at `path` (exclusive create), so that concurrent savers do not overwrite
 * each other's merge; returns its release. Best effort: where it cannot be taken (a read-only
 * disk, a writer holding it past LOCK_WAIT_MS), the save goes ahead unlocked.
 */
function lock(path: string): () => void {
  const start = Date.now();
  const nap = new Int32Array(new SharedArrayBuffer(4));
  try {
    mkdirSync(dirname(path), { recursive: true });
  } catch {
    return () => undefined; // no directory to lock in (the save will fail the same way)
  }
  for (;;) {
    try {
      closeSync(openSync(path, 'wx'));
      return () => {
        try {
          unlinkSync(path);
        } catch {
          // broken as stale by another process meanwhile: nothing to release
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return () => undefined;
      try {
        if (Date.now() - statSync(path).mtimeMs > STALE_LOCK_MS) unlinkSync(path);
      } catch {
        // released meanwhile: try again
      }
      if (Date.now() - start > LOCK_WAIT_MS) return () => undefined;
      Atomics.wait(nap, 0, 0, 5);
    }
  }
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** A result filed under config id `id`: an ok one has a time, a rejected one none, and its config is the id's. */
function isResult(x: unknown, id: string): x is ConfigResult {
  if (!isRecord(x) || !isRecord(x.config) || typeof x.verified !== 'boolean' || (x.at !== undefined && !isRecord(x.at))) return false;
  const timed = x.status === 'ok' && typeof x.ms === 'number' && Number.isFinite(x.ms) && x.ms >= 0;
  const rejected = x.status === 'rejected' && x.ms === null;
  return (timed || rejected) && configId(x.config) === id;
}

function isTuneFile(x: unknown): x is TuneFile {
  if (!isRecord(x) || x.format !== TUNE_FORMAT || typeof x.hash !== 'string' || !isRecord(x.entries)) return false;
  return Object.values(x.entries).every((e) => isRecord(e) && isRecord(e.signature) && isRecord(e.key)
    && isRecord(e.results) && Object.entries(e.results).every(([id, r]) => isResult(r, id)));
}
