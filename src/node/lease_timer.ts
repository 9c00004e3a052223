// The leader's lease clock (etcd's lessor). Expiry is decided here, on the leader only, by its
// monotonic clock, and carried out by proposing a leaseExpire entry: every replica deletes the
// lease's keys at the same index, and no node ever expires a lease by its own wall clock.
// Keep-alives are answered by the leader from memory, never written to the log (as in etcd).
//
// Rules that keep a lease from expiring early:
// - A new leader starts every lease at its full TTL (it cannot know when the last keep-alive
//   reached the old leader), like etcd's lessor.Promote.
// - A lease first seen (just granted, or applied late) starts at its full TTL.
// - When this process did not run for a while (stalled loop, SIGSTOP, a long GC), nobody's
//   keep-alive could be answered either: the stall is added to every deadline before checking.
// Driven only through the node's public methods, on its own timer.
import type { PhalanxNode } from "./node.ts";

export interface LeaseTimerOptions {
  checkMs: number;
}

export const DEFAULT_LEASE_TIMER: LeaseTimerOptions = { checkMs: 100 };

export type KeepAliveOutcome = { kind: "ok"; ttlMs: number } | { kind: "not_found" } | { kind: "not_leader" };

export class LeaseTimer {
  /** Lease id → deadline (performance.now() ms), while this node leads. */
  private readonly deadlines = new Map<number, number>();
  private readonly ttl = new Map<number, number>();
  private readonly expiring = new Set<number>();
  private leaderTerm: number | null = null;
  private seenShape = "";
  private lastCheck = performance.now();
  private readonly timer: ReturnType<typeof setInterval>;

  constructor(
    private readonly node: PhalanxNode,
    private readonly opts: LeaseTimerOptions = DEFAULT_LEASE_TIMER,
  ) {
    this.timer = setInterval(() => this.check(), opts.checkMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Renews a lease to its full TTL. Only the leader can; the caller confirms leadership first. */
  keepAlive(id: number): KeepAliveOutcome {
    if (!this.sync()) return { kind: "not_leader" };
    const ttl = this.ttl.get(id);
    // Once its expiry is proposed a lease is gone: a keep-alive now must not say otherwise.
    if (ttl === undefined || this.expiring.has(id)) return { kind: "not_found" };
    this.deadlines.set(id, performance.now() + ttl);
    return { kind: "ok", ttlMs: ttl };
  }

  /** Milliseconds left before this leader expires the lease; null when unknown or not leader. */
  remainingMs(id: number): number | null {
    if (!this.sync()) return null;
    const d = this.deadlines.get(id);
    return d === undefined ? null : Math.max(0, Math.round(d - performance.now()));
  }

  /** Brings the deadlines in line with leadership and the applied leases; false when not leader. */
  private sync(): boolean {
    if (this.node.isStopped || !this.node.isLeader()) {
      this.deadlines.clear();
      this.ttl.clear();
      this.leaderTerm = null;
      return false;
    }
    const term = this.node.status().term;
    if (term !== this.leaderTerm) {
      // A new leadership: every lease starts over at its full TTL.
      this.deadlines.clear();
      this.ttl.clear();
      this.leaderTerm = term;
      this.seenShape = "";
    }
    // Re-read the leases only when the set changed: a cheap count/max query per check.
    const shape = this.node.kv.leaseShape();
    if (shape !== this.seenShape) {
      this.seenShape = shape;
      const now = performance.now();
      const live = new Set<number>();
      for (const l of this.node.kv.allLeases()) {
        live.add(l.id);
        if (!this.ttl.has(l.id)) {
          this.ttl.set(l.id, l.ttlMs);
          this.deadlines.set(l.id, now + l.ttlMs);
        }
      }
      for (const id of [...this.ttl.keys()]) {
        if (live.has(id)) continue;
        this.ttl.delete(id);
        this.deadlines.delete(id);
      }
    }
    return true;
  }

  private check(): void {
    if (this.node.isStopped) {
      this.stop();
      return;
    }
    const now = performance.now();
    const stalled = now - this.lastCheck - this.opts.checkMs;
    this.lastCheck = now;
    if (!this.sync()) return;
    if (stalled > this.opts.checkMs) for (const [id, d] of this.deadlines) this.deadlines.set(id, d + stalled);
    for (const [id, deadline] of this.deadlines) {
      if (deadline > now || this.expiring.has(id)) continue;
      this.expiring.add(id);
      void this.node
        .propose({ op: "leaseExpire", id }, null, Math.max(1000, this.opts.checkMs * 10))
        .finally(() => this.expiring.delete(id));
    }
  }
}
