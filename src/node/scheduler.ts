// Time and turns for the node's event loop, as a parameter (TigerBeetle passes its Time and
// MessageBus the same way): production runs on the process's clocks and event loop, the simulator
// (tests/sim) on its seeded virtual clock, so both run the same loop.

export interface Scheduler {
  /** Monotonic milliseconds: ticks, deadlines, latencies, backoffs. */
  now(): number;
  /** Wall-clock milliseconds, stamped into proposals as the log's clock (session expiry). */
  wallClock(): number;
  /** Runs `fn` in a later turn, after the I/O already queued (group commit gathers that I/O). */
  nextTurn(fn: () => void): void;
  /**
   * Runs `fn` once the messages just sent are on the wire: where a leader that sent its appends
   * early finishes (persists) its Ready. Other input may be handled first; the node finishes a
   * deferred Ready before it lets anything else into the core (node.ts handleReady).
   */
  afterSend(fn: () => void): void;
  /**
   * Runs `fn` as soon as the code running now is done, before any other input is handled: where
   * the node answers a peer's batch (node.ts receive() says why not a turn later). What `fn`
   * writes leaves with the writes of the callback that called this.
   */
  soon(fn: () => void): void;
  /** Runs `fn` after `ms`; the returned function cancels it. */
  after(ms: number, fn: () => void): () => void;
  /** Uniform in [0, 1): the core's election jitter, the transport's backoff jitter. */
  random(): number;
}

/** The process's clocks and event loop. */
export const realScheduler: Scheduler = {
  now: () => performance.now(),
  wallClock: () => Date.now(),
  nextTurn: (fn) => {
    setImmediate(fn);
  },
  // Not process.nextTick or a microtask: Bun writes a stream's queued HTTP/2 frames to the socket
  // only when the turn's callbacks and microtasks are done, so a blocking fsync scheduled that way
  // ran with the appends still in our buffer and the followers wrote after the leader, not beside
  // it (two fsyncs in series for every write). A setImmediate callback runs after the flush
  // (tests/node/scheduler.test.ts measures both with a peer in another process).
  afterSend: (fn) => setImmediate(fn),
  // A microtask: Bun hands queued writes to the socket once the callback and its microtasks are
  // done, so an answer written here leaves in the same turn as the input that caused it.
  soon: (fn) => queueMicrotask(fn),
  after: (ms, fn) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
  random: Math.random,
};
