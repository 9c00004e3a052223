// A brand-new cluster's first election (raft.ts, "first election of a brand-new cluster"): the
// first voter by id campaigns at once and every pristine voter answers inside its boot
// stickiness; it needs every voter's grant; anything else elects on the ordinary timeout.
import { expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { TestCluster } from "./harness.ts";

const ids = ["a", "b", "c"];

/** Ticks (all nodes, settling between) until a leader is elected; how many it took. */
function ticksToLeader(c: TestCluster, bound = 200): number {
  for (let t = 0; t < bound; t++) {
    if (c.leader() !== null) return t;
    c.tick();
  }
  throw new Error("no leader elected");
}

test("a brand-new cluster elects its first voter at once, before any tick, with a no-op every node applies", () => {
  const c = new TestCluster(ids);
  expect(c.node("b").raw.campaignFirstElection()).toEqual({ campaigned: false, why: "a runs the first election" });
  expect(c.node("c").raw.campaignFirstElection()).toEqual({ campaigned: false, why: "a runs the first election" });
  expect(c.node("a").raw.campaignFirstElection()).toEqual({ campaigned: true });
  c.settle();
  const l = c.leader();
  expect(l?.id).toBe("a");
  for (const n of c.nodes.values()) {
    expect(n.raw.raft.term).toBe(1);
    expect(n.raw.raft.lead).toBe("a");
    expect(n.applied.map((e) => e.type)).toEqual(["noop"]);
  }
  // Both rounds carried the flag, and nothing else did.
  const flagged = c.sent.filter((m) => (m.type === "preVote" || m.type === "vote") && m.firstElection === true);
  expect(flagged.map((m) => `${m.type}>${m.to}`).sort()).toEqual(["preVote>b", "preVote>c", "vote>b", "vote>c"]);
  expect(c.node("a").roleChanges[0]).toEqual({ kind: "campaign", term: 1, vote: "preVote", reason: "firstElection", leader: null });
});

test("without the flag, a pristine voter keeps its boot stickiness: an ordinary early campaign gets no answer", () => {
  const c = new TestCluster(ids);
  c.node("a").raw.campaign();
  c.settle();
  expect(c.leader()).toBeNull();
  expect(c.sent.filter((m) => m.type === "preVoteResp")).toEqual([]);
});

test("a restarted node that holds anything waits the ordinary election timeout", () => {
  const c = new TestCluster(ids);
  c.node("a").raw.campaignFirstElection();
  c.settle();
  c.propose("x");
  // Every node restarts from its storage: term 1, entries, a vote.
  for (const id of ids) c.restart(id);
  c.sent.length = 0;
  for (const id of ids) {
    const d = c.node(id).raw.campaignFirstElection();
    expect(d.campaigned).toBe(false);
  }
  expect(c.node("a").raw.campaignFirstElection()).toEqual({ campaigned: false, why: "not a brand-new node (term 1, last index 2)" });
  c.settle();
  expect(c.sent).toEqual([]);
  // electionTicks is 10: nobody campaigns before, boot stickiness holds for as long.
  const t = ticksToLeader(c);
  expect(t).toBeGreaterThanOrEqual(10);
  expect(c.leader()!.raw.raft.term).toBe(2);
  expect(c.sent.some((m) => "firstElection" in m)).toBe(false);
});

test("a first election the others do not answer runs into the ordinary timeout, counted from the start", () => {
  // The same seed with and without the early campaign: the same leader at the same tick.
  const plain = new TestCluster(ids, {}, 7);
  plain.isolate("c");
  const plainTicks = ticksToLeader(plain);
  const early = new TestCluster(ids, {}, 7);
  early.isolate("c");
  // c never answers: the first election needs every voter, so it stays pending.
  expect(early.node("a").raw.campaignFirstElection()).toEqual({ campaigned: true });
  early.settle();
  expect(early.leader()).toBeNull();
  expect(early.node("a").raw.raft.role).toBe("preCandidate");
  const earlyTicks = ticksToLeader(early);
  expect(earlyTicks).toBe(plainTicks);
  expect(earlyTicks).toBeGreaterThanOrEqual(10);
  expect(earlyTicks).toBeLessThan(20);
  const l = early.leader()!;
  expect(l.id).toBe(plain.leader()!.id);
  expect(l.raw.raft.term).toBe(1);
  // The fallback is an ordinary election: a majority, no flag.
  expect(early.sent.some((m) => m.type === "preVote" && m.firstElection !== true && m.from === l.id)).toBe(true);
});

test("a refused first election falls back to an ordinary election", () => {
  const c = new TestCluster(ids, {}, 3);
  // b is not brand new (it voted for itself in term 1): it refuses the term-1 pre-vote.
  c.node("b").storage.save(null, [], { term: 1, vote: "b", commit: 0 });
  c.restart("b");
  c.tick(4);
  expect(c.leader()).toBeNull();
  expect(c.node("a").raw.campaignFirstElection()).toEqual({ campaigned: true });
  c.settle();
  // b's refusal carried its term: a follows it there, and no election went on.
  expect(c.node("a").raw.raft.role).toBe("follower");
  expect(c.node("a").raw.raft.term).toBe(1);
  expect(c.sent.some((m) => m.type === "vote")).toBe(false);
  const t = 4 + ticksToLeader(c);
  // An ordinary election: on a timeout, within the window of the slowest timer (a's restarted at tick 4).
  const campaigns = [...c.nodes.values()].flatMap((n) => n.roleChanges.filter((r) => r.kind === "campaign").map((r) => r.kind === "campaign" && r.reason));
  expect(campaigns.filter((r) => r !== "firstElection").every((r) => r === "timeout")).toBe(true);
  expect(t).toBeGreaterThanOrEqual(10);
  expect(t).toBeLessThan(24);
  expect([...c.nodes.values()].filter((n) => n.raw.raft.role === "leader").length).toBe(1);
});

test("a voter whose data was lost cannot help elect a second leader: the first election needs every voter", () => {
  // b leads term 2 with a lease; a and c lose their data dirs and restart empty: both look
  // brand new, and a is the first voter. A majority (a and c) would elect a second leader while
  // b still serves; b's refusal must end the first election.
  const c = new TestCluster(ids);
  const first = c.elect();
  if (first.id !== "b") expect(first.raw.transferLeadership("b")).toEqual({ ok: true });
  c.settle();
  const b = c.leader()!;
  expect(b.id).toBe("b");
  c.propose("acknowledged");
  c.tick(1);
  expect(b.raw.raft.leaseValid()).toBe(true);
  c.add("a", new MemoryStorage({ voters: ids, learners: [] }));
  c.add("c", new MemoryStorage({ voters: ids, learners: [] }));
  // b's refusal is slow to arrive (cut): a hears c's grant first, so b's silence must be enough.
  c.cut.add("b>a");
  const before = c.sent.length;
  expect(c.node("a").raw.campaignFirstElection()).toEqual({ campaigned: true });
  c.settle();
  const leaders = [...c.nodes.values()].filter((n) => n.raw.raft.role === "leader");
  expect(leaders.map((n) => n.id)).toEqual(["b"]);
  // c, pristine, granted the pre-vote; a majority (a and c) would have gone on to the vote.
  const during = c.sent.slice(before);
  expect(during.some((m) => m.type === "preVoteResp" && m.from === "c" && !m.reject)).toBe(true);
  expect(during.some((m) => m.type === "vote")).toBe(false);
  expect(c.node("c").raw.raft.vote).toBeNull();
  expect(c.node("a").raw.raft.role).toBe("preCandidate");
  c.heal();
  // And b catches the wiped nodes up as usual.
  c.tick(2);
  for (const n of c.nodes.values()) expect(n.raw.raft.lead).toBe("b");
});

test("a pristine voter answers only the first voter's flagged requests of term 1 with an empty log", () => {
  const c = new TestCluster(ids);
  const voter = c.node("c");
  const req = { type: "preVote" as const, to: "c", term: 1, lastIndex: 0, lastTerm: 0, transfer: false, firstElection: true as const };
  // Not the first voter, a later term, a non-empty log: boot stickiness still applies, no answer.
  voter.raw.step({ ...req, from: "b" });
  voter.raw.step({ ...req, from: "a", term: 2 });
  voter.raw.step({ ...req, from: "a", lastIndex: 3, lastTerm: 1 });
  expect(voter.raw.ready().messages).toEqual([]);
  voter.raw.advance();
  voter.raw.step({ ...req, from: "a" });
  expect(voter.raw.ready().messages).toEqual([{ type: "preVoteResp", from: "c", to: "a", term: 1, reject: false }]);
  voter.raw.advance();
});

test("a single voter and a learner never run a first election", () => {
  expect(new TestCluster(["a"]).node("a").raw.campaignFirstElection()).toEqual({ campaigned: false, why: "a single voter elects itself" });
  const withLearner = new TestCluster(["a", "b"], {}, 1, ["l"]);
  expect(withLearner.node("l").raw.campaignFirstElection()).toEqual({ campaigned: false, why: "not a voter" });
});
