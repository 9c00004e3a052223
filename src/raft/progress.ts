// The leader's view of one follower (etcd-io/raft's tracker.Progress): how far it matches, what
// to send next, and how much is in flight. `probe` sends one append at a time until the follower
// answers; `replicate` pipelines up to maxInflight appends; `snapshot` streams a snapshot.
import { assert } from "./assert.ts";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** Last indexes of appends in flight, oldest first; a ring to avoid shifting arrays. */
class Inflights {
  private buf: number[];
  private start = 0;
  count = 0;

  constructor(readonly capacity: number) {
    this.buf = new Array<number>(capacity).fill(0);
  }

  full(): boolean {
    return this.count === this.capacity;
  }

  add(lastIndex: number): void {
    assert(!this.full(), "inflight window overflow");
    this.buf[(this.start + this.count) % this.capacity] = lastIndex;
    this.count++;
  }

  /** An ack up to `index` frees every append that ended at or before it. */
  freeTo(index: number): void {
    while (this.count > 0 && this.buf[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity;
      this.count--;
    }
  }

  /** Lets one more append out when every one in flight may have been lost. */
  freeFirst(): void {
    if (this.count === 0) return;
    this.start = (this.start + 1) % this.capacity;
    this.count--;
  }

  reset(): void {
    this.start = 0;
    this.count = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In probe state: an append is out and we wait for its answer (or a heartbeat) before another. */
  probeSent = false;
  readonly inflights: Inflights;
  /** In snapshot state: the snapshot's index and how many of its bytes the follower confirmed. */
  snapshotIndex = 0;
  snapshotAcked = 0;
  /** Ticks since the follower last confirmed a snapshot chunk: resend when it stalls. */
  snapshotStall = 0;
  /** Highest commit index sent to this follower, to tell it about new commits promptly. */
  sentCommit = 0;
  /** Heard from since the last check-quorum round (cleared at each: see answeredRecently in raft.ts). */
  recentActive = false;
  /** The leader's tick of the follower's last answer of any kind. */
  lastHeardTick = Number.NEGATIVE_INFINITY;
  /** Highest heartbeat round the follower acknowledged, and the leader tick that round was sent at. */
  ackedSeq = 0;
  ackedTick = Number.NEGATIVE_INFINITY;
  /**
   * The append (its prevIndex) whose reject showed the follower holding less than `match`: a
   * stale reply, or a follower that lost entries it had acknowledged; a reject of another append
   * saying the same confirms the loss (raft.ts). Null when nothing is suspected.
   */
  suspectReject: number | null = null;
  /** In probe state: a probe went out after the suspicion (its answer may confirm it). */
  probedSinceSuspect = false;
  /** The match the follower had before it was found to have lost entries; 0 once caught up again. */
  regressedFrom = 0;
  /** How often this leader found the follower holding fewer entries than it had acknowledged. */
  regressions = 0;

  constructor(next: number, maxInflight: number) {
    this.next = next;
    this.inflights = new Inflights(maxInflight);
  }

  becomeProbe(): void {
    // After a snapshot the follower holds at least the snapshot; resume right after it.
    this.next = this.state === "snapshot" ? Math.max(this.match, this.snapshotIndex) + 1 : this.match + 1;
    this.state = "probe";
    this.probeSent = false;
    this.snapshotIndex = 0;
    this.inflights.reset();
  }

  becomeReplicate(): void {
    this.suspectReject = null;
    this.state = "replicate";
    this.next = this.match + 1;
    this.probeSent = false;
    this.inflights.reset();
  }

  becomeSnapshot(index: number): void {
    this.suspectReject = null;
    this.state = "snapshot";
    this.snapshotIndex = index;
    this.snapshotAcked = 0;
    this.snapshotStall = 0;
    this.probeSent = false;
    this.inflights.reset();
  }

  /** A successful append ack; false when it is stale (an older ack arriving late). */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (index > this.match) {
      this.match = index;
      updated = true;
      this.probeSent = false;
      this.suspectReject = null; // it holds more than match: whatever was suspected was stale
      if (this.regressedFrom > 0 && index >= this.regressedFrom) this.regressedFrom = 0;
    }
    if (index + 1 > this.next) this.next = index + 1;
    return updated;
  }

  /** Records an append just sent (optimistically advancing next while replicating). */
  sentEntries(lastIndex: number, count: number): void {
    if (this.state === "replicate") {
      if (count > 0) {
        this.next = lastIndex + 1;
        this.inflights.add(lastIndex);
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
      if (this.suspectReject !== null) this.probedSinceSuspect = true;
    }
  }

  /**
   * A rejection of the append at prevIndex `rejected`; `hint` is where the logs may match.
   * Returns false for a stale rejection that says nothing new.
   */
  maybeDecrTo(rejected: number, hint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, hint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  /** A reject of the append at prevIndex `rejected` suggested the follower lost entries (raft.ts). */
  suspect(rejected: number): void {
    this.suspectReject = rejected;
    this.probedSinceSuspect = false;
  }

  /**
   * The follower lost acknowledged entries (two of its answers say so); where
   * its log still matches ours is unknown, `hint` is where to probe. The only place match goes
   * down, to 0 (nothing known): safe, since the commit index never moves back, and needed, or the
   * leader keeps believing the old match and never sends the follower what it lost.
   */
  lostEntries(hint: number): void {
    assert(hint < this.match, "a loss must be below match");
    this.regressedFrom = Math.max(this.regressedFrom, this.match);
    this.regressions++;
    this.match = 0;
    this.state = "probe";
    this.next = Math.max(hint, 0) + 1;
    this.probeSent = false;
    this.suspectReject = null;
    this.inflights.reset();
  }

  /** Whether the leader should hold back appends (window full or probe outstanding). */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
