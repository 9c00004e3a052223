// Opening data dirs: bootstrap, and every way a file can be wrong. A refused file must be named
// in the error and left byte-for-byte as it was.
import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { KvStore } from "../../src/kv/store.ts";
import { openDataDir, WAL_CHECKPOINT_PAGES, type DataDir } from "../../src/storage/data_dir.ts";
import { CorruptDataError, DataDirInUseError, FormatError, ReadOnlyError, RolledBackError } from "../../src/storage/errors.ts";
import { FORMAT_VERSION } from "../../src/storage/schema.ts";
import { STATE_FILE, readStateRecord } from "../../src/storage/state_record.ts";
import type { Entry } from "../../src/raft/types.ts";
import { waitFor } from "../integration/harness.ts";
import { TempDirs } from "./temp_dir.ts";

const temp = new TempDirs();
const BOOT = { bootstrap: { voters: ["a", "b", "c"], learners: ["d"] } };
afterEach(() => temp.cleanup());

const hash = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

function entries(from: number, n: number, size: number): Entry[] {
  return Array.from({ length: n }, (_, i) => ({ index: from + i, term: 1, type: "normal" as const, data: new Uint8Array(size).fill(i & 255) }));
}

/** A closed data dir with a few hundred KB of log in it. */
function populated(): { dir: string; file: string } {
  const dir = temp.make();
  const dd = openDataDir(dir, BOOT);
  dd.log.save(null, entries(1, 200, 1000), { term: 1, vote: "a", commit: 100 });
  dd.close();
  return { dir, file: join(dir, "phalanx.db") };
}

function expectRefused(dir: string, file: string, type: Function, message: RegExp): void {
  const before = hash(file);
  let err: unknown;
  try {
    openDataDir(dir, BOOT).close();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(type);
  expect((err as Error).message).toContain(file);
  expect((err as Error).message).toMatch(message);
  expect(hash(file)).toBe(before);
}

describe("openDataDir", () => {
  test("a fresh dir is bootstrapped like new MemoryStorage(conf)", () => {
    const dir = join(temp.make(), "nested", "data");
    const dd = openDataDir(dir, BOOT);
    expect(dd.log.snapshotMeta()).toEqual({ index: 0, term: 0, conf: BOOT.bootstrap });
    expect(dd.log.snapshot().data).toEqual(new Uint8Array(0));
    expect(dd.log.hardState()).toEqual({ term: 0, vote: null, commit: 0 });
    expect([dd.log.firstIndex(), dd.log.lastIndex(), dd.log.term(0)]).toEqual([1, 0, 0]);
    dd.close();
    // Reopening ignores a different bootstrap: the data dir's own history wins.
    const again = openDataDir(dir, { bootstrap: { voters: ["z"], learners: [] } });
    expect(again.log.snapshotMeta().conf).toEqual(BOOT.bootstrap);
    again.close();
    expect(existsSync(join(dir, "phalanx.db.init"))).toBe(false);
  });

  test("a file with damaged pages fails the integrity check", () => {
    const { dir, file } = populated();
    const buf = readFileSync(file);
    // Scribble over the middle of the file: b-tree pages of the log.
    for (let i = 0; i < 4096; i++) buf[8192 + i] = (i * 131) & 255;
    writeFileSync(file, buf);
    expectRefused(dir, file, CorruptDataError, /integrity check|corrupt|malformed/);
  });

  test("a truncated file is refused", () => {
    const { dir, file } = populated();
    truncateSync(file, 3 * 4096);
    expectRefused(dir, file, CorruptDataError, /truncated/);
    truncateSync(file, 0);
    expectRefused(dir, file, CorruptDataError, /empty/);
  });

  test("a text file is not a data file", () => {
    const dir = temp.make();
    const file = join(dir, "phalanx.db");
    writeFileSync(file, "name = value\n".repeat(500));
    expectRefused(dir, file, FormatError, /not a SQLite database/);
  });

  test("another application's SQLite database is not a data file", () => {
    const dir = temp.make();
    const file = join(dir, "phalanx.db");
    const db = new Database(file, { create: true });
    db.run("CREATE TABLE notes (body TEXT)");
    db.run("INSERT INTO notes VALUES ('mine')");
    db.close();
    expectRefused(dir, file, FormatError, /another application/);
  });

  test("a data file from a newer format version is refused", () => {
    const { dir, file } = populated();
    const db = new Database(file);
    db.run(`PRAGMA user_version = ${FORMAT_VERSION + 1}`);
    db.close();
    expectRefused(dir, file, FormatError, new RegExp(`format version ${FORMAT_VERSION + 1}`));
  });

  test("a format-1 file (members without a region) is migrated on open, explicitly, keeping every row", () => {
    const { dir, file } = populated();
    // Format 1 exactly: the members table as it was, and its version.
    const db = new Database(file);
    db.run("ALTER TABLE members DROP COLUMN region");
    db.run("UPDATE members SET address = 'host-' || id || ':9000'");
    db.run("PRAGMA user_version = 1");
    db.close();
    const dd = openDataDir(dir, BOOT);
    try {
      expect(dd.migrated).toEqual({ from: 1, to: FORMAT_VERSION });
      expect(dd.db.query("PRAGMA user_version").values()[0]![0]).toBe(FORMAT_VERSION);
      expect(dd.db.query("SELECT id, address, role, region FROM members ORDER BY id").values()).toEqual([
        ["a", "host-a:9000", "voter", ""],
        ["b", "host-b:9000", "voter", ""],
        ["c", "host-c:9000", "voter", ""],
        ["d", "host-d:9000", "learner", ""],
      ]);
      expect(dd.log.lastIndex()).toBe(200);
      expect(dd.log.hardState()).toEqual({ term: 1, vote: "a", commit: 100 });
    } finally {
      dd.close();
    }
    // Opened again it is current: nothing more to migrate.
    const again = openDataDir(dir, BOOT);
    expect(again.migrated).toBeNull();
    again.close();
  });

  test("a log row removed behind our back is reported when read, never skipped", () => {
    const { dir, file } = populated();
    const db = new Database(file);
    db.run("DELETE FROM raft_log WHERE idx = 150");
    db.close();
    const dd = openDataDir(dir, BOOT);
    expect(dd.log.entries(140, 149, Infinity)).toHaveLength(9);
    expect(() => dd.log.entries(140, 160, Infinity)).toThrow(CorruptDataError);
    expect(() => dd.log.entries(140, 160, Infinity)).toThrow(/phalanx\.db: log row 151 .* entry 150 was expected/);
    dd.close();
  });

  test("a write-ahead log without its database is refused", () => {
    const dir = temp.make();
    writeFileSync(join(dir, "phalanx.db-wal"), new Uint8Array(64));
    expect(() => openDataDir(dir, BOOT)).toThrow(CorruptDataError);
    expect(existsSync(join(dir, "phalanx.db"))).toBe(false);
  });

  test("a data dir open (kernel-locked) is refused, also within one process; a LOCK file alone never blocks", () => {
    const dir = temp.make();
    const dd = openDataDir(dir, BOOT);
    expect(() => openDataDir(dir, BOOT)).toThrow(DataDirInUseError);
    expect(() => openDataDir(dir, BOOT)).toThrow(`in use by process ${process.pid}`);
    expect(() => openDataDir(dir, BOOT)).toThrow(join(dir, "LOCK"));
    dd.close();
    // The LOCK file stays (deleting it would let a late opener lock a new inode); it holds no lock.
    expect(existsSync(join(dir, "LOCK"))).toBe(true);
    openDataDir(dir, BOOT).close();
    // A dead process's pid, a live unrelated one (pid reuse), our own pid (a container restart).
    const gone = Bun.spawnSync(["true"]);
    expect(gone.exitCode).toBe(0);
    for (const pid of [gone.pid, 1, process.pid]) {
      writeFileSync(join(dir, "LOCK"), `${pid}\n`);
      const again = openDataDir(dir, BOOT);
      expect(readFileSync(join(dir, "LOCK"), "utf8")).toBe(`${process.pid}\n`);
      again.close();
    }
  });

  test("an open data file is held with SQLite's exclusive lock, and close() releases it at once", () => {
    const { dir, file } = populated();
    const dd = openDataDir(dir, BOOT);
    // Every kind of statement the node keeps has run at least once before the close below.
    const snap = new KvStore(dd).snapshot();
    expect(snap.index).toBe(0);
    expect(dd.log.entries(1, 3, Infinity)).toHaveLength(2);
    dd.transaction(() => dd.log.save(null, entries(201, 1, 10), null));
    const other = new Database(file, { readonly: true });
    try {
      expect(() => other.query("SELECT count(*) FROM raft_log").values()).toThrow(/database is locked/);
    } finally {
      other.close();
    }
    // The WAL index is in this process's memory: no -shm file, not even after writes (a file
    // that was in WAL mode before this open included).
    expect(existsSync(`${file}-shm`)).toBe(false);
    dd.close();
    // Not held by a closed connection kept alive by an unfinalized statement.
    const after = new Database(file, { readonly: true });
    expect(after.query("SELECT max(idx) FROM raft_log").values()).toEqual([[201]]);
    after.close();
  });

  test("the WAL is copied back into the file only past WAL_CHECKPOINT_PAGES, not at SQLite's 1,000 pages", () => {
    const dir = temp.make();
    const dd = openDataDir(dir, BOOT);
    try {
      const page = (dd.db.query("PRAGMA page_size").values()[0] as [number])[0];
      const walBytes = () => statSync(join(dir, "phalanx.db-wal")).size;
      // Each commit rewrites the same 100 entries of about a page each: 100 pages into the WAL,
      // while the file itself stays small. 30 commits: far past SQLite's default, well below ours.
      const commit = () => dd.transaction(() => dd.log.save(null, entries(1, 100, page - 200), null), { sync: false });
      for (let t = 0; t < 30; t++) commit();
      expect(walBytes()).toBeGreaterThan(2_500 * page);
      // Past the mark a commit checkpoints, and the WAL starts over from its beginning: another
      // 6,000 pages of commits leave it within a few commits of the mark.
      for (let t = 30; t < 190; t++) commit();
      expect(walBytes()).toBeGreaterThan(WAL_CHECKPOINT_PAGES * page);
      expect(walBytes()).toBeLessThan((WAL_CHECKPOINT_PAGES + 300) * (page + 24));
      expect(dd.log.lastIndex()).toBe(100);
    } finally {
      dd.close();
    }
  });

  test("a read-only data dir is refused with a clear error", () => {
    const { dir, file } = populated();
    const before = hash(file);
    const ro = withReadOnlyView(dir);
    try {
      expect(() => openDataDir(ro.path, BOOT)).toThrow(ReadOnlyError);
      expect(() => openDataDir(ro.path, BOOT)).toThrow(/not writable/);
      // Nor can a fresh data dir be created inside it.
      expect(() => openDataDir(join(ro.path, "sub"), BOOT)).toThrow(ReadOnlyError);
    } finally {
      ro.release();
    }
    expect(hash(file)).toBe(before);
  });
});

describe("the state record (phalanx.state)", () => {
  const refusedWith = (dir: string, type: Function, message: RegExp) => {
    const files = ["phalanx.db", STATE_FILE].map((f) => join(dir, f));
    const before = files.map((f) => (existsSync(f) ? hash(f) : "absent"));
    let err: unknown;
    try {
      openDataDir(dir, BOOT).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(type);
    expect((err as Error).message).toMatch(message);
    expect((err as Error).message).toContain("rejoins as a new, empty member");
    expect(files.map((f) => (existsSync(f) ? hash(f) : "absent"))).toEqual(before);
  };

  test("a data dir from before the record gets one, and needs it from then on", () => {
    const { dir, file } = populated();
    rmSync(join(dir, STATE_FILE));
    const db = new Database(file);
    db.run("DROP TABLE phalanx_meta");
    db.close();
    openDataDir(dir, BOOT).close();
    const r = readStateRecord(join(dir, STATE_FILE));
    expect(r.kind === "valid" && { term: r.record.term, vote: r.record.vote, commit: r.record.commit, last: r.record.last }).toEqual({ term: 1, vote: "a", commit: 100, last: 200 });
    rmSync(join(dir, STATE_FILE));
    refusedWith(dir, RolledBackError, /phalanx\.state is missing/);
  });

  test("a database that lost its vote or entries is refused", () => {
    const { dir, file } = populated();
    const db = new Database(file);
    db.run("UPDATE raft_hard_state SET vote = NULL");
    db.run("DELETE FROM raft_log WHERE idx > 150");
    db.close();
    refusedWith(dir, RolledBackError, /went back in time.*vote none != a in term 1, last log index 150 < 200/);
  });

  test("a deleted database is refused while the record says it held data", () => {
    const { dir, file } = populated();
    rmSync(file);
    refusedWith(dir, RolledBackError, /phalanx\.db is missing, but .*phalanx\.state records .*commit index 100/);
    expect(existsSync(file)).toBe(false);
  });

  test("a record of another database, or a damaged one, is refused", () => {
    const a = populated();
    const b = populated();
    copyFileSync(join(b.dir, STATE_FILE), join(a.dir, STATE_FILE));
    refusedWith(a.dir, RolledBackError, /belongs to another database/);
    writeFileSync(join(b.dir, STATE_FILE), "x".repeat(512));
    refusedWith(b.dir, CorruptDataError, /phalanx\.state is damaged/);
  });

  test("a crash between creating the record and the database is no loss", () => {
    const dir = temp.make();
    openDataDir(dir, BOOT).close();
    for (const f of ["phalanx.db", "phalanx.db-wal", "phalanx.db-shm"]) rmSync(join(dir, f), { force: true });
    openDataDir(dir, BOOT).close();
  });

  test("writes committed without an fsync reach the record only once fsynced: a background fsync, or the record's own timer, first", async () => {
    const { dir } = populated();
    const dd = openDataDir(dir, BOOT);
    const recorded = () => {
      const r = readStateRecord(join(dir, STATE_FILE));
      return r.kind === "valid" ? [r.record.commit, r.record.last] : null;
    };
    expect(recorded()).toEqual([100, 200]);
    // A leader's own entries, written without an fsync (node.ts fsyncs them in the background).
    dd.transaction(() => dd.log.save(null, entries(201, 10, 10), { term: 1, vote: "a", commit: 150 }), { sync: false });
    expect(recorded()).toEqual([100, 200]);
    const done = await new Promise<Error | null>((resolve) => dd.syncInBackground(resolve));
    expect(done).toBeNull();
    await waitFor("the record to follow the background fsync", () => recorded()?.[1] === 210);
    expect(recorded()).toEqual([150, 210]);
    // An idle node whose last commits were not fsynced (applying, a commit index moving): the
    // record's timer fsyncs them in the background, then records them.
    dd.transaction(() => dd.log.save(null, entries(211, 5, 10), { term: 1, vote: "a", commit: 215 }), { sync: false });
    await waitFor("the record to catch up with the unsynced commit", () => recorded()?.[1] === 215);
    expect(recorded()).toEqual([215, 215]);
    dd.close();
  });

  test("a truncation lowers the record before it commits; one that rolls back raises no false alarm", () => {
    const { dir } = populated();
    const dd = openDataDir(dir, BOOT);
    const term2 = (from: number) => entries(from, 1, 10).map((e) => ({ ...e, term: 2 }));
    // A new leader's entry replacing 151..200, in a transaction that then fails.
    expect(() =>
      dd.transaction(() => {
        dd.log.save(null, term2(151), { term: 2, vote: "b", commit: 100 });
        throw new Error("disk gone");
      }),
    ).toThrow("disk gone");
    expect(dd.log.lastIndex()).toBe(200);
    const r = readStateRecord(join(dir, STATE_FILE));
    expect(r.kind === "valid" && r.record.last).toBe(151);
    dd.log.save(null, term2(181), { term: 2, vote: "b", commit: 100 });
    const after = readStateRecord(join(dir, STATE_FILE));
    expect(after.kind === "valid" && [after.record.term, after.record.vote, after.record.last]).toEqual([2, "b", 181]);
    dd.close();
    const again = openDataDir(dir, BOOT);
    expect(again.log.lastIndex()).toBe(181);
    expect(again.log.hardState()).toEqual({ term: 2, vote: "b", commit: 100 });
    again.close();
  });
});

/**
 * The same directory seen read-only. Root ignores permission bits, so as root it is a read-only
 * bind mount (EROFS); otherwise the directory's write bits are removed.
 */
function withReadOnlyView(dir: string): { path: string; release: () => void } {
  if (process.getuid?.() !== 0) {
    chmodSync(dir, 0o555);
    return { path: dir, release: () => chmodSync(dir, 0o755) };
  }
  const mnt = `${dir}-ro`;
  mkdirSync(mnt);
  const run = (...args: string[]) => {
    const r = Bun.spawnSync(["mount", ...args]);
    if (r.exitCode !== 0) throw new Error(`mount ${args.join(" ")}: ${r.stderr.toString()}`);
  };
  const release = () => {
    Bun.spawnSync(["umount", mnt]);
    rmSync(mnt, { recursive: true, force: true });
  };
  try {
    run("--bind", dir, mnt);
    run("-o", "remount,bind,ro", mnt);
  } catch (err) {
    release();
    throw err;
  }
  return { path: mnt, release };
}
