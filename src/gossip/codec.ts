// Wire format: a packet is a msgpack array of messages, each a tuple led by a type code.
// Messages are encoded once and packets assembled by concatenation, so a queued broadcast's
// size is known before it is chosen. Decoding validates everything and returns null rather
// than throw: the bytes come from the network. A malformed message drops itself, not its packet:
// otherwise one bad message riding along (issue 9: an incarnation the codec refuses) would also
// drop the refutation or ack in the same packet.

import { Decoder, encode } from "@msgpack/msgpack";
import { ROLES, type PeerMeta, type PeerState, type Role } from "./peer.ts";
import type { Message, PushPullState, StateEntry } from "./messages.ts";

const T_PING = 0;
const T_PINGREQ = 1;
const T_ACK = 2;
const T_NACK = 3;
const T_ALIVE = 4;
const T_SUSPECT = 5;
const T_DEAD = 6;

const STATES: readonly PeerState[] = ["alive", "suspect", "dead", "left"];
const PUSH_PULL_VERSION = 1;

const MAX_ID = 128;
const MAX_ADDR = 300;
const MAX_REGION = 64;
const MAX_CLUSTER = 80;
export const MAX_MESSAGES_PER_PACKET = 1024;
const MAX_STATE_MEMBERS = 100_000;
/**
 * Incarnations are uint32 on the wire (memberlist's range). A member refutes by outbidding a claim
 * by one, so the core ignores claims at MAX_INCARNATION (see swim.ts): every refutation fits.
 */
export const MAX_INCARNATION = 0xffff_ffff;

const decoder = new Decoder({ maxStrLength: 4096, maxBinLength: 0, maxArrayLength: MAX_STATE_MEMBERS, maxMapLength: 0, maxExtLength: 0 });

export function encodeMessage(m: Message): Uint8Array {
  switch (m.type) {
    case "ping":
      return encode([T_PING, m.seq, m.from, m.target]);
    case "pingReq":
      return encode([T_PINGREQ, m.seq, m.from, m.target, m.targetAddr]);
    case "ack":
      return encode([T_ACK, m.seq, m.from]);
    case "nack":
      return encode([T_NACK, m.seq, m.from]);
    case "alive":
      return encode([T_ALIVE, m.node, m.incarnation, ...metaTuple(m.meta)]);
    case "suspect":
      return encode([T_SUSPECT, m.node, m.incarnation, m.from]);
    case "dead":
      return encode([T_DEAD, m.node, m.incarnation, m.from]);
  }
}

/** Bytes the msgpack array header takes for `count` messages. */
export function packetHeaderBytes(count: number): number {
  return count < 16 ? 1 : count < 65536 ? 3 : 5;
}

/** Joins encoded messages into one packet (a msgpack array of them). */
export function assemblePacket(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 0 || parts.length > MAX_MESSAGES_PER_PACKET) {
    throw new Error(`packet must hold 1..${MAX_MESSAGES_PER_PACKET} messages, got ${parts.length}`);
  }
  const header = packetHeaderBytes(parts.length);
  let size = header;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  if (header === 1) out[0] = 0x90 | parts.length;
  else {
    out[0] = 0xdc;
    out[1] = parts.length >>> 8;
    out[2] = parts.length & 0xff;
  }
  let at = header;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export interface DecodedPacket {
  messages: Message[];
  /** Messages that failed validation and were dropped; the others stand. */
  malformed: number;
}

/** Null when the bytes are not a packet at all; otherwise the valid messages and how many were not. */
export function decodePacket(bytes: Uint8Array): DecodedPacket | null {
  const raw = safeDecode(bytes);
  if (!Array.isArray(raw) || raw.length === 0 || raw.length > MAX_MESSAGES_PER_PACKET) return null;
  const messages: Message[] = [];
  let malformed = 0;
  for (const item of raw) {
    const m = decodeMessage(item);
    if (m === null) malformed++;
    else messages.push(m);
  }
  return { messages, malformed };
}

function decodeMessage(t: unknown): Message | null {
  if (!Array.isArray(t)) return null;
  switch (t[0]) {
    case T_PING:
      if (t.length !== 4 || !isSeq(t[1]) || !isId(t[2]) || !isIdOrEmpty(t[3])) return null;
      return { type: "ping", seq: t[1], from: t[2], target: t[3] };
    case T_PINGREQ:
      if (t.length !== 5 || !isSeq(t[1]) || !isId(t[2]) || !isId(t[3]) || !isAddr(t[4])) return null;
      return { type: "pingReq", seq: t[1], from: t[2], target: t[3], targetAddr: t[4] };
    case T_ACK:
    case T_NACK:
      if (t.length !== 3 || !isSeq(t[1]) || !isId(t[2])) return null;
      return { type: t[0] === T_ACK ? "ack" : "nack", seq: t[1], from: t[2] };
    case T_ALIVE: {
      if (t.length !== 8 || !isId(t[1]) || !isIncarnation(t[2])) return null;
      const meta = metaFrom(t[3], t[4], t[5], t[6], t[7]);
      return meta === null ? null : { type: "alive", node: t[1], incarnation: t[2], meta };
    }
    case T_SUSPECT:
    case T_DEAD:
      if (t.length !== 4 || !isId(t[1]) || !isIncarnation(t[2]) || !isId(t[3])) return null;
      return { type: t[0] === T_SUSPECT ? "suspect" : "dead", node: t[1], incarnation: t[2], from: t[3] };
    default:
      return null;
  }
}

export function encodePushPull(s: PushPullState): Uint8Array {
  return encode([
    PUSH_PULL_VERSION,
    s.from,
    s.members.map((m) => [m.id, m.incarnation, STATES.indexOf(m.state), ...metaTuple(m.meta)]),
  ]);
}

export function decodePushPull(bytes: Uint8Array): PushPullState | null {
  const raw = safeDecode(bytes);
  if (!Array.isArray(raw) || raw.length !== 3 || raw[0] !== PUSH_PULL_VERSION || !isId(raw[1])) return null;
  const list: unknown = raw[2];
  if (!Array.isArray(list)) return null;
  const members: StateEntry[] = [];
  // As in a packet, a bad entry drops itself: the rest of the state still merges.
  for (const e of list) {
    if (!Array.isArray(e) || e.length !== 8 || !isId(e[0]) || !isIncarnation(e[1])) continue;
    const state = typeof e[2] === "number" ? STATES[e[2]] : undefined;
    const meta = metaFrom(e[3], e[4], e[5], e[6], e[7]);
    if (state === undefined || meta === null) continue;
    members.push({ id: e[0], incarnation: e[1], state, meta });
  }
  return { from: raw[1], members };
}

function metaTuple(m: PeerMeta): [string, string, string, number, string] {
  return [m.gossipAddr, m.rpcAddr, m.region, ROLES.indexOf(m.role), m.cluster];
}

function metaFrom(gossipAddr: unknown, rpcAddr: unknown, region: unknown, role: unknown, cluster: unknown): PeerMeta | null {
  if (!isAddr(gossipAddr) || !isAddr(rpcAddr) || !isStr(region, 0, MAX_REGION) || !isStr(cluster, 0, MAX_CLUSTER)) return null;
  const r: Role | undefined = typeof role === "number" ? ROLES[role] : undefined;
  return r === undefined ? null : { gossipAddr, rpcAddr, region, role: r, cluster };
}

function safeDecode(bytes: Uint8Array): unknown {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}

function isStr(v: unknown, min: number, max: number): v is string {
  return typeof v === "string" && v.length >= min && v.length <= max;
}
const isId = (v: unknown): v is string => isStr(v, 1, MAX_ID);
const isIdOrEmpty = (v: unknown): v is string => isStr(v, 0, MAX_ID);
const isAddr = (v: unknown): v is string => isStr(v, 0, MAX_ADDR);
const isSeq = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 0xffff_ffff;
const isIncarnation = (v: unknown): v is number => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_INCARNATION;
