// Opening a node's data directory: one SQLite file, DATA_DIR/phalanx.db, holding the Raft log and
// the key-value state so one transaction (one fsync) can cover a whole Ready: the log writes and
// the applying of its committed entries (see schema.ts). Opening never repairs, resets or
// overwrites anything it does not recognise: it refuses with a typed error naming the file.
import { Database } from "bun:sqlite";
import {
  accessSync,
  closeSync,
  constants,
  existsSync,
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
import { CorruptDataError, DataDirInUseError, FormatError, ReadOnlyError, StorageError, translateSqliteError } from "./errors.ts";
import { tryLockFile, type HeldLock } from "./file_lock.ts";
import { SqliteLogStorage } from "./log_store.ts";
import { APPLICATION_ID, FORMAT_VERSION, initSchema } from "./schema.ts";
import { Transactor } from "./tx.ts";

export const DB_FILE = "phalanx.db";
/**
 * Locked (flock) by the process that has the data dir open, for its whole life: two nodes on one
 * log break Raft. It holds that process's pid, for the error message only.
 */
export const LOCK_FILE = "LOCK";
const SQLITE_MAGIC = "SQLite format 3\0";

export interface DataDirOptions {
  /** The configuration of a brand-new cluster; ignored when the data dir already exists. */
  bootstrap: ConfState;
  /** Addresses of the bootstrap members, recorded in the members table. */
  addresses?: Record<NodeId, string>;
  /** Run PRAGMA quick_check on open (default true): reads the whole file, see BENCHMARKS.md. */
  integrityCheck?: boolean;
}

export class DataDir {
  readonly log: SqliteLogStorage;
  readonly tx: Transactor;

  constructor(
    readonly dir: string,
    readonly file: string,
    readonly db: Database,
    private readonly lock: HeldLock,
  ) {
    this.tx = new Transactor(db, file);
    this.log = new SqliteLogStorage(db, this.tx, file);
  }

  private synced = true;

  /**
   * Runs `fn` in one transaction: e.g. log.save() of a Ready plus kv.apply() of its committed
   * entries, so they become durable together with one fsync. Nested calls are savepoints.
   * With `sync: false` the commit skips the fsync (WAL with synchronous=NORMAL): it stays atomic
   * and ordered, and the next synced commit makes it durable too. Only for writes that can be
   * rebuilt from the durable log, such as applying committed entries (etcd's MustSync rule).
   */
  transaction<T>(fn: () => T, opts: { sync: boolean } = { sync: true }): T {
    if (!this.tx.active && opts.sync !== this.synced) {
      this.db.run(opts.sync ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL");
      this.synced = opts.sync;
    }
    return this.tx.run(fn);
  }

  /** Checkpoints the WAL into the file (a clean shutdown leaves one self-contained file), then closes. */
  close(): void {
    try {
      this.db.run("PRAGMA wal_checkpoint(TRUNCATE)");
    } finally {
      // Even if the checkpoint fails (disk full), the WAL keeps every commit: closing is safe.
      this.db.close();
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
  if (!existsSync(file)) {
    if (existsSync(`${file}-wal`)) {
      throw new CorruptDataError(`${file} is missing but its write-ahead log ${file}-wal exists`, file);
    }
    createFile(dir, file, options);
  }
  try {
    accessSync(file, constants.R_OK | constants.W_OK);
  } catch (err) {
    throw fsError(err, file, "data file");
  }
  checkHeader(file);
  let db: Database;
  try {
    db = new Database(file, { readwrite: true, create: false, strict: true });
  } catch (err) {
    throw opened(err, file);
  }
  try {
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
    return new DataDir(dir, file, db, held);
  } catch (err) {
    db.close();
    throw opened(err, file);
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
    if (size === 0) throw new CorruptDataError(`${file} is empty (truncated): refusing to initialise over it`, file);
    throw new FormatError(`${file} is not a SQLite database, so not a phalanx data file`, file);
  }
  checkFormat(file, header.readUInt32BE(68), header.readUInt32BE(60));
  const pageSize = header.readUInt16BE(16) === 1 ? 65536 : header.readUInt16BE(16);
  const pages = header.readUInt32BE(28);
  if (size < pageSize * pages) {
    throw new CorruptDataError(`${file} is truncated: ${size} bytes, its header says ${pages} pages of ${pageSize}`, file);
  }
}

function checkFormat(file: string, appId: unknown, version: unknown): void {
  // The header stores application_id unsigned; PRAGMA reports it as a signed 32-bit integer.
  if (typeof appId !== "number" || appId >>> 0 !== APPLICATION_ID) {
    throw new FormatError(`${file} is a SQLite database of another application (application_id ${String(appId)})`, file);
  }
  if (version !== FORMAT_VERSION) {
    throw new FormatError(`${file} has format version ${String(version)}; this build reads version ${FORMAT_VERSION}`, file);
  }
}

/** Builds the file under a temporary name and renames it: phalanx.db exists only complete. */
function createFile(dir: string, file: string, options: DataDirOptions): void {
  const tmp = `${file}.init`;
  // A leftover .init is an initialisation that crashed before its rename: it never held data.
  for (const suffix of ["", "-journal", "-wal", "-shm"]) rmSync(tmp + suffix, { force: true });
  try {
    const db = new Database(tmp, { create: true, readwrite: true, strict: true });
    try {
      db.run("PRAGMA synchronous = FULL");
      // Rollback journal while the header is written, so application_id lands in the file itself.
      initSchema(db, options.bootstrap, options.addresses ?? {});
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

function syncPath(path: string): void {
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
