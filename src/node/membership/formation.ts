// How a server with a brand-new data dir finds its cluster when gossip is on: PEERS bootstraps
// the listed voters; BOOTSTRAP_EXPECT runs the founders' handshake (bootstrap.ts); otherwise it
// joins a cluster that already exists, with an empty configuration, and waits for the leader to
// add it. The cluster id is kept in the data dir so a restart advertises the same one.
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { GossipAgent } from "../../gossip/agent.ts";
import type { NodeId } from "../../raft/types.ts";
import type { Logger } from "../log.ts";
import { decideBootstrap, founderDigest } from "./bootstrap.ts";
import { serverHealth } from "./server_view.ts";

const CLUSTER_FILE = "CLUSTER_ID";
const POLL_MS = 250;

export function readClusterId(dataDir: string): string | null {
  const path = join(dataDir, CLUSTER_FILE);
  return existsSync(path) ? readFileSync(path, "utf8").trim() : null;
}

export function writeClusterId(dataDir: string, id: string): void {
  const path = join(dataDir, CLUSTER_FILE);
  writeFileSync(`${path}.tmp`, `${id}\n`);
  renameSync(`${path}.tmp`, path);
}

export function staticClusterId(peers: ReadonlyMap<NodeId, string>): string {
  return `c:${founderDigest([...peers.keys()])}`;
}

export interface Formation {
  /** Bootstrap voters with their addresses; empty when joining an existing cluster. */
  peers: Map<NodeId, string>;
  clusterId: string;
}

/**
 * Waits, polling gossip, until this server may found a cluster or has found one to join.
 * `expect` null: never found one, only join. Resolves null if `stopped()` turns true first.
 */
export async function findCluster(
  agent: GossipAgent,
  selfId: NodeId,
  expect: number | null,
  placement: { voterRegions: readonly string[] },
  log: Logger,
  stopped: () => boolean,
): Promise<Formation | null> {
  let proposed: { id: string; rpcAddr: string }[] | null = null;
  let lastReason = "";
  while (!stopped()) {
    const view = agent.members().map(serverHealth);
    const d = decideBootstrap(selfId, expect ?? Number.MAX_SAFE_INTEGER, view, proposed, placement);
    const reason = expect === null && d.kind === "wait" ? `no cluster among the ${view.length} servers gossip sees yet (BOOTSTRAP_EXPECT forms a new one)` : d.reason;
    if (reason !== lastReason) {
      log.info(expect === null ? "looking for a cluster to join" : "forming a cluster", { state: d.kind, reason });
      lastReason = reason;
    }
    if (d.kind === "bootstrap") return { peers: new Map(d.founders.map((f) => [f.id, f.rpcAddr])), clusterId: `c:${d.clusterId}` };
    if (d.kind === "join") return { peers: new Map(), clusterId: `c:${d.clusterId}` };
    if (d.proposal !== null) proposed = d.proposal;
    if (agent.self().meta.cluster !== d.advertise) agent.setMeta({ cluster: d.advertise });
    await Bun.sleep(POLL_MS);
  }
  return null;
}
