// The watch hub against a real KvStore: live and catch-up watchers see every revision once and in
// order; a consumer that stops reading is paused (bounded buffer), then resumes from the history,
// or is cancelled with "compacted" when the history moved past it; a snapshot that jumps past
// history cancels honestly; blocking waits resolve on a change.
import { afterEach, expect, test } from "bun:test";
import type { Command, Result } from "../../src/kv/command.ts";
import type { KvEvent } from "../../src/kv/history.ts";
import { KvStore } from "../../src/kv/store.ts";
import { Watcher, WatchHub, type CancelReason, type WatchSink } from "../../src/kv/watch_hub.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { TempDirs } from "../storage/temp_dir.ts";
import { bytes, proposal } from "./fixtures.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

function fresh(maxEvents = 1000): { dd: DataDir; kv: KvStore } {
  const dd = openDataDir(temp.make("phalanx-hub"), { bootstrap: { voters: ["n1"], learners: [] }, addresses: {} });
  open.push(dd);
  return { dd, kv: new KvStore(dd, { history: { maxEvents, maxBytes: 1 << 24 } }) };
}

function run(dd: DataDir, kv: KvStore, ...cmds: Command[]): Result[] {
  const start = kv.appliedIndex() + 1;
  const entries: Entry[] = cmds.map((c, i) => proposal(start + i, c));
  return dd.transaction(() => {
    dd.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index });
    return entries.map((e) => kv.apply(e));
  }) as Result[];
}

const put = (key: string, value = "v"): Extract<Command, { op: "put" }> => ({ op: "put", key, value: bytes(value) });
const settle = () => new Promise((r) => setTimeout(r, 0));

class Recorder implements WatchSink {
  got: Array<[number, string[]]> = [];
  cancel: CancelReason | null = null;
  /** How many revisions it takes before saying "full". */
  constructor(private room = Infinity) {}
  events(revision: number, events: KvEvent[]): boolean {
    this.got.push([revision, events.map((e) => `${e.type}:${e.key}`)]);
    return this.got.length < this.room;
  }
  progress(): void {}
  cancelled(reason: CancelReason): void {
    this.cancel = reason;
  }
}

test("live watchers by key and prefix; a txn arrives as one revision", async () => {
  const { dd, kv } = fresh();
  const hub = new WatchHub(kv);
  const byKey = new Recorder();
  const byPrefix = new Recorder();
  hub.watch({ key: "a" }, undefined, byKey);
  hub.watch({ prefix: "p/" }, undefined, byPrefix);
  run(dd, kv, put("a"), put("p/1"), put("b"), { op: "txn", compare: [], then: [put("p/2"), put("a", "2"), { op: "del", key: "p/1" }], else: [] });
  await settle();
  expect(byKey.got).toEqual([
    [1, ["put:a"]],
    [4, ["put:a"]],
  ]);
  expect(byPrefix.got).toEqual([
    [2, ["put:p/1"]],
    [4, ["put:p/2", "delete:p/1"]],
  ]);
});

test("from an old revision: catches up from the history, then goes live, no gap or duplicate", async () => {
  const { dd, kv } = fresh();
  const hub = new WatchHub(kv, { maxWatchers: 10, pageEvents: 3 });
  for (let i = 1; i <= 10; i++) run(dd, kv, put(`k${i}`));
  await settle();
  const r = new Recorder();
  const w = hub.watch({ prefix: "k" }, 4, r) as Watcher;
  hub.resume(w);
  run(dd, kv, put("k11"));
  await settle();
  expect(r.got.map((g) => g[0])).toEqual([4, 5, 6, 7, 8, 9, 10, 11]);
});

test("a consumer that stops reading is paused, resumes exactly where it stopped", async () => {
  const { dd, kv } = fresh();
  const hub = new WatchHub(kv);
  const r = new Recorder(2);
  const w = hub.watch({ prefix: "" }, undefined, r) as Watcher;
  for (let i = 1; i <= 5; i++) run(dd, kv, put(`k${i}`));
  await settle();
  // It said "full" after two revisions: nothing more was pushed into its buffer.
  expect(r.got.map((g) => g[0])).toEqual([1, 2]);
  run(dd, kv, put("k6"));
  await settle();
  expect(r.got.length).toBe(2);
  (r as unknown as { room: number }).room = Infinity;
  hub.resume(w);
  run(dd, kv, put("k7"));
  await settle();
  expect(r.got.map((g) => g[0])).toEqual([1, 2, 3, 4, 5, 6, 7]);
});

test("a paused watcher the history moved past is cancelled: compacted, with current and oldest revision", async () => {
  const { dd, kv } = fresh(10);
  const hub = new WatchHub(kv);
  const r = new Recorder(1);
  const w = hub.watch({ prefix: "" }, undefined, r) as Watcher;
  for (let i = 1; i <= 30; i++) {
    run(dd, kv, put(`k${i}`));
    await settle();
  }
  // Cancelled without reading on: the reason is queued behind what it has not read yet.
  expect(r.got.length).toBe(1);
  // Cancelled at the first prune that passed it (the 11th event with maxEvents 10).
  expect(r.cancel).toMatchObject({ error: "compacted", currentRevision: 11, oldestRevision: 3 });
  expect(r.cancel!.message).toContain("read too slowly");
  expect(r.cancel!.message).toContain("current revision is 11, oldest available is 3");
  hub.resume(w);
  expect(hub.watcherCount()).toBe(0);
  // A new watch from a pruned revision is refused the same way.
  const refused = hub.watch({ prefix: "" }, 2, new Recorder());
  expect(refused).toMatchObject({ error: "compacted", oldestRevision: kv.historyFloor() + 1 });
});

test("a snapshot that jumps past history this node never saw cancels watchers that needed it", async () => {
  const leader = fresh(5);
  for (let i = 1; i <= 20; i++) run(leader.dd, leader.kv, put(`k${i}`));
  const snap = leader.kv.snapshot();
  const follower = fresh(5);
  const hub = new WatchHub(follower.kv);
  const r = new Recorder();
  hub.watch({ prefix: "" }, undefined, r);
  follower.dd.transaction(() => follower.kv.restore(snap.data, { index: snap.index, term: 1, conf: snap.conf }));
  await settle();
  expect(r.got).toEqual([]);
  expect(r.cancel).toMatchObject({ error: "compacted" });
});

test("blocking wait: resolves on a change of the key after N, at once when it already changed, else at the timeout", async () => {
  const { dd, kv } = fresh();
  const hub = new WatchHub(kv);
  run(dd, kv, put("a"), put("b"));
  let done = false;
  const waiting = hub.waitForChange({ key: "a" }, 2, 5000).then(() => (done = true));
  run(dd, kv, put("b"));
  await settle();
  expect(done).toBe(false);
  run(dd, kv, put("a"));
  await waiting;
  expect(done).toBe(true);
  await hub.waitForChange({ key: "a" }, 1, 5000);
  const t0 = performance.now();
  await hub.waitForChange({ key: "a" }, kv.revision(), 100);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(90);
  expect(hub.watcherCount()).toBe(0);
});
