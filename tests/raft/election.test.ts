import { expect, test } from "bun:test";
import { TestCluster } from "./harness.ts";

test("a 3-node cluster elects exactly one leader, which appends a no-op of its term (§5.2, §8)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const leaders = [...c.nodes.values()].filter((n) => n.raw.raft.role === "leader");
  expect(leaders.length).toBe(1);
  const term = l.raw.raft.term;
  for (const n of c.nodes.values()) {
    expect(n.raw.raft.term).toBe(term);
    expect(n.raw.raft.lead).toBe(l.id);
    const last = n.applied[n.applied.length - 1]!;
    expect(last.type).toBe("noop");
    expect(last.term).toBe(term);
  }
});

test("election timeouts are randomized in [election, 2*election) from the injected source", () => {
  const draws = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) {
    const c = new TestCluster(["a"], {}, seed);
    let t = 0;
    while (c.node("a").raw.raft.role !== "leader") {
      c.tick();
      t++;
    }
    expect(t).toBeGreaterThanOrEqual(10);
    expect(t).toBeLessThan(20);
    draws.add(t);
  }
  expect(draws.size).toBeGreaterThan(3);
});

test("same seed, same history: the core is deterministic", () => {
  const run = (): string => {
    const c = new TestCluster(["a", "b", "c", "d", "e"], {}, 42);
    c.elect();
    for (let i = 0; i < 20; i++) c.propose(`v${i}`);
    c.isolate(c.leader()!.id);
    c.tick(60);
    return JSON.stringify(c.sent.map((m) => [m.type, m.from, m.to, m.term]));
  };
  expect(run()).toBe(run());
});

test("a vote goes only to a candidate whose log is at least as up to date (§5.4.1)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const lagging = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(lagging.id);
  for (let i = 0; i < 5; i++) c.propose(`x${i}`);
  // The stale node asks directly for votes in a higher term: both others must refuse.
  const r = lagging.raw.raft;
  const others = [...c.nodes.values()].filter((n) => n !== lagging);
  for (const o of others) {
    o.raw.tick(); // leave the stickiness window alone: use transfer=true to bypass it explicitly
    o.raw.step({ type: "vote", from: lagging.id, to: o.id, term: r.term + 5, lastIndex: r.log.lastIndex(), lastTerm: r.log.lastTerm(), transfer: true });
  }
  c.heal();
  const resps = others.flatMap((o) => {
    const rd = o.raw.ready();
    o.raw.advance();
    return rd.messages.filter((m) => m.type === "voteResp");
  });
  expect(resps.length).toBe(2);
  for (const m of resps) expect(m.type === "voteResp" && m.reject).toBe(true);
});

test("one vote per term, persisted before the answer leaves", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const b = c.node("b");
  b.raw.step({ type: "vote", from: "a", to: "b", term: 1, lastIndex: 0, lastTerm: 0, transfer: true });
  const rd = b.raw.ready();
  expect(rd.hardState).toEqual({ term: 1, vote: "a", commit: 0 });
  expect(rd.messages).toEqual([{ type: "voteResp", from: "b", to: "a", term: 1, reject: false }]);
  b.raw.advance();
  b.raw.step({ type: "vote", from: "c", to: "b", term: 1, lastIndex: 9, lastTerm: 1, transfer: true });
  const rd2 = b.raw.ready();
  expect(rd2.messages).toEqual([{ type: "voteResp", from: "b", to: "c", term: 1, reject: true }]);
});

test("pre-vote: a partitioned node does not inflate its term or disrupt the leader on return (§9.6)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const term = l.raw.raft.term;
  const other = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(other.id);
  c.tick(200);
  expect(other.raw.raft.term).toBe(term);
  expect(other.raw.raft.role).toBe("preCandidate");
  c.heal();
  c.tick(5);
  expect(c.leader()!.id).toBe(l.id);
  expect(l.raw.raft.term).toBe(term);
});

test("check-quorum: an isolated leader steps down within two election timeouts; the rest elect", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.isolate(l.id);
  c.tick(20);
  expect(l.raw.raft.role).toBe("follower");
  const next = c.leader();
  expect(next).not.toBeNull();
  expect(next!.id).not.toBe(l.id);
  expect(next!.raw.raft.term).toBeGreaterThan(l.raw.raft.term);
});

test("followers refuse to vote while they still hear from a leader (stickiness)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  const term = f.raw.raft.term;
  f.raw.step({ type: "vote", from: "zz", to: f.id, term: term + 1, lastIndex: 100, lastTerm: term, transfer: false });
  expect(f.raw.raft.term).toBe(term);
  expect(f.raw.raft.vote).toBe(f.raw.raft.vote);
  expect(f.raw.ready().messages.length).toBe(0);
  f.raw.advance();
});

test("after a restart a node refuses votes for one election timeout", () => {
  const c = new TestCluster(["a", "b", "c"]);
  c.elect();
  const n = c.restart("b");
  const term = n.raw.raft.term;
  n.raw.step({ type: "vote", from: "c", to: "b", term: term + 1, lastIndex: 100, lastTerm: term, transfer: false });
  expect(n.raw.raft.term).toBe(term);
});

test("a follower that keeps answering counts as answered recently at every tick, also right after check-quorum clears recentActive; one cut off stops counting an election timeout after its last answer", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const electionTicks = l.raw.raft.cfg.electionTicks;
  const followers = [...c.nodes.keys()].filter((id) => id !== l.id);
  let cleared = 0;
  for (let t = 0; t < 3 * electionTicks; t++) {
    // The leader's tick, looked at before the answers to its heartbeats arrive.
    l.raw.tick();
    const s = l.raw.status();
    for (const f of followers) {
      expect(s.progress[f]!.answeredRecently).toBe(true);
      if (!l.raw.raft.prs.get(f)!.recentActive) cleared++;
    }
    c.settle();
  }
  // Check-quorum cleared the window meanwhile: asked then, recentActive said "silent" (how
  // `phalanx member remove` was refused for a false reason).
  expect(cleared).toBeGreaterThan(0);
  const [cut, kept] = followers as [string, string];
  c.isolate(cut);
  for (let t = 1; t <= electionTicks; t++) {
    l.raw.tick();
    expect(l.raw.status().progress[cut]!.answeredRecently).toBe(t < electionTicks);
    expect(l.raw.status().progress[kept]!.answeredRecently).toBe(true);
    c.settle();
  }
});
