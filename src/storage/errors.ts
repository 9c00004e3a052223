// Typed storage failures. Each names the file it concerns, because the operator's next step
// (restore a backup, free space, fix permissions) depends on which file it is.
import { SQLiteError } from "bun:sqlite";

export class StorageError extends Error {
  constructor(
    message: string,
    readonly file: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The file is damaged or truncated, or holds data that cannot have been written by us. */
export class CorruptDataError extends StorageError {}

/** The file is not a phalanx data file, or is of a format version this build does not read. */
export class FormatError extends StorageError {}

/** The data directory or file cannot be written. */
export class ReadOnlyError extends StorageError {}

/** Another running process has the data directory open. */
export class DataDirInUseError extends StorageError {}

/**
 * The database holds less than this node had made durable before (its write-ahead log was lost or
 * damaged, or the file was replaced): serving from it could lose acknowledged writes or vote twice.
 */
export class RolledBackError extends StorageError {}

/** The disk (or the configured size limit) is full: the write was rolled back, reads still work. */
export class DiskFullError extends StorageError {}

/** Maps a SQLite failure to the typed error an operator can act on; others pass through. */
export function translateSqliteError(err: unknown, file: string): unknown {
  if (err instanceof StorageError || !(err instanceof SQLiteError)) return err;
  const code = err.code ?? "";
  if (code === "SQLITE_FULL") {
    return new DiskFullError(`${file}: disk full, write rejected (${err.message})`, file, { cause: err });
  }
  if (code.startsWith("SQLITE_READONLY") || code === "SQLITE_PERM") {
    return new ReadOnlyError(`${file}: cannot write (${err.message})`, file, { cause: err });
  }
  if (code.startsWith("SQLITE_CORRUPT") || code === "SQLITE_NOTADB") {
    return new CorruptDataError(`${file}: corrupt database (${err.message})`, file, { cause: err });
  }
  return err;
}
