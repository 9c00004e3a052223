// The leader's membership manager between the autopilot's decisions and Raft: gossip alone never
// changes the configuration. A server gossip found is added only after it proved its identity,
// and a server gossip calls dead is not removed while it still proves it is alive. The node and
// the agent are small fakes holding exactly the state the manager reads; each step is driven by
// hand so the test is deterministic.
import { expect, test } from "bun:test";
import type { GossipAgent } from "../../src/gossip/agent.ts";
import type { GossipPeer } from "../../src/gossip/peer.ts";
import { encodeMemberContext } from "../../src/kv/member.ts";
import { type IdentityCheck, MembershipManager } from "../../src/node/membership/manager.ts";
import type { Logger } from "../../src/node/log.ts";
import type { PhalanxNode } from "../../src/node/node.ts";
import type { ConfChange } from "../../src/raft/types.ts";
import type { IdentityVerdict } from "../../src/transport/identity_route.ts";

const quiet: Logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;
const member = (id: string, state: GossipPeer["state"] = "alive", since = 0): GossipPeer => ({
  id,
  incarnation: 1,
  state,
  since,
  meta: { gossipAddr: `${id}:7946`, rpcAddr: `${id}:9000`, region: id, role: "candidate", cluster: "c:abc" },
});

function setup(voters: string[], gossip: GossipPeer[], silent: string[] = []) {
  const proposed: ConfChange[] = [];
  const node = {
    id: "n1",
    isStopped: false,
    membershipInfo: null,
    gossipCounters: null,
    setAddressHints: () => undefined,
    isLeader: () => true,
    status: () => ({
      lastIndex: 10,
      conf: { voters, learners: [] },
      progress: Object.fromEntries(voters.filter((v) => v !== "n1").map((v) => [v, { match: 10, next: 11, state: "replicate", answeredRecently: !silent.includes(v) }])),
    }),
    members: () => voters.map((id) => ({ id, address: `${id}:9000`, region: id, role: "voter" })),
    recordRegion: () => undefined,
    proposeConfChange: (cc: ConfChange) => {
      proposed.push(cc);
      return { ok: true, index: proposed.length };
    },
  };
  const agent = {
    members: () => gossip,
    self: () => ({ ...member("n1"), meta: { ...member("n1").meta, role: "voter" } }),
    setMeta: () => undefined,
    counters: () => ({}),
  };
  const asked: string[] = [];
  const verdicts = new Map<string, IdentityVerdict>();
  const pending: Promise<IdentityVerdict>[] = [];
  const check: IdentityCheck = (id, rpcAddr) => {
    asked.push(`${id}@${rpcAddr}`);
    const p = Promise.resolve(verdicts.get(id) ?? { ok: false as const, reason: "no answer" });
    pending.push(p);
    return p;
  };
  const m = new MembershipManager(node as unknown as PhalanxNode, agent as unknown as GossipAgent, { targetVoters: 5, stabilizationMs: 1000, maxTrailingLogs: 250, voterRegions: [], cleanupDeadMs: 1000 }, "c:abc", quiet, check);
  // The manager steps once a second on a timer; here each step is one call.
  const step = async () => {
    (m as unknown as { step(): void }).step();
    // The manager's own callback on a check was attached first, so it has run once these settle.
    await Promise.allSettled(pending.splice(0));
  };
  return { proposed, asked, verdicts, step };
}

test("a forged `alive evil` is never proposed: it cannot prove an identity, and it does not hold up a real server", async () => {
  const t = setup(["n1"], [member("n1"), member("aaa-evil"), member("n4")]);
  t.verdicts.set("n4", { ok: true });
  await t.step();
  await t.step();
  await t.step();
  expect(t.proposed.filter((c) => c.node === "aaa-evil")).toEqual([]);
  // Asked once, then skipped for the backoff; meanwhile the real server is checked and added.
  expect(t.asked.filter((a) => a.startsWith("aaa-evil"))).toEqual(["aaa-evil@aaa-evil:9000"]);
  expect(t.proposed).toEqual([{ op: "addLearner", node: "n4", context: encodeMemberContext({ address: "n4:9000", region: "n4" }) }]);
});

test("a voter gossip calls dead is not removed while it proves it is alive (forged or third-party dead)", async () => {
  const t = setup(["n1", "n2", "n3"], [member("n1"), member("n2"), member("n3", "dead", -1e9)], ["n3"]);
  t.verdicts.set("n3", { ok: true });
  await t.step();
  await t.step();
  await t.step();
  expect(t.proposed).toEqual([]);
  expect(t.asked[0]).toBe("n3@n3:9000"); // asked at the address in the configuration
});

test("a silent dead voter is removed after the cleanup window", async () => {
  const t = setup(["n1", "n2", "n3"], [member("n1"), member("n2"), member("n3", "dead", -1e9)], ["n3"]);
  await t.step();
  await t.step();
  expect(t.proposed).toEqual([{ op: "remove", node: "n3", context: "" }]);
});
