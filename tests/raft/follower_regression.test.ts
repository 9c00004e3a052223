// A follower that comes back with fewer entries than it acknowledged (its WAL deleted or damaged,
// an old backup restored) is a fault the leader must see, report and repair; a stale or
// duplicated reject from before the follower caught up is not.
import { expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import type { AppendRespMsg } from "../../src/raft/types.ts";
import { TestCluster, texts, type TestNode } from "./harness.ts";

const CONF = { voters: ["a", "b", "c"], learners: [] };

function setup(): { c: TestCluster; l: TestNode; f: TestNode } {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  for (let i = 0; i < 20; i++) expect(c.propose(`v${i}`).ok).toBe(true);
  c.tick(2);
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  expect(l.raw.status().progress[f.id]!.match).toBe(l.raw.status().lastIndex);
  return { c, l, f };
}

test("a follower back with an empty log (WAL deleted) is detected, reported once and caught up", () => {
  const { c, l, f } = setup();
  const acknowledged = l.raw.status().progress[f.id]!.match;
  // The follower restarts from storage that lost everything: term 0, no vote, no entries.
  const back = c.add(f.id, new MemoryStorage(CONF));
  expect(back.raw.status().lastIndex).toBe(0);
  c.tick(2);
  expect(c.propose("after").ok).toBe(true);
  c.tick(2);
  expect(l.followerRegressions).toEqual([{ id: f.id, term: l.raw.status().term, acknowledged, holds: 0 }]);
  const pr = l.raw.status().progress[f.id]!;
  expect(pr.regressions).toBe(1);
  expect(back.raw.status().lastIndex).toBe(l.raw.status().lastIndex);
  expect(pr.match).toBe(l.raw.status().lastIndex);
  expect(pr.regressedFrom).toBe(0); // caught up again
  expect(texts(back.applied)).toEqual([...Array.from({ length: 20 }, (_, i) => `v${i}`), "after"]);
});

test("a stale reject that looks like a loss, alone, changes nothing and sends nothing", () => {
  const { c, l, f } = setup();
  const s = l.raw.status();
  const match = s.progress[f.id]!.match;
  c.sent.length = 0;
  l.raw.step({ type: "appendResp", from: f.id, to: l.id, term: s.term, index: match, reject: true, hintIndex: 2, hintTerm: 0 });
  expect(l.raw.hasReady()).toBe(false);
  c.tick(3);
  expect(c.sent.filter((m) => m.type === "append" && m.to === f.id)).toEqual([]);
  expect(l.raw.status().progress[f.id]).toMatchObject({ match, state: "replicate", regressions: 0 });
});

test("a follower back at an older prefix (WAL cut mid-way) restarts from what it holds", () => {
  const { c, l, f } = setup();
  const acknowledged = l.raw.status().progress[f.id]!.match;
  const old = new MemoryStorage(CONF);
  const hs = f.storage.hardState();
  old.save(null, f.storage.entries(1, 9, Infinity), { term: hs.term, vote: hs.vote, commit: 5 });
  const back = c.add(f.id, old);
  expect(c.propose("after").ok).toBe(true);
  c.tick(2);
  expect(l.followerRegressions).toEqual([{ id: f.id, term: hs.term, acknowledged, holds: 8 }]);
  expect(back.raw.status().lastIndex).toBe(l.raw.status().lastIndex);
  expect(l.raw.status().progress[f.id]!.state).toBe("replicate");
});

test("a stale reject from before the follower caught up, even duplicated, is no fault", () => {
  const { c, l, f } = setup();
  const s = l.raw.status();
  // What the follower answered while it was still behind, delivered late and twice.
  const stale: AppendRespMsg = { type: "appendResp", from: f.id, to: l.id, term: s.term, index: 3, reject: true, hintIndex: 2, hintTerm: 0 };
  l.raw.step(stale);
  l.raw.step({ ...stale });
  c.settle();
  l.raw.step({ ...stale, index: s.progress[f.id]!.match }); // the leader's probe at match, answered long ago
  c.settle();
  c.tick(2);
  expect(l.followerRegressions).toEqual([]);
  const pr = l.raw.status().progress[f.id]!;
  expect(pr.regressions).toBe(0);
  expect(pr.match).toBe(l.raw.status().lastIndex);
  expect(pr.state).toBe("replicate");
});

test("a reject of an older term never gets near the progress", () => {
  const { l, f } = setup();
  const s = l.raw.status();
  l.raw.step({ type: "appendResp", from: f.id, to: l.id, term: s.term - 1, index: 3, reject: true, hintIndex: 0, hintTerm: 0 });
  expect(l.raw.status().progress[f.id]!.state).toBe("replicate");
  expect(l.raw.hasReady()).toBe(false);
});
