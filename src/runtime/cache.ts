/**
 * @fileoverview The compiled-module cache: in memory, and on disk so a second process skips
 * codegen (and never loads binaryen). Entries are written atomically (temp file + rename) and
 * carry a checksum; a corrupt or mismatching entry is deleted and treated as a miss. A disk
 * that cannot be written degrades to memory only, never to a failed launch.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

const MAGIC = 'TJC1';

/** sha256 hex of the parts, joined unambiguously. */
export function hashKey(parts: readonly string[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(`${p.length}:${p}\n`);
  return h.digest('hex');
}

/** The cache directory: $TILEJIT_CACHE_DIR, else $XDG_CACHE_HOME/tilejit, else ~/.cache/tilejit. */
export function defaultCacheDir(): string {
  if (process.env.TILEJIT_CACHE_DIR) return process.env.TILEJIT_CACHE_DIR;
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'tilejit');
}

export interface CacheEntry {
  readonly bytes: Uint8Array;
  readonly meta: unknown;
}

export class ModuleCache {
  private readonly mem = new Map<string, CacheEntry>();
  private diskOk = true;

  constructor(readonly dir: string = defaultCacheDir()) {}

  private file(key: string): string {
    if (!/^[0-9a-f]{16,128}$/.test(key)) throw new Error(`cache key must be a hex hash, got '${key}'`);
    return join(this.dir, `${key}.tjc`);
  }

  get(key: string): CacheEntry | undefined {
    const hit = this.mem.get(key);
    if (hit) return hit;
    const file = this.file(key);
    let raw: Buffer;
    try {
      raw = readFileSync(file);
    } catch {
      return undefined;
    }
    const entry = decode(raw, key);
    if (!entry) {
      try {
        unlinkSync(file);
      } catch {
        // already gone or read-only: a miss either way
      }
      return undefined;
    }
    this.mem.set(key, entry);
    return entry;
  }

  /** Drop an entry that decoded but proved unusable (its module does not compile, its metadata is malformed). */
  discard(key: string): void {
    this.mem.delete(key);
    try {
      unlinkSync(this.file(key));
    } catch {
      // already gone or read-only: it is a miss in memory either way
    }
  }

  put(key: string, bytes: Uint8Array, meta: unknown): void {
    const entry = { bytes, meta };
    this.mem.set(key, entry);
    if (!this.diskOk) return;
    const file = this.file(key);
    const tmp = `${file}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
    try {
      mkdirSync(this.dir, { recursive: true });
      writeFileSync(tmp, encode(key, bytes, meta));
      renameSync(tmp, file);
    } catch {
      this.diskOk = false;
      try {
        rmSync(tmp, { force: true });
      } catch {
        // nothing to clean
      }
    }
  }

  /** Drop every entry, in memory and on disk. */
  clear(): void {
    this.mem.clear();
    for (const f of this.files()) rmSync(join(this.dir, f), { force: true });
  }

  /** Entries and bytes on disk. */
  stats(): { dir: string; entries: number; bytes: number } {
    let bytes = 0;
    const files = this.files();
    for (const f of files) {
      try {
        bytes += statSync(join(this.dir, f)).size;
      } catch {
        // raced with a delete
      }
    }
    return { dir: this.dir, entries: files.length, bytes };
  }

  private files(): string[] {
    try {
      return readdirSync(this.dir).filter((f) => f.endsWith('.tjc'));
    } catch {
      return [];
    }
  }
}

function encode(key: string, bytes: Uint8Array, meta: unknown): Buffer {
  const header = Buffer.from(JSON.stringify({ key, meta, length: bytes.length }));
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  const body = Buffer.concat([Buffer.from(MAGIC), len, header, bytes]);
  return Buffer.concat([body, createHash('sha256').update(body).digest()]);
}

function decode(raw: Buffer, key: string): CacheEntry | undefined {
  if (raw.length < 4 + 4 + 32 || raw.toString('latin1', 0, 4) !== MAGIC) return undefined;
  const body = raw.subarray(0, raw.length - 32);
  if (!createHash('sha256').update(body).digest().equals(raw.subarray(raw.length - 32))) return undefined;
  const hlen = body.readUInt32LE(4);
  if (8 + hlen > body.length) return undefined;
  try {
    const header = JSON.parse(body.toString('utf8', 8, 8 + hlen)) as { key: string; meta: unknown; length: number };
    const bytes = new Uint8Array(body.subarray(8 + hlen));
    if (header.key !== key || header.length !== bytes.length) return undefined;
    return { bytes, meta: header.meta };
  } catch {
    return undefined;
  }
}

let shared: ModuleCache | undefined;

/** The process-wide cache (its directory is read from the environment on first use). */
export function moduleCache(): ModuleCache {
  shared ??= new ModuleCache();
  return shared;
}

/** Replace the process-wide cache (tests, tools). */
export function setModuleCache(c: ModuleCache): void {
  shared = c;
}
