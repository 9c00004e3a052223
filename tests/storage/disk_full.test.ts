// A full disk, simulated with PRAGMA max_page_count (SQLite reports SQLITE_FULL exactly as for a
// full filesystem): writes are refused with DiskFullError and roll back whole, reads go on, and
// writes succeed again once there is room, without reopening.
import { afterEach, expect, test } from "bun:test";
import { encodeProposal } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir } from "../../src/storage/data_dir.ts";
import { DiskFullError } from "../../src/storage/errors.ts";
import { TempDirs } from "./temp_dir.ts";

const temp = new TempDirs();
afterEach(() => temp.cleanup());

const put = (index: number, key: string, size: number): Entry => ({
  index,
  term: 2,
  type: "normal",
  data: encodeProposal({ time: 1, session: null, cmd: { op: "put", key, value: new Uint8Array(size).fill(7) } }),
});

test("a full disk rejects writes with DiskFullError; reads work; writes resume when space returns", () => {
  const dd = openDataDir(temp.make(), { bootstrap: { voters: ["a"], learners: [] } });
  const kv = new KvStore(dd);
  const step = (e: Entry) =>
    dd.transaction(() => {
      dd.log.save(null, [e], { term: 2, vote: "a", commit: e.index });
      return kv.apply(e);
    });
  step(put(1, "first", 100));
  const pages = dd.db.query("PRAGMA page_count").values()[0]![0] as number;
  dd.db.run(`PRAGMA max_page_count = ${pages + 8}`);

  let index = 2;
  let full: unknown = null;
  // 8 pages hold at most a few 4 KB values: the loop ends by a DiskFullError long before 100.
  for (; index < 100 && full === null; index++) {
    try {
      step(put(index, `k${index}`, 4000));
    } catch (err) {
      full = err;
    }
  }
  expect(full).toBeInstanceOf(DiskFullError);
  expect((full as Error).message).toContain(dd.file);
  expect((full as Error).message).toMatch(/disk full/);
  const failed = index - 1;
  // The failed Ready left no trace: log, hard state, applied index and store all as before it.
  expect(dd.log.lastIndex()).toBe(failed - 1);
  expect(dd.log.hardState().commit).toBe(failed - 1);
  expect(kv.appliedIndex()).toBe(failed - 1);
  expect(kv.get(`k${failed}`).kv).toBeNull();
  // Reads keep working.
  expect(kv.get("first").kv?.version).toBe(1);
  expect(dd.log.entries(1, failed, Infinity)).toHaveLength(failed - 1);
  expect(dd.log.term(failed - 1)).toBe(2);

  dd.db.run("PRAGMA max_page_count = 1073741823");
  expect(step(put(failed, `k${failed}`, 4000))).toMatchObject({ op: "put", revision: failed });
  expect(kv.appliedIndex()).toBe(failed);
  expect(dd.log.lastIndex()).toBe(failed);
  dd.close();
});
