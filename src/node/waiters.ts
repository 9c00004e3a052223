// Clients waiting on the core. A proposal waits for its index to be applied: with the term it
// was proposed in it succeeded, with another term another entry took its place (see outcome.ts
// for why each answer is true). A read waits for its ReadIndex answer, then for the state
// machine to reach that index. Every wait has a deadline, so no client hangs on a node that lost
// its way. Waiters answer through callbacks, synchronously, so the simulator sees every answer
// at the exact point of its run where the node gives it.
import type { Result } from "../kv/command.ts";
import { assert } from "../raft/assert.ts";
import { notApplied, unknownOutcome, type ProposalOutcome } from "./outcome.ts";
import type { Scheduler } from "./scheduler.ts";

export type { ProposalOutcome } from "./outcome.ts";

export type ReadOutcome = { kind: "ready"; index: number } | { kind: "failed"; reason: string } | { kind: "timeout" } | { kind: "closed" };

type Timers = Pick<Scheduler, "after">;

interface ProposalWaiter {
  term: number;
  settle: (o: ProposalOutcome) => void;
}

interface ReadWaiter {
  /** Set once the core answered. */
  index: number | null;
  settle: (o: ReadOutcome) => void;
}

/** Calls `done` exactly once: with the first settle(), or with `onTimeout` after `timeoutMs`. */
function withDeadline<T>(timers: Timers, timeoutMs: number, onTimeout: T, done: (o: T) => void, register: (settle: (o: T) => void) => () => void): void {
  let finished = false;
  let cancel: () => void = () => undefined;
  const settle = (o: T) => {
    if (finished) return;
    finished = true;
    cancel();
    unregister();
    done(o);
  };
  const unregister = register(settle);
  if (!finished) cancel = timers.after(timeoutMs, () => settle(onTimeout));
}

export class ProposalWaiters {
  private readonly byIndex = new Map<number, ProposalWaiter>();

  constructor(private readonly timers: Timers) {}

  get size(): number {
    return this.byIndex.size;
  }

  wait(index: number, term: number, timeoutMs: number, done: (o: ProposalOutcome) => void): void {
    const timeout = unknownOutcome("timeout", "the deadline passed before the write was applied; it may still be");
    withDeadline<ProposalOutcome>(this.timers, timeoutMs, timeout, done, (settle) => {
      // Our log lost the old entry, but a follower holding it may still commit it (outcome.ts).
      this.byIndex.get(index)?.settle(unknownOutcome("displaced", "leadership changed and this node's log lost the write; another node may still commit it"));
      const w = { term, settle };
      this.byIndex.set(index, w);
      return () => {
        if (this.byIndex.get(index) === w) this.byIndex.delete(index);
      };
    });
  }

  applied(index: number, term: number, result: Result | null): void {
    const w = this.byIndex.get(index);
    if (w === undefined) return;
    if (w.term !== term) {
      w.settle(notApplied("overwritten", "leadership changed and another entry committed in its place"));
      return;
    }
    // (index, term) names one entry, and this one is the client's proposal: it has a result.
    assert(result !== null, `entry ${index}/${term} is a client's proposal but applying it gave no result`);
    w.settle({ kind: "applied", result });
  }

  /** A snapshot replaced the state up to `index`: whether waiters there were applied is unknown. */
  coveredBySnapshot(index: number): void {
    const why = "this node caught up from a snapshot that covers the write: it may have committed under a new leader, or not";
    for (const [i, w] of [...this.byIndex]) if (i <= index) w.settle(unknownOutcome("snapshot", why));
  }

  closeAll(outcome: ProposalOutcome): void {
    for (const w of [...this.byIndex.values()]) w.settle(outcome);
  }
}

export class ReadWaiters {
  private readonly byCtx = new Map<string, ReadWaiter>();
  private seq = 0;
  /**
   * Tells this process's reads from an earlier incarnation's. A leader may answer a read after
   * the node that asked restarted (the answer waited for a heartbeat round, or in a peer queue);
   * with contexts counted from 1 again, that old answer, whose index the leader read before this
   * incarnation even asked, would release a new read that happens to have the same number: a
   * stale "linearizable" read, and a freshness proof dated too late (freshness.ts).
   */
  private readonly incarnation: string;

  constructor(private readonly timers: Timers & Pick<Scheduler, "random">) {
    this.incarnation = Math.floor(timers.random() * 2 ** 48).toString(36);
  }

  get size(): number {
    return this.byCtx.size;
  }

  /** Registers a read; `start(ctx)` asks the core for its index. */
  wait(timeoutMs: number, start: (ctx: string) => void, done: (o: ReadOutcome) => void): void {
    const ctx = `r${this.incarnation}.${++this.seq}`;
    withDeadline<ReadOutcome>(this.timers, timeoutMs, { kind: "timeout" }, done, (settle) => {
      this.byCtx.set(ctx, { index: null, settle });
      return () => this.byCtx.delete(ctx);
    });
    start(ctx);
  }

  /** The core answered `ctx` with `index`; served now or by a later served(). */
  answered(ctx: string, index: number, applied: number): void {
    const w = this.byCtx.get(ctx);
    if (w === undefined) return;
    if (index <= applied) w.settle({ kind: "ready", index });
    else w.index = index;
  }

  failed(ctx: string, reason: string): void {
    this.byCtx.get(ctx)?.settle({ kind: "failed", reason });
  }

  /** The state machine reached `applied`: release reads waiting for it. */
  served(applied: number): void {
    for (const w of [...this.byCtx.values()]) if (w.index !== null && w.index <= applied) w.settle({ kind: "ready", index: w.index });
  }

  closeAll(): void {
    for (const w of [...this.byCtx.values()]) w.settle({ kind: "closed" });
  }
}
