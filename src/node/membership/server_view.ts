// What the membership deciders (autopilot.ts, bootstrap.ts) know about a server beyond the
// replicated Member (src/kv/member.ts): its health and what it advertises, as gossip reports it.
// Derived from gossip's GossipPeer in one place, so both deciders read the same fields the same
// way. A server that is a member is judged by its Member (role, region as the log records them);
// the advertised address and region matter only for a server that is not a member yet.
import type { GossipPeer, PeerState } from "../../gossip/peer.ts";

export interface ServerHealth {
  id: string;
  /** The address it advertises for peers and clients. */
  rpcAddr: string;
  /** The region it advertises (its REGION); the log's Member region wins once it is recorded. */
  region: string;
  /** "c:<digest>" of its cluster, "p:<digest>" while proposing founders, "" while looking. */
  cluster: string;
  state: PeerState;
  /** When it entered `state`, on the caller's clock. */
  since: number;
}

export function serverHealth(p: GossipPeer): ServerHealth {
  return { id: p.id, rpcAddr: p.meta.rpcAddr, region: p.meta.region, cluster: p.meta.cluster, state: p.state, since: p.since };
}
