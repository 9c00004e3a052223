// Snapshots of the key-value state as a SQLite database image. Measured on 1,000,000 keys
// (BENCHMARKS.md): copying the tables into an in-memory database and serializing it takes a
// quarter of a second in SQLite's C code, where encoding the same rows as msgpack in JS took
// about 1.5 s; restoring copies rows in pages, bounded in memory, inside one transaction.
// The copy runs on the node's own connection (the data file is opened with exclusive locking, so
// no second connection can read it: data_dir.ts says why), in one transaction of its own outside
// any other, so it sees exactly the last committed state: a consistent cut at one applied index.
import { Database, SQLiteError } from "bun:sqlite";
import type { ConfState } from "../raft/types.ts";
import { CorruptDataError } from "../storage/errors.ts";
import { APPLICATION_ID, FORMAT_VERSION, READABLE_VERSIONS } from "../storage/schema.ts";
import { HISTORY_DDL } from "./history.ts";
import { LEASE_DDL } from "./lease.ts";

export interface KvSnapshot {
  /** The applied index the copy was taken at. */
  index: number;
  /** The configuration at `index`, from the members table (ids sorted). */
  conf: ConfState;
  data: Uint8Array;
}

const COPY_PAGE = 4096;
/** Tables copied, with the column lists they are copied by. kv first: the big one. */
const TABLES = {
  kv: "key, value, create_revision, mod_revision, version",
  kv_sessions: "client, seq, result, last_active",
  members: "id, address, role, region",
  kv_state: "applied_index, revision, log_time",
  // Watch history and leases (history.ts, lease.ts): replicated state like the rest.
  kv_events: "revision, sub, type, key, value, create_revision, version, lease",
  kv_history: "id, floor",
  kv_leases: "id, ttl_ms, granted_at",
  kv_lease_keys: "key, lease",
} as const;
const ORDER: Record<keyof typeof TABLES, string> = {
  kv: "key",
  kv_sessions: "client",
  members: "id",
  kv_state: "id",
  kv_events: "revision, sub",
  kv_history: "id",
  kv_leases: "id",
  kv_lease_keys: "key",
};
/** An image of format 1 has members without a region: restored as "not recorded" (''). */
const MEMBERS_V1 = "id, address, role";
/** Tables an image taken by an older phalanx lacks; see restoreImage. */
const OPTIONAL_TABLES = ["kv_events", "kv_history", "kv_leases", "kv_lease_keys"] as const;

export function takeImage(db: Database): KvSnapshot {
  // Inside a transaction the copy would hold its uncommitted writes (and ATTACH is refused there).
  if (db.inTransaction) throw new Error("takeImage must run outside a transaction: it copies the last committed state");
  const file = db.filename;
  // One-off statements, finalized at once: a statement left open on the image would keep DETACH from succeeding.
  const once = <T>(sql: string): T[] => {
    const st = db.prepare(sql);
    try {
      return st.values() as T[];
    } finally {
      st.finalize();
    }
  };
  db.run("ATTACH ':memory:' AS image");
  try {
    db.run("BEGIN");
    try {
      for (const [table, cols] of Object.entries(TABLES)) {
        const order = ORDER[table as keyof typeof TABLES];
        // Ordered so the image's rowid order is the main table's key order: restoring inserts in order.
        db.run(`CREATE TABLE image.${table} AS SELECT ${cols} FROM main.${table} ORDER BY ${order}`);
      }
      db.run("COMMIT");
    } finally {
      if (db.inTransaction) db.run("ROLLBACK");
    }
    db.run(`PRAGMA image.application_id = ${APPLICATION_ID}`);
    db.run(`PRAGMA image.user_version = ${FORMAT_VERSION}`);
    const state = once<[number]>("SELECT applied_index FROM image.kv_state")[0];
    if (state === undefined) throw new CorruptDataError(`${file}: the kv_state row is missing`, file);
    const members = once<[string, string]>("SELECT id, role FROM image.members ORDER BY id");
    const conf: ConfState = {
      voters: members.filter((m) => m[1] === "voter").map((m) => m[0]),
      learners: members.filter((m) => m[1] === "learner").map((m) => m[0]),
    };
    return { index: state[0], conf, data: db.serialize("image") };
  } finally {
    db.run("DETACH image");
  }
}

/**
 * Replaces the kv, session and member rows of `db` with the image's, in the caller's transaction.
 * The image must be one of ours taken at `index`; anything else is refused before any change.
 */
export function restoreImage(
  db: Database,
  data: Uint8Array,
  index: number,
  label: string,
): { revision: number; logTime: number } {
  if (!db.inTransaction) throw new Error("restoreImage must run inside a transaction");
  const corrupt = (detail: string, cause?: unknown) => new CorruptDataError(`${label}: ${detail}`, label, { cause });
  let image: Database;
  try {
    image = Database.deserialize(data, true);
  } catch (err) {
    throw corrupt("not a snapshot image", err);
  }
  try {
    const pragma = (name: string) => (image.query(`PRAGMA ${name}`).values()[0] as [unknown] | undefined)?.[0];
    let appId: unknown;
    try {
      appId = pragma("application_id");
    } catch (err) {
      throw corrupt("not a snapshot image", err);
    }
    const version = pragma("user_version");
    if (appId !== APPLICATION_ID || typeof version !== "number" || !READABLE_VERSIONS.includes(version)) {
      throw corrupt(`not a phalanx snapshot of format ${READABLE_VERSIONS.join(" or ")} (application_id ${String(appId)}, format ${String(version)})`);
    }
    if (pragma("quick_check") !== "ok") throw corrupt("the snapshot image fails its integrity check");
    const state = image.query(`SELECT ${TABLES.kv_state} FROM kv_state`).values() as Array<[number, number, number]>;
    if (state.length !== 1 || state[0]![0] !== index) {
      throw corrupt(`the image holds state at index ${String(state[0]?.[0])}, expected ${index}`);
    }
    const [, revision, logTime] = state[0]!;
    // The target may be a file no KvStore has opened yet (created by an older phalanx).
    db.run(HISTORY_DDL);
    db.run(LEASE_DDL);
    const present = new Set((image.query("SELECT name FROM sqlite_master WHERE type = 'table'").values() as Array<[string]>).map((r) => r[0]));
    for (const table of ["kv", "kv_sessions", "members", ...OPTIONAL_TABLES] as const) {
      db.run(`DELETE FROM ${table}`);
      if (!present.has(table)) {
        // An image from before watch history and leases: no leases, and a history that starts at
        // the image's revision (a watch from earlier gets "compacted", never a silent gap).
        if (table === "kv_history") db.run("INSERT INTO kv_history (id, floor) VALUES (1, ?)", [revision]);
        continue;
      }
      const cols = table === "members" && version === 1 ? MEMBERS_V1 : TABLES[table];
      const insert = db.query(`INSERT INTO ${table} (${cols}) VALUES (${cols.replace(/[a-z_]+/g, "?")})`);
      const page = image.query(`SELECT rowid, ${cols} FROM ${table} WHERE rowid > ? ORDER BY rowid LIMIT ${COPY_PAGE}`);
      let after = 0;
      // Each page advances `after` strictly, and the image is finite, so this ends.
      for (;;) {
        const rows = page.values(after) as unknown[][];
        if (rows.length === 0) break;
        for (const row of rows) insert.run(...(row.slice(1) as never[]));
        after = rows[rows.length - 1]![0] as number;
      }
    }
    return { revision, logTime };
  } catch (err) {
    // A row our schema rejects can only come from a damaged image; other failures (disk full) pass.
    if (err instanceof SQLiteError && (err.code ?? "").startsWith("SQLITE_CONSTRAINT")) {
      throw corrupt(`cannot restore: ${err.message}`, err);
    }
    throw err;
  } finally {
    image.close();
  }
}
