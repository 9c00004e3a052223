// The durable log as the core sees it (etcd-io/raft's Storage): synchronous reads of what has
// been persisted. The core never writes here; the node does, between ready() and advance().
import type { Entry, HardState, Snapshot, SnapshotMeta } from "./types.ts";

export class CompactedError extends Error {
  constructor(index: number, firstIndex: number) {
    super(`log index ${index} is compacted (first available ${firstIndex})`);
  }
}

export class UnavailableError extends Error {
  constructor(index: number, lastIndex: number) {
    super(`log index ${index} is beyond the last index ${lastIndex}`);
  }
}

export interface LogStorage {
  hardState(): HardState;
  /** Metadata of the latest snapshot; index 0 (with the bootstrap configuration) when there is none. */
  snapshotMeta(): SnapshotMeta;
  /** The latest snapshot with its data (read only when a follower needs it). */
  snapshot(): Snapshot;
  /** First index still in the log: at most snapshotMeta().index + 1 (compaction may keep a margin). */
  firstIndex(): number;
  /** Last persisted index, or firstIndex() - 1 when the log is empty. */
  lastIndex(): number;
  /** Term at `index`, for firstIndex() - 1 <= index <= lastIndex(); throws CompactedError below. */
  term(index: number): number;
  /** Entries in [lo, hi), at least one when lo < hi, then up to `maxBytes` of data in total. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** Only the `conf` entries in [lo, hi): the core rebuilds its configuration history from them. */
  confEntries(lo: number, hi: number): Entry[];
}

/** The write side, driven by the node while it handles a Ready. */
export interface WritableLogStorage extends LogStorage {
  /**
   * Persists the durable part of one Ready atomically (one fsync): a snapshot received from the
   * leader (replacing the whole log), then entries (first dropping any persisted suffix from
   * entries[0].index on), then the hard state.
   */
  save(snapshot: Snapshot | null, entries: Entry[], hardState: HardState | null): void;
  /** Records a snapshot the local state machine took at snap.meta.index; drops entries up to `compactTo`. */
  createSnapshot(snap: Snapshot, compactTo: number): void;
}

/** Approximate wire size of an entry, for byte-capped batches. */
export function entrySize(e: Entry): number {
  return e.data.byteLength + 24;
}
