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

/** Reads asked of the core with one context: one ReadIndex round answers all of them. */
interface ReadBatch {
  /** Set once the core answered. */
  index: number | null;
  /** Settles of the reads still waiting, in arrival order. */
  waiters: Set<(o: ReadOutcome) => void>;
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
    assert(result !== null, "a client's proposal gave no result when applied: index, term", index, term);
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

/**
 * Linearizable reads wait here in batches, as etcd's read loop batches them: the reads that
 * arrive before the node's next turn share one ReadIndex round (one context, one message to the
 * leader from a follower, one confirmation on the leader) instead of one each.
 *
 * The batch is asked of the core only in that turn (issue()), after its last read arrived, never
 * when its first one did. The order is what makes a shared round linearizable: the index the core
 * gives is its commit index when asked, and every write any client was told "applied" before a
 * read of the batch arrived had committed by then. Asking at the first read's arrival would hand
 * a later read of the batch an index older than a write acknowledged in between (that read would
 * miss it: a stale "linearizable" read, which the simulator's checker reports).
 */
export class ReadWaiters {
  private readonly byCtx = new Map<string, ReadBatch>();
  /** Reads that arrived since the last issue(): not asked of the core yet. */
  private pending = new Set<(o: ReadOutcome) => void>();
  /** The context each asked batch went out with, so a batch whose reads all gave up is forgotten. */
  private readonly ctxOf = new WeakMap<Set<(o: ReadOutcome) => void>, string>();
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

  /** Reads waiting, asked of the core or not. */
  get size(): number {
    let n = this.pending.size;
    for (const b of this.byCtx.values()) n += b.waiters.size;
    return n;
  }

  /** Rounds asked of the core and not answered yet. */
  get rounds(): number {
    return this.byCtx.size;
  }

  /** Reads registered since the last issue(). */
  get unasked(): number {
    return this.pending.size;
  }

  /** Registers a read; it joins the batch that the next issue() asks the core for. */
  wait(timeoutMs: number, done: (o: ReadOutcome) => void): void {
    withDeadline<ReadOutcome>(this.timers, timeoutMs, { kind: "timeout" }, done, (settle) => {
      const batch = this.pending;
      batch.add(settle);
      return () => {
        batch.delete(settle);
        // The last read of an asked round gave up (its deadline): the core may never answer it
        // (a follower's request to a leader that died), so nothing may stay behind for it.
        const ctx = batch.size === 0 ? this.ctxOf.get(batch) : undefined;
        if (ctx !== undefined) this.byCtx.delete(ctx);
      };
    });
  }

  /** Asks the core (`start(ctx)`) for one index for every read registered since the last call. */
  issue(start: (ctx: string) => void): void {
    if (this.pending.size === 0) return;
    const ctx = `r${this.incarnation}.${++this.seq}`;
    const batch: ReadBatch = { index: null, waiters: this.pending };
    this.pending = new Set();
    this.byCtx.set(ctx, batch);
    this.ctxOf.set(batch.waiters, ctx);
    start(ctx);
  }

  /** The core answered `ctx` with `index`; served now or by a later served(). */
  answered(ctx: string, index: number, applied: number): void {
    const b = this.byCtx.get(ctx);
    if (b === undefined) return;
    if (index <= applied) this.settleBatch(ctx, b, { kind: "ready", index });
    else b.index = index;
  }

  failed(ctx: string, reason: string): void {
    const b = this.byCtx.get(ctx);
    if (b !== undefined) this.settleBatch(ctx, b, { kind: "failed", reason });
  }

  /** The state machine reached `applied`: release reads waiting for it. */
  served(applied: number): void {
    for (const [ctx, b] of [...this.byCtx]) if (b.index !== null && b.index <= applied) this.settleBatch(ctx, b, { kind: "ready", index: b.index });
  }

  closeAll(): void {
    const closed: ReadOutcome = { kind: "closed" };
    for (const [ctx, b] of [...this.byCtx]) this.settleBatch(ctx, b, closed);
    for (const settle of [...this.pending]) settle(closed);
  }

  private settleBatch(ctx: string, b: ReadBatch, o: ReadOutcome): void {
    this.byCtx.delete(ctx);
    // Each settle removes itself from the set (withDeadline's unregister): iterate a copy.
    for (const settle of [...b.waiters]) settle(o);
  }
}
