// The state-machine rules of transactions, leases and the watch history, applied through KvStore
// as the node applies entries: atomicity in one entry, etcd's compare rules, exactly-once with a
// write session, lease expiry by log entry only, a bounded history that survives reopening and
// travels in snapshots.
import { afterEach, describe, expect, test } from "bun:test";
import { type Command, type Result } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, commit, proposal } from "./fixtures.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

const HISTORY = { maxEvents: 10, maxBytes: 1 << 20 };

function fresh(dir = temp.make("phalanx-kvx")): { dd: DataDir; kv: KvStore; dir: string } {
  const dd = openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] }, addresses: {} });
  open.push(dd);
  return { dd, kv: new KvStore(dd, { history: HISTORY }), dir };
}

/** Applies commands one entry each from the next index; returns their results. */
function run(dd: DataDir, kv: KvStore, ...cmds: Command[]): Result[] {
  const start = kv.appliedIndex() + 1;
  return commit(dd, kv, cmds.map((c, i) => proposal(start + i, c))) as Result[];
}

const put = (key: string, value: string, lease?: number): Extract<Command, { op: "put" }> => ({ op: "put", key, value: bytes(value), ...(lease === undefined ? {} : { lease }) });

describe("transactions", () => {
  test("compares several keys; then or else runs whole, at one revision", () => {
    const { dd, kv } = fresh();
    run(dd, kv, put("a", "1"), put("b", "2"));
    const txn = (compareA: string): Command => ({
      op: "txn",
      compare: [
        { key: "a", target: "value", result: "==", value: bytes(compareA) },
        { key: "missing", target: "version", result: "==", value: 0 },
        { key: "b", target: "modRevision", result: ">", value: 0 },
      ],
      then: [put("a", "10"), { op: "del", key: "b" }, put("c", "30"), { op: "get", key: "a" }],
      else: [{ op: "range", prefix: "", limit: 10 }],
    });
    const [ok] = run(dd, kv, txn("1"));
    expect(ok).toMatchObject({ op: "txn", succeeded: true, revision: 3 });
    const r = ok as Extract<Result, { op: "txn" }>;
    expect(r.responses[0]).toMatchObject({ op: "put", prev: { key: "a", modRevision: 1 } });
    expect(r.responses[1]).toEqual({ op: "del", deleted: 1 });
    // A read inside the transaction sees the transaction's own earlier writes (etcd does too).
    expect(r.responses[3]).toMatchObject({ op: "get", kv: { key: "a", modRevision: 3, version: 2 } });
    expect(kv.get("a").kv?.modRevision).toBe(3);
    expect(kv.get("c").kv?.modRevision).toBe(3);
    expect(kv.get("b").kv).toBeNull();
    // All three writes are events of revision 3, in order.
    expect(kv.events(2, 3, 100).map((e) => [e.revision, e.type, e.key])).toEqual([
      [3, "put", "a"],
      [3, "delete", "b"],
      [3, "put", "c"],
    ]);
    const [failed] = run(dd, kv, txn("1"));
    expect(failed).toMatchObject({ op: "txn", succeeded: false, revision: 3 });
    const kvs = ((failed as Extract<Result, { op: "txn" }>).responses[0] as { kvs: Array<{ key: string }> }).kvs.map((k) => k.key);
    expect(kvs).toEqual(["a", "c"]);
    expect(kv.appliedIndex()).toBe(4);
  });

  test("value compare on a missing key fails for == and !=; null means absent", () => {
    const { dd, kv } = fresh();
    const t = (result: "==" | "!=", value: Uint8Array | null): Command => ({ op: "txn", compare: [{ key: "x", target: "value", result, value }], then: [], else: [] });
    const rs = run(dd, kv, t("==", bytes("v")), t("!=", bytes("v")), t("==", null), t("!=", null));
    expect(rs.map((r) => (r as { succeeded: boolean }).succeeded)).toEqual([false, false, true, false]);
  });

  test("invalid transactions are refused whole: duplicate keys, overlapping prefix, missing lease", () => {
    const { dd, kv } = fresh();
    const [dup, overlap, noLease] = run(
      dd,
      kv,
      { op: "txn", compare: [], then: [put("a", "1"), put("a", "2")], else: [] },
      { op: "txn", compare: [], then: [put("p/a", "1"), { op: "delPrefix", prefix: "p/" }], else: [] },
      { op: "txn", compare: [], then: [put("a", "1"), put("b", "1", 999)], else: [] },
    );
    expect(dup).toMatchObject({ error: "invalid_txn" });
    expect(overlap).toMatchObject({ error: "invalid_txn" });
    expect(noLease).toMatchObject({ error: "lease_not_found" });
    expect(kv.get("a").kv).toBeNull();
    expect(kv.revision()).toBe(0);
  });

  test("exactly once with a write session: a retried transaction returns the first result", () => {
    const { dd, kv } = fresh();
    const [reg] = run(dd, kv, { op: "register" });
    const client = (reg as { client: number }).client;
    const cmd: Command = { op: "txn", compare: [{ key: "n", target: "version", result: "==", value: 0 }], then: [put("n", "1")], else: [put("n", "2")] };
    const session = { client, seq: 1 };
    const [first, retry] = commit(dd, kv, [proposal(2, cmd, { session }), proposal(3, cmd, { session })]);
    expect(first).toMatchObject({ succeeded: true, revision: 2 });
    expect(retry).toEqual(first);
    expect(kv.get("n").kv).toMatchObject({ value: bytes("1"), version: 1 });
  });

  test("delete by prefix deletes every key under it, one event each", () => {
    const { dd, kv } = fresh();
    run(dd, kv, put("p/1", "a"), put("p/2", "b"), put("q", "c"));
    const [r] = run(dd, kv, { op: "txn", compare: [], then: [{ op: "delPrefix", prefix: "p/" }], else: [] });
    expect((r as Extract<Result, { op: "txn" }>).responses).toEqual([{ op: "delPrefix", deleted: 2 }]);
    expect(kv.count("").count).toBe(1);
  });
});

describe("leases", () => {
  test("grant, attach, expire by entry: keys deleted, delete events, the lease gone", () => {
    const { dd, kv } = fresh();
    const [g] = run(dd, kv, { op: "leaseGrant", ttlMs: 5000 });
    const id = (g as { id: number }).id;
    expect(id).toBe(1);
    run(dd, kv, put("l/a", "1", id), put("l/b", "2", id), put("plain", "3"));
    expect(kv.leaseKeys(id, 10)).toEqual(["l/a", "l/b"]);
    // A put without a lease detaches the key (etcd semantics): it survives the expiry.
    run(dd, kv, put("l/b", "again"));
    expect(kv.leaseOf("l/b")).toBe(0);
    const [e] = run(dd, kv, { op: "leaseExpire", id });
    expect(e).toEqual({ op: "leaseExpire", revision: 6, found: true, deleted: 1 });
    expect(kv.get("l/a").kv).toBeNull();
    expect(kv.get("l/b").kv).not.toBeNull();
    expect(kv.lease(id)).toBeNull();
    expect(kv.events(5, 6, 10).map((x) => [x.type, x.key])).toEqual([["delete", "l/a"]]);
    // A second expiry (a retried proposal) changes nothing.
    expect(run(dd, kv, { op: "leaseExpire", id })[0]).toEqual({ op: "leaseExpire", revision: 6, found: false, deleted: 0 });
    expect(run(dd, kv, put("x", "1", id))[0]).toMatchObject({ error: "lease_not_found" });
  });

  test("the state machine never expires a lease by itself, however far log time moves", () => {
    const { dd, kv } = fresh();
    const [g] = commit(dd, kv, [proposal(1, { op: "leaseGrant", ttlMs: 1000 }, { time: 1000 })]);
    const id = (g as { id: number }).id;
    commit(dd, kv, [proposal(2, put("k", "v", id), { time: 1000 }), proposal(3, put("z", "z"), { time: 10_000_000 })]);
    expect(kv.lease(id)).not.toBeNull();
    expect(kv.get("k").kv).not.toBeNull();
  });

  test("TTL bounds are checked", () => {
    const { dd, kv } = fresh();
    expect(run(dd, kv, { op: "leaseGrant", ttlMs: 10 })[0]).toMatchObject({ error: "invalid_lease" });
  });
});

describe("history", () => {
  test("bounded: whole revisions pruned oldest first, the floor says what is gone; survives reopening", () => {
    const { dd, kv, dir } = fresh();
    for (let i = 0; i < 12; i++) run(dd, kv, put(`k${i}`, "v"));
    // The 11th event passed maxEvents 10: pruned down to 9 (90%), floor 2; the 12th makes 10.
    expect(kv.historyStats()).toMatchObject({ events: 10, floor: 2 });
    expect(kv.events(0, 100, 100)[0]!.revision).toBe(3);
    run(dd, kv, { op: "txn", compare: [], then: [put("t1", "a"), put("t2", "b")], else: [] });
    const before = kv.historyStats();
    const revisions = kv.events(0, 100, 100).map((e) => e.revision);
    dd.close();
    open.splice(open.indexOf(dd), 1);
    const again = fresh(dir);
    expect(again.kv.historyStats()).toEqual(before);
    expect(again.kv.events(0, 100, 100).map((e) => e.revision)).toEqual(revisions);
  });

  test("pruning pages through revisions larger than a page; counters match a fresh count of the rows", () => {
    const dir = temp.make("phalanx-kvx");
    const dd = openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] }, addresses: {} });
    open.push(dd);
    const kv = new KvStore(dd, { history: { maxEvents: 1000, maxBytes: 1 << 24 } });
    for (let t = 0; t < 12; t++) {
      run(dd, kv, { op: "txn", compare: [], then: Array.from({ length: 100 }, (_, i) => put(`p/${t * 100 + i}`, "v")), else: [] });
    }
    // One revision of 1,200 deletes: more than a prune page, and more than the limit by itself.
    run(dd, kv, { op: "txn", compare: [], then: [{ op: "delPrefix", prefix: "p/" }], else: [] });
    run(dd, kv, put("after", "1"));
    const stats = kv.historyStats();
    // Everything before the big revision went; the big one (now older than current) went too.
    expect(stats.floor).toBe(13);
    expect(stats.events).toBe(1);
    dd.close();
    open.splice(open.indexOf(dd), 1);
    const again = fresh(dir);
    expect(again.kv.historyStats()).toEqual(stats);
  });

  test("a snapshot carries history and leases; the installed copy has the same floor", () => {
    const a = fresh();
    const [g] = run(a.dd, a.kv, { op: "leaseGrant", ttlMs: 5000 });
    const id = (g as { id: number }).id;
    for (let i = 0; i < 12; i++) run(a.dd, a.kv, put(`k${i}`, "v", id));
    const snap = a.kv.snapshot();
    const b = fresh();
    b.kv.restore(snap.data, { index: snap.index, term: 1, conf: snap.conf });
    expect(b.kv.historyStats()).toEqual(a.kv.historyStats());
    expect(b.kv.events(0, 1000, 1000)).toEqual(a.kv.events(0, 1000, 1000));
    expect(b.kv.leaseKeys(id, 100)).toEqual(a.kv.leaseKeys(id, 100));
    expect(b.kv.lease(id)).toEqual(a.kv.lease(id));
  });
});
