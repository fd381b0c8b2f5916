/**
 * @fileoverview One shared WebAssembly.Memory per runtime and the allocator over it: 64-byte
 * aligned blocks, first-fit reuse of freed blocks with coalescing, growth on demand up to a
 * stated maximum. An allocation that cannot fit throws and leaves every live block intact.
 */

const PAGE = 65536;
const ALIGN = 64;
/** Bytes below this are never handed out: offset 0 stays an obvious null. */
const RESERVED = 1024;

interface Block {
  ptr: number;
  size: number;
}

export class Heap {
  readonly memory: WebAssembly.Memory;
  readonly maxBytes: number;
  private top = RESERVED;
  private readonly live = new Map<number, number>();
  /** Free blocks below `top`, sorted by address. */
  private free: Block[] = [];
  private used = 0;

  constructor(initialBytes: number, maxBytes: number) {
    if (!Number.isInteger(maxBytes) || maxBytes < PAGE || maxBytes > 2 ** 32) {
      throw new RangeError(`maxMemoryBytes must be an integer between ${PAGE} and 4 GiB, got ${maxBytes}`);
    }
    const maxPages = Math.floor(maxBytes / PAGE);
    const initPages = Math.min(maxPages, Math.max(1, Math.ceil(initialBytes / PAGE)));
    this.memory = new WebAssembly.Memory({ initial: initPages, maximum: maxPages, shared: true });
    this.maxBytes = maxPages * PAGE;
  }

  /** Bytes currently allocated (rounded to the alignment). */
  get inUse(): number {
    return this.used;
  }

  /** Current size of the memory in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /** Allocate `bytes` (>= 0); returns a 64-byte aligned byte offset. */
  alloc(bytes: number): number {
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`allocation size must be a non-negative integer, got ${bytes}`);
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    for (let k = 0; k < this.free.length; k++) {
      const b = this.free[k]!;
      if (b.size < size) continue;
      const ptr = b.ptr;
      if (b.size === size) this.free.splice(k, 1);
      else {
        b.ptr += size;
        b.size -= size;
      }
      return this.take(ptr, size);
    }
    const ptr = this.top;
    const end = ptr + size;
    if (end > this.maxBytes) {
      throw new RangeError(
        `out of memory: cannot allocate ${bytes} bytes (${this.used} bytes in use, ${this.maxBytes} bytes maximum); ` +
        'free tensors or create the runtime with a larger maxMemoryBytes',
      );
    }
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return this.take(ptr, size);
  }

  private take(ptr: number, size: number): number {
    this.live.set(ptr, size);
    this.used += size;
    return ptr;
  }

  /** Release a block from `alloc`. Freeing twice or a foreign pointer throws. */
  release(ptr: number): void {
    const size = this.live.get(ptr);
    if (size === undefined) throw new Error(`free of ${ptr}: not a live allocation`);
    this.live.delete(ptr);
    this.used -= size;
    let k = 0;
    while (k < this.free.length && this.free[k]!.ptr < ptr) k++;
    this.free.splice(k, 0, { ptr, size });
    // Coalesce with the neighbours, and give the tail back to `top`.
    const next = this.free[k + 1];
    const cur = this.free[k]!;
    if (next && cur.ptr + cur.size === next.ptr) {
      cur.size += next.size;
      this.free.splice(k + 1, 1);
    }
    const prev = this.free[k - 1];
    if (prev && prev.ptr + prev.size === cur.ptr) {
      prev.size += cur.size;
      this.free.splice(k, 1);
    }
    const last = this.free[this.free.length - 1];
    if (last && last.ptr + last.size === this.top) {
      this.top = last.ptr;
      this.free.pop();
    }
  }

  /** Whether `ptr` is a live allocation. */
  isLive(ptr: number): boolean {
    return this.live.has(ptr);
  }
}
