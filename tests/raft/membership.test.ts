import { expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { TestCluster, texts } from "./harness.ts";

test("a learner catches up without voting, then is promoted to voter (§4.1, learners)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  for (let i = 0; i < 5; i++) c.propose(`v${i}`);
  c.add("d", new MemoryStorage({ voters: [], learners: [] }));
  expect(l.raw.proposeConfChange({ op: "addLearner", node: "d", context: "127.0.0.1:9004" }).ok).toBe(true);
  c.settle();
  c.tick(3);
  const d = c.node("d");
  expect(texts(d.applied)).toEqual(["v0", "v1", "v2", "v3", "v4"]);
  expect(l.raw.status().conf).toEqual({ voters: ["a", "b", "c"], learners: ["d"] });
  expect(d.raw.raft.role).toBe("follower");
  // The learner never campaigns even when it stops hearing from the leader.
  c.isolate("d");
  c.tick(40, ["d"]);
  expect(d.raw.raft.role).toBe("follower");
  c.heal();
  c.tick(2);
  expect(l.raw.proposeConfChange({ op: "addVoter", node: "d", context: "" }).ok).toBe(true);
  c.settle();
  c.tick(2);
  for (const n of c.nodes.values()) expect(n.raw.status().conf.voters.sort()).toEqual(["a", "b", "c", "d"]);
});

test("only one configuration change at a time", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(1);
  for (const n of c.nodes.values()) if (n !== l) c.isolate(n.id);
  expect(l.raw.proposeConfChange({ op: "addLearner", node: "d", context: "" }).ok).toBe(true);
  const second = l.raw.proposeConfChange({ op: "addLearner", node: "e", context: "" });
  expect(second).toEqual({ ok: false, reason: "another configuration change is in progress", leader: l.id });
});

test("a change takes effect when appended, and is undone if the entry is truncated", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(1);
  const f = [...c.nodes.values()].find((n) => n !== l)!;
  const third = [...c.nodes.values()].find((n) => n !== l && n !== f)!;
  // Only f receives the conf entry; the leader and f are then cut off and the third node leads.
  c.cut.add(`${l.id}>${third.id}`);
  expect(l.raw.proposeConfChange({ op: "addLearner", node: "x", context: "" }).ok).toBe(true);
  c.settle();
  expect(f.raw.status().conf.learners).toEqual(["x"]); // in effect before commit
  c.isolate(l.id);
  c.tick(40);
  const next = c.leader()!;
  expect(next.id).not.toBe(l.id);
  c.heal();
  c.tick(5);
  for (const n of c.nodes.values()) expect(n.raw.status().conf.voters.length).toBe(3);
  // Whoever won, every node agrees on the configuration after the logs converge.
  const confs = new Set([...c.nodes.values()].map((n) => JSON.stringify(n.raw.status().conf)));
  expect(confs.size).toBe(1);
});

test("removing the leader: it commits the change, steps down and hands over", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  c.tick(1);
  expect(l.raw.proposeConfChange({ op: "remove", node: l.id, context: "" }).ok).toBe(true);
  c.settle();
  expect(l.raw.raft.role).toBe("follower");
  c.tick(3);
  const next = c.leader();
  expect(next).not.toBeNull();
  expect(next!.id).not.toBe(l.id);
  expect(next!.raw.status().conf.voters).not.toContain(l.id);
  expect(c.propose("after").ok).toBe(true);
  // The removed node never campaigns again.
  c.tick(50, [l.id]);
  expect(l.raw.raft.role).toBe("follower");
});

test("refuses to remove the last voter or to add an existing member", () => {
  const c = new TestCluster(["a"]);
  const l = c.elect();
  c.tick(1);
  expect(l.raw.proposeConfChange({ op: "remove", node: "a", context: "" })).toEqual({ ok: false, reason: "cannot remove the last voter", leader: "a" });
  expect(l.raw.proposeConfChange({ op: "addVoter", node: "a", context: "" }).ok).toBe(false);
  expect(l.raw.proposeConfChange({ op: "remove", node: "zz", context: "" }).ok).toBe(false);
});

test("leadership transfer: the target catches up, gets TimeoutNow and wins (§3.10)", () => {
  const c = new TestCluster(["a", "b", "c"]);
  const l = c.elect();
  const target = [...c.nodes.values()].find((n) => n !== l)!;
  c.isolate(target.id);
  for (let i = 0; i < 5; i++) c.propose(`t${i}`);
  c.heal();
  expect(l.raw.transferLeadership(target.id)).toEqual({ ok: true });
  expect(l.raw.propose(new Uint8Array([1])).ok).toBe(false); // proposals wait during a transfer
  c.settle();
  c.tick(2);
  expect(c.leader()!.id).toBe(target.id);
  expect(c.sent.some((m) => m.type === "timeoutNow" && m.to === target.id)).toBe(true);
  expect(texts(target.applied).slice(-5)).toEqual(["t0", "t1", "t2", "t3", "t4"]);
});

test("transfer to a non-voter is refused", () => {
  const c = new TestCluster(["a", "b", "c"], {}, 1, ["d"]);
  const l = c.elect();
  expect(l.raw.transferLeadership("d")).toEqual({ ok: false, reason: "d is not a voter" });
});
