// Followers hand writes to the leader, so any node accepts any request. The request travels on
// the follower's long-lived peer stream to the leader (a Forward frame, src/transport/
// forward_frame.ts: method, raw path and query, the passed headers, body, remaining deadline), and
// the leader runs it through its own app, marked as forwarded by the authenticated peer
// (runForwarded below), exactly as the client's own request would run there: the leader
// authorizes the client again and answers with status, the passed headers and the body. One hop
// only: a forwarded request that lands on a non-leader (leadership moved in between) gets a 503
// and the client retries, instead of bouncing between nodes.
//
// A forward the leader provably never ran (never written to the stream: still queued when the
// stream failed, or the stream not open by the deadline; or refused unrun by the leader, over its
// caps) is sent again once a leader is known, within the request's deadline: a reset connection to
// a live leader (or a leader that just died, with a new one elected in time) then costs the client
// a moment instead of a 503. Anything that may have reached the leader is never sent again from
// here: its outcome is unknown (src/node/outcome.ts, lost_leader), and only the client can retry
// it safely, with a session.
import type { Context, Hono } from "hono";
import type { LeaderInfo, PhalanxNode } from "../node/node.ts";
import type { NodeId } from "../raft/types.ts";
import { readStreamCapped } from "../transport/body.ts";
import { type ForwardAnswer, type ForwardRequest, LEADER_FORWARD_GRACE_MS } from "../transport/forward_frame.ts";
import { TIMEOUT_HEADER, type Deadline } from "./deadline.ts";
import { rawPathAndQuery } from "./raw_path.ts";
import { CLIENT_NAME_HEADER, CLIENT_SCOPE_HEADER, type ForwardedEnv, forwardedBy, forwardedIdentityHeaders } from "./client_auth.ts";
import { errorReply, reply } from "./wire.ts";

export const LEADER_HEADER = "x-phalanx-leader";
export const LEADER_ADDR_HEADER = "x-phalanx-leader-addr";
/** Seconds a client should wait before retrying when there is no leader (about one election). */
export const RETRY_AFTER_S = "1";

const EMPTY_BODY = new Uint8Array(0);
const PASSED_REQUEST_HEADERS = ["content-type", "accept", "x-phalanx-session"];
/** What the leader takes from a forward: the passed headers and the client's credential or vouched identity. */
const FORWARDED_REQUEST_HEADERS = [...PASSED_REQUEST_HEADERS, "authorization", CLIENT_NAME_HEADER, CLIENT_SCOPE_HEADER];
const PASSED_RESPONSE_HEADERS = ["content-type", "retry-after", "x-phalanx-revision", LEADER_HEADER, LEADER_ADDR_HEADER];

export function leaderHeaders(leader: LeaderInfo | null): Record<string, string> {
  if (leader === null) return {};
  return { [LEADER_HEADER]: leader.id, ...(leader.address === "" ? {} : { [LEADER_ADDR_HEADER]: leader.address }) };
}

export function isForwarded(c: Context): boolean {
  return forwardedBy(c) !== null;
}

export function noLeader(c: Context, node: PhalanxNode, why: string): Response {
  return errorReply(c, 503, "unavailable", why, { "retry-after": RETRY_AFTER_S, ...leaderHeaders(node.leader()) });
}

/** A write that provably never took effect (src/node/outcome.ts): 503, `outcome: "not_applied"`. */
export function notAppliedReply(c: Context, error: string, message: string, headers: Record<string, string>): Response {
  return reply(c, 503, { error, message, outcome: "not_applied" }, headers);
}

/** A write that may or may not have taken effect (src/node/outcome.ts): never 503, `outcome: "unknown"`. */
export function outcomeUnknownReply(c: Context, status: 502 | 504 | 507, error: string, message: string, headers: Record<string, string>): Response {
  return reply(c, status, { error, message, outcome: "unknown" }, headers);
}

/** The leader to forward to, or null when this request must be answered here. */
export function forwardTarget(c: Context, node: PhalanxNode): LeaderInfo | null {
  const leader = node.leader();
  if (leader === null || leader.id === node.id || leader.address === "" || isForwarded(c)) return null;
  return leader;
}

/**
 * Before sending again to the same leader (its connection was reset, it may be restarting): the
 * first wait, doubled per attempt up to the cap. A forward the leader provably never saw is
 * retried until the request's deadline, not a fixed number of times: a leader that restarts, or
 * is replaced, takes a second or more, and the client asked for an answer within its deadline,
 * not for a fast "not applied" it must retry itself.
 */
const SAME_LEADER_BACKOFF_MS = 100;
const SAME_LEADER_BACKOFF_CAP_MS = 1000;
/** Below this much time left, no retry: the answer would not come back before the deadline. */
const MIN_RETRY_MS = 50;
const POLL_MS = 20;

export async function forward(c: Context, node: PhalanxNode, leader: LeaderInfo, body: Uint8Array | undefined, deadline: Deadline): Promise<Response> {
  const headers: Record<string, string> = {};
  for (const name of PASSED_REQUEST_HEADERS) {
    const v = c.req.header(name);
    if (v !== undefined) headers[name] = v;
  }
  // The leader authorizes the client again: its token travels along, a certificate client is
  // vouched for by name (accepted only from a member's peer stream; see client_auth.ts).
  // Never anything broader than what the client proved here.
  Object.assign(headers, forwardedIdentityHeaders(c));
  node.metrics.forwarded++;
  // The raw path: the parsed URL maps `\` to `/`, so the leader would see another key.
  const path = rawPathAndQuery(c);
  let target = leader;
  for (let attempt = 1; ; attempt++) {
    const o = await node.forwardTo(target.id, { method: c.req.method, path, headers, body: body ?? null, timeoutMs: deadline.remaining() });
    if (o.kind === "answered") {
      const out = new Headers({ [LEADER_HEADER]: target.id, [LEADER_ADDR_HEADER]: target.address });
      for (const name of PASSED_RESPONSE_HEADERS) {
        const v = o.answer.headers[name];
        if (v !== undefined) out.set(name, v);
      }
      return new Response(o.answer.body.byteLength === 0 ? null : o.answer.body, { status: o.answer.status, headers: out });
    }
    // Once the request may have reached the leader it may have been applied (outcome.ts:
    // lost_leader): never sent again, never "not applied".
    if (o.kind === "unknown") {
      return outcomeUnknownReply(c, 502, "outcome_unknown", `the request to leader ${target.id} at ${target.address} failed after it was sent: ${o.reason}; its outcome is unknown (retry with a session to apply a write exactly once)`, leaderHeaders(target));
    }
    const next = await leaderAgain(node, target, deadline, Math.min(SAME_LEADER_BACKOFF_CAP_MS, SAME_LEADER_BACKOFF_MS * 2 ** (attempt - 1)));
    if (next === null) {
      // Every attempt provably never reached a leader: definitely not applied (outcome.ts: unreachable).
      return notAppliedReply(c, "unavailable", `leader ${target.id} at ${target.address} is unreachable: ${o.reason}; the request was not applied`, {
        "retry-after": RETRY_AFTER_S,
        ...leaderHeaders(target),
      });
    }
    node.metrics.forwardRetries++;
    target = next;
  }
}

/**
 * The leader's side: runs a forward from peer `from` through this node's `app` as the client's own
 * request would run, with only the forwarded headers, the remaining deadline and the forwarder
 * (ForwardedEnv). The answer's body is read up to `maxAnswerBytes` and for no longer than the
 * deadline plus a second (a route that streams must not hold the forward for ever).
 */
export function runForwarded(app: Hono, maxAnswerBytes: number): (req: ForwardRequest, from: NodeId) => Promise<ForwardAnswer> {
  return async (req, from) => {
    const headers = new Headers();
    for (const name of FORWARDED_REQUEST_HEADERS) {
      const v = req.headers[name];
      if (v !== undefined) headers.set(name, v);
    }
    headers.set(TIMEOUT_HEADER, String(req.timeoutMs));
    if (req.body !== null) headers.set("content-length", String(req.body.byteLength));
    const request = new Request(`http://forwarded${req.path}`, { method: req.method, headers, ...(req.body === null ? {} : { body: req.body }) });
    const env: ForwardedEnv = { incoming: { url: req.path, held: req.body ?? EMPTY_BODY }, forwardedBy: from };
    const res = await app.fetch(request, env);
    const out: Record<string, string> = {};
    for (const name of PASSED_RESPONSE_HEADERS) {
      const v = res.headers.get(name);
      if (v !== null) out[name] = v;
    }
    // In memory, capped in size and in time (a streaming route is cancelled).
    const withinMs = req.timeoutMs + LEADER_FORWARD_GRACE_MS;
    const body = await readStreamCapped(res.body, {
      maxBytes: maxAnswerBytes,
      tooLarge: () => new Error(`the answer exceeds ${maxAnswerBytes} bytes`),
      withinMs,
      late: () => new Error(`the answer did not end within ${withinMs} ms`),
    });
    return { status: res.status, headers: out, body };
  };
}

/**
 * The leader to send a provably unsent request to again: a new one as soon as it is known (this
 * node itself included: the request then comes back to this node as a forwarded one and is
 * handled here), the same one after a short backoff; null when the deadline is too close.
 */
async function leaderAgain(node: PhalanxNode, failed: LeaderInfo, deadline: Deadline, sameLeaderBackoffMs: number): Promise<LeaderInfo | null> {
  const since = performance.now();
  while (deadline.remaining() > MIN_RETRY_MS && !node.isStopped) {
    const now = node.leader();
    if (now !== null && now.address !== "" && (now.id !== failed.id || performance.now() - since >= sameLeaderBackoffMs)) return now;
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  return null;
}
