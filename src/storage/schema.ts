// The on-disk format of phalanx.db. Every table of the node (Raft log and state, key-value state
// machine) lives in this one file so that one Ready's log writes and the applying of its
// committed entries share one transaction and one fsync; the format version therefore covers
// all of them, and is defined here in one place.
import type { Database } from "bun:sqlite";
import type { ConfState, NodeId } from "../raft/types.ts";

/** "PHLX": tells our files from any other SQLite database. */
export const APPLICATION_ID = 0x50484c58;
export const FORMAT_VERSION = 1;

export const ENTRY_TYPE_CODES = { normal: 0, noop: 1, conf: 2 } as const;

const DDL = `
CREATE TABLE raft_log (
  idx INTEGER PRIMARY KEY, term INTEGER NOT NULL, type INTEGER NOT NULL CHECK (type IN (0, 1, 2)),
  data BLOB NOT NULL
) STRICT;
CREATE INDEX raft_log_conf ON raft_log (idx) WHERE type = 2;
CREATE TABLE raft_hard_state (
  id INTEGER PRIMARY KEY CHECK (id = 1), term INTEGER NOT NULL, vote TEXT, commit_index INTEGER NOT NULL
) STRICT;
-- The entry just before the first row of raft_log (compaction may keep it below the snapshot).
CREATE TABLE raft_log_base (
  id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL
) STRICT;
CREATE TABLE raft_snapshot (
  id INTEGER PRIMARY KEY CHECK (id = 1), idx INTEGER NOT NULL, term INTEGER NOT NULL,
  conf TEXT NOT NULL, data BLOB NOT NULL
) STRICT;
CREATE TABLE kv (
  key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
  mod_revision INTEGER NOT NULL, version INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE TABLE kv_state (
  id INTEGER PRIMARY KEY CHECK (id = 1), applied_index INTEGER NOT NULL, revision INTEGER NOT NULL,
  log_time INTEGER NOT NULL
) STRICT;
CREATE TABLE kv_sessions (
  client INTEGER PRIMARY KEY, seq INTEGER NOT NULL, result BLOB NOT NULL, last_active INTEGER NOT NULL
) STRICT;
CREATE INDEX kv_sessions_last_active ON kv_sessions (last_active);
CREATE TABLE members (
  id TEXT PRIMARY KEY, address TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('voter', 'learner'))
) STRICT;
`;

/** Creates every table and the bootstrap rows: the state of `new MemoryStorage(conf)` plus an empty store. */
export function initSchema(db: Database, conf: ConfState, addresses: Record<NodeId, string>): void {
  db.run(`PRAGMA application_id = ${APPLICATION_ID}`);
  db.run(`PRAGMA user_version = ${FORMAT_VERSION}`);
  db.transaction(() => {
    db.run(DDL);
    db.run("INSERT INTO raft_hard_state VALUES (1, 0, NULL, 0)");
    db.run("INSERT INTO raft_log_base VALUES (1, 0, 0)");
    db.run("INSERT INTO raft_snapshot VALUES (1, 0, 0, ?, x'')", [JSON.stringify(conf)]);
    db.run("INSERT INTO kv_state VALUES (1, 0, 0, 0)");
    const member = db.prepare("INSERT INTO members VALUES (?, ?, ?)");
    for (const id of conf.voters) member.run(id, addresses[id] ?? "", "voter");
    for (const id of conf.learners) member.run(id, addresses[id] ?? "", "learner");
  })();
}

/**
 * The id of the node's state record (state_record.ts), kept inside the database so each knows the
 * other: a record without its database, or a database without its record, is a lost log. Added
 * without a format bump (older builds ignore the table); data dirs from before it get it on open.
 */
export const META_DDL = "CREATE TABLE IF NOT EXISTS phalanx_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT";
export const STATE_RECORD_KEY = "state_record_id";

export function writeStateRecordId(db: Database, id: string): void {
  db.run(META_DDL);
  db.run("INSERT OR REPLACE INTO phalanx_meta VALUES (?, ?)", [STATE_RECORD_KEY, id]);
}

/** The recorded id, or null in a database from before the state record. */
export function readStateRecordId(db: Database): string | null {
  const table = db.query("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'phalanx_meta'").values();
  if (table.length === 0) return null;
  const row = db.query("SELECT value FROM phalanx_meta WHERE key = ?").values(STATE_RECORD_KEY)[0];
  return typeof row?.[0] === "string" ? row[0] : null;
}
