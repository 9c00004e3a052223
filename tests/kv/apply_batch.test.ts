// The apply path's batching (issue 10): the kv_state row is written once per transaction, and
// session eviction runs only when some session can have expired. Both must leave every result,
// the applied index on disk and the sessions evicted exactly as a statement per entry did.
import { afterEach, describe, expect, test } from "bun:test";
import { isError } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import { isExpired } from "../../src/kv/session.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { CorruptDataError } from "../../src/storage/errors.ts";
import { Prng } from "../sim/prng.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, commit, proposal } from "./fixtures.ts";

const TTL = 10_000;
const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

function fresh(dir = temp.make("phalanx-apply")): { dd: DataDir; kv: KvStore; dir: string } {
  const dd = openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] } });
  open.push(dd);
  return { dd, kv: new KvStore(dd, { sessionTtlMs: TTL }), dir };
}

/** The kv_state row as stored (what a restart resumes from). */
function stored(dd: DataDir): { applied: number; revision: number; logTime: number } {
  const [applied, revision, logTime] = dd.db.query("SELECT applied_index, revision, log_time FROM kv_state").values()[0] as [number, number, number];
  return { applied, revision, logTime };
}

const put = (index: number, key: string, time: number, session: { client: number; seq: number } | null = null) =>
  proposal(index, { op: "put", key, value: bytes(String(index)) }, { time, session });

describe("the kv_state row, once per transaction", () => {
  test("it holds the last entry of each committed transaction, and never one of a rolled-back one", () => {
    const { dd, kv, dir } = fresh();
    commit(dd, kv, [put(1, "a", 1_000), put(2, "b", 2_000), put(3, "a", 3_000)]);
    expect(stored(dd)).toEqual({ applied: 3, revision: 3, logTime: 3_000 });
    // A Ready that fails after applying: neither the row nor the memory moves.
    expect(() =>
      dd.transaction(() => {
        dd.log.save(null, [put(4, "c", 4_000)], { term: 1, vote: "n1", commit: 4 });
        kv.apply(put(4, "c", 4_000));
        throw new Error("disk gone");
      }),
    ).toThrow("disk gone");
    expect(stored(dd)).toEqual({ applied: 3, revision: 3, logTime: 3_000 });
    expect(kv.appliedIndex()).toBe(3);
    // The next transaction writes the row again (a rollback must not leave it thinking it is written).
    commit(dd, kv, [put(4, "c", 5_000)]);
    expect(stored(dd)).toEqual({ applied: 4, revision: 4, logTime: 5_000 });
    // An entry applied inside a savepoint that rolls back is not written either; the outer one is.
    dd.transaction(() => {
      dd.log.save(null, [put(5, "d", 6_000)], { term: 1, vote: "n1", commit: 5 });
      expect(() =>
        dd.tx.run(() => {
          kv.apply(put(5, "d", 9_000));
          throw new Error("inner");
        }),
      ).toThrow("inner");
      expect(kv.appliedIndex()).toBe(4);
      kv.apply(put(5, "d", 6_000));
    });
    expect(stored(dd)).toEqual({ applied: 5, revision: 5, logTime: 6_000 });
    // A lone apply outside a Ready commits its own transaction, row included.
    dd.log.save(null, [put(6, "e", 7_000)], { term: 1, vote: "n1", commit: 6 });
    kv.apply(put(6, "e", 7_000));
    expect(stored(dd)).toEqual({ applied: 6, revision: 6, logTime: 7_000 });
    dd.close();
    open.splice(0);
    const again = fresh(dir);
    expect([again.kv.appliedIndex(), again.kv.revision(), again.kv.logTime()]).toEqual([6, 6, 7_000]);
  });
});

describe("session eviction only when due", () => {
  test("a session expires at exactly TTL + 1 ms of log time after its last write, not a tick earlier", () => {
    const { dd, kv } = fresh();
    commit(dd, kv, [proposal(1, { op: "register" }, { time: 1_000 }), put(2, "k", 5_000, { client: 1, seq: 1 })]);
    // Log time 15,000 = last write + TTL: still live.
    commit(dd, kv, [put(3, "other", 15_000)]);
    const [live] = commit(dd, kv, [put(4, "k", 15_000, { client: 1, seq: 2 })]);
    expect(live).toMatchObject({ op: "put", revision: 4 });
    // Its last write is now at 15,000: 25,001 expires it, in the entry that moves the clock there.
    commit(dd, kv, [put(5, "other", 25_000)]);
    const [still] = commit(dd, kv, [put(6, "k", 25_000, { client: 1, seq: 3 })]);
    expect(still).toMatchObject({ op: "put", revision: 6 });
    const [gone] = commit(dd, kv, [put(7, "other", 35_001), put(8, "k", 35_001, { client: 1, seq: 4 })]).slice(1);
    expect(gone).toMatchObject({ error: "session_expired" });
  });

  test("on generated histories, with rollbacks and reopenings, every write meets the session the rule says", () => {
    const r = new Prng(7);
    let { dd, kv, dir } = fresh();
    // The model: client -> [last seq, last active], evicted by session.ts's rule at every entry.
    const model = new Map<number, { seq: number; lastActive: number }>();
    let logTime = 0;
    let index = 0;
    let checked = 0;
    for (let ready = 0; ready < 400; ready++) {
      const entries: Entry[] = [];
      const expected: Array<"ok" | "expired" | "registered"> = [];
      const next = new Map([...model].map(([c, s]) => [c, { ...s }]));
      let t = logTime;
      for (let n = r.int(6) + 1; n > 0; n--) {
        // Mostly small steps, sometimes a jump past the TTL, sometimes a proposer clock that is behind.
        const time = t + r.pick([0, 1, 37, 900, TTL - 1, TTL, TTL + 1, 3 * TTL, -500]);
        t = Math.max(t, time);
        for (const [c, s] of next) if (isExpired(s, t, TTL)) next.delete(c);
        index++;
        if (next.size === 0 || r.chance(0.15)) {
          entries.push(proposal(index, { op: "register" }, { time }));
          next.set(index, { seq: 0, lastActive: t });
          expected.push("registered");
          continue;
        }
        const clients = [...model.keys(), ...next.keys()];
        const client = r.pick(clients);
        const s = next.get(client);
        entries.push(put(index, `k${r.int(5)}`, time, { client, seq: (s?.seq ?? 0) + 1 }));
        if (s === undefined) expected.push("expired");
        else {
          expected.push("ok");
          s.seq++;
          s.lastActive = t;
        }
      }
      if (r.chance(0.1)) {
        // A Ready that fails after applying: the model stays as it was, and so must the store.
        const before = kv.appliedIndex();
        expect(() =>
          dd.transaction(() => {
            dd.log.save(null, entries, { term: 1, vote: "n1", commit: index });
            for (const e of entries) kv.apply(e);
            throw new Error("rolled back");
          }),
        ).toThrow("rolled back");
        expect(kv.appliedIndex()).toBe(before);
        index = before;
        continue;
      }
      const results = commit(dd, kv, entries);
      for (let i = 0; i < results.length; i++) {
        const res = results[i]!;
        if (expected[i] === "registered") expect(res).toEqual({ op: "register", client: entries[i]!.index });
        else if (expected[i] === "expired") expect(res).toMatchObject({ error: "session_expired" });
        else expect(isError(res!)).toBe(false);
        checked++;
      }
      model.clear();
      for (const [c, s] of next) model.set(c, s);
      logTime = t;
      if (r.chance(0.05)) {
        dd.close();
        open.splice(0);
        ({ dd, kv, dir } = fresh(dir));
      }
    }
    expect(checked).toBeGreaterThan(800);
  });
});

describe("a session's cached result, decoded only for a retry", () => {
  test("a retry gets the cached result; a damaged one is corruption for the retry, and a newer write replaces it", () => {
    const { dd, kv } = fresh();
    const [, first] = commit(dd, kv, [proposal(1, { op: "register" }, { time: 1_000 }), put(2, "k", 1_000, { client: 1, seq: 1 })]);
    const [retry] = commit(dd, kv, [put(3, "k", 1_000, { client: 1, seq: 1 })]);
    expect(retry).toEqual(first!);
    dd.db.run("UPDATE kv_sessions SET result = x'c1' WHERE client = 1");
    expect(() => commit(dd, kv, [put(4, "k", 1_000, { client: 1, seq: 1 })])).toThrow(CorruptDataError);
    expect(kv.appliedIndex()).toBe(3);
    const [newer] = commit(dd, kv, [put(4, "k", 1_000, { client: 1, seq: 2 })]);
    expect(newer).toMatchObject({ op: "put", revision: 4 });
    const [again] = commit(dd, kv, [put(5, "k", 1_000, { client: 1, seq: 2 })]);
    expect(again).toEqual(newer!);
  });
});
