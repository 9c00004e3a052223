// Clients waiting on the core. A proposal waits for its index to be applied: with the term it
// was proposed in it succeeded, with another term it was overwritten by a new leader (lost).
// A read waits for its ReadIndex answer, then for the state machine to reach that index.
// Every wait has a deadline, so no client hangs on a node that lost its way.
import type { Result } from "../kv/command.ts";

export type ProposalOutcome =
  | { kind: "applied"; result: Result }
  /** Another entry took the index (leader change), or a snapshot covered it: safe to retry with a session. */
  | { kind: "lost" }
  | { kind: "timeout" }
  | { kind: "closed" }
  /** The node could not persist (disk full): the write may or may not commit later. */
  | { kind: "unknown"; reason: string };

export type ReadOutcome = { kind: "ready"; index: number } | { kind: "failed"; reason: string } | { kind: "timeout" } | { kind: "closed" };

interface ProposalWaiter {
  term: number;
  settle: (o: ProposalOutcome) => void;
}

interface ReadWaiter {
  /** Set once the core answered. */
  index: number | null;
  settle: (o: ReadOutcome) => void;
}

function withDeadline<T>(timeoutMs: number, onTimeout: T, register: (settle: (o: T) => void) => () => void): Promise<T> {
  return new Promise<T>((resolve) => {
    let done = false;
    const settle = (o: T) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      unregister();
      resolve(o);
    };
    const unregister = register(settle);
    const timer = setTimeout(() => settle(onTimeout), Math.max(0, timeoutMs));
  });
}

export class ProposalWaiters {
  private readonly byIndex = new Map<number, ProposalWaiter>();

  get size(): number {
    return this.byIndex.size;
  }

  wait(index: number, term: number, timeoutMs: number): Promise<ProposalOutcome> {
    return withDeadline<ProposalOutcome>(timeoutMs, { kind: "timeout" }, (settle) => {
      this.byIndex.get(index)?.settle({ kind: "lost" });
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
    w.settle(w.term === term && result !== null ? { kind: "applied", result } : { kind: "lost" });
  }

  /** A snapshot replaced the state up to `index`: results of waiters there are unknown. */
  coveredBySnapshot(index: number): void {
    for (const [i, w] of this.byIndex) if (i <= index) w.settle({ kind: "lost" });
  }

  closeAll(outcome: ProposalOutcome = { kind: "closed" }): void {
    for (const w of [...this.byIndex.values()]) w.settle(outcome);
  }
}

export class ReadWaiters {
  private readonly byCtx = new Map<string, ReadWaiter>();
  private seq = 0;

  get size(): number {
    return this.byCtx.size;
  }

  /** Registers a read; `start(ctx)` asks the core for its index. */
  wait(timeoutMs: number, start: (ctx: string) => void): Promise<ReadOutcome> {
    const ctx = `r${++this.seq}`;
    const p = withDeadline<ReadOutcome>(timeoutMs, { kind: "timeout" }, (settle) => {
      this.byCtx.set(ctx, { index: null, settle });
      return () => this.byCtx.delete(ctx);
    });
    start(ctx);
    return p;
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
