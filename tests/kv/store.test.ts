import { afterEach, describe, expect, test } from "bun:test";
import { isError } from "../../src/kv/command.ts";
import { encodeMemberContext } from "../../src/kv/member.ts";
import { KvStore, prefixEnd } from "../../src/kv/store.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { CorruptDataError } from "../../src/storage/errors.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, commit, conf, noop, proposal } from "./fixtures.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

function fresh(dir = temp.make("phalanx-kv")): { dd: DataDir; kv: KvStore; dir: string } {
  const dd = openDataDir(dir, { bootstrap: { voters: ["n1", "n2"], learners: [] }, addresses: { n1: "10.0.0.1:7000" } });
  open.push(dd);
  return { dd, kv: new KvStore(dd, { sessionTtlMs: 10_000 }), dir };
}

describe("KvStore operations", () => {
  test("put, get, del keep etcd-like revisions", () => {
    const { dd, kv } = fresh();
    expect(commit(dd, kv, [proposal(1, { op: "put", key: "a", value: bytes("1") })])).toEqual([
      { op: "put", revision: 1, prev: null },
    ]);
    commit(dd, kv, [noop(2)]);
    const [r3] = commit(dd, kv, [proposal(3, { op: "put", key: "a", value: bytes("2") })]);
    expect(r3).toEqual({ op: "put", revision: 3, prev: { key: "a", value: bytes("1"), createRevision: 1, modRevision: 1, version: 1 } });
    expect(kv.get("a")).toEqual({ revision: 3, kv: { key: "a", value: bytes("2"), createRevision: 1, modRevision: 3, version: 2 } });
    expect(kv.appliedIndex()).toBe(3);
    const [r4, r5] = commit(dd, kv, [proposal(4, { op: "del", key: "a" }), proposal(5, { op: "del", key: "a" })]);
    expect(r4).toMatchObject({ op: "del", revision: 4, deleted: true });
    expect(r5).toEqual({ op: "del", revision: 4, deleted: false, prev: null });
    expect(kv.get("a")).toEqual({ revision: 4, kv: null });
    // Re-created: a new lifetime starts at version 1.
    commit(dd, kv, [proposal(6, { op: "put", key: "a", value: bytes("3") })]);
    expect(kv.get("a").kv).toMatchObject({ createRevision: 6, modRevision: 6, version: 1 });
  });

  test("cas and delIf by value, absence and mod revision", () => {
    const { dd, kv } = fresh();
    const rs = commit(dd, kv, [
      proposal(1, { op: "cas", key: "k", value: bytes("x"), expect: { value: null } }),
      proposal(2, { op: "cas", key: "k", value: bytes("y"), expect: { value: null } }),
      proposal(3, { op: "cas", key: "k", value: bytes("y"), expect: { value: bytes("x") } }),
      proposal(4, { op: "cas", key: "k", value: bytes("z"), expect: { modRevision: 1 } }),
      proposal(5, { op: "cas", key: "k", value: bytes("z"), expect: { modRevision: 3 } }),
      proposal(6, { op: "delIf", key: "k", expect: { value: bytes("nope") } }),
      proposal(7, { op: "delIf", key: "k", expect: { modRevision: 5 } }),
      proposal(8, { op: "delIf", key: "k", expect: { modRevision: 0 } }),
      proposal(9, { op: "cas", key: "k", value: bytes("w"), expect: { modRevision: 0 } }),
    ]);
    expect(rs.map((r) => (r !== null && "succeeded" in r ? [r.succeeded, r.revision] : r))).toEqual([
      [true, 1],
      [false, 1],
      [true, 3],
      [false, 3],
      [true, 5],
      [false, 5],
      [true, 7],
      [true, 7],
      [true, 9],
    ]);
    expect(rs[1]).toMatchObject({ current: { value: bytes("x"), modRevision: 1 } });
    expect(rs[4]).toMatchObject({ current: { value: bytes("z"), version: 3 } });
    expect(rs[6]).toMatchObject({ current: null });
  });

  test("invalid commands return typed errors and change nothing but the applied index", () => {
    const { dd, kv } = fresh();
    const rs = commit(dd, kv, [
      proposal(1, { op: "put", key: "", value: bytes("1") }),
      proposal(2, { op: "put", key: "k".repeat(4097), value: bytes("1") }),
      proposal(3, { op: "put", key: "k", value: new Uint8Array(1024 * 1024 + 1) }),
    ]);
    expect(rs.map((r) => r !== null && isError(r) && r.error)).toEqual(["invalid_key", "key_too_large", "value_too_large"]);
    expect(kv.revision()).toBe(0);
    expect(kv.appliedIndex()).toBe(3);
    expect(kv.count("").count).toBe(0);
  });

  test("range by prefix pages with start-after, in UTF-8 order; count", () => {
    const { dd, kv } = fresh();
    const keys = ["a", "b/1", "b/2", "b/3", "b0", "b/\u{10ffff}", "b/\uffff", "b/\u{1f600}", "c"];
    commit(dd, kv, keys.map((key, i) => proposal(i + 1, { op: "put", key, value: bytes(key) })));
    const page1 = kv.range({ prefix: "b/", limit: 3 });
    expect(page1.kvs.map((x) => x.key)).toEqual(["b/1", "b/2", "b/3"]);
    expect(page1.more).toBe(true);
    expect(page1.revision).toBe(keys.length);
    const page2 = kv.range({ prefix: "b/", after: "b/3", limit: 3 });
    // Code point order: U+FFFF < U+1F600 < U+10FFFF (JS string order would differ).
    expect(page2.kvs.map((x) => x.key)).toEqual(["b/\uffff", "b/\u{1f600}", "b/\u{10ffff}"]);
    expect(page2.more).toBe(false);
    expect(kv.range({ prefix: "b/", after: "a", limit: 10 }).kvs).toHaveLength(6);
    expect(kv.range({ prefix: "", limit: 100 }).kvs).toHaveLength(keys.length);
    expect(kv.count("b").count).toBe(7);
    expect(kv.count("b/").count).toBe(6);
    expect(kv.count("zz").count).toBe(0);
    expect(kv.range({ prefix: "b/1", limit: 5 }).kvs[0]).toEqual({
      key: "b/1",
      value: bytes("b/1"),
      createRevision: 2,
      modRevision: 2,
      version: 1,
    });
    expect(() => kv.range({ prefix: "", limit: 0 })).toThrow(RangeError);
  });

  test("prefixEnd", () => {
    expect(prefixEnd("")).toBeNull();
    expect(prefixEnd("ab")).toBe("ac");
    expect(prefixEnd("a\u{10ffff}")).toBe("b");
    expect(prefixEnd("\u{10ffff}")).toBeNull();
    expect(prefixEnd("a\ud7ff")).toBe("a\ue000");
  });

  test("sessions: register, exactly-once, stale and expired", () => {
    const { dd, kv } = fresh();
    const [reg] = commit(dd, kv, [proposal(1, { op: "register" }, { time: 1_000 })]);
    expect(reg).toEqual({ op: "register", client: 1 });
    const s = (seq: number) => ({ session: { client: 1, seq }, time: 2_000 });
    const rs = commit(dd, kv, [
      proposal(2, { op: "put", key: "n", value: bytes("1") }, s(1)),
      proposal(3, { op: "put", key: "n", value: bytes("1") }, s(1)), // a retry
      proposal(4, { op: "put", key: "n", value: bytes("2") }, s(2)),
      proposal(5, { op: "put", key: "n", value: bytes("3") }, s(1)),
      proposal(6, { op: "put", key: "n", value: bytes("9") }, { session: { client: 77, seq: 1 } }),
    ]);
    expect(rs[0]).toEqual({ op: "put", revision: 2, prev: null });
    expect(rs[1]).toEqual(rs[0]);
    expect(kv.get("n").kv?.version).toBe(2);
    expect(rs[3]).toMatchObject({ error: "stale_sequence" });
    expect(rs[4]).toMatchObject({ error: "session_expired" });
    // Another client's write 11 s later (log time) evicts client 1's session (TTL 10 s).
    commit(dd, kv, [proposal(7, { op: "put", key: "o", value: bytes("x") }, { time: 12_001 })]);
    const [late] = commit(dd, kv, [proposal(8, { op: "put", key: "n", value: bytes("4") }, s(3))]);
    expect(late).toMatchObject({ error: "session_expired" });
    // The log clock never goes back, even if a proposer's clock does.
    expect(kv.logTime()).toBe(12_001);
  });

  test("live sessions are capped deterministically: two replicas refuse the same registration, eviction frees room", () => {
    const a = fresh();
    const b = fresh();
    const ka = new KvStore(a.dd, { sessionTtlMs: 10_000, maxSessions: 3 });
    const kb = new KvStore(b.dd, { sessionTtlMs: 10_000, maxSessions: 3 });
    const entries = [1, 2, 3, 4].map((i) => proposal(i, { op: "register" }, { time: 1_000 + i }));
    const ra = commit(a.dd, ka, entries);
    const rb = commit(b.dd, kb, entries);
    expect(ra).toEqual(rb);
    expect(ra.slice(0, 3)).toEqual([1, 2, 3].map((client) => ({ op: "register", client })));
    expect(ra[3]).toMatchObject({ error: "too_many_sessions" });
    // The refused registration created nothing: a write with "session 4" is unknown.
    const [w] = commit(a.dd, ka, [proposal(5, { op: "put", key: "k", value: bytes("v") }, { session: { client: 4, seq: 1 }, time: 2_000 })]);
    expect(w).toMatchObject({ error: "session_expired" });
    // 10 s of log time later the idle sessions are evicted and a registration succeeds again.
    const [again] = commit(a.dd, ka, [proposal(6, { op: "register" }, { time: 20_000 })]);
    expect(again).toEqual({ op: "register", client: 6 });
  });

  test("range pages stop at the byte budget with a continuation key; keys-only reads no values", () => {
    const { dd, kv } = fresh();
    const big = new Uint8Array(1000).fill(7);
    commit(dd, kv, Array.from({ length: 10 }, (_, i) => proposal(i + 1, { op: "put", key: `r/${i}`, value: big })));
    const p1 = kv.range({ prefix: "r/", limit: 100, maxBytes: 3500 });
    expect(p1.kvs.map((x) => x.key)).toEqual(["r/0", "r/1", "r/2"]);
    expect(p1).toMatchObject({ more: true, next: "r/2", bytes: 3 * 1003 });
    const p2 = kv.range({ prefix: "r/", after: p1.next!, limit: 100, maxBytes: 3500 });
    expect(p2.kvs[0]!.key).toBe("r/3");
    // A budget below one pair still returns one pair, so paging always makes progress.
    const one = kv.range({ prefix: "r/", limit: 100, maxBytes: 1 });
    expect(one.kvs).toHaveLength(1);
    expect(one.more).toBe(true);
    const all = kv.range({ prefix: "r/", limit: 100, maxBytes: 100, keysOnly: true }); // only key bytes count
    expect(all.kvs).toHaveLength(10);
    expect(all.kvs.every((x) => x.value.byteLength === 0 && x.modRevision > 0)).toBe(true);
    expect(all).toMatchObject({ more: false, next: null });
  });

  test("conf entries record members; the bootstrap members are there from the start", () => {
    const { dd, kv } = fresh();
    expect(kv.members()).toEqual([
      { id: "n1", address: "10.0.0.1:7000", region: "", role: "voter" },
      { id: "n2", address: "", region: "", role: "voter" },
    ]);
    commit(dd, kv, [
      conf(1, { op: "addLearner", node: "n3", context: "10.0.0.3:7000" }, { voters: ["n1", "n2"], learners: [] }),
      conf(2, { op: "addVoter", node: "n3", context: "" }, { voters: ["n1", "n2"], learners: ["n3"] }),
      conf(3, { op: "remove", node: "n2", context: "" }, { voters: ["n1", "n2", "n3"], learners: [] }),
    ]);
    expect(kv.members()).toEqual([
      { id: "n1", address: "10.0.0.1:7000", region: "", role: "voter" },
      { id: "n3", address: "10.0.0.3:7000", region: "", role: "voter" },
    ]);
    expect(kv.appliedIndex()).toBe(3);
    expect(kv.revision()).toBe(0);
  });

  test("conf entries carry the member's region; a promotion keeps it; the member command records a founder's", () => {
    const { dd, kv } = fresh();
    const results = commit(dd, kv, [
      conf(1, { op: "addLearner", node: "n3", context: encodeMemberContext({ address: "10.0.0.3:7000", region: "jnb" }) }, { voters: ["n1", "n2"], learners: [] }),
      conf(2, { op: "addVoter", node: "n3", context: "" }, { voters: ["n1", "n2"], learners: ["n3"] }),
      proposal(3, { op: "member", id: "n1", region: "lhr" }),
      // Removed meanwhile, or never a member: nothing is written, on every replica alike.
      proposal(4, { op: "member", id: "n9", region: "fra" }),
      proposal(5, { op: "member", id: "n2", region: "Not A Region" }),
    ]);
    expect(results.slice(2)).toEqual([
      { op: "member", found: true },
      { op: "member", found: false },
      { error: "invalid_member", message: expect.stringContaining("not a region name") },
    ]);
    expect(kv.members()).toEqual([
      { id: "n1", address: "10.0.0.1:7000", region: "lhr", role: "voter" },
      { id: "n2", address: "", region: "", role: "voter" },
      { id: "n3", address: "10.0.0.3:7000", region: "jnb", role: "voter" },
    ]);
    // The member command changes no key: watchers and revisions do not see it.
    expect(kv.revision()).toBe(0);
  });

  test("a server that joined later gets the founders' rows from the first conf entry it applies", () => {
    // Founders n1, n2 (bootstrap rows, regions recorded later by member commands); the joiner n3
    // starts with no membership at all and replays the log from the start.
    const founder = fresh();
    const joiner = (() => {
      const dd = openDataDir(temp.make("phalanx-kv"), { bootstrap: { voters: [], learners: [] } });
      open.push(dd);
      return { dd, kv: new KvStore(dd) };
    })();
    const others = { n1: { address: "10.0.0.1:7000", region: "lhr" }, n2: { address: "10.0.0.2:7000", region: "fra" } };
    const log = [
      proposal(1, { op: "member", id: "n1", region: "lhr" }),
      proposal(2, { op: "member", id: "n2", region: "fra" }),
      conf(3, { op: "addLearner", node: "n3", context: encodeMemberContext({ address: "10.0.0.3:7000", region: "jnb", others }) }, { voters: ["n1", "n2"], learners: [] }),
    ];
    const results = commit(joiner.dd, joiner.kv, log);
    // Before it joined, the joiner had no rows for the founders to record regions in...
    expect(results.slice(0, 2)).toEqual([{ op: "member", found: false }, { op: "member", found: false }]);
    commit(founder.dd, founder.kv, log);
    // ...and from the entry that adds it on, both tables are the same.
    expect(joiner.kv.members()).toEqual(founder.kv.members());
    expect(joiner.kv.members()).toEqual([
      { id: "n1", address: "10.0.0.1:7000", region: "lhr", role: "voter" },
      { id: "n2", address: "10.0.0.2:7000", region: "fra", role: "voter" },
      { id: "n3", address: "10.0.0.3:7000", region: "jnb", role: "learner" },
    ]);
  });

  test("a malformed member context in our own log is corruption, never skipped", () => {
    const { dd, kv } = fresh();
    expect(() => commit(dd, kv, [conf(1, { op: "addLearner", node: "n3", context: '{"address":"h:1","region":7}' })])).toThrow(CorruptDataError);
    expect(kv.appliedIndex()).toBe(0);
    expect(kv.members().map((m) => m.id)).toEqual(["n1", "n2"]);
  });

  test("entries out of order are refused", () => {
    const { dd, kv } = fresh();
    commit(dd, kv, [noop(1)]);
    expect(() => kv.apply(noop(1))).toThrow(/out of order/);
    expect(() => kv.apply(noop(3))).toThrow(/out of order/);
    expect(kv.appliedIndex()).toBe(1);
  });

  test("a malformed entry is corruption: a clear error, nothing applied", () => {
    const { dd, kv } = fresh();
    const bad: Entry = { index: 1, term: 1, type: "normal", data: bytes("not msgpack \u0000") };
    expect(() => commit(dd, kv, [bad])).toThrow(CorruptDataError);
    expect(() => commit(dd, kv, [bad])).toThrow(/phalanx\.db: log entry 1: malformed proposal/);
    const badConf: Entry = { index: 1, term: 1, type: "conf", data: bytes("{}") };
    expect(() => commit(dd, kv, [badConf])).toThrow(/log entry 1: corrupt conf change/);
    expect(kv.appliedIndex()).toBe(0);
    expect(dd.log.lastIndex()).toBe(0);
  });

  test("a failed transaction rolls back the log, the state and the caches together", () => {
    const { dd, kv } = fresh();
    commit(dd, kv, [proposal(1, { op: "put", key: "a", value: bytes("1") })]);
    expect(() =>
      dd.transaction(() => {
        dd.log.save(null, [proposal(2, { op: "put", key: "a", value: bytes("2") })], { term: 1, vote: "n1", commit: 2 });
        kv.apply(proposal(2, { op: "put", key: "a", value: bytes("2") }));
        throw new Error("crash in the middle");
      }),
    ).toThrow("crash in the middle");
    expect(kv.appliedIndex()).toBe(1);
    expect(kv.revision()).toBe(1);
    expect(dd.log.lastIndex()).toBe(1);
    expect(dd.log.hardState().commit).toBe(1);
    expect(kv.get("a").kv?.value).toEqual(bytes("1"));
  });

  test("state survives reopening", () => {
    const { dd, kv, dir } = fresh();
    commit(dd, kv, [proposal(1, { op: "register" }), proposal(2, { op: "put", key: "a", value: bytes("1") }, { session: { client: 1, seq: 1 } })]);
    dd.close();
    open.splice(0);
    const again = fresh(dir);
    expect(again.kv.appliedIndex()).toBe(2);
    expect(again.kv.get("a").kv?.version).toBe(1);
    // The session's cached result survived too.
    const [dup] = commit(again.dd, again.kv, [proposal(3, { op: "put", key: "a", value: bytes("1") }, { session: { client: 1, seq: 1 } })]);
    expect(dup).toEqual({ op: "put", revision: 2, prev: null });
  });
});
