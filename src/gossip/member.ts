// What a member is, as the gossip layer knows it and as the node layer sees it.

export type MemberState = "alive" | "suspect" | "dead" | "left";

export const ROLES = ["voter", "learner", "candidate"] as const;
export type Role = (typeof ROLES)[number];

/** Set by the member itself; changing it bumps its incarnation so the change wins everywhere. */
export interface MemberMeta {
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

export interface Member {
  id: string;
  incarnation: number;
  state: MemberState;
  meta: MemberMeta;
  /** Core clock (ms) of the last state change. */
  since: number;
}

export type MemberEventType = "join" | "update" | "suspect" | "dead" | "leave";

export interface MemberEvent {
  type: MemberEventType;
  /** A snapshot taken when the event happened. */
  member: Member;
}

export function sameMeta(a: MemberMeta, b: MemberMeta): boolean {
  return (
    a.gossipAddr === b.gossipAddr && a.rpcAddr === b.rpcAddr && a.region === b.region && a.role === b.role && a.cluster === b.cluster
  );
}

export function copyMember(m: Member): Member {
  return { ...m, meta: { ...m.meta } };
}
