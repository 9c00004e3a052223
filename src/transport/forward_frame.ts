// Payloads of the Forward and ForwardReply frames of the peer stream (stream_frame.ts): a client
// request a follower tunnels to the leader on its own stream to it, and the leader's answer.
//
//   forward = msgpack [id, method, path, [name, value, name, value, ...], body | nil, timeoutMs]
//   reply   = msgpack [id, 0, status, [name, value, ...], body]   the leader's app answered
//           | msgpack [id, 1, reason]                              refused: never run, so never applied
//           | msgpack [id, 2, reason]                              failed: run, but no answer (outcome unknown)
//
// The id is the opener's, unique on its stream: replies come back in any order (a slow write must
// not hold up the batch answers behind it). Nothing here says what a request may do; the leader's
// app authorizes the client itself (src/api/forward.ts). Everything is checked for shape and size
// on the way in: a payload that is not one of these is a peer speaking nonsense (FrameError).

import { Decoder, Encoder } from "@msgpack/msgpack";
import { FrameError } from "./stream_frame.ts";

export interface ForwardRequest {
  method: string;
  /** Raw path and query, exactly as the client sent them. */
  path: string;
  headers: Record<string, string>;
  body: Uint8Array | null;
  /** What is left of the client's deadline. */
  timeoutMs: number;
}

export interface ForwardAnswer {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

export type ForwardReply =
  | ({ kind: "answer" } & ForwardAnswer)
  /** The acceptor did not run it (over its caps, no app yet): provably never applied. */
  | { kind: "refused"; reason: string }
  /** The acceptor ran it and has no answer (the app threw, or took too long): it may have applied. */
  | { kind: "failed"; reason: string };

const MAX_HEADERS = 32;
const MAX_PATH = 8192;
const MAX_VALUE = 8192;
const MAX_REASON = 300;
/** Forwards one follower may have running on its leader at once (raft_stream.ts enforces it, peers.ts keeps to it). */
export const DEFAULT_MAX_FORWARDS_PER_PEER = 128;
/**
 * A forwarded request or its answer: the client API's largest body (an 8 MiB transaction) with
 * room to spare, and the largest answer the old per-request forward took (16 MiB).
 */
export const DEFAULT_MAX_FORWARD_BYTES = 16 << 20;
/**
 * How long past a forward's deadline each side waits, side by side so they can be read together:
 * the follower gives the leader's answer this long to arrive (then "outcome unknown", peers.ts);
 * the leader gives its app this long before it answers "failed" (raft_stream.ts) and reads the
 * app's answer body within the same time (api/forward.ts). The follower's wait is the shorter: a
 * leader's "failed" past it finds the follower's caller already told "unknown", which says the same.
 */
export const FOLLOWER_FORWARD_GRACE_MS = 500;
export const LEADER_FORWARD_GRACE_MS = 1000;

/** Above any client deadline (deadline.ts caps them at 60 s), below setTimeout's limit. */
export const MAX_FORWARD_TIMEOUT_MS = 600_000;

const encoder = new Encoder();
// Limits stop a small payload from announcing a huge array or string before it is checked.
const decoder = new Decoder({ maxArrayLength: 2 * MAX_HEADERS, maxMapLength: 0, maxStrLength: MAX_PATH, maxExtLength: 0 });

const REPLY_ANSWER = 0;
const REPLY_REFUSED = 1;
const REPLY_FAILED = 2;

export function encodeForward(id: number, req: ForwardRequest): Uint8Array {
  return encoder.encode([id, req.method, req.path, flatten(req.headers), req.body, req.timeoutMs]);
}

export function encodeForwardReply(id: number, reply: ForwardReply): Uint8Array {
  if (reply.kind === "answer") return encoder.encode([id, REPLY_ANSWER, reply.status, flatten(reply.headers), reply.body]);
  return encoder.encode([id, reply.kind === "refused" ? REPLY_REFUSED : REPLY_FAILED, reply.reason.slice(0, MAX_REASON)]);
}

/** Throws FrameError unless `payload` is a well-formed forward request. */
export function decodeForward(payload: Uint8Array): { id: number; req: ForwardRequest } {
  const raw = decodeArray(payload, "forward");
  if (raw.length !== 6) throw new FrameError(`a forward has 6 fields, got ${raw.length}`);
  const [id, method, path, headers, body, timeoutMs] = raw;
  if (typeof method !== "string" || !/^[A-Z]{1,16}$/.test(method)) throw new FrameError("a forward's method is not an HTTP method");
  if (typeof path !== "string" || !path.startsWith("/") || !/^[\x21-\x7e]+$/.test(path)) throw new FrameError("a forward's path is not a visible-ASCII path");
  if (body !== null && !(body instanceof Uint8Array)) throw new FrameError("a forward's body is not bytes");
  if (!isCount(timeoutMs) || timeoutMs > MAX_FORWARD_TIMEOUT_MS) throw new FrameError(`a forward's timeout is not within [0, ${MAX_FORWARD_TIMEOUT_MS}] ms`);
  return { id: requestId(id), req: { method, path, headers: headerRecord(headers), body, timeoutMs } };
}

/** Throws FrameError unless `payload` is a well-formed forward reply. */
export function decodeForwardReply(payload: Uint8Array): { id: number; reply: ForwardReply } {
  const raw = decodeArray(payload, "forward reply");
  const [id, kind] = raw;
  if (kind === REPLY_ANSWER && raw.length === 5) {
    const [, , status, headers, body] = raw;
    if (!isCount(status) || status < 100 || status > 599) throw new FrameError("a forward reply's status is not an HTTP status");
    if (!(body instanceof Uint8Array)) throw new FrameError("a forward reply's body is not bytes");
    return { id: requestId(id), reply: { kind: "answer", status, headers: headerRecord(headers), body } };
  }
  if ((kind === REPLY_REFUSED || kind === REPLY_FAILED) && raw.length === 3) {
    const reason = raw[2];
    if (typeof reason !== "string" || reason.length > MAX_REASON) throw new FrameError("a forward reply's reason is not a short string");
    return { id: requestId(id), reply: { kind: kind === REPLY_REFUSED ? "refused" : "failed", reason } };
  }
  throw new FrameError("a forward reply is neither an answer, a refusal nor a failure");
}

function decodeArray(payload: Uint8Array, what: string): unknown[] {
  let raw: unknown;
  try {
    raw = decoder.decode(payload);
  } catch (err) {
    throw new FrameError(`malformed ${what}: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (!Array.isArray(raw)) throw new FrameError(`a ${what} is not an array`);
  return raw;
}

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

function requestId(v: unknown): number {
  if (!isCount(v)) throw new FrameError("a forward's id is not a non-negative integer");
  return v;
}

function flatten(headers: Record<string, string>): string[] {
  const out: string[] = [];
  for (const [name, value] of Object.entries(headers)) out.push(name, value);
  return out;
}

function headerRecord(v: unknown): Record<string, string> {
  if (!Array.isArray(v) || v.length % 2 !== 0 || v.length > 2 * MAX_HEADERS) throw new FrameError(`headers are not at most ${MAX_HEADERS} name/value pairs`);
  const out: Record<string, string> = {};
  for (let i = 0; i < v.length; i += 2) {
    const name: unknown = v[i];
    const value: unknown = v[i + 1];
    if (typeof name !== "string" || !/^[a-z0-9-]{1,64}$/.test(name)) throw new FrameError("a header name is not a lower-case token");
    // No CR, LF or NUL: a value goes into a Headers object as it is.
    if (typeof value !== "string" || value.length > MAX_VALUE || !/^[\t\x20-\x7e]*$/.test(value)) throw new FrameError(`header ${name} has an invalid value`);
    if (Object.hasOwn(out, name)) throw new FrameError(`header ${name} is given twice`);
    out[name] = value;
  }
  return out;
}
