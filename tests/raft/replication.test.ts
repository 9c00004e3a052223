import { expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { RawNode } from "../../src/raft/raw_node.ts";
import type { Entry } from "../../src/raft/types.ts";
import { TestCluster, texts } from "./harness.ts";

const enc = (s: string) => new TextEncoder().encode(s);

test("entries replicate to every node and apply in order (§5.3)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  c.elect();
  for (let i = 0; i < 10; i++) expect(c.propose(`v${i}`).ok).toBe(true);
  c.tick(2);
  for (const n of c.nodes.values()) expect(texts(n.applied)).toEqual(Array.from({ length: 10 }, (_, i) => `v${i}`));
});

test("a follower proposal is refused with the leader's id (the API layer forwards)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  expect(f.raw.propose(enc("x"))).toEqual({ ok: false, reason: "not the leader", leader: l.id });
});

test("many proposals in one turn become one append per follower (batching)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.sent.length = 0;
  for (let i = 0; i < 100; i++) l.raw.propose(enc(`b${i}`));
  c.settle();
  const appends = c.sent.filter((m) => m.type === "append" && m.entries.length > 0);
  expect(appends.length).toBe(2);
  for (const m of appends) expect(m.type === "append" && m.entries.length).toBe(100);
});

test("byte cap per message and the in-flight window bound what is outstanding", () => {
  const c = new TestCluster(["a", "b", "c"], { maxMsgBytes: 100, maxInflight: 4 });
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  // Hold the follower's answers back: the leader may only have 4 appends out to it.
  c.cut.add(`${f.id}>${l.id}`);
  c.sent.length = 0;
  for (let i = 0; i < 20; i++) l.raw.propose(new Uint8Array(60));
  c.settle();
  const toF = c.sent.filter((m) => m.type === "append" && m.to === f.id);
  expect(toF.length).toBe(4);
  for (const m of toF) expect(m.type === "append" && m.entries.length).toBe(1);
  c.heal();
  c.tick(3);
  expect(f.raw.status().commit).toBe(l.raw.status().commit);
});

test("a lagging follower is probed then replicated; fast backtracking skips whole terms", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(f.id);
  for (let i = 0; i < 50; i++) c.propose(`p${i}`);
  c.heal();
  c.sent.length = 0;
  c.tick(2);
  expect(f.raw.status().lastIndex).toBe(l.raw.status().lastIndex);
  const rejects = c.sent.filter((m) => m.type === "appendResp" && m.reject && m.from === f.id);
  expect(rejects.length).toBeLessThanOrEqual(1);
});

test("conflicting uncommitted suffix is replaced using the conflict-term hint", () => {
  // Follower b holds 30 entries of an old term 2 that were never committed; leader a holds term 3.
  const conf = { voters: ["a", "b", "c"], learners: [] };
  const mk = (term: number, from: number, n: number): Entry[] =>
    Array.from({ length: n }, (_, i) => ({ term, index: from + i, type: "normal" as const, data: enc(`t${term}`) }));
  const sa = new MemoryStorage(conf);
  sa.save(null, [...mk(1, 1, 5), ...mk(3, 6, 10)], { term: 3, vote: "a", commit: 5 });
  const sb = new MemoryStorage(conf);
  sb.save(null, [...mk(1, 1, 5), ...mk(2, 6, 30)], { term: 2, vote: "b", commit: 5 });
  const sc = new MemoryStorage(conf);
  sc.save(null, [...mk(1, 1, 5), ...mk(3, 6, 10)], { term: 3, vote: "a", commit: 5 });
  const c = new TestCluster([], {});
  c.add("a", sa);
  c.add("b", sb);
  c.add("c", sc);
  const l = c.elect();
  expect(l.id === "a" || l.id === "c").toBe(true);
  c.tick(2);
  const b = c.node("b");
  expect(b.raw.status().lastIndex).toBe(l.raw.status().lastIndex);
  for (let i = 6; i <= 15; i++) expect(b.storage.term(i)).toBe(3);
  const rejects = c.sent.filter((m) => m.type === "appendResp" && m.reject && m.from === "b");
  expect(rejects.length).toBeLessThanOrEqual(2); // one hint skips the whole term-2 run
});

test("an entry of an earlier term is committed only through an entry of the current term (§5.4.2)", () => {
  const conf = { voters: ["a", "b", "c"], learners: [] };
  const s = new MemoryStorage(conf);
  // a was leader of term 2 and appended index 2 that never got replicated.
  s.save(null, [{ term: 1, index: 1, type: "noop", data: new Uint8Array() }, { term: 2, index: 2, type: "normal", data: enc("old") }], { term: 2, vote: "a", commit: 1 });
  const raw = new RawNode({ id: "a", storage: s, random: () => 0 });
  for (let i = 0; i < 30 && raw.raft.role !== "candidate"; i++) {
    raw.tick();
    if (raw.hasReady()) {
      const rd = raw.ready();
      s.save(rd.snapshot, rd.entries, rd.hardState);
      raw.advance();
      for (const m of rd.messages) if (m.type === "preVote") raw.step({ type: "preVoteResp", from: m.to, to: "a", term: m.term, reject: false });
    }
  }
  expect(raw.raft.role).toBe("candidate");
  raw.step({ type: "voteResp", from: "b", to: "a", term: 3, reject: false });
  expect(raw.raft.role).toBe("leader");
  let rd = raw.ready();
  s.save(rd.snapshot, rd.entries, rd.hardState);
  raw.advance();
  // b acknowledges the old entry (index 2) only: a majority holds it, but it is from term 2.
  raw.step({ type: "appendResp", from: "b", to: "a", term: 3, index: 2, reject: false, hintIndex: 0, hintTerm: 0 });
  expect(raw.status().commit).toBe(1);
  // Once b holds the term-3 no-op at index 3, both commit.
  raw.step({ type: "appendResp", from: "b", to: "a", term: 3, index: 3, reject: false, hintIndex: 0, hintTerm: 0 });
  expect(raw.status().commit).toBe(3);
  rd = raw.ready();
  expect(rd.committed.map((e) => e.index)).toEqual([2, 3]);
});

test("the uncommitted-bytes cap refuses proposals when followers fall behind", () => {
  const c = new TestCluster(["a", "b", "c"], { maxUncommittedBytes: 1000 });
  const l = c.elect();
  for (const n of c.nodes.values()) if (n !== l) c.isolate(n.id);
  let refused = 0;
  for (let i = 0; i < 50; i++) if (!l.raw.propose(new Uint8Array(100)).ok) refused++;
  expect(refused).toBeGreaterThan(35);
});
