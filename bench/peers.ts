/**
 * @fileoverview The systems a user would otherwise pick, loaded lazily so that a peer that fails
 * to load becomes a `missing` line instead of a crash: onnxruntime-web (impl `ort-web`:
 * WebAssembly SIMD, its own threads) fed single-op ONNX models built here, and tfjs-backend-wasm
 * (impl `tfjs-wasm`: one thread in Node).
 */
import { line, maxAbsErr, medianMs, missing, type BenchContext } from './harness.js';

/** A float32 input or output of a one-graph ONNX model: name and shape. */
type Io = readonly [string, readonly number[]];

/** One ONNX node. */
export interface OnnxNode {
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly domain?: string;
  readonly attrs?: readonly { name: string; f?: number; i?: number }[];
}

// ---- a minimal protobuf writer for ModelProto ------------------------------------------------
const varint = (v: number): number[] => {
  const b: number[] = [];
  // Negative int64s are their 64-bit two's complement (ten bytes).
  let n = BigInt.asUintN(64, BigInt(v));
  do {
    let x = Number(n & 0x7fn);
    n >>= 7n;
    if (n) x |= 0x80;
    b.push(x);
  } while (n);
  return b;
};
const key = (field: number, wire: number): number[] => varint((field << 3) | wire);
const vfield = (field: number, v: number): number[] => [...key(field, 0), ...varint(v)];
const bytes = (field: number, b: readonly number[]): number[] => [...key(field, 2), ...varint(b.length), ...b];
const str = (field: number, s: string): number[] => bytes(field, [...Buffer.from(s, 'utf8')]);
const FLOAT = 1;
const valueInfo = ([name, shape]: Io): number[] => [
  ...str(1, name),
  ...bytes(2, bytes(1, [...vfield(1, FLOAT), ...bytes(2, shape.flatMap((d) => bytes(1, vfield(1, d))))])),
];
function attr(a: { name: string; f?: number; i?: number }): number[] {
  // AttributeProto: name 1, f 2 (fixed32), i 3, type 20 (FLOAT 1, INT 2).
  const value = a.f !== undefined ? [...key(2, 5), ...new Uint8Array(new Float32Array([a.f]).buffer)] : vfield(3, a.i ?? 0);
  return [...str(1, a.name), ...value, ...vfield(20, a.f !== undefined ? 1 : 2)];
}

/** The bytes of an ONNX model with one graph (opset 17 and, when used, com.microsoft 1). */
export function onnxModel(nodes: readonly OnnxNode[], inputs: readonly Io[], outputs: readonly Io[]): Uint8Array {
  const graph = [
    ...nodes.flatMap((n) => bytes(1, [
      ...n.inputs.flatMap((i) => str(1, i)), ...n.outputs.flatMap((o) => str(2, o)), ...str(4, n.op),
      ...(n.attrs ?? []).flatMap((a) => bytes(5, attr(a))), ...(n.domain ? str(7, n.domain) : []),
    ])),
    ...str(2, 'g'),
    ...inputs.flatMap((io) => bytes(11, valueInfo(io))),
    ...outputs.flatMap((io) => bytes(12, valueInfo(io))),
  ];
  const opsets = [...bytes(8, vfield(2, 17)), ...bytes(8, [...str(1, 'com.microsoft'), ...vfield(2, 1)])];
  return new Uint8Array([...vfield(1, 8), ...opsets, ...bytes(7, graph)]);
}

// ---- onnxruntime-web --------------------------------------------------------------------------
type Ort = typeof import('onnxruntime-web');
let ortP: Promise<Ort> | undefined;

/** onnxruntime-web with `threads` WebAssembly threads (set before its first session). */
export function loadOrt(threads: number): Promise<Ort> {
  ortP ??= (async () => {
    const ort = await import('onnxruntime-web');
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = 'error';
    return ort;
  })();
  return ortP;
}

/** A session over a one-node model; `run` feeds named Float32Arrays and returns the first output. */
export async function ortRunner(threads: number, nodes: readonly OnnxNode[], inputs: readonly Io[], outputs: readonly Io[]): Promise<(feeds: Record<string, Float32Array>) => Promise<Float32Array>> {
  const ort = await loadOrt(threads);
  const session = await ort.InferenceSession.create(onnxModel(nodes, inputs, outputs));
  const shapes = new Map(inputs.map(([n, s]) => [n, s]));
  return async (feeds) => {
    const t: Record<string, InstanceType<Ort['Tensor']>> = {};
    for (const [n, data] of Object.entries(feeds)) t[n] = new ort.Tensor('float32', data, [...shapes.get(n)!]);
    const r = await session.run(t);
    return r[outputs[0]![0]]!.data as Float32Array;
  };
}

// ---- tfjs-backend-wasm ------------------------------------------------------------------------
type Tf = typeof import('@tensorflow/tfjs-core');
let tfP: Promise<Tf> | undefined;

/** tfjs-core on the wasm backend (Node runs it on one thread). */
export function loadTf(): Promise<Tf> {
  tfP ??= (async () => {
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-wasm');
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs: the wasm backend did not initialise');
    await tf.ready();
    return tf;
  })();
  return tfP;
}

// ---- timing a peer ----------------------------------------------------------------------------

/** What one peer line needs. */
export interface PeerCase {
  readonly suite: string;
  readonly name: string;
  readonly impl: 'ort-web' | 'tfjs-wasm';
  readonly threads: number;
  /** Build the peer's call (load, make the session); the call returns the output. */
  readonly make: () => Promise<() => Promise<ArrayLike<number>>>;
  /** The reference output to check against (or undefined to skip the check). */
  readonly want?: ArrayLike<number>;
  readonly work: { flops?: number; bytes?: number };
  readonly params: Record<string, unknown>;
  readonly slow?: boolean;
}

/** Time a peer side by side; a peer that cannot load or run gives a `missing` line. */
export async function timePeer(ctx: BenchContext, c: PeerCase): Promise<void> {
  try {
    const run = await c.make();
    const out = await run();
    const err = c.want ? maxAbsErr(out, c.want) : null;
    const ms = await medianMs(run, { quick: ctx.quick, slow: c.slow });
    ctx.emit(line(c.suite, c.name, c.impl, c.threads, ms, c.work, err, c.params));
  } catch (e) {
    ctx.emit(missing(c.suite, c.name, c.impl, c.threads, e, c.params));
  }
}
