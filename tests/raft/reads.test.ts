import { expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { RawNode, type Ready } from "../../src/raft/raw_node.ts";
import { TestCluster } from "./harness.ts";

test("lease read: served at the leader without a heartbeat round while a majority lease holds", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(2); // heartbeat acks establish the lease
  expect(l.raw.status().leaseValid).toBe(true);
  c.sent.length = 0;
  l.raw.readIndex("r1");
  c.settle();
  expect(c.sent.filter((m) => m.type === "heartbeat").length).toBe(0);
  expect(l.reads).toEqual([{ ctx: "r1", index: l.raw.status().commit, lease: true }]);
});

test("the lease lasts electionTimeout - maxClockDrift ticks after the last majority ack", () => {
  const c = new TestCluster(["a", "b", "c"], { electionTicks: 10, maxClockDriftTicks: 3 });
  const l = c.elect();
  c.tick(2);
  for (const n of c.nodes.values()) if (n !== l) c.isolate(n.id);
  let valid = 0;
  while (l.raw.status().leaseValid) {
    c.tick(1, [l.id]);
    valid++;
  }
  expect(valid).toBe(7);
});

test("ReadIndex fallback: without a lease a read waits for a heartbeat quorum (§6.4)", () => {
  const c = new TestCluster(["a", "b", "c"], { leaseReads: false });
  const l = c.elect();
  c.tick(1);
  c.sent.length = 0;
  l.raw.readIndex("r1");
  l.raw.readIndex("r2");
  c.settle();
  // Both reads share one heartbeat round.
  expect(c.sent.filter((m) => m.type === "heartbeat").length).toBe(2);
  expect(l.reads.map((r) => [r.ctx, r.lease])).toEqual([["r1", false], ["r2", false]]);
});

test("an isolated leader cannot confirm a ReadIndex and fails it when it steps down", () => {
  const c = new TestCluster(["a", "b", "c"], { leaseReads: false });
  const l = c.elect();
  c.isolate(l.id);
  l.raw.readIndex("r1");
  c.tick(25);
  expect(l.reads).toEqual([]);
  expect(l.readFailures.map((f) => f.ctx)).toEqual(["r1"]);
});

test("reads wait until the new leader commits an entry of its term", () => {
  const s = new MemoryStorage({ voters: ["a", "b", "c"], learners: [] });
  s.save(null, [{ term: 1, index: 1, type: "normal", data: new Uint8Array([1]) }], { term: 1, vote: "b", commit: 0 });
  const raw = new RawNode({ id: "a", storage: s, random: () => 0 });
  const drain = (): Ready => {
    const rd = raw.ready();
    s.save(rd.snapshot, rd.entries, rd.hardState);
    raw.advance();
    return rd;
  };
  for (let i = 0; i < 30 && raw.raft.role === "follower"; i++) raw.tick();
  raw.step({ type: "preVoteResp", from: "b", to: "a", term: 2, reject: false });
  raw.step({ type: "voteResp", from: "b", to: "a", term: 2, reject: false });
  expect(raw.raft.role).toBe("leader");
  drain();
  raw.readIndex("early");
  const held = drain();
  expect(held.readStates).toEqual([]);
  expect(held.messages.some((m) => m.type === "heartbeat")).toBe(false); // no round until committed
  // The no-op (index 2, term 2) commits; the read then needs a heartbeat round (no lease yet).
  raw.step({ type: "appendResp", from: "b", to: "a", term: 2, index: 2, reject: false, hintIndex: 0, hintTerm: 0 });
  const round = drain();
  const hb = round.messages.find((m) => m.type === "heartbeat");
  expect(hb?.type === "heartbeat" && hb.seq).toBe(1);
  expect(round.readStates).toEqual([]);
  raw.step({ type: "heartbeatResp", from: "b", to: "a", term: 2, seq: 1 });
  expect(drain().readStates).toEqual([{ ctx: "early", index: 2, lease: false }]);
});

test("a follower read is forwarded to the leader as ReadIndex and answered with its index", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.propose("x");
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  f.raw.readIndex("fr");
  c.settle();
  expect(f.reads).toEqual([{ ctx: "fr", index: l.raw.status().commit, lease: false }]);
  expect(c.sent.some((m) => m.type === "readIndex" && m.from === f.id)).toBe(true);
});

test("a follower without a leader fails the read at once", () => {
  const c = new TestCluster(["a", "b", "c"]);
  c.node("a").raw.readIndex("x");
  c.settle();
  expect(c.node("a").readFailures).toEqual([{ ctx: "x", reason: "no leader" }]);
});

test("leadership transfer disables the lease for the rest of the term", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(2);
  expect(l.raw.status().leaseValid).toBe(true);
  const target = [...c.nodes.values()].find((n) => n !== l)!;
  c.cut.add(`${l.id}>${target.id}`); // the transfer cannot complete
  l.raw.transferLeadership(target.id);
  expect(l.raw.status().leaseValid).toBe(false);
  c.tick(12);
  expect(l.raw.status().role).toBe("leader");
  expect(l.raw.status().transferee).toBe(null);
  expect(l.raw.status().leaseValid).toBe(false);
});
