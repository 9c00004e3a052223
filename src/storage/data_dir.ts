// Opening a node's data directory: one SQLite file, DATA_DIR/phalanx.db, holding the Raft log and
// the key-value state so one transaction (one fsync) can cover a whole Ready: the log writes and
// the applying of its committed entries (see schema.ts). Opening never repairs, resets or
// overwrites anything it does not recognise: it refuses with a typed error naming the file.
import { Database, constants as sqlite } from "bun:sqlite";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
  fdatasync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
} from "node:fs";
import { join } from "node:path";
import type { ConfState, NodeId } from "../raft/types.ts";
import { CorruptDataError, DataDirInUseError, FormatError, ReadOnlyError, RolledBackError, StorageError, translateSqliteError } from "./errors.ts";
import { tryLockFile, type HeldLock } from "./file_lock.ts";
import { SqliteLogStorage } from "./log_store.ts";
import { APPLICATION_ID, FORMAT_VERSION, initSchema, migrateSchema, READABLE_VERSIONS, readStateRecordId, writeStateRecordId } from "./schema.ts";
import { STATE_FILE, StateRecord, readStateRecord, wentBack, type DurableState, type RecordContent } from "./state_record.ts";
import { Transactor } from "./tx.ts";

/** WAL pages after which a commit checkpoints the WAL into the file (SQLite's default is 1,000); see openDataDir. */
export const WAL_CHECKPOINT_PAGES = 10_000;

export const DB_FILE = "phalanx.db";
/**
 * Locked (flock) by the process that has the data dir open, for its whole life: two nodes on one
 * log break Raft. It holds that process's pid, for the error message only.
 */
export const LOCK_FILE = "LOCK";
const SQLITE_MAGIC = "SQLite format 3\0";
const { SQLITE_OPEN_READONLY, SQLITE_OPEN_URI } = sqlite;
/**
 * How often, at most, the state record follows commits and appends (term and vote changes are
 * recorded at once). A rollback younger than this is not seen locally; the leader sees a follower's
 * (raft.ts, "follower regressed"). Measured cost: BENCHMARKS.md, "What the safety and security checks cost".
 */
export const RECORD_EVERY_MS = 100;

export interface DataDirOptions {
  /** The configuration of a brand-new cluster; ignored when the data dir already exists. */
  bootstrap: ConfState;
  /** Addresses of the bootstrap members, recorded in the members table. */
  addresses?: Record<NodeId, string>;
  /** Run PRAGMA quick_check on open (default true): reads the whole file, see BENCHMARKS.md. */
  integrityCheck?: boolean;
}

/** What a DataDir needs of its durable-state record (state_record.ts). */
export interface DurableRecord {
  readonly path: string;
  readonly state: DurableState;
  write(state: DurableState): void;
  close(): void;
}

/**
 * The record of a database with no file of its own (an in-memory one, as the simulator's): it can
 * outlive nothing the database does not, so it lives in memory beside it.
 */
class MemoryRecord implements DurableRecord {
  constructor(
    readonly path: string,
    public state: DurableState,
  ) {}
  write(state: DurableState): void {
    this.state = state;
  }
  close(): void {}
}

export class DataDir {
  readonly log: SqliteLogStorage;
  readonly tx: Transactor;
  /** Set when opening migrated the file from an older format version (the opener logs it). */
  migrated: { from: number; to: number } | null = null;

  /**
   * A data dir on an in-memory database (`file` names it in messages): nothing to lock, and its
   * durable-state record lives in memory like the data.
   */
  static inMemory(name: string, file: string, db: Database): DataDir {
    const state = new SqliteLogStorage(db, new Transactor(db, file), file).durableState();
    return new DataDir(name, file, db, { release: () => undefined }, new MemoryRecord(`${name} (in memory)`, state), null);
  }

  constructor(
    readonly dir: string,
    readonly file: string,
    readonly db: Database,
    private readonly lock: Pick<HeldLock, "release">,
    private readonly record: DurableRecord,
    /** phalanx.db-wal; null for an in-memory database. */
    private readonly walPath: string | null,
  ) {
    this.tx = new Transactor(db, file);
    this.log = new SqliteLogStorage(db, this.tx, file);
    this.durable = this.log.durableState();
    this.log.onChange = (next) => this.beforeCommit(next);
    this.tx.afterCommit = () => this.afterCommit();
  }

  private synced = true;
  /** The state as of the last synced commit: all the record may claim. */
  private durable: DurableState;
  /** Outermost commits since open, and the last of them known durable (see syncInBackground). */
  private commits = 0;
  private durableThrough = 0;
  /** phalanx.db-wal, opened for syncInBackground's fdatasync on first use. */
  private walFd: number | null = null;
  /** Term or vote changed in the open transaction: record it as soon as it is durable. */
  private recordNow = false;
  private lastRecordMs = 0;
  private recordTimer: ReturnType<typeof setTimeout> | null = null;
  private closed = false;
  private recordFailure: StorageError | null = null;

  /**
   * Inside a transaction, before it commits. A change that moves the last index (or commit) below
   * the record (a conflicting suffix truncated, a snapshot installed over a longer log) lowers the
   * record first: were it lowered after the commit, a crash in between would look like a rollback.
   */
  private beforeCommit(next: DurableState): void {
    const rec = this.record.state;
    if (next.last < rec.last || next.commit < rec.commit) {
      this.record.write({ ...rec, commit: Math.min(rec.commit, next.commit), last: Math.min(rec.last, next.last) });
    }
    if (next.term !== rec.term || next.vote !== rec.vote) this.recordNow = true;
  }

  /**
   * After each outermost commit. Only a synced commit makes state durable (and every unsynced one
   * before it), and so does a background fsync (syncInBackground). A new term or vote is recorded
   * at once, before any message of it leaves. Appends and commits are recorded from a timer, at
   * most every RECORD_EVERY_MS: off the path of the Ready (a client's ack never waits for it),
   * one small fdatasync per interval under load, and an idle node's record still catches up with
   * its last writes (the timer fsyncs the unsynced ones in the background, then records them).
   */
  private afterCommit(): void {
    this.commits++;
    if (this.synced) this.becameDurable(this.commits, this.log.durableState());
    else this.recordLater();
  }

  /** Commits up to number `through` are durable, and with them `state`. */
  private becameDurable(through: number, state: DurableState): void {
    // A background fsync that ends after a synced commit covered less than that commit did.
    if (through <= this.durableThrough) return;
    this.durableThrough = through;
    this.durable = state;
    if (this.recordNow) {
      this.recordNow = false;
      this.writeRecord();
      return;
    }
    this.recordLater();
  }

  private recordLater(): void {
    if (this.recordTimer !== null || this.closed) return;
    const unsynced = this.walPath !== null && this.commits > this.durableThrough;
    if (!unsynced && sameState(this.durable, this.record.state)) return;
    const wait = Math.max(0, this.lastRecordMs + RECORD_EVERY_MS - performance.now());
    this.recordTimer = setTimeout(() => {
      this.recordTimer = null;
      if (this.closed) return;
      try {
        this.writeRecord();
      } catch (err) {
        // Not thrown from a timer (that would kill the process unexplained): the next transaction does.
        this.recordFailure = new StorageError(`cannot write ${this.record.path}: ${(err as Error).message}`, this.record.path, { cause: err });
        return;
      }
      // Its completion raises what is durable, and this timer comes back for the record.
      if (this.walPath !== null && this.commits > this.durableThrough) {
        this.syncInBackground((err) => {
          if (err !== null) this.recordFailure = err;
        });
      }
    }, wait);
    this.recordTimer.unref?.();
  }

  private writeRecord(): void {
    if (this.recordTimer !== null) clearTimeout(this.recordTimer);
    this.recordTimer = null;
    if (!sameState(this.durable, this.record.state)) this.record.write(this.durable);
    this.lastRecordMs = performance.now();
  }

  /**
   * Runs `fn` in one transaction: e.g. log.save() of a Ready plus kv.apply() of its committed
   * entries, so they become durable together with one fsync. Nested calls are savepoints.
   * With `sync: false` the commit skips the fsync (WAL with synchronous=NORMAL): it stays atomic
   * and ordered, and the next synced commit makes it durable too. Only for writes that can be
   * rebuilt from the durable log, such as applying committed entries (etcd's MustSync rule).
   */
  transaction<T>(fn: () => T, opts: { sync: boolean } = { sync: true }): T {
    if (this.recordFailure !== null) throw this.recordFailure;
    if (!this.tx.active && opts.sync !== this.synced) {
      this.db.run(opts.sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
      this.synced = opts.sync;
    }
    return this.tx.run(fn);
  }

  /**
   * Makes every commit so far durable without blocking this thread: an fdatasync of the
   * write-ahead log on a pool thread, then `done` on this one (with the error if it failed: the
   * node must stop, the kernel may have dropped the pages). For commits made with `sync: false`,
   * which write the same WAL frames as a synced one and skip only this call (synchronous=FULL
   * makes exactly this fdatasync at each commit; NORMAL still syncs the WAL before a checkpoint
   * copies it into the file). The state record follows once it is done, to what it covered.
   */
  syncInBackground(done: (err: StorageError | null) => void): void {
    const through = this.commits;
    const state = this.log.durableState();
    fdatasync(this.wal(), (err) => {
      if (err === null && !this.closed) this.becameDurable(through, state);
      done(err === null ? null : new StorageError(`cannot fsync ${this.walPath}: ${err.message}`, this.walPath!, { cause: err }));
    });
  }

  private wal(): number {
    if (this.walFd !== null) return this.walFd;
    const path = this.walPath;
    if (path === null) throw new Error(`${this.file} is in memory: it has no write-ahead log to fsync`);
    try {
      // Exists: this follows a commit, and the WAL lives until close. The directory entry of a
      // new WAL is made durable here once, as SQLite does at its first sync of a new WAL.
      this.walFd = openSync(path, "r+");
      syncPath(this.dir);
    } catch (err) {
      throw new StorageError(`cannot open ${path}: ${(err as Error).message}`, path, { cause: err });
    }
    return this.walFd;
  }

  /** Checkpoints the WAL into the file (a clean shutdown leaves one self-contained file), then closes. */
  close(): void {
    this.closed = true;
    try {
      this.db.run("PRAGMA wal_checkpoint(TRUNCATE)");
      // A checkpoint syncs the WAL first and the file after (FULL and NORMAL alike): everything committed is durable now.
      this.durable = this.log.durableState();
      this.writeRecord();
    } finally {
      // Even if the checkpoint fails (disk full), the WAL keeps every commit: closing is safe.
      if (this.recordTimer !== null) clearTimeout(this.recordTimer);
      // A background fdatasync still queued may then find this descriptor closed (EBADF) or
      // reused by another file: harmless, the checkpoint above synced every commit, and once
      // closed its callback raises nothing here (the node, stopped first, ignores its error).
      if (this.walFd !== null) closeSync(this.walFd);
      this.db.close();
      this.record.close();
      this.lock.release();
    }
  }
}

export function openDataDir(dir: string, options: DataDirOptions): DataDir {
  const file = join(dir, DB_FILE);
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.R_OK | constants.W_OK);
  } catch (err) {
    throw fsError(err, dir, "data directory");
  }
  const held = lock(dir);
  try {
    return openLocked(dir, file, options, held);
  } catch (err) {
    held.release();
    throw err;
  }
}

function openLocked(dir: string, file: string, options: DataDirOptions, held: HeldLock): DataDir {
  const recordPath = join(dir, STATE_FILE);
  let content = existsSync(recordPath) ? validRecord(recordPath) : null;
  if (!existsSync(file)) {
    if (content !== null && !sameState(content, EMPTY_STATE)) {
      throw rolledBack(dir, `${file} is missing, but ${recordPath} records that this node had reached ${describe(content)}`);
    }
    if (existsSync(`${file}-wal`)) {
      throw new CorruptDataError(`${file} is missing but its write-ahead log ${file}-wal exists`, file);
    }
    // Record first: a crash before the database exists leaves an empty record, which is no loss.
    if (content === null) StateRecord.create(recordPath, EMPTY_STATE).close();
    content = validRecord(recordPath);
    createFile(dir, file, options, content.id);
  }
  try {
    accessSync(file, constants.R_OK | constants.W_OK);
  } catch (err) {
    throw fsError(err, file, "data file");
  }
  checkHeader(file);
  // Compare with the record on a read-only connection, which never checkpoints or truncates the
  // WAL: a refused data dir keeps phalanx.db and phalanx.db-wal byte for byte, for forensics.
  const found = readDurable(file);
  if (content === null) {
    if (found.recordId !== null) {
      throw rolledBack(dir, `${recordPath} is missing (deleted?), so this node cannot tell whether ${file} lost writes it had acknowledged`);
    }
    // A data dir from before the state record: start the record from what the database holds.
    StateRecord.create(recordPath, found.state).close();
    content = validRecord(recordPath);
  } else {
    if (found.recordId !== null && found.recordId !== content.id) {
      throw rolledBack(dir, `${recordPath} belongs to another database than ${file} (was the file replaced or restored from a backup?)`);
    }
    const back = wentBack(found.state, content);
    if (back.length > 0) {
      throw rolledBack(dir, `${file} went back in time: it holds ${describe(found.state)}, but ${recordPath} records ${describe(content)} as durable (${back.join(", ")})`);
    }
  }
  // A leader fsyncs its own log writes in the background (DataDir.syncInBackground): a process
  // killed before one finished may have left WAL frames in the page cache only. Durable first,
  // before the node takes any of it for its log (raft/log.ts counts what it opens as durable).
  if (existsSync(`${file}-wal`)) syncPath(`${file}-wal`);
  let db: Database;
  try {
    db = new Database(file, { readwrite: true, create: false, strict: true });
  } catch (err) {
    throw opened(err, file);
  }
  let record: StateRecord | null = null;
  try {
    // Exclusive locking, set before the first access (the format and integrity checks below are
    // accesses too; set after them, SQLite had already mapped phalanx.db-shm for the WAL index):
    // the WAL index lives in this process's memory instead, and no statement takes or drops a
    // file lock. With normal locking every read transaction (each autocommit SELECT) locks and
    // unlocks a slot of the -shm file with fcntl, and every write transaction more: a point read
    // cost 3-4 µs of CPU against 1 (bench/sqlite_locking.ts; half of it system time), a stale GET
    // on a node about 5 µs less in all (BENCHMARKS.md). Nothing else may open the file while the node
    // runs (the data dir's lock says so already): the snapshot copy uses this connection
    // (snapshot.ts), and `sqlite3 phalanx.db` on a live node answers "database is locked".
    db.run("PRAGMA locking_mode = EXCLUSIVE");
    // The header was read from the file alone; the write-ahead log may hold a newer first page.
    checkFormat(file, db.query("PRAGMA application_id").values()[0]?.[0], db.query("PRAGMA user_version").values()[0]?.[0]);
    if (options.integrityCheck ?? true) {
      const rows = db.query("PRAGMA quick_check").values() as Array<[string]>;
      if (rows.length !== 1 || rows[0]![0] !== "ok") {
        const detail = rows.slice(0, 5).map((r) => r[0]).join("; ");
        throw new CorruptDataError(`${file} failed its integrity check: ${detail}`, file);
      }
    }
    const mode = db.query("PRAGMA journal_mode = WAL").values()[0]?.[0];
    if (mode !== "wal") throw new StorageError(`${file}: cannot switch to WAL mode (got ${String(mode)})`, file);
    db.run("PRAGMA synchronous = FULL");
    // The WAL is copied back into the file once it holds 10,000 pages (about 40 MB) instead of
    // SQLite's 1,000. A busy node rewrites the same kv pages over and over, so a larger WAL holds
    // many copies of few pages and each checkpoint writes each page once; checkpoints also run
    // inside the commit that crosses the mark, on the node's only thread. Readies of 16 puts:
    // CPU 37.2 -> 32.8 µs per entry, a Ready's wall time mean 0.83 -> 0.70 ms, p99 6.0 -> 2.3
    // ms, max 24 -> 14 ms (bench/sqlite_checkpoint.ts). The cost: up to about 40 MB more disk per
    // node for the WAL, which keeps its size once grown (docs/operations.md).
    db.run(`PRAGMA wal_autocheckpoint = ${WAL_CHECKPOINT_PAGES}`);
    // After the integrity check: a damaged file is refused as it is, never migrated.
    const migrated = migrateSchema(db);
    if (found.recordId === null) {
      // Into the main file at once, not only the WAL: losing the WAL must not lose the link.
      writeStateRecordId(db, content.id);
      db.run("PRAGMA wal_checkpoint(FULL)");
    }
    record = StateRecord.open(recordPath, content);
    const dd = new DataDir(dir, file, db, held, record, `${file}-wal`);
    dd.migrated = migrated;
    return dd;
  } catch (err) {
    record?.close();
    db.close();
    throw opened(err, file);
  }
}

const EMPTY_STATE: DurableState = { term: 0, vote: null, commit: 0, last: 0 };

function sameState(a: DurableState, b: DurableState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit && a.last === b.last;
}

function describe(s: DurableState): string {
  return `term ${s.term}, vote ${s.vote ?? "none"}, commit index ${s.commit}, last log index ${s.last}`;
}

function validRecord(path: string): RecordContent {
  let read;
  try {
    read = readStateRecord(path);
  } catch (err) {
    throw fsError(err, path, "state record");
  }
  if (read.kind === "damaged") {
    throw new CorruptDataError(`${path} is damaged: ${read.detail}. ${WAY_OUT}`, path);
  }
  return read.record;
}

const WAY_OUT =
  "The way out: move the whole data directory away (keep it for forensics) and start the node with an empty one, so it rejoins as a new, empty member and copies the data from the others; a single-node cluster has no other copy, restore it from a backup";

function rolledBack(dir: string, what: string): RolledBackError {
  return new RolledBackError(
    `refusing to start from data directory ${dir}: ${what}. Its write-ahead log (phalanx.db-wal) was probably deleted or damaged after a crash; serving from it could lose acknowledged writes or vote twice in a term. Nothing was changed. ${WAY_OUT}`,
    dir,
  );
}

/** The database's durable Raft state and record id, read on a read-only connection. */
function readDurable(file: string): { state: DurableState; recordId: string | null } {
  let db: Database;
  try {
    // Without a WAL even a read-only connection would create an empty one: open the file as
    // immutable then (nothing else writes it, we hold the lock), so a refusal changes nothing.
    db = existsSync(`${file}-wal`)
      ? new Database(file, { readonly: true, strict: true })
      : new Database(`file:${file.split("/").map(encodeURIComponent).join("/")}?immutable=1`, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
  } catch (err) {
    throw opened(err, file);
  }
  try {
    checkFormat(file, db.query("PRAGMA application_id").values()[0]?.[0], db.query("PRAGMA user_version").values()[0]?.[0]);
    const hs = db.query("SELECT term, vote, commit_index FROM raft_hard_state WHERE id = 1").values()[0] as [number, string | null, number] | undefined;
    const base = db.query("SELECT idx FROM raft_log_base WHERE id = 1").values()[0] as [number] | undefined;
    const max = db.query("SELECT max(idx) FROM raft_log").values()[0] as [number | null];
    if (hs === undefined || base === undefined) throw new CorruptDataError(`${file}: a Raft state row is missing`, file);
    return { state: { term: hs[0], vote: hs[1], commit: hs[2], last: max[0] ?? base[0] }, recordId: readStateRecordId(db) };
  } catch (err) {
    throw opened(err, file);
  } finally {
    db.close();
  }
}

/**
 * Takes the data dir's kernel lock, held until close() or the death of this process. A LOCK file
 * left by a dead process (kill -9, a zombie not yet reaped, a pid since reused by an unrelated
 * process) holds no lock, so it never blocks; a live holder always does, in any PID namespace.
 */
function lock(dir: string): HeldLock {
  const path = join(dir, LOCK_FILE);
  let result;
  try {
    result = tryLockFile(path, String(process.pid));
  } catch (err) {
    const mapped = fsError(err, path, "lock file");
    if (mapped !== err) throw mapped;
    throw new StorageError(`cannot lock ${path}: ${(err as Error).message}`, path, { cause: err });
  }
  if (!result.ok) {
    const who = /^\d+$/.test(result.holder) ? `process ${result.holder}` : "another process";
    throw new DataDirInUseError(
      `data directory ${dir} is in use by ${who} (${path} is locked; the pid is as the holder saw it, possibly in another container): two nodes must never share a data directory`,
      path,
    );
  }
  return result.lock;
}

/** The 100-byte SQLite header tells our file from a foreign or truncated one without writing to it. */
function checkHeader(file: string): void {
  const size = statSync(file).size;
  const header = Buffer.alloc(100);
  const fd = openSync(file, "r");
  try {
    readSync(fd, header, 0, 100, 0);
  } finally {
    closeSync(fd);
  }
  const magic = header.toString("latin1", 0, 16);
  if (magic !== SQLITE_MAGIC) {
    if (size === 0) throw new CorruptDataError(`${file} is empty (truncated): refusing to initialise over it. ${WAY_OUT}`, file);
    throw new FormatError(`${file} is not a SQLite database, so not a phalanx data file`, file);
  }
  checkFormat(file, header.readUInt32BE(68), header.readUInt32BE(60));
  const pageSize = header.readUInt16BE(16) === 1 ? 65536 : header.readUInt16BE(16);
  const pages = header.readUInt32BE(28);
  if (size < pageSize * pages) {
    throw new CorruptDataError(`${file} is truncated: ${size} bytes, its header says ${pages} pages of ${pageSize}. ${WAY_OUT}`, file);
  }
}

function checkFormat(file: string, appId: unknown, version: unknown): void {
  // The header stores application_id unsigned; PRAGMA reports it as a signed 32-bit integer.
  if (typeof appId !== "number" || appId >>> 0 !== APPLICATION_ID) {
    throw new FormatError(`${file} is a SQLite database of another application (application_id ${String(appId)})`, file);
  }
  if (typeof version !== "number" || !READABLE_VERSIONS.includes(version)) {
    throw new FormatError(`${file} has format version ${String(version)}; this build reads versions ${READABLE_VERSIONS.join(", ")} (and writes ${FORMAT_VERSION})`, file);
  }
}

/** Builds the file under a temporary name and renames it: phalanx.db exists only complete. */
function createFile(dir: string, file: string, options: DataDirOptions, recordId: string): void {
  const tmp = `${file}.init`;
  // A leftover .init is an initialisation that crashed before its rename: it never held data.
  for (const suffix of ["", "-journal", "-wal", "-shm"]) rmSync(tmp + suffix, { force: true });
  try {
    const db = new Database(tmp, { create: true, readwrite: true, strict: true });
    try {
      // No fsync and the journal in memory while the file is built: until the rename it is only
      // a temporary file (a crash leaves an .init, removed above), and syncPath() below makes it
      // durable, whole, before the rename. Synced, each of its statements cost four fsyncs: 24
      // in all, some tens of ms of a new node's start (BENCHMARKS.md, "Cluster start-up"). Not journal_mode
      // OFF: a failed statement must still roll back, as it would in a real file.
      db.run("PRAGMA synchronous = OFF");
      db.run("PRAGMA journal_mode = MEMORY");
      // Not yet WAL while the header is written, so application_id lands in the file itself.
      db.transaction(() => {
        initSchema(db, options.bootstrap, options.addresses ?? {});
        writeStateRecordId(db, recordId);
      })();
      db.query("PRAGMA journal_mode = WAL").values();
    } finally {
      db.close();
    }
    syncPath(tmp);
    renameSync(tmp, file);
    syncPath(dir);
  } catch (err) {
    throw opened(err, file);
  }
}

/** fsync of a file or a directory (after a rename, the directory entry must be durable too). */
export function syncPath(path: string): void {
  const fd = openSync(path, "r");
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

function fsError(err: unknown, path: string, what: string): unknown {
  const code = (err as { code?: string }).code;
  if (code === "EACCES" || code === "EROFS" || code === "EPERM") {
    return new ReadOnlyError(`${what} ${path} is not writable (${code}): phalanx needs to write there`, path, { cause: err });
  }
  return err;
}

function opened(err: unknown, file: string): unknown {
  const mapped = translateSqliteError(fsError(err, file, "data file"), file);
  if (mapped instanceof StorageError || !(err instanceof Error)) return mapped;
  return new StorageError(`${file}: ${err.message}`, file, { cause: err });
}
