/**
 * @fileoverview The register-blocked `dot` microkernel generator: D[M,N] (+)= A[M,K] @ B[K,N]
 * over scratch buffers, or with A or B read in place from its tensor (MatBuf.inPlace). One MR x
 * NR block of D lives in v128 locals while K streams through:
 * each step loads NR/4 vectors of a B row, splats MR elements of A (load32_splat) and does
 * MR*NR/4 multiply-adds (relaxed FMA when the target has it). The block shape comes from a
 * table (see `chooseBlock`), not from code scattered through callers.
 */
import binaryen from 'binaryen';
import { loadHalf4, vBf16ToF32, vF16ToF32 } from '../convert.js';
import type { Emit, Ref } from '../emit.js';

/**
 * A dense f32 matrix in scratch: `pitch` elements per row, at sbase + offset. `transposed` (left
 * operands only): element (i, k) sits at k * pitch + i, the buffer holding the transpose.
 */
export interface MatBuf {
  readonly offset: number;
  readonly rows: number;
  readonly cols: number;
  readonly pitch: number;
  readonly transposed?: boolean;
  /**
   * Read in place, not from scratch: element (i, k) is at byte address `addr + i·pitchBytes +
   * 4k`, or `addr + k·pitchBytes + 4i` when `transposed` (locals; `offset` is 0). A constant
   * pitch is also in `pitch` (0: a run-time one). `half`: a right operand stored as f16/bf16
   * (2 bytes an element, `pitch` then 0), converted as it is loaded.
   */
  readonly inPlace?: { readonly addr: number; readonly pitchBytes: number; readonly half?: 'f16' | 'bf16' };
}

/** One microkernel variant: MR rows x NR columns of D in registers, K unrolled by `unroll`. */
export interface Block {
  readonly mr: number;
  readonly nr: number;
  readonly unroll: number;
}

/**
 * The variant table. V8 gives wasm SIMD 16 xmm registers: 4x8 (8 accumulators, 2 B vectors,
 * 1 splat) fits with room to spare. Measured on 1024^3 with 64x64 tiles, one thread: 4x8 with
 * no K unroll 43 GFLOP/s, 2x16 42, 4x8 unrolled 2x 30 (binaryen chains the unrolled steps into
 * one dependent madd per accumulator), 5x8 and 6x8 26-30 (spills). Rows are matched in order;
 * the first with `minM` <= M and `minN` <= N wins.
 */
export const DOT_TABLE: readonly { readonly minM: number; readonly minN: number; readonly block: Block }[] = [
  { minM: 4, minN: 8, block: { mr: 4, nr: 8, unroll: 1 } },
  { minM: 2, minN: 16, block: { mr: 2, nr: 16, unroll: 1 } },
  { minM: 4, minN: 4, block: { mr: 4, nr: 4, unroll: 1 } },
  { minM: 1, minN: 8, block: { mr: 2, nr: 8, unroll: 1 } },
  { minM: 1, minN: 4, block: { mr: 2, nr: 4, unroll: 1 } },
];

/** The block for an M x N output (N >= 4). Exported for `inspect` and the tuner. */
export function chooseBlock(m: number, n: number): Block {
  if (dotOverride) return dotOverride;
  for (const row of DOT_TABLE) if (m >= row.minM && n >= row.minN) return { ...row.block, mr: Math.min(row.block.mr, m) };
  return { mr: 1, nr: 4, unroll: 1 };
}

let dotOverride: Block | undefined;
/** Force one block shape for every dot compiled from now on (tuning experiments); undefined restores the table. */
export function overrideDotBlock(b: Block | undefined): void {
  dotOverride = b;
}

/**
 * Emit D (+)= A @ B. With `accumulate` false D is overwritten. All three live at `sbase`-relative
 * offsets; `sbase` is the local holding the scratch base. Dims are powers of two, so MR and NR
 * NR divides N; when MR does not divide M, a last block of M % MR rows runs; any K works
 * (the unroll falls back to 1 when it does not divide K).
 */
export function emitDot(e: Emit, sbase: number, a: MatBuf, b: MatBuf, d: MatBuf, accumulate: boolean, block?: Block): Ref {
  const M = a.rows;
  const N = b.cols;
  if (N < 4) return scalarDot(e, sbase, a, b, d, accumulate);
  const m = e.m;
  const i32 = binaryen.i32;
  const { mr, nr, unroll } = block ?? chooseBlock(M, N);
  const I = e.local(i32);
  const get = (l: number): Ref => m.local.get(l, i32);
  const full = Math.floor(M / mr) * mr;
  const out: Ref[] = [];
  if (full > 0) {
    const iLabel = `doti${nextLabel++}`;
    out.push(
      m.local.set(I, m.i32.const(0)),
      m.loop(iLabel, m.block(null, [
        rowBlock(e, sbase, a, b, d, accumulate, I, mr, nr, unroll),
        m.local.set(I, m.i32.add(get(I), m.i32.const(mr))),
        m.br(iLabel, m.i32.lt_s(get(I), m.i32.const(full))),
      ])),
    );
  }
  // Rows left over when MR does not divide M: one block of M % MR rows.
  if (full < M) out.push(m.local.set(I, m.i32.const(full)), rowBlock(e, sbase, a, b, d, accumulate, I, M - full, nr, unroll));
  return m.block(null, out);
}

/** All NR-wide column blocks of the MR rows starting at row `I`. */
function rowBlock(e: Emit, sbase: number, a: MatBuf, b: MatBuf, d: MatBuf, accumulate: boolean, I: number, mr: number, nrWanted: number, unroll: number): Ref {
  const K = a.cols;
  const N = b.cols;
  const m = e.m;
  const i32 = binaryen.i32;
  const v128 = binaryen.v128;
  const nr = Math.min(nrWanted, N);
  // A transposed and in place steps by a run-time pitch along k: one k per iteration.
  const ipT = a.inPlace && a.transposed ? a.inPlace : undefined;
  // B in place with a run-time pitch (pitch 0 in the MatBuf): pB steps by pitchBytes, one k at a time.
  const bRun = b.inPlace && b.pitch === 0 ? b.inPlace : undefined;
  const u = K % unroll === 0 && !ipT && !bRun ? unroll : 1;
  const nv = nr / 4;
  const aStep = a.transposed ? a.pitch : 1;
  const aRow = a.transposed ? 1 : a.pitch;
  const J = e.local(i32);
  const pA = e.local(i32);
  const pAEnd = e.local(i32);
  // In place: one pointer per row of the block (the pitch is a run-time value), stepped by pA,
  // which then counts bytes along k from 0.
  const ip = a.inPlace && !a.transposed ? a.inPlace : undefined;
  const rowPtr = ip ? Array.from({ length: mr }, () => e.local(i32)) : [];
  const pB = e.local(i32);
  const pD = e.local(i32);
  const acc: number[][] = [];
  for (let r = 0; r < mr; r++) acc.push(Array.from({ length: nv }, () => e.local(v128)));
  const get = (l: number, t = i32): Ref => m.local.get(l, t);
  const base = (): Ref => get(sbase);

  const setup: Ref[] = [
    // pD = sbase + (I * d.pitch + J) * 4; buffer offsets ride in the load/store immediates.
    m.local.set(pD, m.i32.add(base(), m.i32.shl(m.i32.add(m.i32.mul(get(I), m.i32.const(d.pitch)), get(J)), m.i32.const(2)))),
    // A's row I starts at I * pitch (I, transposed) and its k-th element is 1 (pitch) further.
    ...(ip
      ? [
        ...rowPtr.map((p, r) => m.local.set(p, m.i32.add(get(ip.addr), m.i32.mul(m.i32.add(get(I), m.i32.const(r)), get(ip.pitchBytes))))),
        m.local.set(pA, m.i32.const(0)),
      ]
      : ipT
        // Transposed in place: element (i, k) at addr + k·pitchBytes + 4i; pA walks k.
        ? [m.local.set(pA, m.i32.add(get(ipT.addr), m.i32.shl(get(I), m.i32.const(2))))]
        : [m.local.set(pA, m.i32.add(base(), m.i32.shl(a.transposed ? get(I) : m.i32.mul(get(I), m.i32.const(a.pitch)), m.i32.const(2))))]),
    m.local.set(pAEnd, m.i32.add(get(pA), ipT ? m.i32.mul(m.i32.const(K), get(ipT.pitchBytes)) : m.i32.const(K * aStep * 4))),
    m.local.set(pB, m.i32.add(b.inPlace ? get(b.inPlace.addr) : base(), m.i32.shl(get(J), m.i32.const(b.inPlace?.half ? 1 : 2)))),
  ];
  for (let r = 0; r < mr; r++) {
    for (let v = 0; v < nv; v++) {
      const init = accumulate
        ? m.v128.load(d.offset + (r * d.pitch + v * 4) * 4, 16, get(pD))
        : m.v128.const(new Array(16).fill(0));
      setup.push(m.local.set(acc[r]![v]!, init));
    }
  }

  const step: Ref[] = [];
  for (let k = 0; k < u; k++) {
    const bv: number[] = [];
    for (let v = 0; v < nv; v++) {
      const l = e.local(v128);
      bv.push(l);
      const half = b.inPlace?.half;
      step.push(m.local.set(l, half
        ? loadHalf4(e, get(pB), half, (k * b.pitch + v * 4) * 2)
        : m.v128.load(b.offset + (k * b.pitch + v * 4) * 4, 16, get(pB))));
    }
    for (let r = 0; r < mr; r++) {
      const splat = e.local(v128);
      step.push(m.local.set(splat, ip
        ? m.v128.load32_splat(k * 4, 4, m.i32.add(get(rowPtr[r]!), get(pA)))
        : ipT
          ? m.v128.load32_splat(r * 4, 4, get(pA))
          : m.v128.load32_splat(a.offset + (r * aRow + k * aStep) * 4, 4, get(pA))));
      for (let v = 0; v < nv; v++) {
        const al = acc[r]![v]!;
        step.push(m.local.set(al, e.madd(get(splat, v128), get(bv[v]!, v128), get(al, v128))));
      }
    }
  }
  step.push(m.local.set(pA, m.i32.add(get(pA), ipT ? get(ipT.pitchBytes) : m.i32.const(u * aStep * 4))));
  step.push(m.local.set(pB, m.i32.add(get(pB), bRun ? get(bRun.pitchBytes) : m.i32.const(u * b.pitch * 4))));
  const label = `dotk${nextLabel++}`;
  const kLoop = m.loop(label, m.block(null, [...step, m.br(label, m.i32.lt_u(get(pA), get(pAEnd)))]));

  const store: Ref[] = [];
  for (let r = 0; r < mr; r++) {
    for (let v = 0; v < nv; v++) {
      store.push(m.v128.store(d.offset + (r * d.pitch + v * 4) * 4, 16, get(pD), get(acc[r]![v]!, v128)));
    }
  }
  const jLabel = `dotj${nextLabel++}`;
  return m.block(null, [
    m.local.set(J, m.i32.const(0)),
    m.loop(jLabel, m.block(null, [
      ...setup, kLoop, ...store,
      m.local.set(J, m.i32.add(get(J), m.i32.const(nr))),
      m.br(jLabel, m.i32.lt_s(get(J), m.i32.const(N))),
    ])),
  ]);
}

let nextLabel = 0;

/** One f32 at byte address `addr`, stored as f32 or as a half (converted in lane 0; no byte past it is read). */
function loadOne(e: Emit, addr: Ref, half?: 'f16' | 'bf16'): Ref {
  if (!half) return e.m.f32.load(0, 4, addr);
  const bits = e.m.i32x4.splat(e.m.i32.load16_u(0, 2, addr));
  return e.m.f32x4.extract_lane(half === 'f16' ? vF16ToF32(e, bits) : vBf16ToF32(e, bits), 0);
}

/** N of 1 or 2: a plain scalar triple loop (rare: column-vector outputs). */
function scalarDot(e: Emit, sbase: number, a: MatBuf, b: MatBuf, d: MatBuf, accumulate: boolean): Ref {
  const m = e.m;
  const i32 = binaryen.i32;
  const f32 = binaryen.f32;
  const I = e.local(i32);
  const J = e.local(i32);
  const Kx = e.local(i32);
  const S = e.local(f32);
  const get = (l: number, t = i32): Ref => m.local.get(l, t);
  const addr = (off: number, row: Ref, pitch: number, col: Ref): Ref =>
    m.i32.add(get(sbase), m.i32.shl(m.i32.add(m.i32.mul(row, m.i32.const(pitch)), col), m.i32.const(2)));
  const loop = (ix: number, n: number, body: Ref[], label: string): Ref =>
    m.block(null, [
      m.local.set(ix, m.i32.const(0)),
      m.loop(label, m.block(null, [...body, m.local.set(ix, m.i32.add(get(ix), m.i32.const(1))), m.br(label, m.i32.lt_s(get(ix), m.i32.const(n)))])),
    ]);
  const id = nextLabel++;
  const ip = a.inPlace;
  // In place, element (i, k) sits at addr + i·pitchBytes + 4k, or at addr + k·pitchBytes + 4i transposed.
  const [major, minor] = a.transposed ? [Kx, I] : [I, Kx];
  const aAddr = (): Ref => ip
    ? m.i32.add(m.i32.add(get(ip.addr), m.i32.mul(get(major), get(ip.pitchBytes))), m.i32.shl(get(minor), m.i32.const(2)))
    : a.transposed ? addr(a.offset, get(Kx), a.pitch, get(I)) : addr(a.offset, get(I), a.pitch, get(Kx));
  const kBody = [
    m.local.set(S, m.f32.add(get(S, f32), m.f32.mul(
      m.f32.load(ip ? 0 : a.offset, 4, aAddr()),
      b.inPlace
        ? loadOne(e, m.i32.add(m.i32.add(get(b.inPlace.addr), m.i32.mul(get(Kx), get(b.inPlace.pitchBytes))), m.i32.shl(get(J), m.i32.const(b.inPlace.half ? 1 : 2))), b.inPlace.half)
        : m.f32.load(b.offset, 4, addr(b.offset, get(Kx), b.pitch, get(J))),
    ))),
  ];
  const jBody = [
    m.local.set(S, accumulate ? m.f32.load(d.offset, 4, addr(d.offset, get(I), d.pitch, get(J))) : m.f32.const(0)),
    loop(Kx, a.cols, kBody, `sk${id}`),
    m.f32.store(d.offset, 4, addr(d.offset, get(I), d.pitch, get(J)), get(S, f32)),
  ];
  return loop(I, a.rows, [loop(J, b.cols, jBody, `sj${id}`)], `si${id}`);
}
