// The promise behind "resume a watch on any node": replicas that apply the same log hold the
// same change history, floor and leases at every index, whether they ran straight through, were
// restarted, or installed a snapshot midway. A seeded random workload of puts, deletes,
// transactions (with prefix deletes), leases and their expiry, with a small history bound so
// pruning runs often.
import { afterEach, expect, test } from "bun:test";
import type { Command } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { Prng } from "../sim/prng.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, proposal } from "./fixtures.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

const HISTORY = { maxEvents: 50, maxBytes: 4096 };

function replica(dir = temp.make("phalanx-rep")): { dd: DataDir; kv: KvStore; dir: string } {
  const dd = openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] }, addresses: {} });
  open.push(dd);
  return { dd, kv: new KvStore(dd, { history: HISTORY }), dir };
}

/** The state machine's half of a Ready (the log is not what this test is about). */
function apply(r: { dd: DataDir; kv: KvStore }, entries: Entry[]): void {
  r.dd.transaction(() => {
    for (const e of entries) r.kv.apply(e);
  });
}

function workload(rng: Prng, index: number, leases: number[]): Command {
  const key = () => `k/${rng.int(12)}`;
  const value = () => bytes("v".repeat(rng.int(200)));
  const roll = rng.int(10);
  if (roll < 4) return { op: "put", key: key(), value: value(), ...(leases.length > 0 && rng.chance(0.3) ? { lease: rng.pick(leases) } : {}) };
  if (roll < 5) return { op: "del", key: key() };
  if (roll < 6) return { op: "leaseGrant", ttlMs: 5000 };
  if (roll < 7 && leases.length > 0) return { op: rng.chance(0.5) ? "leaseExpire" : "leaseRevoke", id: rng.pick(leases) };
  const ops = Array.from({ length: 1 + rng.int(4) }, (_, i) => ({ op: "put" as const, key: `t/${index}/${i}`, value: value() }));
  return {
    op: "txn",
    compare: [{ key: key(), target: "version", result: rng.chance(0.5) ? "==" : ">", value: 0 }],
    then: rng.chance(0.2) ? [{ op: "delPrefix", prefix: "t/" }] : ops,
    else: [{ op: "del", key: key() }],
  };
}

test("same log, same history: straight through, restarted midway, snapshot installed midway", () => {
  for (const seed of [1, 2, 3]) {
    const rng = new Prng(seed);
    const a = replica();
    let b = replica();
    const c = replica();
    const leases: number[] = [];
    let index = 0;
    for (let batch = 0; batch < 60; batch++) {
      const entries: Entry[] = [];
      for (let i = 0; i < 1 + rng.int(5); i++) {
        const cmd = workload(rng, ++index, leases);
        if (cmd.op === "leaseGrant") leases.push(index);
        entries.push(proposal(index, cmd, { time: 1000 + index }));
      }
      apply(a, entries);
      apply(b, entries);
      if (batch === 20) {
        // c installs a's snapshot instead of applying the first 21 batches.
        const snap = a.kv.snapshot();
        c.dd.transaction(() => c.kv.restore(snap.data, { index: snap.index, term: 1, conf: snap.conf }));
      } else if (batch > 20) apply(c, entries);
      if (batch === 30) {
        b.dd.close();
        open.splice(open.indexOf(b.dd), 1);
        b = replica(b.dir);
      }
      for (const r of batch >= 20 ? [b, c] : [b]) {
        expect(r.kv.historyStats()).toEqual(a.kv.historyStats());
        expect(r.kv.events(0, index, 10_000)).toEqual(a.kv.events(0, index, 10_000));
        expect(r.kv.allLeases()).toEqual(a.kv.allLeases());
        expect(r.kv.range({ prefix: "", limit: 1000 })).toEqual(a.kv.range({ prefix: "", limit: 1000 }));
      }
    }
    // Pruning really ran, many times.
    expect(a.kv.historyFloor()).toBeGreaterThan(50);
  }
});
