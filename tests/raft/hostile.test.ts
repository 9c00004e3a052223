// A peer speaking nonsense: well-formed messages (they passed the transport's schema) with
// contents no correct peer would send. The core must refuse them with a reason, never throw,
// and the cluster must keep working.
import { expect, test } from "bun:test";
import type { Entry, Message } from "../../src/raft/types.ts";
import { Prng } from "../sim/prng.ts";
import { TestCluster } from "./harness.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function randomMessage(r: Prng, to: string, ids: string[]): Message {
  const from = r.pick([...ids, "stranger"]);
  const term = r.int(12);
  const entries = (): Entry[] => {
    const start = r.int(30);
    return Array.from({ length: r.int(4) }, (_, i) => ({
      index: r.chance(0.8) ? start + i + 1 : r.int(40),
      term: r.int(14),
      type: r.pick(["normal", "noop", "conf"] as const),
      data: r.chance(0.5) ? enc("{not json") : enc(JSON.stringify({ op: "addVoter", node: "x", context: "", voters: ["x"], learners: [] })),
    }));
  };
  switch (r.int(9)) {
    case 0: {
      const es = entries();
      return { type: "append", from, to, term, prevIndex: es.length > 0 && r.chance(0.7) ? es[0]!.index - 1 : r.int(30), prevTerm: r.int(12), entries: es, commit: r.int(50) };
    }
    case 1:
      return { type: "appendResp", from, to, term, index: r.int(60), reject: r.chance(0.5), hintIndex: r.int(60), hintTerm: r.int(12) };
    case 2:
      return { type: "heartbeat", from, to, term, commit: r.int(60), seq: r.int(100) };
    case 3:
      return { type: "heartbeatResp", from, to, term, seq: r.int(100) };
    case 4:
      return { type: r.pick(["vote", "preVote"] as const), from, to, term, lastIndex: r.int(60), lastTerm: r.int(14), transfer: r.chance(0.3) };
    case 5:
      return { type: r.pick(["voteResp", "preVoteResp"] as const), from, to, term, reject: r.chance(0.5) };
    case 6: {
      const total = r.int(20);
      const offset = r.int(25);
      return { type: "snapshot", from, to, term, meta: { index: r.int(40), term: r.int(14), conf: { voters: r.chance(0.8) ? ids : [], learners: [] } }, offset, total, chunk: new Uint8Array(r.int(10)) };
    }
    case 7:
      return { type: "snapshotResp", from, to, term, index: r.int(40), received: r.int(30), reject: r.chance(0.3) };
    default:
      return { type: r.pick(["timeoutNow", "readIndex", "readIndexResp"] as const), from, to, term, ctx: "x", index: r.int(60), reject: r.chance(0.5) } as Message;
  }
}

test("thousands of nonsense messages never throw, and the cluster keeps committing", () => {
  const c = new TestCluster(["a", "b", "c"], { snapshotEvery: 20 });
  c.elect();
  for (let i = 0; i < 30; i++) c.propose(`before${i}`);
  const r = new Prng(99);
  let warnings = 0;
  for (let i = 0; i < 20_000; i++) {
    const target = c.node(r.pick(["a", "b", "c"]));
    target.raw.step(randomMessage(r, target.id, ["a", "b", "c"]));
    const rd = target.raw.ready();
    warnings += rd.warnings.length;
    target.storage.save(rd.snapshot, rd.entries, rd.hardState);
    target.raw.advance();
    if (i % 500 === 0) c.tick(1);
  }
  expect(warnings).toBeGreaterThan(1000);
  // Nonsense may have cost elections, but the cluster recovers and commits again.
  c.tick(60);
  c.elect();
  const before = Math.max(...[...c.nodes.values()].map((n) => n.raw.status().commit));
  expect(c.propose("after").ok).toBe(true);
  c.tick(3);
  expect(Math.max(...[...c.nodes.values()].map((n) => n.raw.status().commit))).toBeGreaterThan(before);
});

test("an append below the commit index never rewrites a committed entry", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  for (let i = 0; i < 5; i++) c.propose(`c${i}`);
  c.tick(2);
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  const st = f.raw.status();
  const victim = st.commit - 2;
  const before = f.storage.entries(victim, victim + 1, 1e9)[0]!;
  f.raw.step({ type: "append", from: l.id, to: f.id, term: st.term, prevIndex: victim - 1, prevTerm: f.storage.term(victim - 1), entries: [{ index: victim, term: st.term, type: "normal", data: enc("evil") }], commit: 0 });
  const rd = f.raw.ready();
  f.storage.save(rd.snapshot, rd.entries, rd.hardState);
  f.raw.advance();
  expect(rd.entries).toEqual([]);
  expect(rd.messages).toEqual([{ type: "appendResp", from: f.id, to: l.id, term: st.term, index: st.commit, reject: false, hintIndex: 0, hintTerm: 0 }]);
  expect(f.storage.entries(victim, victim + 1, 1e9)[0]).toBe(before);
});

test("a conf entry that does not decode is refused, not applied", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(1);
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  const st = f.raw.status();
  f.raw.step({ type: "append", from: l.id, to: f.id, term: st.term, prevIndex: st.lastIndex, prevTerm: f.storage.term(st.lastIndex), entries: [{ index: st.lastIndex + 1, term: st.term, type: "conf", data: enc("garbage") }], commit: 0 });
  const rd = f.raw.ready();
  f.raw.advance();
  expect(rd.warnings[0]).toContain("corrupt conf change entry");
  expect(f.raw.status().lastIndex).toBe(st.lastIndex);
});

// Issue 9 §4: with the shared key anyone can sign as any node. A forged current-term append from
// a node that is not the term's leader made a follower keep an entry the cluster never committed.
test("an append, heartbeat or snapshot from a node other than the term's leader is refused with a reason", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  for (let i = 0; i < 3; i++) c.propose(`c${i}`);
  c.tick(2);
  const [f, impostor] = [...c.nodes.values()].filter((n) => n !== l);
  const st = f!.raw.status();
  expect(st.leader).toBe(l.id);
  const forged: Message[] = [
    { type: "append", from: impostor!.id, to: f!.id, term: st.term, prevIndex: st.lastIndex, prevTerm: f!.storage.term(st.lastIndex), entries: [{ index: st.lastIndex + 1, term: st.term, type: "normal", data: enc("evil") }], commit: st.lastIndex + 1 },
    { type: "heartbeat", from: impostor!.id, to: f!.id, term: st.term, commit: st.lastIndex, seq: 1 },
    { type: "snapshot", from: impostor!.id, to: f!.id, term: st.term, meta: { index: st.lastIndex + 5, term: st.term, conf: { voters: ["a", "b", "c"], learners: [] } }, offset: 0, total: 1, chunk: new Uint8Array(1) },
    { type: "timeoutNow", from: impostor!.id, to: f!.id, term: st.term },
  ];
  for (const m of forged) {
    f!.raw.step(m);
    const rd = f!.raw.ready();
    f!.storage.save(rd.snapshot, rd.entries, rd.hardState);
    f!.raw.advance();
    expect(rd.warnings).toEqual([`refused ${m.type} from ${impostor!.id} (term ${st.term}): ${impostor!.id} is not the leader of term ${st.term} (${l.id} is)`]);
    expect(rd.entries).toEqual([]);
    expect(rd.messages).toEqual([]);
    expect(rd.snapshot).toBeNull();
  }
  const after = f!.raw.status();
  expect(after.lastIndex).toBe(st.lastIndex);
  expect(after.role).toBe("follower");
  expect(after.leader).toBe(l.id);
  expect(after.term).toBe(st.term);
  // The real leader still replicates to it.
  expect(c.propose("after").ok).toBe(true);
  c.tick(2);
  expect(f!.raw.status().commit).toBeGreaterThan(st.commit);
});
