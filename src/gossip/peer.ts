// What gossip knows about one server (a GossipPeer: its liveness and the metadata it advertises).
// Not a cluster member: membership is the replicated Member (src/kv/member.ts); a peer may be a
// server that is not (yet) a member, and a member may be unknown to gossip.

export type PeerState = "alive" | "suspect" | "dead" | "left";

export const ROLES = ["voter", "learner", "candidate"] as const;
export type Role = (typeof ROLES)[number];

/** Set by the member itself; changing it bumps its incarnation so the change wins everywhere. */
export interface PeerMeta {
  /** "host:port" of its gossip UDP socket. */
  gossipAddr: string;
  /** "host:port" of its HTTP/2 server: Raft RPC and gossip push-pull. */
  rpcAddr: string;
  region: string;
  role: Role;
  /**
   * Cluster formation, for BOOTSTRAP_EXPECT: "" (no cluster yet), "p:<digest>" (proposing the
   * founder set with that digest), "c:<digest>" (member of the cluster those founders formed).
   */
  cluster: string;
}

export interface GossipPeer {
  id: string;
  incarnation: number;
  state: PeerState;
  meta: PeerMeta;
  /** Core clock (ms) of the last state change. */
  since: number;
}

export type PeerEventType = "join" | "update" | "suspect" | "dead" | "leave";

export interface PeerEvent {
  type: PeerEventType;
  /** A snapshot taken when the event happened. */
  member: GossipPeer;
}

export function sameMeta(a: PeerMeta, b: PeerMeta): boolean {
  return (
    a.gossipAddr === b.gossipAddr && a.rpcAddr === b.rpcAddr && a.region === b.region && a.role === b.role && a.cluster === b.cluster
  );
}

export function copyPeer(m: GossipPeer): GossipPeer {
  return { ...m, meta: { ...m.meta } };
}
