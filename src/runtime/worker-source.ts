/**
 * @fileoverview The pool worker's program, as source text for `new Worker(code, { eval: true })`
 * so it runs the same from TypeScript sources (tests) and from the built package. It blocks in
 * Atomics.wait between launches (a launch costs no postMessage), pulls set-up messages
 * (modules, scratch) synchronously with receiveMessageOnPort, and takes chunks of the grid with
 * Atomics.add. Layout of the control block: see CTL in pool.ts (kept in sync by a test).
 */

export const WORKER_SOURCE = String.raw`
'use strict';
const { workerData, receiveMessageOnPort } = require('node:worker_threads');
const v8 = require('node:v8');
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
v8.setFlagsFromString('--no-liftoff');

const { ctl: ctlBuf, busy: busyBuf, spans: spansBuf, marks: marksBuf, memory, port, index, C, gen0, pauseAfterDrainMs } = workerData;
// Test hook (WorkerPool.testPauseAfterDrainMs): widens the window between draining and acting.
const pauseCell = new Int32Array(new SharedArrayBuffer(4));
const ctl = new Int32Array(ctlBuf);
const ctlF = new Float32Array(ctlBuf);
const busy = new Float64Array(busyBuf);
// Per worker: [start, end, programs, generation] of its part in the last launch (profiling).
const spans = new Float64Array(spansBuf);
// Per worker: the generation it last counted itself finished in (see WorkerPool.marks).
const marks = new Int32Array(marksBuf);
const origin = performance.timeOrigin;
const runs = new Map();
let scratch = 0;
// The generation when this worker was spawned: anything published since (set-up messages)
// wakes it at once.
let seen = gen0;

function drain() {
  for (;;) {
    const got = receiveMessageOnPort(port);
    if (!got) return;
    const msg = got.message;
    if (msg.type === 'module') {
      try {
        const inst = new WebAssembly.Instance(msg.module, { env: { memory } });
        runs.set(msg.id, { run: inst.exports.run, types: msg.paramTypes });
        port.postMessage({ type: 'ack', id: msg.id });
      } catch (err) {
        port.postMessage({ type: 'ack', id: msg.id, error: String(err && err.message || err) });
      }
    } else if (msg.type === 'scratch') {
      scratch = msg.ptr;
      port.postMessage({ type: 'ack', id: -1 });
    }
  }
}

function launch() {
  const k = runs.get(Atomics.load(ctl, C.MODULE));
  const total = Atomics.load(ctl, C.TOTAL);
  const chunk = Atomics.load(ctl, C.CHUNK);
  const g0 = ctl[C.G0], g1 = ctl[C.G1], g2 = ctl[C.G2];
  const args = [0, 0, g0, g1, g2, scratch];
  for (let i = 0; i < k.types.length; i++) args.push(k.types[i] === 'f32' ? ctlF[C.PARAMS + i] : ctl[C.PARAMS + i]);
  const t0 = performance.now();
  let programs = 0;
  try {
    for (;;) {
      const start = Atomics.add(ctl, C.NEXT, chunk);
      if (start >= total) break;
      args[0] = start;
      args[1] = Math.min(total, start + chunk);
      k.run.apply(null, args);
      programs += args[1] - start;
    }
  } catch (err) {
    // First failure wins; the others stop taking chunks.
    if (Atomics.compareExchange(ctl, C.ERR, 0, 1) === 0) {
      // The scratch header: program id, and a checked kernel's bounds fault (site + 1, offset).
      const header = new Int32Array(memory.buffer, scratch, 3);
      ctl[C.ERR_PID] = header[0];
      ctl[C.ERR_SITE] = header[1];
      ctl[C.ERR_OFFSET] = header[2];
      port.postMessage({ type: 'trap', message: String(err && err.message || err) });
    }
    Atomics.store(ctl, C.NEXT, total);
  }
  const t1 = performance.now();
  busy[index] += t1 - t0;
  const o = index * 4;
  spans[o] = origin + t0;
  spans[o + 1] = origin + t1;
  spans[o + 2] = programs;
  spans[o + 3] = seen;
}

for (;;) {
  // Launches often come back to back: spin briefly before sleeping (a futex wake-up costs
  // tens of microseconds on a busy machine).
  for (let spin = 0; spin < 20000 && Atomics.load(ctl, C.GEN) === seen; spin++);
  Atomics.wait(ctl, C.GEN, seen);
  // The generation is read before the messages are drained: every message posted before the
  // bump it shows is then taken now, and one posted after it comes with a later bump, which
  // wakes this loop again (read after draining, a message posted in between would wait for
  // a bump that never comes, and its sender for an ack).
  const gen = Atomics.load(ctl, C.GEN);
  drain();
  if (pauseAfterDrainMs) Atomics.wait(pauseCell, 0, 0, pauseAfterDrainMs);
  if (gen === seen) continue;
  seen = gen;
  const cmd = Atomics.load(ctl, C.CMD);
  if (cmd === 2) break;
  // Only the launch published with this very generation: a set-up bump read just before a
  // launch was published would otherwise run that launch under the older generation, then
  // again on waking for its own bump, counting itself finished twice. A worker spawned during
  // a launch (replacing a dead one) has no part in it.
  if (cmd === 1 && Atomics.load(ctl, C.RUN_GEN) === gen && runs.has(Atomics.load(ctl, C.MODULE))) {
    launch();
    Atomics.store(marks, index, gen);
    if (Atomics.add(ctl, C.FINISHED, 1) + 1 === Atomics.load(ctl, C.EXPECTED)) {
      Atomics.add(ctl, C.DONE, 1);
      Atomics.notify(ctl, C.DONE);
    }
  }
}
`;
