// The core says why it campaigned or stepped down (Ready.roleChanges), and reports its decisions
// to an injected trace hook (LOG_LEVEL=debug), without the hook changing what it decides.
import { expect, test } from "bun:test";
import type { RoleChange } from "../../src/raft/raw_node.ts";
import { TestCluster } from "./harness.ts";

const others = (c: TestCluster, id: string) => [...c.nodes.values()].filter((n) => n.id !== id);

test("an election after a leader went silent names the leader and the ticks waited", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  for (const n of c.nodes.values()) n.roleChanges.length = 0;
  c.isolate(l.id);
  c.tick(40);
  const next = c.leader()!;
  expect(next.id).not.toBe(l.id);
  const timeouts = next.roleChanges.filter((r) => r.kind === "campaign" && r.reason === "timeout");
  expect(timeouts.length).toBeGreaterThan(0);
  const first = timeouts[0] as Extract<RoleChange, { reason: "timeout" }>;
  expect(first.leader).toBe(l.id);
  expect(first.ticks).toBeGreaterThanOrEqual(10);
  expect(first.vote).toBe("preVote");
  // The isolated leader stepped down by check-quorum, naming both voters it no longer heard.
  const down = l.roleChanges.find((r) => r.kind === "stepDown");
  expect(down).toEqual({ kind: "stepDown", term: l.raw.raft.term, reason: "checkQuorum", inactive: others(c, l.id).map((n) => n.id).sort() });
});

test("a transfer is the reason of the target's election; the old leader steps down on the higher term", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const target = others(c, l.id)[0]!;
  for (const n of c.nodes.values()) n.roleChanges.length = 0;
  const term = l.raw.raft.term;
  expect(l.raw.transferLeadership(target.id)).toEqual({ ok: true });
  c.settle();
  expect(c.leader()!.id).toBe(target.id);
  expect(target.roleChanges).toEqual([{ kind: "campaign", term: term + 1, vote: "vote", reason: "transfer", leader: l.id }]);
  expect(l.roleChanges).toEqual([{ kind: "stepDown", term, reason: "higherTerm", from: target.id, newTerm: term + 1, message: "vote" }]);
});

test("the trace hook sees votes granted and refused with the reason, and appends rejected", () => {
  const events: { event: string; fields: Record<string, unknown> }[] = [];
  const c = new TestCluster(["a", "b", "c"], { trace: (event, fields) => events.push({ event, fields }) });
  const l = c.elect();
  expect(events.some((e) => e.event === "preVote granted")).toBe(true);
  expect(events.some((e) => e.event === "vote granted")).toBe(true);
  const f = others(c, l.id)[0]!;
  const term = f.raw.raft.term;
  events.length = 0;
  // Stickiness: a follower that hears from its leader ignores a vote.
  f.raw.step({ type: "vote", from: "zz", to: f.id, term: term + 1, lastIndex: 100, lastTerm: term, transfer: false });
  expect(events.map((e) => e.event)).toEqual(["vote ignored: we hear from a leader (stickiness)"]);
  expect(events[0]!.fields).toMatchObject({ candidate: "zz", leader: l.id });
  // A vote in our term from the leader we voted for, with a log behind ours: refused, saying so.
  events.length = 0;
  f.raw.step({ type: "vote", from: l.id, to: f.id, term, lastIndex: 0, lastTerm: 0, transfer: true });
  expect(events[0]!.event).toBe("vote refused");
  expect(String(events[0]!.fields.why)).toBe("candidate's log is behind ours");
  // An append whose prevIndex we do not hold is rejected with why.
  events.length = 0;
  const last = f.raw.raft.log.lastIndex();
  f.raw.step({ type: "append", from: l.id, to: f.id, term, prevIndex: last + 5, prevTerm: term, entries: [], commit: 0 });
  expect(events).toHaveLength(1);
  expect(events[0]!.event).toBe("append rejected: log does not match at prevIndex");
  expect(events[0]!.fields).toMatchObject({ leader: l.id, prevIndex: last + 5, why: "we do not hold prevIndex" });
  f.raw.ready();
  f.raw.advance();
  // Reads on the leader: served from its lease after a heartbeat round, else a ReadIndex round, saying why.
  c.tick(2);
  events.length = 0;
  l.raw.readIndex("r1");
  expect(events.map((e) => e.event)).toEqual(["read served from the lease"]);
  l.raw.transferLeadership(f.id);
  events.length = 0;
  l.raw.readIndex("r2");
  expect(events).toEqual([{ event: "read needs a heartbeat round (ReadIndex)", fields: { ctx: "r2", from: l.id, index: l.raw.raft.log.committed, why: "leadership transfer in this term" } }]);
});

test("a trace hook changes nothing the core decides", () => {
  const run = (trace: boolean) => {
    const c = new TestCluster(["a", "b", "c"], trace ? { trace: () => undefined } : {}, 7);
    c.elect();
    for (let i = 0; i < 5; i++) c.propose(`x${i}`);
    c.isolate(c.leader()!.id);
    c.tick(40);
    return c.sent.map((m) => `${m.type}:${m.from}>${m.to}@${m.term}`).join(",");
  };
  expect(run(true)).toBe(run(false));
});

test("an election the node asked for (a lone voter at start) says so, once for its pre-vote and vote", () => {
  const c = new TestCluster(["a"]);
  const a = c.node("a");
  a.raw.campaign();
  c.settle();
  expect(a.raw.raft.role).toBe("leader");
  expect(a.roleChanges).toEqual([{ kind: "campaign", term: 1, vote: "preVote", reason: "requested", leader: null }]);
});
