// BOOTSTRAP_EXPECT=N: no server forms a cluster until N servers see each other, and then exactly
// one cluster forms. A two-phase handshake over gossip metadata makes that safe when servers
// start at once: each proposes the founder set it sees ("p:<digest>"); a server bootstraps only
// when every member of that set proposes the same digest, then advertises "c:<digest>". A server
// that sees more unformed servers than expected refuses to guess, and a server never proposes a
// second, different founder set: two clusters sharing a member would be split brain (safety
// over liveness: a set that can no longer form needs an operator).
//
// With VOTER_REGIONS only servers in those regions found a cluster (founders are voters): the
// others neither count towards BOOTSTRAP_EXPECT nor propose; they wait for the cluster and join it
// as learners. So "5 machines, VOTER_REGIONS=lhr,fra,ord, BOOTSTRAP_EXPECT=3" forms from the three.
import { createHash } from "node:crypto";
import type { ServerHealth } from "./server_view.ts";

export type BootstrapDecision =
  /** Keep waiting; advertise `advertise` meanwhile (with the founder set it proposes, if any). */
  | { kind: "wait"; advertise: string; proposal: { id: string; rpcAddr: string }[] | null; reason: string }
  /** Form the cluster with these founders (ids sorted); advertise `c:<digest>` afterwards. */
  | { kind: "bootstrap"; founders: { id: string; rpcAddr: string }[]; clusterId: string; reason: string }
  /** A cluster exists and we are not among its founders: wait for its leader to add us. */
  | { kind: "join"; clusterId: string; reason: string };

export function founderDigest(ids: readonly string[]): string {
  return createHash("sha256").update([...ids].sort().join("\n")).digest("hex").slice(0, 32);
}

/**
 * Decides, from gossip's view (including ourselves), what a server without data should do.
 * `proposed` is the founder set we advertised last time (null if none), so a founder that sees
 * its peers finish the handshake first still bootstraps with the same set.
 */
export function decideBootstrap(
  selfId: string,
  expect: number,
  view: readonly ServerHealth[],
  proposed: readonly { id: string; rpcAddr: string }[] | null,
  placement: { voterRegions: readonly string[] } = { voterRegions: [] },
): BootstrapDecision {
  const alive = (s: ServerHealth) => s.state === "alive";
  const founds = (s: ServerHealth) => placement.voterRegions.length === 0 || placement.voterRegions.includes(s.region);
  const formed = view.find((s) => alive(s) && s.cluster.startsWith("c:"));
  if (formed !== undefined) {
    const digest = formed.cluster.slice(2);
    if (proposed !== null && founderDigest(proposed.map((p) => p.id)) === digest && proposed.some((p) => p.id === selfId)) {
      return { kind: "bootstrap", founders: sortById(proposed), clusterId: digest, reason: `founders formed cluster ${digest} with us in it` };
    }
    return { kind: "join", clusterId: digest, reason: `cluster ${digest} already exists (seen at ${formed.id}); waiting to be added by its leader` };
  }
  const self = view.find((s) => s.id === selfId);
  if (self !== undefined && !founds(self)) {
    return { kind: "wait", advertise: "", proposal: null, reason: `region ${self.region} is not in VOTER_REGIONS (${placement.voterRegions.join(",")}): this server never founds a cluster; it joins one as a learner` };
  }
  const unformed = view.filter((s) => alive(s) && !s.cluster.startsWith("c:") && founds(s));
  if (unformed.length < expect) {
    return { kind: "wait", advertise: "", proposal: null, reason: `waiting for ${expect} servers, see ${unformed.length}` };
  }
  if (unformed.length > expect) {
    return {
      kind: "wait",
      advertise: "",
      proposal: null,
      reason: `see ${unformed.length} servers without a cluster but BOOTSTRAP_EXPECT=${expect}: refusing to guess which ${expect} form it`,
    };
  }
  const founders = sortById(unformed.map((s) => ({ id: s.id, rpcAddr: s.rpcAddr })));
  const digest = founderDigest(founders.map((f) => f.id));
  if (proposed !== null && founderDigest(proposed.map((p) => p.id)) !== digest) {
    return {
      kind: "wait",
      advertise: "",
      proposal: null,
      reason: `we proposed founders ${proposed.map((p) => p.id).join(",")} before; refusing a different set (restart this server with an empty data dir if that set can no longer form)`,
    };
  }
  const mine = `p:${digest}`;
  const waitingFor = unformed.filter((s) => s.id !== selfId && s.cluster !== mine).map((s) => s.id);
  if (waitingFor.length > 0) {
    return { kind: "wait", advertise: mine, proposal: founders, reason: `proposed founders ${founders.map((f) => f.id).join(",")}; waiting for ${waitingFor.join(",")} to agree` };
  }
  return { kind: "bootstrap", founders, clusterId: digest, reason: `all ${expect} founders agree on ${founders.map((f) => f.id).join(",")}` };
}

function sortById<T extends { id: string }>(xs: readonly T[]): T[] {
  return [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}
