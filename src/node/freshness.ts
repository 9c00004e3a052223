// What a node can prove about how stale its state machine is, on its own monotonic clock, for
// bounded-staleness reads (`?max_staleness=5s`). Pure bookkeeping: the caller passes the time.
//
// The rule (the one place it lives; kv_routes.ts and the docs refer here):
//
//   An answer with staleness bound S reflects every write acknowledged to any client more than
//   S milliseconds before the answer was given, S measured on the serving node's clock alone.
//
// The proof: a ReadIndex round this node started at its local time t_req and that returned
// index C, once this node has applied C, shows that its state includes every write
// acknowledged before t_req. (A write is acknowledged only after the leader committed it; the
// leader that answered the round held leadership, by its lease or a heartbeat round, when it read
// its commit index C, which was after t_req; and a leader's commit index covers every entry
// committed by any earlier leader, because it answers reads only once an entry of its own term
// committed.) The state machine only moves forward, so the proof stays true for as long as the
// process lives: at time `now` the answer's staleness is at most `now - t_req` of the newest
// round whose index is applied. Nothing here compares two machines' clocks; the one assumption
// beyond the local clock is the lease's (clock rates drift by less than the lease margin), which
// linearizable reads already make.
//
// A lost process loses its proofs (a restart begins with none), which is what a new monotonic
// clock requires: t_req from the old process means nothing on the new clock.

import { assert } from "../raft/assert.ts";

/** The node's view of its own freshness, and when to refresh it in the background. */
export class Freshness {
  /** Local start time of the newest ReadIndex round whose index is applied; null: none yet. */
  private freshAsOf: number | null = null;
  private lastBoundedRead = Number.NEGATIVE_INFINITY;
  private lastProbeStart = Number.NEGATIVE_INFINITY;
  private probing = false;

  constructor(
    private readonly opts: {
      /** Start a background probe at most this often (the heartbeat interval). */
      probeEveryMs: number;
      /** Probe only while a bounded read came in within this window: an idle node sends nothing. */
      probeIdleMs: number;
    },
  ) {}

  /** A ReadIndex round started at local time `startedAt` returned an index that is now applied. */
  proved(startedAt: number): void {
    if (this.freshAsOf === null || startedAt > this.freshAsOf) this.freshAsOf = startedAt;
  }

  /** The staleness bound the node can prove at `now` (ms), or null when it has no proof at all. */
  stalenessAt(now: number): number | null {
    if (this.freshAsOf === null) return null;
    const s = now - this.freshAsOf;
    // A proof from the future is our own bug (a clock that is not monotonic, or a mixed-up caller).
    assert(s >= 0, "a freshness proof is later than now: proof, now", this.freshAsOf, now);
    return s;
  }

  /** Whether an answer given at `now` may claim to be at most `maxMs` stale. */
  judge(now: number, maxMs: number): { kind: "within"; stalenessMs: number } | { kind: "unproven"; provableStalenessMs: number | null } {
    const s = this.stalenessAt(now);
    if (s !== null && s <= maxMs) return { kind: "within", stalenessMs: s };
    return { kind: "unproven", provableStalenessMs: s };
  }

  /** A bounded read arrived: keep the proof fresh in the background for a while. */
  boundedReadAt(now: number): void {
    if (now > this.lastBoundedRead) this.lastBoundedRead = now;
  }

  /** Whether to start a background probe at `now`: bounded reads are being served, none in flight, and it is time. */
  shouldProbe(now: number): boolean {
    if (this.probing) return false;
    if (now - this.lastBoundedRead > this.opts.probeIdleMs) return false;
    return now - this.lastProbeStart >= this.opts.probeEveryMs;
  }

  probeStarted(now: number): void {
    this.probing = true;
    this.lastProbeStart = now;
  }

  /** The probe ended (answered, failed or timed out); proved() was called first if it proved anything. */
  probeEnded(): void {
    this.probing = false;
  }
}
