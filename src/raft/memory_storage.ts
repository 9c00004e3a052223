// An in-memory LogStorage: the simulator's "disk" and the core's unit-test fixture.
import { CompactedError, UnavailableError, entrySize, type WritableLogStorage } from "./storage.ts";
import type { ConfState, Entry, HardState, Snapshot, SnapshotMeta } from "./types.ts";

export class MemoryStorage implements WritableLogStorage {
  private hs: HardState = { term: 0, vote: null, commit: 0 };
  private snap: Snapshot;
  /** The entry just before log[0]: log[i] holds index base.index + 1 + i. */
  private base: { index: number; term: number } = { index: 0, term: 0 };
  private log: Entry[] = [];

  constructor(bootstrap: ConfState) {
    this.snap = { meta: { index: 0, term: 0, conf: bootstrap }, data: new Uint8Array(0) };
  }

  hardState(): HardState {
    return this.hs;
  }

  snapshotMeta(): SnapshotMeta {
    return this.snap.meta;
  }

  snapshot(): Snapshot {
    return this.snap;
  }

  firstIndex(): number {
    return this.base.index + 1;
  }

  lastIndex(): number {
    return this.base.index + this.log.length;
  }

  term(index: number): number {
    if (index === this.base.index) return this.base.term;
    if (index < this.base.index) throw new CompactedError(index, this.base.index + 1);
    const e = this.log[index - this.base.index - 1];
    if (e === undefined) throw new UnavailableError(index, this.lastIndex());
    return e.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.base.index) throw new CompactedError(lo, this.base.index + 1);
    if (hi > this.lastIndex() + 1) throw new UnavailableError(hi - 1, this.lastIndex());
    const out: Entry[] = [];
    let bytes = 0;
    for (let i = lo; i < hi; i++) {
      const e = this.log[i - this.base.index - 1]!;
      bytes += entrySize(e);
      if (out.length > 0 && bytes > maxBytes) break;
      out.push(e);
    }
    return out;
  }

  confEntries(lo: number, hi: number): Entry[] {
    const out: Entry[] = [];
    for (let i = Math.max(lo, this.base.index + 1); i < hi && i <= this.lastIndex(); i++) {
      const e = this.log[i - this.base.index - 1]!;
      if (e.type === "conf") out.push(e);
    }
    return out;
  }

  save(snapshot: Snapshot | null, entries: Entry[], hardState: HardState | null): void {
    if (snapshot !== null) {
      this.snap = snapshot;
      this.base = { index: snapshot.meta.index, term: snapshot.meta.term };
      this.log = [];
    }
    if (entries.length > 0) this.appendEntries(entries);
    if (hardState !== null) this.hs = hardState;
  }

  createSnapshot(snap: Snapshot, compactTo: number): void {
    if (snap.meta.index <= this.snap.meta.index) return;
    if (snap.meta.index > this.lastIndex()) throw new UnavailableError(snap.meta.index, this.lastIndex());
    this.snap = snap;
    const to = Math.min(compactTo, snap.meta.index);
    if (to <= this.base.index) return;
    const term = this.term(to);
    this.log = this.log.slice(to - this.base.index);
    this.base = { index: to, term };
  }

  /**
   * The simulator's power cut: the entries after `index` were written but never fsynced, and the
   * commit index goes no further than what is left. Never below what was compacted.
   */
  dropAfter(index: number): void {
    if (index >= this.lastIndex()) return;
    if (index < this.base.index) throw new CompactedError(index, this.base.index + 1);
    this.log.length = index - this.base.index;
    if (this.hs.commit > index) this.hs = { ...this.hs, commit: index };
  }

  private appendEntries(entries: Entry[]): void {
    const first = entries[0]!.index;
    if (first <= this.base.index) throw new CompactedError(first, this.base.index + 1);
    if (first > this.lastIndex() + 1) throw new UnavailableError(first, this.lastIndex());
    this.log.length = first - this.base.index - 1;
    for (const e of entries) this.log.push(e);
  }
}
