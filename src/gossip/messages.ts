// The SWIM messages exchanged over UDP, and the full state exchanged by push-pull.

import type { PeerMeta, PeerState } from "./peer.ts";

/** Direct probe. `target` is the id the sender expects to answer; "" for a join ping to a seed. */
export interface PingMsg {
  type: "ping";
  seq: number;
  from: string;
  target: string;
}

/** Ask the receiver to probe `target` on the sender's behalf and relay the ack (or a nack). */
export interface PingReqMsg {
  type: "pingReq";
  seq: number;
  from: string;
  target: string;
  targetAddr: string;
}

export interface AckMsg {
  type: "ack";
  seq: number;
  from: string;
}

/** Lifeguard: the relay reached no answer, but the requester now knows the relay itself is fine. */
export interface NackMsg {
  type: "nack";
  seq: number;
  from: string;
}

export interface AliveMsg {
  type: "alive";
  node: string;
  incarnation: number;
  meta: PeerMeta;
}

export interface SuspectMsg {
  type: "suspect";
  node: string;
  incarnation: number;
  from: string;
}

/** `from === node` means the member left gracefully. */
export interface DeadMsg {
  type: "dead";
  node: string;
  incarnation: number;
  from: string;
}

export type Message = PingMsg | PingReqMsg | AckMsg | NackMsg | AliveMsg | SuspectMsg | DeadMsg;

export interface StateEntry {
  id: string;
  incarnation: number;
  state: PeerState;
  meta: PeerMeta;
}

/** A push-pull body: the sender's whole view of the membership. */
export interface PushPullState {
  from: string;
  members: StateEntry[];
}
