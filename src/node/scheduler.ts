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
   * Runs `fn` once the messages just sent are on their way and before any other input is handled:
   * where a leader that sent its appends early finishes (persists) its Ready.
   */
  afterSend(fn: () => void): void;
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
  afterSend: (fn) => process.nextTick(fn),
  after: (ms, fn) => {
    const t = setTimeout(fn, Math.max(0, ms));
    return () => clearTimeout(t);
  },
  random: Math.random,
};
