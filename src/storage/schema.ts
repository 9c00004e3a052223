// The on-disk format of phalanx.db. Every table of the node (Raft log and state, key-value state
// machine) lives in this one file so that one Ready's log writes and the applying of its
// committed entries share one transaction and one fsync; the format version therefore covers
// all of them, and is defined here in one place.
import type { Database } from "bun:sqlite";
import type { ConfState, NodeId } from "../raft/types.ts";

/** "PHLX": tells our files from any other SQLite database. */
export const APPLICATION_ID = 0x50484c58;
/**
 * 2: members.region (the one member model carries its region, src/kv/member.ts). A version-1 file
 * is migrated on open by migrateSchema(), explicitly and logged; a version-1 snapshot image is
 * restored with unknown regions (kv/snapshot.ts). Older builds refuse version 2 (they check it).
 */
export const FORMAT_VERSION = 2;
/** The versions this build opens: the current one, and those migrateSchema() upgrades. */
export const READABLE_VERSIONS: readonly number[] = [1, 2];

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
  id TEXT PRIMARY KEY, address TEXT NOT NULL, role TEXT NOT NULL CHECK (role IN ('voter', 'learner')),
  region TEXT NOT NULL DEFAULT ''
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
    // Regions unknown (""): each founder knows only its own, and a bootstrap row written from
    // local knowledge would differ between replicas. The leader records them through the log.
    const member = db.query("INSERT INTO members (id, address, role, region) VALUES (?, ?, ?, '')");
    for (const id of conf.voters) member.run(id, addresses[id] ?? "", "voter");
    for (const id of conf.learners) member.run(id, addresses[id] ?? "", "learner");
  })();
}

/**
 * Brings a readable older file to FORMAT_VERSION, in one transaction (all or nothing), and says
 * what it did so the caller logs it; null when the file was current. Only adds what the new
 * format has: no existing row or value is rewritten.
 */
export function migrateSchema(db: Database): { from: number; to: number } | null {
  const version = (db.query("PRAGMA user_version").values()[0] as [number])[0];
  if (version === FORMAT_VERSION) return null;
  if (version !== 1) throw new Error(`no migration from format version ${version}`);
  db.transaction(() => {
    // 1 → 2: members carry their region; rows from before are "not recorded yet".
    db.run("ALTER TABLE members ADD COLUMN region TEXT NOT NULL DEFAULT ''");
    db.run(`PRAGMA user_version = ${FORMAT_VERSION}`);
  })();
  return { from: version, to: FORMAT_VERSION };
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
