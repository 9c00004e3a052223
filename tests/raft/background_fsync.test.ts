// A leader's own entries written and sent before their fsync (Ready.fsyncInBackground): the core
// counts the leader's copy toward a commit, and applies an entry, only once the node reports the
// fsync done (raw_node.ts synced()). Each test drives the leader's Ready by hand; the harness
// handles every other Ready the synchronous way.
import { expect, test } from "bun:test";
import type { Entry } from "../../src/raft/types.ts";
import { TestCluster, type TestNode } from "./harness.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const texts = (es: Entry[]) => es.filter((e) => e.type === "normal").map((e) => new TextDecoder().decode(e.data));

/** Proposes `text` on the leader and handles its Ready the background way; returns the mark. */
function proposeInBackground(c: TestCluster, leader: TestNode, text: string) {
  const r = leader.raw.propose(enc(text));
  if (!r.ok) throw new Error(`refused: ${r.reason}`);
  const rd = leader.raw.ready();
  expect(rd.fsyncInBackground).toBe(true);
  expect(rd.entries.map((e) => e.index)).toEqual([r.index]);
  leader.storage.save(rd.snapshot, rd.entries, rd.hardState); // written, not yet fsynced
  for (const e of rd.committed) leader.applied.push(e);
  const mark = leader.raw.advanceBeforeSync();
  expect(mark).toEqual({ index: r.index, term: leader.raw.raft.term });
  for (const m of rd.messages) {
    if (c.cut.has(`${m.from}>${m.to}`)) continue;
    c.node(m.to).raw.step(m);
  }
  c.settle();
  return { mark, index: r.index };
}

test("a leader's entry written but not fsynced does not count toward a commit: one follower's answer is not a majority", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.settle();
  const [f1, f2] = ["a", "b", "c"].filter((id) => id !== l.id) as [string, string];
  // f2 hears nothing: the entry reaches f1 only, which persists and answers.
  c.cut.add(`${l.id}>${f2}`);
  c.cut.add(`${f2}>${l.id}`);
  const { mark, index } = proposeInBackground(c, l, "x");
  expect(c.node(f1).storage.lastIndex()).toBe(index);
  expect(l.raw.raft.prs.get(f1)!.match).toBe(index);
  // Counting the leader's unsynced copy would make {leader, f1} a majority: a power cut on the
  // leader would then leave the entry on f1's disk only, and f2 plus the restarted leader could
  // elect a leader without it.
  expect(l.raw.raft.log.committed).toBeLessThan(index);
  expect(texts(l.applied)).toEqual([]);
  l.raw.synced(mark);
  c.settle();
  expect(l.raw.raft.log.committed).toBe(index);
  expect(texts(l.applied)).toEqual(["x"]);
  expect(texts(c.node(f1).applied)).toEqual(["x"]);
});

test("two followers' answers commit without the leader's fsync, but the leader applies only once its own copy is durable", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.settle();
  const { mark, index } = proposeInBackground(c, l, "x");
  // Both followers hold it durably: a majority without the leader.
  expect(l.raw.raft.log.committed).toBe(index);
  // The followers apply (they hold it durably); the leader does not yet: its state machine is
  // never ahead of its durable log, so a power cut cannot leave it applied but missing.
  for (const id of ["a", "b", "c"].filter((x) => x !== l.id)) expect(texts(c.node(id).applied)).toEqual(["x"]);
  expect(texts(l.applied)).toEqual([]);
  expect(l.raw.hasReady()).toBe(false);
  l.raw.synced(mark);
  c.settle();
  expect(texts(l.applied)).toEqual(["x"]);
});

test("a single-node cluster commits its write when the background fsync is reported, not when it is written", () => {
  const c = new TestCluster(["a"]);
  const l = c.elect();
  c.settle();
  const { mark, index } = proposeInBackground(c, l, "x");
  expect(l.raw.raft.log.committed).toBeLessThan(index);
  expect(l.raw.hasReady()).toBe(false);
  l.raw.synced(mark);
  expect(l.raw.raft.log.committed).toBe(index);
  c.settle();
  expect(texts(l.applied)).toEqual(["x"]);
});

test("an fsync reported after the entry was replaced by a newer leader's says nothing about the new entry", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const old = c.elect();
  c.settle();
  c.isolate(old.id);
  const { mark, index } = proposeInBackground(c, old, "lost");
  expect(old.raw.raft.log.committed).toBeLessThan(index);
  // The other two elect a leader, which writes its own entry at the same index.
  let next: TestNode | null = null;
  for (let t = 0; t < 500 && next === null; t++) {
    c.tick(1, ["a", "b", "c"].filter((id) => id !== old.id));
    const l = c.leader();
    if (l !== null && l.id !== old.id) next = l;
  }
  expect(next).not.toBeNull();
  c.propose("kept");
  c.heal();
  c.tick(5);
  expect(old.raw.raft.role).toBe("follower");
  expect(old.raw.raft.log.term(index)).not.toBe(mark.term);
  const durable = old.raw.raft.log.durable;
  old.raw.synced(mark); // late: the entry it covered is gone
  expect(old.raw.raft.log.durable).toBe(durable);
  c.settle();
  expect(texts(old.applied)).toEqual(["kept"]);
});

test("a leader's Ready without new entries allows no background fsync; the synchronous path stays valid for one that does", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.settle();
  l.raw.propose(enc("y"));
  const rd = l.raw.ready();
  expect(rd.fsyncInBackground).toBe(true);
  l.storage.save(rd.snapshot, rd.entries, rd.hardState);
  l.raw.advance(); // written and fsynced: counted at once
  expect(l.raw.raft.log.durable).toBe(l.raw.raft.log.lastIndex());
  l.raw.ready(); // no new entries now
  expect(() => l.raw.advanceBeforeSync()).toThrow(/must be durable first/);
});
