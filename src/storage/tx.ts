// Transactions over the node's one SQLite connection, nestable (outermost = BEGIN IMMEDIATE,
// inner = SAVEPOINT), with undo hooks so in-memory caches roll back together with the rows.
// Caches are updated eagerly (reads inside the transaction must see its own writes) and each
// change registers how to undo itself if the transaction fails.
import type { Database } from "bun:sqlite";
import { translateSqliteError } from "./errors.ts";

export class Transactor {
  /** Undo hooks per open level, innermost last. */
  private readonly levels: Array<Array<() => void>> = [];
  /** Registered by beforeCommit() for the open outermost transaction; a Set, so registering twice runs once. */
  private readonly commitHooks = new Set<() => void>();

  /** Runs right after each outermost COMMIT (the storage's own bookkeeping, see data_dir.ts). */
  afterCommit: (() => void) | null = null;

  constructor(
    private readonly db: Database,
    private readonly file: string,
  ) {}

  get active(): boolean {
    return this.levels.length > 0;
  }

  /** Runs `fn` atomically: its rows and the caches it changed all persist, or none do. */
  run<T>(fn: () => T): T {
    const depth = this.levels.length;
    const savepoint = `phalanx_sp${depth}`;
    try {
      this.exec(depth === 0 ? "BEGIN IMMEDIATE" : `SAVEPOINT ${savepoint}`);
    } catch (err) {
      throw translateSqliteError(err, this.file);
    }
    this.levels.push([]);
    let result: T;
    try {
      result = fn();
      // SQLite rolls the whole transaction back by itself on some errors (SQLITE_FULL); if `fn`
      // caught such an error and went on, its later writes were autocommitted: refuse loudly.
      // Checked before the commit hooks, whose writes must never autocommit on their own.
      if (!this.db.inTransaction) throw new Error("transaction was rolled back by SQLite while still in use");
      if (depth === 0) this.runCommitHooks();
      this.exec(depth === 0 ? "COMMIT" : `RELEASE ${savepoint}`);
      const undo = this.levels.pop()!;
      if (depth > 0) this.levels[depth - 1]!.push(...undo);
    } catch (err) {
      if (depth === 0) this.commitHooks.clear();
      const undo = this.levels.pop()!;
      for (let i = undo.length - 1; i >= 0; i--) undo[i]!();
      if (this.db.inTransaction) {
        this.exec(depth === 0 ? "ROLLBACK" : `ROLLBACK TO ${savepoint}`);
        if (depth > 0) this.exec(`RELEASE ${savepoint}`);
      }
      throw translateSqliteError(err, this.file);
    }
    // Outside the try: the transaction has committed, nothing of it may be undone any more.
    if (depth === 0) this.afterCommit?.();
    return result;
  }

  private exec(sql: string): void {
    // db.query() keeps the statement for the next call, and close() finalizes it (a prepared
    // statement left unfinalized would keep the closed connection, and its exclusive lock, alive).
    this.db.query(sql).run();
  }

  /**
   * Runs `hook` once just before the outermost transaction commits, inside it (a throw rolls the
   * whole transaction back), however often it was registered. For a row written from an in-memory
   * cache (the kv_state row): the hook must write the cache as it is then, so a rolled-back
   * savepoint's change, already undone in the cache, is not written.
   */
  beforeCommit(hook: () => void): void {
    if (!this.active) throw new Error("beforeCommit outside a transaction");
    this.commitHooks.add(hook);
  }

  private runCommitHooks(): void {
    // A hook registered by a hook runs too (Set iteration visits added members).
    for (const hook of this.commitHooks) hook();
    this.commitHooks.clear();
  }

  /** Registers how to restore a cache if the enclosing transaction rolls back. */
  onRollback(undo: () => void): void {
    const level = this.levels[this.levels.length - 1];
    if (level === undefined) throw new Error("onRollback outside a transaction");
    level.push(undo);
  }
}
