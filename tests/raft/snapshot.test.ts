import { expect, test } from "bun:test";
import { TestCluster, texts } from "./harness.ts";

test("the core asks for a snapshot every N applied entries and the log is compacted", () => {
  const c = new TestCluster(["a", "b", "c"], { snapshotEvery: 10 });
  const l = c.elect();
  for (let i = 0; i < 35; i++) c.propose(`s${i}`);
  c.tick(2);
  for (const n of c.nodes.values()) {
    expect(n.storage.snapshotMeta().index).toBeGreaterThanOrEqual(30);
    expect(n.storage.firstIndex()).toBe(n.storage.snapshotMeta().index + 1);
  }
  expect(l.raw.status().firstIndex).toBeGreaterThan(30);
});

test("a follower behind the compacted prefix gets the snapshot in chunks, then entries (§7)", () => {
  const c = new TestCluster(["a", "b", "c"], { snapshotEvery: 10, snapshotChunkBytes: 1 });
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(f.id);
  for (let i = 0; i < 120; i++) c.propose(`s${i}`);
  c.heal();
  c.sent.length = 0;
  c.tick(6);
  const chunks = c.sent.filter((m) => m.type === "snapshot" && m.to === f.id);
  expect(chunks.length).toBeGreaterThan(1);
  expect(f.installed.length).toBe(1);
  const snap = f.installed[0]!;
  expect(snap.meta.index).toBeGreaterThanOrEqual(110);
  // The stand-in state machine snapshots its applied count, which equals the index on the leader.
  expect(new TextDecoder().decode(snap.data)).toBe(String(snap.meta.index));
  expect(f.raw.status().commit).toBe(l.raw.status().commit);
  // Entries after the snapshot were applied normally.
  expect(texts(f.applied).at(-1)).toBe("s119");
});

test("a lost snapshot chunk is resent after a stall", () => {
  const c = new TestCluster(["a", "b", "c"], { snapshotEvery: 5, snapshotChunkBytes: 1 });
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(f.id);
  for (let i = 0; i < 30; i++) c.propose(`s${i}`);
  c.heal();
  // Drop the follower's answers for a while: chunks stall and must be retried.
  c.cut.add(`${f.id}>${l.id}`);
  c.tick(8);
  c.heal();
  c.tick(20);
  expect(f.installed.length).toBeGreaterThanOrEqual(1);
  expect(f.raw.status().commit).toBe(l.raw.status().commit);
});

test("restart recovers from snapshot + log; applied entries are not handed out again", () => {
  const c = new TestCluster(["a", "b", "c"], { snapshotEvery: 10 });
  c.elect();
  for (let i = 0; i < 25; i++) c.propose(`r${i}`);
  c.tick(2);
  const n = c.node("b");
  const applied = n.applied.length;
  const snapIndex = n.storage.snapshotMeta().index;
  expect(snapIndex).toBeGreaterThan(0);
  const again = c.restart("b");
  again.applied.push(...n.applied.filter((e) => e.index <= snapIndex));
  c.tick(3);
  expect(again.applied.length).toBe(applied);
  expect(texts(again.applied)).toEqual(texts(n.applied));
});
