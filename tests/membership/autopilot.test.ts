import { expect, test } from "bun:test";
import { Autopilot, type AutopilotConfig, type GossipServer, type LeaderView } from "../../src/node/membership/autopilot.ts";

const cfg: AutopilotConfig = { targetVoters: 5, stabilizationMs: 10_000, maxTrailingLogs: 250, cleanupDeadMs: 60_000 };
const server = (id: string, over: Partial<GossipServer> = {}): GossipServer => ({
  id,
  rpcAddr: `${id}:9000`,
  region: id,
  role: "voter",
  cluster: "",
  state: "alive",
  since: 0,
  ...over,
});
/** `silent`: servers the leader has not heard from within the last election timeout. */
const leader = (voters: string[], learners: string[] = [], match: Record<string, number> = {}, silent: string[] = []): LeaderView => ({
  selfId: voters[0]!,
  lastIndex: 1000,
  conf: { voters, learners },
  progress: Object.fromEntries([...voters, ...learners].slice(1).map((id) => [id, { match: match[id] ?? 1000, recentActive: !silent.includes(id) }])),
  cluster: "",
});

test("a server found by gossip joins as a learner, with its address as context", () => {
  const ap = new Autopilot(cfg);
  const d = ap.next(0, leader(["a", "b", "c"]), [server("a"), server("b"), server("c"), server("d", { role: "candidate" })]);
  expect(d?.change).toEqual({ op: "addLearner", node: "d", context: "d:9000" });
});

test("servers of another cluster or mid-bootstrap are not added", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("d", { role: "candidate", cluster: "c:other" }), server("e", { role: "candidate", cluster: "p:x" })];
  expect(ap.next(0, leader(["a"]), servers)).toBeNull();
});

test("a learner is promoted only after it stayed caught up for the stabilization time", () => {
  const ap = new Autopilot(cfg);
  const view = leader(["a", "b", "c"], ["d"]);
  const servers = [server("a"), server("b"), server("c"), server("d", { role: "learner" })];
  expect(ap.next(0, view, servers)).toBeNull();
  expect(ap.next(9_000, view, servers)).toBeNull();
  expect(ap.next(10_000, view, servers)?.change).toEqual({ op: "addVoter", node: "d", context: "d:9000" });
});

test("a learner that falls behind restarts its stabilization clock", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("d", { role: "learner" })];
  ap.next(0, leader(["a"], ["d"]), servers);
  ap.next(5_000, leader(["a"], ["d"], { d: 100 }), servers); // 900 behind
  expect(ap.next(12_000, leader(["a"], ["d"]), servers)).toBeNull();
  expect(ap.next(22_000, leader(["a"], ["d"]), servers)?.change.op).toBe("addVoter");
});

test("no promotion beyond the target voter count; the rest stay learners", () => {
  const ap = new Autopilot(cfg);
  const voters = ["a", "b", "c", "d", "e"];
  const servers = [...voters, "f"].map((id) => server(id));
  ap.next(0, leader(voters, ["f"]), servers);
  expect(ap.next(60_000, leader(voters, ["f"]), servers)).toBeNull();
});

test("promotion prefers a region without voters", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a", { region: "lhr" }), server("x", { region: "lhr" }), server("y", { region: "sin" })];
  const view = leader(["a"], ["x", "y"]);
  ap.next(0, view, servers);
  expect(ap.next(10_000, view, servers)?.change.node).toBe("y");
});

test("a voter dead past the cleanup window is removed while the live voters keep a quorum", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("b"), server("c"), server("d"), server("e", { state: "dead", since: 0 })];
  const view = leader(["a", "b", "c", "d", "e"], [], {}, ["e"]);
  expect(ap.next(30_000, view, servers)).toBeNull();
  expect(ap.next(60_000, view, servers)?.change).toEqual({ op: "remove", node: "e", context: "" });
});

test("a voter gossip calls dead but Raft still hears from is never removed (forged or third-party dead, issue 9)", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("b"), server("c", { state: "dead", since: 0 })];
  expect(ap.next(1e9, leader(["a", "b", "c"]), servers)).toBeNull();
  // Once Raft hears nothing from it either, the cleanup rules apply.
  expect(ap.next(1e9, leader(["a", "b", "c"], [], {}, ["c"]), servers)?.change).toEqual({ op: "remove", node: "c", context: "" });
});

test("never removes a voter when the live voters could not reach the smaller quorum", () => {
  const ap = new Autopilot(cfg);
  // 5 voters, 3 dead: removing one leaves 4 voters needing 3, but only 2 are alive.
  const dead = { state: "dead" as const, since: 0 };
  const servers = [server("a"), server("b"), server("c", dead), server("d", dead), server("e", dead)];
  expect(ap.next(120_000, leader(["a", "b", "c", "d", "e"]), servers)).toBeNull();
});

test("a 'left' waits out the cleanup window like a death: anyone with the gossip key can claim it (issue 9)", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("b"), server("c", { state: "left", since: 0 })];
  const view = leader(["a", "b", "c"], [], {}, ["c"]);
  expect(ap.next(1_000, view, servers)).toBeNull();
  expect(ap.next(59_999, view, servers)).toBeNull();
  expect(ap.next(60_000, view, servers)?.change).toEqual({ op: "remove", node: "c", context: "" });
});

test("the leader never removes itself", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a", { state: "dead", since: 0 }), server("b"), server("c")];
  expect(ap.next(120_000, leader(["a", "b", "c"], [], {}, ["a"]), servers)).toBeNull();
});

test("a server whose identity proof failed is skipped, so a fake member cannot hold up real ones", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("aaa-evil", { role: "candidate" }), server("d", { role: "candidate" })];
  expect(ap.next(0, leader(["a"]), servers)?.change.node).toBe("aaa-evil");
  expect(ap.next(0, leader(["a"]), servers, new Set(["aaa-evil"]))?.change).toEqual({ op: "addLearner", node: "d", context: "d:9000" });
  expect(ap.next(0, leader(["a"]), servers, new Set(["aaa-evil", "d"]))).toBeNull();
});

test("servers gossip never saw are left alone (static peers)", () => {
  const ap = new Autopilot(cfg);
  expect(ap.next(1e9, leader(["a", "b", "c"]), [server("a")])).toBeNull();
});
