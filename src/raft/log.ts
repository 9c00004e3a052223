// The Raft log as the core sees it: what storage holds durably plus the unstable tail that the
// node has not persisted yet (etcd-io/raft's raftLog + unstable).
import { assert } from "./assert.ts";
import { CompactedError, entrySize, type LogStorage } from "./storage.ts";
import type { Entry, Snapshot } from "./types.ts";

/** Term returned for an index the log cannot answer for (compacted or past the end). */
export const UNKNOWN_TERM = -1;

export class RaftLog {
  /** Entries not yet handed to the node for persistence start at this index. */
  private unstableOffset: number;
  private unstable: Entry[] = [];
  /** A snapshot received from the leader, waiting to be persisted and installed. */
  pendingSnapshot: Snapshot | null = null;
  committed: number;
  /** Highest index handed to the state machine and acknowledged by advance(). */
  applied: number;
  /**
   * Every entry up to here is on this node's disk durably (fsynced), not only written. A leader
   * may write its own entries and fsync them in the background (raw_node.ts, synced()); until
   * then they are in the log and sent, but neither counted toward a commit nor applied here.
   */
  durable: number;

  constructor(
    readonly storage: LogStorage,
    applied: number,
  ) {
    this.unstableOffset = storage.lastIndex() + 1;
    // What storage holds at start is durable: the node fsyncs it before it builds the core.
    this.durable = storage.lastIndex();
    this.committed = storage.hardState().commit;
    const snapIndex = storage.snapshotMeta().index;
    // The state machine restarts from its snapshot at least; it never runs ahead of the commit.
    this.applied = Math.max(Math.min(applied, this.committed), snapIndex);
    if (this.committed < snapIndex) this.committed = snapIndex;
  }

  firstIndex(): number {
    if (this.pendingSnapshot !== null) return this.pendingSnapshot.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstable.length > 0) return this.unstableOffset + this.unstable.length - 1;
    if (this.pendingSnapshot !== null) return this.pendingSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  lastTerm(): number {
    return this.term(this.lastIndex());
  }

  term(index: number): number {
    if (index >= this.unstableOffset) {
      const e = this.unstable[index - this.unstableOffset];
      return e === undefined ? UNKNOWN_TERM : e.term;
    }
    const snap = this.pendingSnapshot;
    if (snap !== null) return index === snap.meta.index ? snap.meta.term : UNKNOWN_TERM;
    if (index < this.storage.firstIndex() - 1 || index > this.storage.lastIndex()) return UNKNOWN_TERM;
    return this.storage.term(index);
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  candidateLogOk(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** Entries in [lo, hi) up to maxBytes (at least one); throws CompactedError below firstIndex. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) throw new CompactedError(lo, this.firstIndex());
    assert(hi <= this.lastIndex() + 1, "a slice beyond the last index: lo, hi, last", lo, hi, this.lastIndex());
    let out: Entry[] = [];
    if (lo < this.unstableOffset) {
      out = this.storage.entries(lo, Math.min(hi, this.unstableOffset), maxBytes);
      if (lo + out.length < Math.min(hi, this.unstableOffset)) return out; // byte cap reached
    }
    if (hi > this.unstableOffset) {
      let bytes = 0;
      for (const e of out) bytes += entrySize(e);
      const from = Math.max(lo, this.unstableOffset);
      for (let i = from; i < hi; i++) {
        const e = this.unstable[i - this.unstableOffset]!;
        bytes += entrySize(e);
        if (out.length > 0 && bytes > maxBytes) break;
        out.push(e);
      }
    }
    return out;
  }

  /** Leader's own append; entries carry their final index and term. */
  append(entries: Entry[]): void {
    if (entries.length === 0) return;
    const first = entries[0]!.index;
    assert(first === this.lastIndex() + 1, "an append not right after the last index: first, last", first, this.lastIndex());
    if (this.unstable.length === 0) this.unstableOffset = first;
    for (const e of entries) this.unstable.push(e);
  }

  /**
   * Follower's append (§5.3) of `entries` from the first one we lack or hold with another term
   * (`first`, from findConflict): replaces any conflicting suffix.
   */
  appendFromLeader(entries: Entry[], first: number): void {
    assert(first > this.committed, "a leader overwrites a committed entry: first, commit", first, this.committed);
    const i = first - entries[0]!.index;
    this.truncateAndAppend(i === 0 ? entries : entries.slice(i));
  }

  /** Index of the first entry we lack or hold with another term (0: we hold them all). */
  findConflict(entries: Entry[]): number {
    // Same index and term means the same entry (log matching), so those are skipped.
    for (const e of entries) {
      if (e.index > this.lastIndex() || this.term(e.index) !== e.term) return e.index;
    }
    return 0;
  }

  private truncateAndAppend(entries: Entry[]): void {
    const first = entries[0]!.index;
    if (first <= this.durable) this.durable = first - 1;
    const end = this.unstableOffset + this.unstable.length;
    if (first === end) {
      for (const e of entries) this.unstable.push(e);
    } else if (first <= this.unstableOffset) {
      // Replaces persisted entries too: storage drops its suffix when this batch is saved.
      this.unstableOffset = first;
      this.unstable = entries.slice();
    } else {
      this.unstable = this.unstable.slice(0, first - this.unstableOffset);
      for (const e of entries) this.unstable.push(e);
    }
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    assert(index <= this.lastIndex(), "a commit beyond the last index: commit, last", index, this.lastIndex());
    this.committed = index;
  }

  /** Replaces the log with a snapshot from the leader (§7). */
  restore(snap: Snapshot): void {
    assert(snap.meta.index > this.committed, "a snapshot restore at or below the commit: snapshot, commit", snap.meta.index, this.committed);
    // Until the snapshot is persisted only the committed prefix (which it covers) counts as held.
    this.durable = Math.min(this.durable, this.committed);
    this.pendingSnapshot = snap;
    this.unstable = [];
    this.unstableOffset = snap.meta.index + 1;
    this.committed = snap.meta.index;
  }

  hasUnstable(): boolean {
    return this.unstable.length > 0 || this.pendingSnapshot !== null;
  }

  unstableEntries(): Entry[] {
    return this.unstable;
  }

  /** The node persisted everything handed out in the last Ready. */
  stabilize(): void {
    if (this.pendingSnapshot !== null) {
      this.applied = Math.max(this.applied, this.pendingSnapshot.meta.index);
      this.pendingSnapshot = null;
    }
    this.unstableOffset += this.unstable.length;
    this.unstable = [];
  }

  /**
   * The node raised what is durable: `index` holds `term` and it and every entry before it are
   * fsynced. A report about an entry since replaced (another term there now) says nothing.
   */
  durableTo(index: number, term: number): boolean {
    if (index <= this.durable || !this.matchTerm(index, term)) return false;
    assert(index <= this.lastIndex(), "durable beyond the last index: durable, last", index, this.lastIndex());
    this.durable = index;
    return true;
  }

  /**
   * Applied entries are committed and durable here: a node never applies an entry it could still
   * lose to a power cut, so after one its state machine is never ahead of its log (etcd-io/raft
   * applies no unstable entry under AsyncStorageWrites for the same reason).
   */
  private applyLimit(): number {
    return Math.min(this.committed, this.durable);
  }

  hasNextCommitted(): boolean {
    return this.applyLimit() > this.applied;
  }

  /** Committed, durable entries not yet applied, up to maxBytes (at least one). */
  nextCommitted(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.applyLimit();
    if (lo > hi) return [];
    return this.slice(lo, hi + 1, maxBytes);
  }

  appliedTo(index: number): void {
    assert(index <= this.committed, "applied beyond the commit: applied, commit", index, this.committed);
    if (index <= this.applied) return;
    assert(index <= this.durable, "applied beyond what is durable: applied, durable", index, this.durable);
    this.applied = index;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`, so a rejection can
   * skip every entry of a conflicting term at once.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (; i >= this.firstIndex() - 1; i--) {
      const t = this.term(i);
      if (t === UNKNOWN_TERM) break;
      if (t <= term) return { index: i, term: t };
    }
    return { index: i, term: 0 };
  }
}
