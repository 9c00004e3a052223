import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { encodeMemberContext } from "../../src/kv/member.ts";
import { KvStore } from "../../src/kv/store.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { CorruptDataError } from "../../src/storage/errors.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, commit, conf, proposal } from "./fixtures.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

function node(): { dd: DataDir; kv: KvStore } {
  const dd = openDataDir(temp.make("phalanx-snap"), { bootstrap: { voters: ["n1"], learners: [] } });
  open.push(dd);
  return { dd, kv: new KvStore(dd) };
}

function dump(kv: KvStore) {
  return { applied: kv.appliedIndex(), revision: kv.revision(), time: kv.logTime(), kvs: kv.range({ prefix: "", limit: 1000 }), members: kv.members() };
}

describe("KV snapshots", () => {
  test("a snapshot restored on another node reproduces the state, sessions included", () => {
    const a = node();
    commit(a.dd, a.kv, [
      proposal(1, { op: "register" }, { time: 50 }),
      proposal(2, { op: "put", key: "x", value: bytes("1") }, { session: { client: 1, seq: 1 }, time: 60 }),
      conf(3, { op: "addLearner", node: "n2", context: encodeMemberContext({ address: "h2:1", region: "sin" }) }),
      proposal(4, { op: "put", key: "y", value: bytes("2") }),
      proposal(5, { op: "del", key: "y" }),
    ]);
    const snap = a.kv.snapshot();
    expect(snap.index).toBe(5);
    expect(snap.conf).toEqual({ voters: ["n1"], learners: ["n2"] });

    const b = node();
    commit(b.dd, b.kv, [proposal(1, { op: "put", key: "stale", value: bytes("z") })]);
    const meta = { index: snap.index, term: 1, conf: snap.conf };
    b.dd.transaction(() => {
      b.dd.log.save({ meta, data: snap.data }, [], { term: 1, vote: null, commit: 5 });
      b.kv.restore(snap.data, meta);
    });
    expect(dump(b.kv)).toEqual(dump(a.kv));
    expect(b.kv.members()).toContainEqual({ id: "n2", address: "h2:1", region: "sin", role: "learner" });
    expect(b.dd.log.snapshot().data).toEqual(snap.data);
    // The restored session still deduplicates, on both nodes alike.
    const retry = proposal(6, { op: "put", key: "x", value: bytes("1") }, { session: { client: 1, seq: 1 } });
    let ra: unknown;
    let rb: unknown;
    a.dd.transaction(() => {
      a.dd.log.save(null, [retry], null);
      ra = a.kv.apply(retry);
    });
    b.dd.transaction(() => {
      b.dd.log.save(null, [retry], null);
      rb = b.kv.apply(retry);
    });
    expect(rb).toEqual(ra);
    expect(rb).toEqual({ op: "put", revision: 2, prev: null });
  });

  test("an image of format 1 (members without a region) restores, with the regions unknown", () => {
    const a = node();
    commit(a.dd, a.kv, [conf(1, { op: "addLearner", node: "n2", context: "h2:1" }), proposal(2, { op: "put", key: "x", value: bytes("1") })]);
    // The image an older phalanx would have sent: its members table has no region column.
    const old = Database.deserialize(a.kv.snapshot().data);
    old.run("ALTER TABLE members DROP COLUMN region");
    old.run("PRAGMA user_version = 1");
    const data = old.serialize();
    old.close();
    const b = node();
    const meta = { index: 2, term: 1, conf: { voters: ["n1"], learners: ["n2"] } };
    b.dd.transaction(() => {
      b.dd.log.save({ meta, data }, [], { term: 1, vote: null, commit: 2 });
      b.kv.restore(data, meta);
    });
    expect(b.kv.members()).toEqual([
      { id: "n1", address: "", region: "", role: "voter" },
      { id: "n2", address: "h2:1", region: "", role: "learner" },
    ]);
    expect(b.kv.get("x").kv?.value).toEqual(bytes("1"));
  });

  test("the snapshot is the last committed state: refused inside a transaction, which goes on unharmed", () => {
    const a = node();
    commit(a.dd, a.kv, [proposal(1, { op: "put", key: "x", value: bytes("1") })]);
    a.dd.transaction(() => {
      a.dd.log.save(null, [proposal(2, { op: "put", key: "x", value: bytes("2") })], null);
      a.kv.apply(proposal(2, { op: "put", key: "x", value: bytes("2") }));
      expect(() => a.kv.snapshot()).toThrow(/outside a transaction/);
    });
    const snap = a.kv.snapshot();
    expect(snap.index).toBe(2);
    // Taken on the node's own connection, which stays usable: the image holds x = 2.
    const b = node();
    b.dd.transaction(() => b.kv.restore(snap.data, { index: 2, term: 1, conf: snap.conf }));
    expect(new TextDecoder().decode(b.kv.get("x").kv!.value)).toBe("2");
    commit(a.dd, a.kv, [proposal(3, { op: "put", key: "x", value: bytes("3") })]);
    expect(new TextDecoder().decode(a.kv.get("x").kv!.value)).toBe("3");
  });

  test("garbage, a foreign image or an image at another index is refused and nothing changes", () => {
    const a = node();
    commit(a.dd, a.kv, [proposal(1, { op: "put", key: "x", value: bytes("1") })]);
    const good = a.kv.snapshot();
    const b = node();
    commit(b.dd, b.kv, [proposal(1, { op: "put", key: "keep", value: bytes("me") })]);
    const before = dump(b.kv);
    const attempt = (data: Uint8Array, index: number) => () => b.kv.restore(data, { index, term: 1, conf: good.conf });
    expect(attempt(bytes("hello, not a database"), 1)).toThrow(CorruptDataError);
    expect(attempt(good.data, 7)).toThrow(/image holds state at index 1, expected 7/);
    const truncated = good.data.slice(0, 4096);
    expect(attempt(truncated, 1)).toThrow(CorruptDataError);
    const foreign = new Database(":memory:");
    foreign.run("CREATE TABLE t (x)");
    expect(attempt(foreign.serialize(), 1)).toThrow(/not a phalanx snapshot/);
    foreign.close();
    expect(dump(b.kv)).toEqual(before);
  });
});
