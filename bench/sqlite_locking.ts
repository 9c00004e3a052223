// SQLite's locking mode and the cost of a point read (not a test): `bun bench/sqlite_locking.ts`.
// A WAL database of 1,000 rows shaped like the kv table, read by primary key 200,000 times per
// round with `locking_mode` NORMAL (every read transaction locks and unlocks a slot of the -shm
// file with fcntl) and EXCLUSIVE (the WAL index in the process's memory, no file locks: what
// data_dir.ts opens the data file with). Rounds alternate the two modes; prints user and system
// CPU µs per read, from process.cpuUsage. Bounded: 3 rounds; the temporary files are removed.
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROWS = 1_000;
const READS = 200_000;
const root = mkdtempSync(join(tmpdir(), "phalanx-locking-"));

function round(mode: "NORMAL" | "EXCLUSIVE", n: number): { user: number; system: number } {
  const db = new Database(join(root, `${mode}-${n}.db`), { create: true, strict: true });
  try {
    db.run(`PRAGMA locking_mode = ${mode}`);
    db.run("PRAGMA journal_mode = WAL");
    db.run("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL, create_revision INTEGER, mod_revision INTEGER, version INTEGER) STRICT, WITHOUT ROWID");
    const insert = db.query("INSERT INTO kv VALUES (?, ?, 1, 1, 1)");
    db.transaction(() => {
      for (let i = 0; i < ROWS; i++) insert.run(`key-${i}`, new Uint8Array(100));
    })();
    const get = db.query("SELECT key, value, create_revision, mod_revision, version FROM kv WHERE key = ?");
    const keys = Array.from({ length: ROWS }, (_, i) => `key-${(i * 7919) % ROWS}`);
    for (let i = 0; i < READS / 4; i++) get.values(keys[i % ROWS]!);
    const before = process.cpuUsage();
    for (let i = 0; i < READS; i++) get.values(keys[i % ROWS]!);
    const used = process.cpuUsage(before);
    return { user: used.user / READS, system: used.system / READS };
  } finally {
    db.close();
  }
}

try {
  console.log("| round | locking_mode | user µs/read | system µs/read | total |");
  console.log("|---|---|---|---|---|");
  for (let n = 1; n <= 3; n++) {
    for (const mode of ["NORMAL", "EXCLUSIVE"] as const) {
      const r = round(mode, n);
      console.log(`| ${n} | ${mode} | ${r.user.toFixed(2)} | ${r.system.toFixed(2)} | ${(r.user + r.system).toFixed(2)} |`);
    }
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
