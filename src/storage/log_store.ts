// The Raft log, hard state and snapshot in SQLite: the durable WritableLogStorage, with the
// semantics of MemoryStorage. The core calls term()/lastIndex()/hardState() constantly, so those
// are answered from memory: the log's terms are kept as runs (a term changes rarely, so a whole
// log fits in a few runs), loaded by bisection at open without scanning the log.
// One difference from MemoryStorage, on purpose: a save() that throws (out-of-range entries,
// disk full) changes nothing, where MemoryStorage may have installed the snapshot already.
import type { Database, Statement } from "bun:sqlite";
import { CompactedError, UnavailableError, entrySize, type WritableLogStorage } from "../raft/storage.ts";
import type { ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMeta } from "../raft/types.ts";
import { CorruptDataError } from "./errors.ts";
import { ENTRY_TYPE_CODES } from "./schema.ts";
import type { DurableState } from "./state_record.ts";
import type { Transactor } from "./tx.ts";

const ENTRY_TYPES: EntryType[] = ["normal", "noop", "conf"];
const ENTRY_PAGE = 256;
/**
 * Entries inserted per statement when a Ready carries many: one multi-row INSERT costs about
 * 1.1 µs of CPU per row against 1.9 µs for a row per statement (bench/apply_cpu.ts). 32 rows are
 * 128 parameters, far below SQLite's limit of 32,766.
 */
const INSERT_ROWS = 32;

/** Entries from index `start` on have term `term`, until the next run. */
interface TermRun {
  start: number;
  term: number;
}

/** Everything the core reads without touching SQLite. Replaced as a whole, so undo is one assignment. */
interface LogCache {
  hardState: HardState;
  meta: SnapshotMeta;
  base: { index: number; term: number };
  last: number;
  runs: TermRun[];
}

type EntryRow = [number, number, number, Uint8Array];

export class SqliteLogStorage implements WritableLogStorage {
  /** Told of every change inside its transaction, before it commits (the state record, data_dir.ts). */
  onChange: ((next: DurableState) => void) | null = null;
  private cache: LogCache;
  /** The data of the latest snapshot, loaded on first use. */
  private snapData: { index: number; data: Uint8Array } | null = null;
  private readonly q: {
    entries: Statement;
    confEntries: Statement;
    termAt: Statement;
    snapData: Statement;
    insert: Statement;
    insertMany: Statement;
    truncateFrom: Statement;
    compactTo: Statement;
    clear: Statement;
    setHardState: Statement;
    setBase: Statement;
    setSnapshot: Statement;
  };

  constructor(
    private readonly db: Database,
    private readonly tx: Transactor,
    private readonly file: string,
  ) {
    // db.query(), never db.prepare(), here and in every class on the node's connection: close()
    // finalizes the statements db.query() made, and one left unfinalized would keep the closed
    // connection, with its exclusive lock on the file, alive (tests/storage/data_dir.test.ts).
    this.q = {
      entries: db.query("SELECT idx, term, type, data FROM raft_log WHERE idx >= ? AND idx < ? ORDER BY idx LIMIT ?"),
      confEntries: db.query("SELECT idx, term, type, data FROM raft_log WHERE type = 2 AND idx >= ? AND idx < ? ORDER BY idx"),
      termAt: db.query("SELECT term FROM raft_log WHERE idx = ?"),
      snapData: db.query("SELECT data FROM raft_snapshot WHERE id = 1"),
      insert: db.query("INSERT INTO raft_log (idx, term, type, data) VALUES (?, ?, ?, ?)"),
      insertMany: db.query(`INSERT INTO raft_log (idx, term, type, data) VALUES ${Array(INSERT_ROWS).fill("(?, ?, ?, ?)").join(", ")}`),
      truncateFrom: db.query("DELETE FROM raft_log WHERE idx >= ?"),
      compactTo: db.query("DELETE FROM raft_log WHERE idx <= ?"),
      clear: db.query("DELETE FROM raft_log"),
      setHardState: db.query("UPDATE raft_hard_state SET term = ?, vote = ?, commit_index = ? WHERE id = 1"),
      setBase: db.query("UPDATE raft_log_base SET idx = ?, term = ? WHERE id = 1"),
      setSnapshot: db.query("UPDATE raft_snapshot SET idx = ?, term = ?, conf = ?, data = ? WHERE id = 1"),
    };
    this.cache = this.load();
  }

  hardState(): HardState {
    return this.cache.hardState;
  }

  snapshotMeta(): SnapshotMeta {
    return this.cache.meta;
  }

  snapshot(): Snapshot {
    const meta = this.cache.meta;
    if (this.snapData?.index !== meta.index) {
      const row = this.q.snapData.values()[0];
      if (row === undefined || !(row[0] instanceof Uint8Array)) throw this.corrupt("the raft_snapshot row is missing");
      this.snapData = { index: meta.index, data: row[0] };
    }
    return { meta, data: this.snapData.data };
  }

  firstIndex(): number {
    return this.cache.base.index + 1;
  }

  lastIndex(): number {
    return this.cache.last;
  }

  term(index: number): number {
    const { base, last, runs } = this.cache;
    if (index === base.index) return base.term;
    if (index < base.index) throw new CompactedError(index, base.index + 1);
    if (index > last) throw new UnavailableError(index, last);
    // The last run starting at or before `index`.
    let lo = 0;
    let hi = runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (runs[mid]!.start <= index) lo = mid;
      else hi = mid - 1;
    }
    const run = runs[lo];
    if (run === undefined || run.start > index) throw new Error(`term runs do not cover index ${index}`);
    return run.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const { base, last } = this.cache;
    if (lo <= base.index) throw new CompactedError(lo, base.index + 1);
    if (hi > last + 1) throw new UnavailableError(hi - 1, last);
    const out: Entry[] = [];
    let bytes = 0;
    // Pages of rows, so a byte cap far below the range never loads the whole range.
    for (let next = lo; next < hi; ) {
      const rows = this.q.entries.values(next, hi, ENTRY_PAGE) as EntryRow[];
      if (rows.length === 0) throw this.corrupt(`log entry ${next} is missing`);
      for (const row of rows) {
        const e = this.toEntry(row, next++);
        bytes += entrySize(e);
        if (out.length > 0 && bytes > maxBytes) return out;
        out.push(e);
      }
    }
    return out;
  }

  confEntries(lo: number, hi: number): Entry[] {
    const { base, last } = this.cache;
    const from = Math.max(lo, base.index + 1);
    const to = Math.min(hi, last + 1);
    if (from >= to) return [];
    return (this.q.confEntries.values(from, to) as EntryRow[]).map((row) => this.toEntry(row, row[0]));
  }

  save(snapshot: Snapshot | null, entries: Entry[], hardState: HardState | null): void {
    if (snapshot === null && entries.length === 0 && hardState === null) return;
    this.tx.run(() => {
      const next: LogCache = { ...this.cache };
      if (snapshot !== null) {
        const { index, term } = snapshot.meta;
        this.q.clear.run();
        this.q.setBase.run(index, term);
        this.writeSnapshot(snapshot);
        next.meta = snapshot.meta;
        next.base = { index, term };
        next.last = index;
        next.runs = [];
      }
      if (entries.length > 0) this.append(next, entries);
      if (hardState !== null) {
        this.q.setHardState.run(hardState.term, hardState.vote, hardState.commit);
        next.hardState = { ...hardState };
      }
      this.replaceCache(next);
    });
  }

  createSnapshot(snap: Snapshot, compactTo: number): void {
    if (snap.meta.index <= this.cache.meta.index) return;
    if (snap.meta.index > this.cache.last) throw new UnavailableError(snap.meta.index, this.cache.last);
    this.tx.run(() => {
      const next: LogCache = { ...this.cache, meta: snap.meta };
      this.writeSnapshot(snap);
      const to = Math.min(compactTo, snap.meta.index);
      if (to > next.base.index) {
        next.base = { index: to, term: this.term(to) };
        this.q.compactTo.run(to);
        this.q.setBase.run(to, next.base.term);
        // Keep the run covering `to + 1` onwards (clamped), drop those wholly compacted.
        const keep = next.runs.filter((r, i) => (next.runs[i + 1]?.start ?? Infinity) > to + 1);
        next.runs = to >= next.last ? [] : keep.map((r) => (r.start <= to ? { start: to + 1, term: r.term } : r));
      }
      this.replaceCache(next);
    });
  }

  private append(next: LogCache, entries: Entry[]): void {
    const first = entries[0]!.index;
    if (first <= next.base.index) throw new CompactedError(first, next.base.index + 1);
    if (first > next.last + 1) throw new UnavailableError(first, next.last);
    if (first <= next.last) {
      this.q.truncateFrom.run(first);
      next.runs = next.runs.filter((r) => r.start < first);
    } else {
      next.runs = next.runs.slice();
    }
    let prevTerm = first - 1 === next.base.index ? next.base.term : termInRuns(next.runs, first - 1);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      if (e.index !== first + i) throw new Error(`entries not contiguous: ${e.index} after ${first + i - 1}`);
      if (e.term < prevTerm) throw new Error(`entry ${e.index} has term ${e.term} below its predecessor's ${prevTerm}`);
      if (e.term !== prevTerm || next.runs.length === 0) next.runs.push({ start: e.index, term: e.term });
      prevTerm = e.term;
    }
    this.insertRows(entries);
    next.last = first + entries.length - 1;
  }

  /** The rows of checked, contiguous entries: whole groups of INSERT_ROWS per statement, the rest one by one. */
  private insertRows(entries: Entry[]): void {
    let i = 0;
    if (entries.length >= INSERT_ROWS) {
      const args: Array<number | Uint8Array> = new Array(INSERT_ROWS * 4);
      for (; i + INSERT_ROWS <= entries.length; i += INSERT_ROWS) {
        for (let r = 0; r < INSERT_ROWS; r++) {
          const e = entries[i + r]!;
          args[r * 4] = e.index;
          args[r * 4 + 1] = e.term;
          args[r * 4 + 2] = ENTRY_TYPE_CODES[e.type];
          args[r * 4 + 3] = e.data;
        }
        this.q.insertMany.run(...args);
      }
    }
    for (; i < entries.length; i++) {
      const e = entries[i]!;
      this.q.insert.run(e.index, e.term, ENTRY_TYPE_CODES[e.type], e.data);
    }
  }

  private writeSnapshot(snap: Snapshot): void {
    const { index, term, conf } = snap.meta;
    this.q.setSnapshot.run(index, term, JSON.stringify({ voters: conf.voters, learners: conf.learners }), snap.data);
    this.snapData = { index, data: snap.data };
  }

  private replaceCache(next: LogCache): void {
    const prev = this.cache;
    const prevSnapData = this.snapData;
    this.tx.onRollback(() => {
      this.cache = prev;
      this.snapData = prevSnapData;
    });
    this.cache = next;
    this.onChange?.(this.durableState());
  }

  /** Term, vote, commit and last index: what must never go back (state_record.ts). */
  durableState(): DurableState {
    const { hardState, last } = this.cache;
    return { term: hardState.term, vote: hardState.vote, commit: hardState.commit, last };
  }

  private toEntry(row: EntryRow, expectedIndex: number): Entry {
    const [index, term, typeCode, data] = row;
    const type = ENTRY_TYPES[typeCode];
    if (index !== expectedIndex || type === undefined) {
      throw this.corrupt(`log row ${index} (type ${typeCode}) where entry ${expectedIndex} was expected`);
    }
    return { index, term, type, data };
  }

  private load(): LogCache {
    const hs = this.db.query("SELECT term, vote, commit_index FROM raft_hard_state WHERE id = 1").values()[0] as
      | [number, string | null, number]
      | undefined;
    const base = this.db.query("SELECT idx, term FROM raft_log_base WHERE id = 1").values()[0] as [number, number] | undefined;
    const snap = this.db.query("SELECT idx, term, conf FROM raft_snapshot WHERE id = 1").values()[0] as
      | [number, number, string]
      | undefined;
    // min/max are two index seeks; counting rows would read the whole log. A gap inside the log
    // is caught when read (entries() checks every index, loadRuns() every probe).
    const bounds = this.db.query("SELECT min(idx), max(idx) FROM raft_log").values()[0] as [number | null, number | null];
    if (hs === undefined || base === undefined || snap === undefined) throw this.corrupt("a Raft state row is missing");
    const [minIdx, maxIdx] = bounds;
    const last = maxIdx ?? base[0];
    if (minIdx !== null && minIdx !== base[0] + 1) {
      throw this.corrupt(`the log starts at ${minIdx}, but the entry before it is recorded as ${base[0]}`);
    }
    if (snap[0] > last || base[0] > snap[0]) {
      throw this.corrupt(`snapshot index ${snap[0]} outside the log [${base[0]}, ${last}]`);
    }
    const cache: LogCache = {
      hardState: { term: hs[0], vote: hs[1], commit: hs[2] },
      meta: { index: snap[0], term: snap[1], conf: parseConf(snap[2], this.file) },
      base: { index: base[0], term: base[1] },
      last,
      runs: minIdx !== null ? this.loadRuns(base[0] + 1, last) : [],
    };
    return cache;
  }

  /** Term runs of [lo, hi] by bisection: terms never decrease along a log, so equal ends mean one run. */
  private loadRuns(lo: number, hi: number): TermRun[] {
    const runs: TermRun[] = [];
    const termAt = (i: number): number => {
      const row = this.q.termAt.values(i)[0];
      if (row === undefined || typeof row[0] !== "number") throw this.corrupt(`log entry ${i} is missing`);
      return row[0];
    };
    // Explicit stack instead of recursion; each split halves a range, so it stays small.
    const stack: Array<[number, number, number, number]> = [[lo, termAt(lo), hi, termAt(hi)]];
    while (stack.length > 0) {
      const [a, ta, b, tb] = stack.pop()!;
      if (ta > tb) throw this.corrupt(`log term decreases between entries ${a} and ${b}`);
      if (ta === tb || b === a + 1) {
        if (runs.length === 0 || runs[runs.length - 1]!.term !== ta) runs.push({ start: a, term: ta });
        if (tb !== ta) runs.push({ start: b, term: tb });
        continue;
      }
      const mid = Math.floor((a + b) / 2);
      const tm = termAt(mid);
      stack.push([mid, tm, b, tb], [a, ta, mid, tm]);
    }
    return runs;
  }

  private corrupt(detail: string): CorruptDataError {
    return new CorruptDataError(`${this.file}: ${detail}`, this.file);
  }
}

function termInRuns(runs: TermRun[], index: number): number {
  for (let i = runs.length - 1; i >= 0; i--) if (runs[i]!.start <= index) return runs[i]!.term;
  throw new Error(`no term run covers index ${index}`);
}

function parseConf(json: string, file: string): ConfState {
  const v = JSON.parse(json) as Partial<ConfState>;
  const ids = (x: unknown): x is string[] => Array.isArray(x) && x.every((s) => typeof s === "string");
  if (!ids(v.voters) || !ids(v.learners)) throw new CorruptDataError(`${file}: malformed snapshot configuration ${json}`, file);
  return { voters: v.voters, learners: v.learners };
}
