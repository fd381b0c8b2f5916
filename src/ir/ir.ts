/**
 * @fileoverview The tile IR: what the front end produces after specialisation, what the
 * interpreter runs and what codegen lowers. Plain immutable objects, one tagged union.
 *
 * Invariants (checked by `verify`):
 * - The IR is already specialised: constexprs are folded, `staticRange` loops unrolled, helper
 *   kernels inlined, constexpr `if`s removed. Every value has a concrete dtype and shape.
 * - Shapes have rank 0 (scalar), 1 or 2; every dimension is a power of two (1 allowed).
 * - A block is a list of instructions in program order. A value is *computed at its position in
 *   the block* (this is the semantics; codegen may move pure work, but never a `load` across a
 *   `store`). An operand must be defined earlier in the same block or in an enclosing block.
 * - Elementwise ops take operands of exactly the result shape: broadcasting is explicit
 *   (`broadcast` nodes), inserted by the front end with numpy rules.
 * - bool values are 0/1 in the interpreter; codegen may use all-ones lanes for vector masks.
 */

/** Compute dtypes of IR values. Storage dtypes f16/bf16 load as f32. */
export type DType = 'f32' | 'i32' | 'bool';
/** Element types of tensors in memory. */
export type StorageDType = 'f32' | 'f16' | 'bf16' | 'i32';
/** Tile shape: [] is a scalar; at most 2 dims, each a power of two. */
export type Shape = readonly number[];

/** A source location: line and column are both 1-based. */
export interface Loc {
  readonly line: number;
  readonly column: number;
  /** The helper whose source the place is in (absent: the kernel's own source). */
  readonly helper?: string;
}

export type UnaryFn =
  | 'neg' | 'not' // not: bool -> bool (logical), i32 -> i32 (bitwise)
  | 'abs' | 'floor' | 'ceil' | 'sqrt' | 'rsqrt'
  | 'exp' | 'exp2' | 'log' | 'log2' | 'tanh' | 'sigmoid' | 'erf'
  | 'expFtz' | 'exp2Ftz' // exp(x, true), exp2(x, true): +0 below EXP_FTZ_BELOW / EXP2_FTZ_BELOW
  | 'gelu' | 'geluTanh' // x·Φ(x), and its tanh approximation 0.5x(1 + tanh(√(2/π)(x + 0.044715x³)))
  | 'geluGrad' | 'geluTanhGrad'; // their derivatives

/**
 * Below these, `exp(x, true)` ('expFtz') and `exp2(x, true)` ('exp2Ftz') give +0 (the true
 * results are under 1.7e-38). They are where n = round(x·log2 e) (round(x), ties to even) drops
 * to -126: the compiled form's single 2^(n-1) step is then +0 itself, with FMA or without (the
 * product x·log2 e crosses -125.5 at the same f32 x either way); from here up n >= -125 and the
 * step is a normal number.
 */
export const EXP_FTZ_BELOW = Math.fround(-86.9899673461914);
export const EXP2_FTZ_BELOW = Math.fround(-125.49999237060547);

export type BinaryFn =
  | 'add' | 'sub' | 'mul' | 'div' // div on i32 truncates toward zero; x/0 on i32 traps
  | 'rem' // i32: sign of dividend (JS %); f32: fmod semantics like JS %
  | 'min' | 'max' // f32: NaN if either is NaN (like Math.min/max)
  | 'and' | 'or' | 'xor' // bool: logical; i32: bitwise
  | 'shl' | 'shr' | 'shru' // i32 only; shift count taken mod 32 (like JS)
  | 'lt' | 'le' | 'gt' | 'ge' | 'eq' | 'ne'; // -> bool

export type ReduceFn = 'sum' | 'max' | 'min';

interface ValueBase {
  /** Unique within one KernelIR; stable across the passes that keep the node. */
  readonly id: number;
  readonly dtype: DType;
  readonly shape: Shape;
  readonly loc: Loc;
}

/** Scalar constant (shape []). bool constants are 0 or 1. f32 values are already fround-ed. */
export interface ConstV extends ValueBase { readonly op: 'const'; readonly value: number }
/** Scalar kernel argument: `params[index]` with kind 'scalar'. */
export interface ArgV extends ValueBase {
  readonly op: 'arg';
  readonly index: number;
  /** Largest of 16/4/1 dividing the i32 value at specialisation time (a hint, part of the key). */
  readonly divisibility?: number;
}
/** i32 scalar: this program's index along `axis`. */
export interface ProgramIdV extends ValueBase { readonly op: 'programId'; readonly axis: 0 | 1 | 2 }
/** i32 scalar: grid size along `axis`. */
export interface NumProgramsV extends ValueBase { readonly op: 'numPrograms'; readonly axis: 0 | 1 | 2 }
/** i32 [n]: start, start+1, ..., start+n-1. */
export interface ArangeV extends ValueBase { readonly op: 'arange'; readonly start: number }
/** Numpy broadcast of `src` to this.shape (src rank <= this rank, dims 1 or equal, right-aligned). */
export interface BroadcastV extends ValueBase { readonly op: 'broadcast'; readonly src: Value }
/** Same elements in row-major order, new shape (expandDims, squeeze, reshape). */
export interface ReshapeV extends ValueBase { readonly op: 'reshape'; readonly src: Value }
/** 2-D transpose. */
export interface TransV extends ValueBase { readonly op: 'trans'; readonly src: Value }
export interface UnaryV extends ValueBase { readonly op: 'unary'; readonly fn: UnaryFn; readonly src: Value }
export interface BinaryV extends ValueBase {
  readonly op: 'binary';
  readonly fn: BinaryFn;
  readonly a: Value;
  readonly b: Value;
}
/**
 * Conversion to this.dtype. f32 -> i32 truncates toward zero, saturating, NaN -> 0.
 * number -> bool is `!= 0`; bool -> number is 0/1.
 */
export interface CastV extends ValueBase { readonly op: 'cast'; readonly src: Value }
/** cond ? a : b elementwise; cond is bool, all three have this.shape. */
export interface WhereV extends ValueBase {
  readonly op: 'where';
  readonly cond: Value;
  readonly a: Value;
  readonly b: Value;
}
/**
 * Gather from tensor `params[ptr]` at element `offsets` (i32, this.shape). Where `mask` (bool,
 * this.shape) is false nothing is read and the lane gets `other` (this.shape, this.dtype; 0 when
 * absent). dtype is f32 for f32/f16/bf16 storage, i32 for i32 storage.
 */
export interface LoadV extends ValueBase {
  readonly op: 'load';
  readonly ptr: number;
  readonly offsets: Value;
  readonly mask?: Value;
  readonly other?: Value;
}
/** f32 [M,N] = a [M,K] @ b [K,N] (+ acc [M,N]), f32 accumulation. */
export interface DotV extends ValueBase {
  readonly op: 'dot';
  readonly a: Value;
  readonly b: Value;
  readonly acc?: Value;
}
/** Reduce `src` along `axis` (the axis is removed; a 1-D tile reduces to a scalar). */
export interface ReduceV extends ValueBase {
  readonly op: 'reduce';
  readonly fn: ReduceFn;
  readonly src: Value;
  readonly axis: number;
  /**
   * f32 max/min only: when true, NaN elements are skipped (a row of only NaN gives -Infinity for
   * max, +Infinity for min) and a zero result may carry either sign. Cheaper than the exact
   * reduction, which spends three more operations a vector on NaN and the sign of zero.
   */
  readonly skipNan?: boolean;
}
/**
 * Counter-based uniform random f32 in [0, 1): a pure function of (seed, offset), so a backward
 * pass can replay it. seed: i32 scalar; offsets: i32 of this.shape. See `randBits` in rand.ts.
 */
export interface RandV extends ValueBase { readonly op: 'rand'; readonly seed: Value; readonly offsets: Value }
/** Loop induction variable (i32 scalar), defined by its `for`. */
export interface IvV extends ValueBase { readonly op: 'iv' }
/** A loop-carried value as seen inside the body, defined by its `for`. */
export interface CarriedV extends ValueBase { readonly op: 'carried' }
/** A value produced by a `for` or `if` (its i-th result), defined by that instruction. */
export interface ResultV extends ValueBase { readonly op: 'result' }

export type Value =
  | ConstV | ArgV | ProgramIdV | NumProgramsV | ArangeV | BroadcastV | ReshapeV | TransV
  | UnaryV | BinaryV | CastV | WhereV | LoadV | DotV | ReduceV | RandV | IvV | CarriedV | ResultV;

/** Write `value` (this shape as offsets) to tensor `params[ptr]`, converting to its storage dtype. */
export interface StoreI {
  readonly op: 'store';
  readonly loc: Loc;
  readonly ptr: number;
  readonly offsets: Value;
  readonly value: Value;
  readonly mask?: Value;
}

/**
 * A run-time loop: `for (iv = start; descending ? iv > end : iv < end; iv += step)`.
 * start/end/step are i32 scalars defined before the loop; step is > 0 when ascending and < 0
 * when descending (a zero or wrongly signed step runs no iteration).
 * carried[i] starts as inits[i]; at the end of each iteration it becomes yields[i];
 * after the loop results[i] holds its last value (inits[i] if no iteration ran).
 */
export interface ForI {
  readonly op: 'for';
  readonly loc: Loc;
  readonly iv: IvV;
  readonly start: Value;
  readonly end: Value;
  readonly step: Value;
  readonly descending: boolean;
  readonly inits: readonly Value[];
  readonly carried: readonly CarriedV[];
  readonly body: readonly Instr[];
  readonly yields: readonly Value[];
  readonly results: readonly ResultV[];
}

/** A run-time branch on a bool scalar; results[i] is thenYields[i] or elseYields[i]. */
export interface IfI {
  readonly op: 'if';
  readonly loc: Loc;
  readonly cond: Value;
  readonly then: readonly Instr[];
  readonly else: readonly Instr[];
  readonly thenYields: readonly Value[];
  readonly elseYields: readonly Value[];
  readonly results: readonly ResultV[];
}

/** Ends this program (allowed anywhere; inside a loop it ends the whole program). */
export interface ReturnI { readonly op: 'return'; readonly loc: Loc }

export type Stmt = StoreI | ForI | IfI | ReturnI;
export type Instr = Value | Stmt;

export type ParamIR =
  | { readonly kind: 'tensor'; readonly name: string; readonly dtype: StorageDType }
  | { readonly kind: 'scalar'; readonly name: string; readonly dtype: 'i32' | 'f32' };

/** One specialisation of a kernel. */
export interface KernelIR {
  readonly name: string;
  /** The run-time parameters in signature order (constexprs are gone). */
  readonly params: readonly ParamIR[];
  readonly body: readonly Instr[];
  /** Number of value ids used (ids are 0..numValues-1). */
  readonly numValues: number;
}

/** True for instructions that are values (everything but store/for/if/return). */
export function isValue(i: Instr): i is Value {
  return i.op !== 'store' && i.op !== 'for' && i.op !== 'if' && i.op !== 'return';
}

/** Number of elements of a shape. */
export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export { MAX_TILE_ELEMENTS } from './limits.js';
