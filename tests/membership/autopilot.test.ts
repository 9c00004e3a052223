import { describe, expect, test } from "bun:test";
import { encodeMemberContext } from "../../src/kv/member.ts";
import { Autopilot, type AutopilotConfig, type LeaderView } from "../../src/node/membership/autopilot.ts";
import type { ServerHealth } from "../../src/node/membership/server_view.ts";

const cfg: AutopilotConfig = { targetVoters: 5, stabilizationMs: 10_000, maxTrailingLogs: 250, cleanupDeadMs: 60_000, voterRegions: [] };
const server = (id: string, over: Partial<ServerHealth> = {}): ServerHealth => ({
  id,
  rpcAddr: `${id}:9000`,
  region: id,
  cluster: "",
  state: "alive",
  since: 0,
  ...over,
});
/** The context the autopilot writes for a server at `${id}:9000` in `region`. */
const ctx = (id: string, region = id) => encodeMemberContext({ address: `${id}:9000`, region });
/**
 * `silent`: servers the leader has not heard from within the last election timeout. `regions`:
 * what the replicated members table records (default: each member in the region named after it).
 */
const leader = (voters: string[], learners: string[] = [], match: Record<string, number> = {}, silent: string[] = [], regions: Record<string, string> = {}): LeaderView => ({
  selfId: voters[0]!,
  lastIndex: 1000,
  conf: { voters, learners },
  members: [
    ...voters.map((id) => ({ id, address: `${id}:9000`, region: regions[id] ?? id, role: "voter" as const })),
    ...learners.map((id) => ({ id, address: `${id}:9000`, region: regions[id] ?? id, role: "learner" as const })),
  ],
  progress: Object.fromEntries([...voters, ...learners].slice(1).map((id) => [id, { match: match[id] ?? 1000, answeredRecently: !silent.includes(id) }])),
  cluster: "",
});

test("a server found by gossip joins as a learner, with its address and region as context", () => {
  const ap = new Autopilot(cfg);
  const d = ap.next(0, leader(["a", "b", "c"]), [server("a"), server("b"), server("c"), server("d")]);
  expect(d?.change).toEqual({ op: "addLearner", node: "d", context: ctx("d") });
});

test("servers of another cluster or mid-bootstrap are not added", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("d", { cluster: "c:other" }), server("e", { cluster: "p:x" })];
  expect(ap.next(0, leader(["a"]), servers)).toBeNull();
});

test("a learner is promoted only after it stayed caught up for the stabilization time", () => {
  const ap = new Autopilot(cfg);
  const view = leader(["a", "b", "c"], ["d"]);
  const servers = [server("a"), server("b"), server("c"), server("d")];
  expect(ap.next(0, view, servers)).toBeNull();
  expect(ap.next(9_000, view, servers)).toBeNull();
  expect(ap.next(10_000, view, servers)?.change).toEqual({ op: "addVoter", node: "d", context: ctx("d") });
});

test("a learner that falls behind restarts its stabilization clock", () => {
  const ap = new Autopilot(cfg);
  const servers = [server("a"), server("d")];
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

test("promotion prefers a region without voters, by the regions the log records", () => {
  const ap = new Autopilot(cfg);
  // Gossip's word is not what counts for members: the log says x is in lhr with a, y in sin.
  const servers = [server("a", { region: "lhr" }), server("x", { region: "sin" }), server("y", { region: "lhr" })];
  const view = leader(["a"], ["x", "y"], {}, [], { a: "lhr", x: "lhr", y: "sin" });
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
  const servers = [server("a"), server("aaa-evil"), server("d")];
  expect(ap.next(0, leader(["a"]), servers)?.change.node).toBe("aaa-evil");
  expect(ap.next(0, leader(["a"]), servers, new Set(["aaa-evil"]))?.change).toEqual({ op: "addLearner", node: "d", context: ctx("d") });
  expect(ap.next(0, leader(["a"]), servers, new Set(["aaa-evil", "d"]))).toBeNull();
});

test("servers gossip never saw are left alone (static peers)", () => {
  const ap = new Autopilot(cfg);
  expect(ap.next(1e9, leader(["a", "b", "c"]), [server("a")])).toBeNull();
});

describe("VOTER_REGIONS", () => {
  const placed: AutopilotConfig = { ...cfg, voterRegions: ["lhr", "fra", "ord"] };
  const regions = { lhr1: "lhr", fra1: "fra", ord1: "ord", jnb1: "jnb", sin1: "sin", lhr2: "lhr" };
  const servers = Object.entries(regions).map(([id, region]) => server(id, { region }));
  const view = (voters: string[], learners: string[], silent: string[] = []) => leader(voters, learners, {}, silent, regions);
  /** Gossip sees the members of `v` and nobody else (no server waiting to be added). */
  const only = (v: LeaderView, list = servers) => list.filter((x) => v.members.some((m) => m.id === x.id));

  test("a server from outside the list joins as a learner, and the reason says it stays one", () => {
    const ap = new Autopilot(placed);
    const d = ap.next(0, view(["lhr1", "fra1", "ord1"], []), servers.filter((x) => x.id !== "lhr2" && x.id !== "sin1"));
    expect(d?.change).toEqual({ op: "addLearner", node: "jnb1", context: ctx("jnb1", "jnb") });
    expect(d?.reason).toContain("jnb is not in VOTER_REGIONS: it stays a learner");
  });

  test("learners outside the list are never promoted, however long they are healthy; inside the list they are", () => {
    const ap = new Autopilot(placed);
    const v = view(["lhr1", "fra1"], ["jnb1", "sin1", "ord1"]);
    expect(ap.next(0, v, only(v))).toBeNull();
    const d = ap.next(10_000, v, only(v));
    expect(d?.change).toEqual({ op: "addVoter", node: "ord1", context: ctx("ord1", "ord") });
    expect(d?.reason).toContain("ord is in VOTER_REGIONS");
    // With ord1 a voter, the far learners stay learners below the target of 5 voters.
    const after = view(["lhr1", "fra1", "ord1"], ["jnb1", "sin1"]);
    expect(ap.next(20_000, after, only(after))).toBeNull();
    expect(ap.next(1e9, after, only(after))).toBeNull();
  });

  test("a learner whose region the log does not record yet is not promoted (gossip's claim is not enough)", () => {
    const ap = new Autopilot(placed);
    const v = leader(["lhr1"], ["x"], {}, [], { lhr1: "lhr", x: "" });
    const gossip = [server("lhr1", { region: "lhr" }), server("x", { region: "fra" })];
    ap.next(0, v, gossip);
    expect(ap.next(60_000, v, gossip)).toBeNull();
    expect(ap.regionNotes(v, gossip)).toContain("member x has no recorded region yet");
  });

  test("a voter region without a healthy server is reported, and no far learner is promoted to fill it", () => {
    const ap = new Autopilot(placed);
    const v = view(["lhr1", "fra1", "ord1"], ["jnb1", "sin1"], ["ord1"]);
    const gossip = only(v).map((x) => (x.id === "ord1" ? { ...x, state: "dead" as const } : x));
    ap.next(0, v, gossip);
    // Within the cleanup window (ord1 is not removed yet), with jnb1 and sin1 stable for 30 s.
    expect(ap.next(30_000, v, gossip)).toBeNull();
    expect(ap.regionNotes(v, gossip)).toEqual([
      "voter region ord has no healthy server: no voter there, and none is promoted from another region (add a server in ord, or change VOTER_REGIONS)",
    ]);
    // A learner there is named as the way out.
    const withLearner = view(["lhr1", "fra1"], ["jnb1", "ord1"]);
    expect(ap.regionNotes(withLearner, servers)[0]).toContain("learner ord1 is promoted once caught up and stable");
    expect(ap.regionNotes(view(["lhr1", "fra1", "ord1"], ["jnb1", "sin1"]), servers)).toEqual([]);
  });

  test("a voter outside the list leaves the voters only once the healthy voters inside are a quorum without it", () => {
    const ap = new Autopilot(placed);
    // Founders from before the list: five voters, two far. Removing jnb1 leaves 4 needing 3: lhr1, fra1, ord1.
    const five = view(["lhr1", "fra1", "ord1", "jnb1", "sin1"], []);
    const d = ap.next(0, five, only(five));
    expect(d?.change).toEqual({ op: "remove", node: "jnb1", context: "" });
    expect(d?.reason).toContain("outside VOTER_REGIONS");
    // With ord1 down, the two healthy inside voters are not a quorum of 4: nobody leaves.
    const gossip = only(five).map((x) => (x.id === "ord1" ? { ...x, state: "dead" as const } : x));
    expect(new Autopilot(placed).next(0, view(["lhr1", "fra1", "ord1", "jnb1", "sin1"], [], ["ord1"]), gossip)).toBeNull();
    // Only one voter inside: a far voter stays (the commit would otherwise need the far one anyway).
    const three = view(["lhr1", "jnb1", "sin1"], []);
    expect(new Autopilot(placed).next(0, three, only(three))).toBeNull();
    expect(ap.regionNotes(view(["lhr1", "jnb1", "sin1"], []), servers)).toContain(
      "voter jnb1 runs in jnb, outside VOTER_REGIONS: it leaves the voters once the healthy voters inside are a quorum without it and 3 voters remain",
    );
    // lhr and fra commit without jnb, but jnb is the third vote that survives losing one of them:
    // it stays until ord has a voter.
    const noOrd = view(["lhr1", "fra1", "jnb1"], []);
    expect(new Autopilot(placed).next(0, noOrd, only(noOrd))).toBeNull();
    const withOrd = view(["lhr1", "fra1", "jnb1", "ord1"], []);
    expect(new Autopilot(placed).next(0, withOrd, only(withOrd))?.change).toEqual({ op: "remove", node: "jnb1", context: "" });
  });

  test("a forged `alive` for an inside voter Raft does not hear from cannot make the leader shed a far voter", () => {
    // ord1 is down (silent to Raft) but gossip, forged or stale, says alive: counting it would
    // demote jnb1 and leave lhr1, fra1, sin1 and a dead ord1, whose every commit needs sin1.
    const v = view(["lhr1", "fra1", "ord1", "jnb1", "sin1"], [], ["ord1"]);
    expect(new Autopilot(placed).next(0, v, only(v))).toBeNull();
  });

  test("the leader never demotes itself, even outside the list", () => {
    const ap = new Autopilot(placed);
    const v = view(["jnb1", "lhr1", "fra1", "ord1"], []);
    expect(ap.next(0, v, only(v))).toBeNull();
  });
});
