/**
 * @fileoverview A tiny hand builder of tile IR for the interpreter's tests: it assigns value
 * ids and locations, inserts numpy broadcasts for binary ops, nests blocks for `for`/`if`, and
 * verifies the kernel it returns. Plus `layout`, which places tensors in one buffer for a run.
 */
import type { InterpArg } from '../../src/interp/index.js';
import {
  type BinaryFn, type CarriedV, type DType, type Instr, type KernelIR, type Loc, type ParamIR,
  type ReduceFn, type ResultV, type Shape, type StorageDType, type UnaryFn, type Value,
} from '../../src/ir/ir.js';
import { verify } from '../../src/ir/verify.js';

const CMP = new Set<BinaryFn>(['lt', 'le', 'gt', 'ge', 'eq', 'ne']);

/** Numpy's result shape of two right-aligned shapes (rank <= 2). */
function broadcastShape(a: Shape, b: Shape): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1;
    const y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) throw new Error(`irb: cannot broadcast [${a.join(', ')}] with [${b.join(', ')}]`);
    out.push(Math.max(x, y));
  }
  return out;
}

const sameShape = (a: Shape, b: Shape): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

/** Builds one kernel; every method appends to the innermost open block, in call order. */
export class IRB {
  private readonly params: ParamIR[] = [];
  private readonly blocks: Instr[][] = [[]];
  private nextId = 0;
  private line = 1;
  private column = 1;
  private fixed = false;

  constructor(private readonly name = 'k') {}

  /**
   * Places the nodes that follow at line:column, until the next `at`; `at()` goes back to the
   * default of one line per node.
   */
  at(line?: number, column = 1): this {
    this.fixed = line !== undefined;
    if (line !== undefined) [this.line, this.column] = [line, column];
    return this;
  }

  private loc(): Loc {
    return { line: this.fixed ? this.line : this.line++, column: this.column };
  }

  private emit<T extends Instr>(ins: T): T {
    this.blocks[this.blocks.length - 1]!.push(ins);
    return ins;
  }

  /** A value node, emitted in the current block. */
  private node(fields: Record<string, unknown> & { op: Value['op'] }, dtype: DType, shape: Shape): Value {
    return this.emit({ ...fields, id: this.nextId++, dtype, shape: [...shape], loc: this.loc() } as Value);
  }

  /** A value node defined by its for/if (iv, carried, result): not emitted. */
  private owned<T extends Value>(op: T['op'], dtype: DType, shape: Shape): T {
    return { op, id: this.nextId++, dtype, shape: [...shape], loc: this.loc() } as unknown as T;
  }

  /** Adds a tensor parameter; returns its index (the `ptr` of loads and stores). */
  tensor(name: string, dtype: StorageDType = 'f32'): number {
    this.params.push({ kind: 'tensor', name, dtype });
    return this.params.length - 1;
  }

  /** Adds a scalar parameter and reads it. */
  scalar(name: string, dtype: 'i32' | 'f32' = 'i32'): Value {
    this.params.push({ kind: 'scalar', name, dtype });
    return this.node({ op: 'arg', index: this.params.length - 1 }, dtype, []);
  }

  const(value: number, dtype: DType = 'f32'): Value {
    return this.node({ op: 'const', value: dtype === 'f32' ? Math.fround(value) : value }, dtype, []);
  }

  i32(value: number): Value {
    return this.const(value, 'i32');
  }

  pid(axis: 0 | 1 | 2): Value {
    return this.node({ op: 'programId', axis }, 'i32', []);
  }

  nprog(axis: 0 | 1 | 2): Value {
    return this.node({ op: 'numPrograms', axis }, 'i32', []);
  }

  arange(n: number, start = 0): Value {
    return this.node({ op: 'arange', start }, 'i32', [n]);
  }

  /** `src` broadcast to `shape` (returned as is when it already has it). */
  bc(src: Value, shape: Shape): Value {
    return sameShape(src.shape, shape) ? src : this.node({ op: 'broadcast', src }, src.dtype, shape);
  }

  reshape(src: Value, shape: Shape): Value {
    return this.node({ op: 'reshape', src }, src.dtype, shape);
  }

  trans(src: Value): Value {
    return this.node({ op: 'trans', src }, src.dtype, [src.shape[1]!, src.shape[0]!]);
  }

  un(fn: UnaryFn, src: Value): Value {
    return this.node({ op: 'unary', fn, src }, src.dtype, src.shape);
  }

  /** A binary op; operands of different shapes are broadcast first (numpy rules). */
  bin(fn: BinaryFn, a: Value, b: Value): Value {
    const shape = broadcastShape(a.shape, b.shape);
    const [x, y] = [this.bc(a, shape), this.bc(b, shape)];
    return this.node({ op: 'binary', fn, a: x, b: y }, CMP.has(fn) ? 'bool' : a.dtype, shape);
  }

  cast(src: Value, dtype: DType): Value {
    return this.node({ op: 'cast', src }, dtype, src.shape);
  }

  where(cond: Value, a: Value, b: Value): Value {
    return this.node({ op: 'where', cond, a, b }, a.dtype, a.shape);
  }

  load(ptr: number, offsets: Value, mask?: Value, other?: Value): Value {
    const p = this.params[ptr];
    const dtype: DType = p?.kind === 'tensor' && p.dtype === 'i32' ? 'i32' : 'f32';
    return this.node({ op: 'load', ptr, offsets, mask, other }, dtype, offsets.shape);
  }

  dot(a: Value, b: Value, acc?: Value): Value {
    return this.node({ op: 'dot', a, b, acc }, 'f32', [a.shape[0]!, b.shape[1]!]);
  }

  reduce(fn: ReduceFn, src: Value, axis: number): Value {
    return this.node({ op: 'reduce', fn, src, axis }, src.dtype, src.shape.filter((_, i) => i !== axis));
  }

  rand(seed: Value, offsets: Value): Value {
    return this.node({ op: 'rand', seed, offsets }, 'f32', offsets.shape);
  }

  store(ptr: number, offsets: Value, value: Value, mask?: Value): void {
    this.emit({ op: 'store', loc: this.loc(), ptr, offsets, value, mask });
  }

  ret(): void {
    this.emit({ op: 'return', loc: this.loc() });
  }

  /**
   * `for (iv = start; descending ? iv > end : iv < end; iv += step)` carrying `inits`; `body`
   * builds the loop body and returns the yields. Returns the loop's results.
   */
  for(
    start: Value, end: Value, step: Value, inits: readonly Value[],
    body: (iv: Value, carried: readonly Value[]) => readonly Value[], descending = false,
  ): Value[] {
    const loc = this.loc();
    const iv = this.owned<Value & { op: 'iv' }>('iv', 'i32', []);
    const carried = inits.map((v) => this.owned<CarriedV>('carried', v.dtype, v.shape));
    this.blocks.push([]);
    const yields = body(iv, carried);
    const instrs = this.blocks.pop()!;
    const results = inits.map((v) => this.owned<ResultV>('result', v.dtype, v.shape));
    this.emit({ op: 'for', loc, iv, start, end, step, descending, inits: [...inits], carried, body: instrs, yields: [...yields], results });
    return results;
  }

  /** A run-time `if` whose branches return their yields; returns its results. */
  if(cond: Value, then: () => readonly Value[], otherwise: () => readonly Value[] = () => []): Value[] {
    const loc = this.loc();
    this.blocks.push([]);
    const thenYields = then();
    const thenB = this.blocks.pop()!;
    this.blocks.push([]);
    const elseYields = otherwise();
    const elseB = this.blocks.pop()!;
    const results = thenYields.map((v) => this.owned<ResultV>('result', v.dtype, v.shape));
    this.emit({ op: 'if', loc, cond, then: thenB, else: elseB, thenYields: [...thenYields], elseYields: [...elseYields], results });
    return results;
  }

  /** The finished kernel, verified. */
  kernel(): KernelIR {
    if (this.blocks.length !== 1) throw new Error('irb: a for/if block is still open');
    const ir: KernelIR = { name: this.name, params: [...this.params], body: [...this.blocks[0]!], numValues: this.nextId };
    verify(ir);
    return ir;
  }
}

/** A tensor for `layout`: storage dtype and contents (bit patterns for f16/bf16). */
export interface TensorData {
  readonly dtype: StorageDType;
  readonly data: ArrayLike<number>;
}

/** Bytes of guard between tensors, filled with 0xAB so stray writes show. */
const GUARD = 32;

/** Tensors laid out in one buffer, 16-byte aligned, with guards; scalars passed through. */
export interface Layout {
  readonly memory: ArrayBuffer | SharedArrayBuffer;
  readonly args: InterpArg[];
  /** Argument i's current contents: Float32Array, Int32Array or Uint16Array (f16/bf16 bits). */
  read(i: number): Float32Array | Int32Array | Uint16Array;
  /** True when every guard byte is intact. */
  guardsIntact(): boolean;
}

const BYTES: Record<StorageDType, number> = { f32: 4, i32: 4, f16: 2, bf16: 2 };

function view(memory: ArrayBufferLike, dtype: StorageDType, at: number, n: number): Float32Array | Int32Array | Uint16Array {
  if (dtype === 'f32') return new Float32Array(memory, at, n);
  if (dtype === 'i32') return new Int32Array(memory, at, n);
  return new Uint16Array(memory, at, n);
}

/** Places `args` in a fresh buffer (a SharedArrayBuffer when `shared`). */
export function layout(args: readonly (TensorData | number)[], shared = false): Layout {
  let bytes = GUARD;
  const at = args.map((a) => {
    if (typeof a === 'number') return -1;
    const here = bytes;
    bytes += Math.ceil((a.data.length * BYTES[a.dtype]) / 16) * 16 + GUARD;
    return here;
  });
  const memory = shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
  new Uint8Array(memory).fill(0xab);
  const iargs: InterpArg[] = args.map((a, i) => {
    if (typeof a === 'number') return a;
    view(memory, a.dtype, at[i]!, a.data.length).set(Array.from(a.data));
    return { kind: 'tensor', byteOffset: at[i]!, length: a.data.length };
  });
  const tensorAt = (i: number): { a: TensorData; at: number } => {
    const a = args[i];
    if (a === undefined || typeof a === 'number') throw new Error(`layout: argument ${i} is not a tensor`);
    return { a, at: at[i]! };
  };
  return {
    memory,
    args: iargs,
    read: (i) => {
      const { a, at: o } = tensorAt(i);
      return view(memory, a.dtype, o, a.data.length).slice();
    },
    guardsIntact: () => {
      const u8 = new Uint8Array(memory);
      const inside = new Uint8Array(memory.byteLength);
      args.forEach((a, i) => {
        if (typeof a !== 'number') inside.fill(1, at[i]!, at[i]! + a.data.length * BYTES[a.dtype]);
      });
      return u8.every((b, k) => inside[k] === 1 || b === 0xab);
    },
  };
}
