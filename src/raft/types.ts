// The vocabulary of the core: entries, hard state, configurations, snapshots and messages.
// Plain data only, so every layer (storage, codec, simulator) can share it without the core.

export type NodeId = string;

/** `noop` is the entry a leader appends at the start of its term (Raft §8). */
export type EntryType = "normal" | "noop" | "conf";

export interface Entry {
  term: number;
  index: number;
  type: EntryType;
  /** Opaque command bytes for `normal`; an encoded ConfChange for `conf`; empty for `noop`. */
  data: Uint8Array;
}

/** What must be durable before a node answers a vote or acknowledges entries. */
export interface HardState {
  term: number;
  vote: NodeId | null;
  commit: number;
}

export interface ConfState {
  voters: NodeId[];
  learners: NodeId[];
}

/** Single-server change (dissertation §4.1). `context` travels with it, e.g. the new member's address. */
export interface ConfChange {
  op: "addLearner" | "addVoter" | "remove";
  node: NodeId;
  context: string;
}

export interface SnapshotMeta {
  index: number;
  term: number;
  /** The configuration in force at `index`. */
  conf: ConfState;
}

export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}

interface Envelope {
  from: NodeId;
  to: NodeId;
  term: number;
}

/** AppendEntries (§5.3). */
export interface AppendMsg extends Envelope {
  type: "append";
  prevIndex: number;
  prevTerm: number;
  entries: Entry[];
  commit: number;
}

/**
 * Reply to AppendEntries. On success `index` is the follower's last matching index.
 * On rejection `index` is the rejected prevIndex and (`hintIndex`, `hintTerm`) let the leader
 * skip a whole conflicting term at once (§5.3, "fast backtracking").
 */
export interface AppendRespMsg extends Envelope {
  type: "appendResp";
  index: number;
  reject: boolean;
  hintIndex: number;
  hintTerm: number;
}

/** Heartbeat. `seq` identifies the round so acks can confirm ReadIndex batches and leases. */
export interface HeartbeatMsg extends Envelope {
  type: "heartbeat";
  commit: number;
  seq: number;
}

export interface HeartbeatRespMsg extends Envelope {
  type: "heartbeatResp";
  seq: number;
}

/** RequestVote and its pre-vote probe (dissertation §9.6). Pre-vote carries the term it would use. */
export interface VoteMsg extends Envelope {
  type: "vote" | "preVote";
  lastIndex: number;
  lastTerm: number;
  /** Set when campaigning because of TimeoutNow: voters skip the leader-stickiness check. */
  transfer: boolean;
  /**
   * Set on the requests of a brand-new cluster's first election (raft.ts, campaignFirstElection):
   * a pristine voter answers them inside its boot stickiness. Absent on every other request.
   */
  firstElection?: true;
}

export interface VoteRespMsg extends Envelope {
  type: "voteResp" | "preVoteResp";
  reject: boolean;
}

/** One chunk of InstallSnapshot (§7). Chunks go in order; `offset` is the byte position. */
export interface SnapshotMsg extends Envelope {
  type: "snapshot";
  meta: SnapshotMeta;
  offset: number;
  /** Total snapshot size in bytes, so the receiver knows when it has everything. */
  total: number;
  chunk: Uint8Array;
}

/** `received` is how many bytes of the snapshot at `index` the follower holds (== total: installed). */
export interface SnapshotRespMsg extends Envelope {
  type: "snapshotResp";
  index: number;
  received: number;
  reject: boolean;
}

/** Leadership transfer (dissertation §3.10): the target campaigns at once. */
export interface TimeoutNowMsg extends Envelope {
  type: "timeoutNow";
}

/** A follower asks the leader for a read index on behalf of its client (dissertation §6.4). */
export interface ReadIndexMsg extends Envelope {
  type: "readIndex";
  ctx: string;
}

/** `index` is 0 with `reject` when the receiver could not serve the read (not leader, not ready). */
export interface ReadIndexRespMsg extends Envelope {
  type: "readIndexResp";
  ctx: string;
  index: number;
  reject: boolean;
}

export type Message =
  | AppendMsg
  | AppendRespMsg
  | HeartbeatMsg
  | HeartbeatRespMsg
  | VoteMsg
  | VoteRespMsg
  | SnapshotMsg
  | SnapshotRespMsg
  | TimeoutNowMsg
  | ReadIndexMsg
  | ReadIndexRespMsg;

export type MessageType = Message["type"];

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** A read that became safe to serve once the state machine has applied `index`. */
export interface ReadState {
  ctx: string;
  index: number;
  /** True when the leader answered from its lease, without a heartbeat round. */
  lease: boolean;
}

/** A read the core could not serve (no leader, lost leadership, leader not ready): retry elsewhere. */
export interface ReadFailure {
  ctx: string;
  reason: string;
}
