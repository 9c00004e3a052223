// The change history behind watch (and blocking reads): every put and delete the state machine
// applies, as rows of kv_events in the node's data file, written in the same transaction as the
// change itself. Because the rows are part of the replicated state (written by apply, copied into
// snapshots, pruned by a deterministic rule), every node holds the same history at the same
// applied index, so a watcher that moves to another node resumes at `last revision + 1` with no
// gap and no duplicate. The history is bounded by event count and bytes; what was pruned is
// recorded as the floor: events with revision > floor are all present, older ones are gone.
import type { Database, Statement } from "bun:sqlite";

export interface HistoryLimits {
  /** Pruning starts above this many events... */
  maxEvents: number;
  /** ...or above this many bytes of keys and values. */
  maxBytes: number;
}

/** Part of the replicated semantics: every member of a cluster must use the same limits. */
export const DEFAULT_HISTORY_LIMITS: HistoryLimits = { maxEvents: 20_000, maxBytes: 64 * 1024 * 1024 };

export type EventType = "put" | "delete";

export interface KvEvent {
  type: EventType;
  /** The store revision (Raft index) of the change; the events of one transaction share it. */
  revision: number;
  key: string;
  /** Empty for a delete. */
  value: Uint8Array;
  /** 0 for a delete. */
  createRevision: number;
  /** 0 for a delete. */
  version: number;
  /** 0: none. */
  lease: number;
}

type EventRow = [number, number, number, string, Uint8Array, number, number, number];

const EVENT_COLUMNS = "revision, sub, type, key, value, create_revision, version, lease";
/**
 * Rough per-row overhead counted with the key and value bytes. The byte total must be computed
 * the same way from the rows (reload) as incrementally (record): pruning depends on it, and two
 * replicas pruning differently would hold different histories.
 */
const ROW_OVERHEAD = 48;
const PRUNE_PAGE = 1024;
const TYPE_CODE: Record<EventType, number> = { put: 0, delete: 1 };

/** The tables kvfeatures added to the data file; created on open when missing (an older file). */
export const HISTORY_DDL = `
CREATE TABLE IF NOT EXISTS kv_events (
  revision INTEGER NOT NULL, sub INTEGER NOT NULL, type INTEGER NOT NULL CHECK (type IN (0, 1)),
  key TEXT NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL, version INTEGER NOT NULL,
  lease INTEGER NOT NULL, PRIMARY KEY (revision, sub)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kv_history (id INTEGER PRIMARY KEY CHECK (id = 1), floor INTEGER NOT NULL) STRICT;
`;

export class History {
  private readonly q: Record<"insert" | "setFloor" | "floor" | "after" | "sizes" | "prune" | "totals" | "keyAfter" | "rangeAfter" | "anyAfter", Statement>;
  private count = 0;
  private bytes = 0;
  private floorRev = 0;

  constructor(
    private readonly db: Database,
    private readonly limits: HistoryLimits,
    onRollback: (undo: () => void) => void,
  ) {
    this.onRollback = onRollback;
    this.q = {
      insert: db.query(`INSERT INTO kv_events (${EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      setFloor: db.query("INSERT OR REPLACE INTO kv_history (id, floor) VALUES (1, ?)"),
      floor: db.query("SELECT floor FROM kv_history WHERE id = 1"),
      after: db.query(`SELECT ${EVENT_COLUMNS} FROM kv_events WHERE revision > ? AND revision <= ? ORDER BY revision, sub LIMIT ?`),
      sizes: db.query(
        "SELECT revision, sub, length(CAST(key AS BLOB)) + length(value) FROM kv_events WHERE (revision, sub) > (?, ?) ORDER BY revision, sub LIMIT ?",
      ),
      prune: db.query("DELETE FROM kv_events WHERE revision <= ?"),
      totals: db.query("SELECT count(*), coalesce(sum(length(CAST(key AS BLOB)) + length(value)), 0) FROM kv_events"),
      keyAfter: db.query("SELECT 1 FROM kv_events WHERE key = ? AND revision > ? LIMIT 1"),
      rangeAfter: db.query("SELECT 1 FROM kv_events WHERE key >= ? AND key < ? AND revision > ? LIMIT 1"),
      anyAfter: db.query("SELECT 1 FROM kv_events WHERE key >= ? AND revision > ? LIMIT 1"),
    };
    this.reload();
  }

  private readonly onRollback: (undo: () => void) => void;

  /**
   * Creates the tables of an older data file. Its history starts now: the floor is the current
   * revision, so a watch from before it gets "compacted" instead of silently missing events.
   */
  static ensureTables(db: Database, currentRevision: number): void {
    db.run(HISTORY_DDL);
    const row = db.query("SELECT floor FROM kv_history WHERE id = 1").values()[0];
    if (row === undefined) db.run("INSERT INTO kv_history (id, floor) VALUES (1, ?)", [currentRevision]);
  }

  /** Re-reads the totals and floor from the tables (at open and after a snapshot is installed). */
  reload(): void {
    const [count, bytes] = this.q.totals.values()[0] as [number, number];
    const floor = (this.q.floor.values()[0] as [number] | undefined)?.[0];
    if (floor === undefined) throw new Error("kv_history row is missing");
    const prev = { count: this.count, bytes: this.bytes, floorRev: this.floorRev };
    this.count = count;
    this.bytes = bytes + count * ROW_OVERHEAD;
    this.floorRev = floor;
    if (this.db.inTransaction) this.onRollback(() => Object.assign(this, prev));
  }

  /** Every event with a revision above the floor is in the history. */
  floor(): number {
    return this.floorRev;
  }

  /**
   * Called once before an entry changes the history: registers how to restore the counters if
   * the transaction rolls back (one closure per entry, not per event: this is the write path).
   */
  begin(): void {
    const prev = { count: this.count, bytes: this.bytes, floorRev: this.floorRev };
    this.onRollback(() => Object.assign(this, prev));
  }

  record(e: KvEvent, sub: number): void {
    this.q.insert.run(e.revision, sub, TYPE_CODE[e.type], e.key, e.value, e.createRevision, e.version, e.lease);
    this.count++;
    this.bytes += Buffer.byteLength(e.key, "utf8") + e.value.byteLength + ROW_OVERHEAD;
  }

  /**
   * Prunes whole revisions, oldest first, once a limit is passed, down to 90% of the limits (so
   * pruning runs once per many writes, not on every one). The current revision is never pruned:
   * a revision is in the history completely or not at all. Deterministic: it depends only on the
   * rows, which every replica has the same.
   */
  prune(current: number): void {
    if (this.count <= this.limits.maxEvents && this.bytes <= this.limits.maxBytes) return;
    const targetEvents = Math.floor(this.limits.maxEvents * 0.9);
    const targetBytes = Math.floor(this.limits.maxBytes * 0.9);
    let count = this.count;
    let bytes = this.bytes;
    let cut = this.floorRev;
    // Whole revisions, oldest first, read in pages; a page may end inside a revision, so a
    // revision is only counted as removed once the next one starts.
    let pending: { rev: number; count: number; bytes: number } | null = null;
    let cursor: [number, number] = [this.floorRev, Number.MAX_SAFE_INTEGER];
    // Bounded: every page moves the (revision, sub) cursor forward, and the rows are finite.
    outer: for (;;) {
      const rows = this.q.sizes.values(cursor[0], cursor[1], PRUNE_PAGE) as Array<[number, number, number]>;
      for (const [rev, , size] of rows) {
        if (pending !== null && rev !== pending.rev) {
          count -= pending.count;
          bytes -= pending.bytes;
          cut = pending.rev;
          pending = null;
          if (count <= targetEvents && bytes <= targetBytes) break outer;
        }
        if (rev >= current) break outer;
        pending ??= { rev, count: 0, bytes: 0 };
        pending.count++;
        pending.bytes += size + ROW_OVERHEAD;
      }
      if (rows.length < PRUNE_PAGE) break;
      const last = rows[rows.length - 1]!;
      cursor = [last[0], last[1]];
    }
    if (cut === this.floorRev) return;
    this.q.prune.run(cut);
    this.q.setFloor.run(cut);
    this.count = count;
    this.bytes = bytes;
    this.floorRev = cut;
  }

  /** Events with revision in (after, upTo], in order, at most `limit` (callers page on). */
  read(after: number, upTo: number, limit: number): KvEvent[] {
    return (this.q.after.values(after, upTo, limit) as EventRow[]).map(toEvent);
  }

  /** Whether `key` changed after `revision` (for blocking reads). */
  changedAfter(key: string, revision: number): boolean {
    return this.q.keyAfter.values(key, revision).length > 0;
  }

  /** Whether a key in [from, to) changed after `revision` (to null: no upper bound). */
  rangeChangedAfter(from: string, to: string | null, revision: number): boolean {
    return (to === null ? this.q.anyAfter.values(from, revision) : this.q.rangeAfter.values(from, to, revision)).length > 0;
  }

  stats(): { events: number; bytes: number; floor: number } {
    return { events: this.count, bytes: this.bytes, floor: this.floorRev };
  }

}

function toEvent(r: EventRow): KvEvent {
  return {
    revision: r[0],
    type: r[2] === 0 ? "put" : "delete",
    key: r[3],
    value: r[4],
    createRevision: r[5],
    version: r[6],
    lease: r[7],
  };
}
