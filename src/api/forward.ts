// Followers hand writes to the leader over the pooled HTTP/2 client, so any node accepts any
// request. One hop only: a forwarded request that lands on a non-leader (leadership moved in
// between) gets a 503 and the client retries, instead of bouncing between nodes.
//
// A forward the leader provably never saw (no connection, the session closed before the request
// was written, REFUSED_STREAM, a stream above GOAWAY's last stream id: H2Error.unprocessed) is
// sent again once a leader is known, within the request's deadline: a reset connection to a live
// leader (or a leader that just died, with a new one elected in time) then costs the client a
// moment instead of a 503. Anything that may have reached the leader is never sent again from
// here: its outcome is unknown (src/node/outcome.ts, lost_leader), and only the client can retry
// it safely, with a session.
import type { Context } from "hono";
import type { LeaderInfo, PhalanxNode } from "../node/node.ts";
import { H2Error } from "../transport/h2_client.ts";
import { TIMEOUT_HEADER, type Deadline } from "./deadline.ts";
import { rawPathAndQuery } from "./raw_path.ts";
import { forwardedIdentityHeaders } from "./client_auth.ts";
import { errorReply, reply } from "./wire.ts";

export const FORWARDED_HEADER = "x-phalanx-forwarded-by";
export const LEADER_HEADER = "x-phalanx-leader";
export const LEADER_ADDR_HEADER = "x-phalanx-leader-addr";
/** Seconds a client should wait before retrying when there is no leader (about one election). */
export const RETRY_AFTER_S = "1";

const PASSED_REQUEST_HEADERS = ["content-type", "accept", "x-phalanx-session"];
const PASSED_RESPONSE_HEADERS = ["content-type", "retry-after", "x-phalanx-revision", LEADER_HEADER, LEADER_ADDR_HEADER];

export function leaderHeaders(leader: LeaderInfo | null): Record<string, string> {
  if (leader === null) return {};
  return { [LEADER_HEADER]: leader.id, ...(leader.address === "" ? {} : { [LEADER_ADDR_HEADER]: leader.address }) };
}

export function isForwarded(c: Context): boolean {
  return c.req.header(FORWARDED_HEADER) !== undefined;
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
  const headers: Record<string, string> = { [FORWARDED_HEADER]: node.id };
  for (const name of PASSED_REQUEST_HEADERS) {
    const v = c.req.header(name);
    if (v !== undefined) headers[name] = v;
  }
  // The leader authorizes the client again: its token travels along, a certificate client is
  // vouched for by name (accepted only over this node's own certificate; see client_auth.ts).
  // Never anything broader than what the client proved here.
  Object.assign(headers, forwardedIdentityHeaders(c));
  node.metrics.forwarded++;
  let target = leader;
  for (let attempt = 1; ; attempt++) {
    try {
      const res = await node.client.request(node.client.originFor(target.address), {
        method: c.req.method,
        // The raw path: the parsed URL maps `\` to `/`, so the leader would see another key.
        path: rawPathAndQuery(c),
        headers: { ...headers, [TIMEOUT_HEADER]: String(deadline.remaining()) },
        ...(body === undefined ? {} : { body }),
        // A little more than the leader's own deadline, so its answer (even a timeout) gets back.
        timeoutMs: deadline.remaining() + 500,
      });
      const out = new Headers({ [LEADER_HEADER]: target.id, [LEADER_ADDR_HEADER]: target.address });
      for (const name of PASSED_RESPONSE_HEADERS) {
        const v = res.headers[name];
        if (typeof v === "string") out.set(name, v);
      }
      return new Response(res.body, { status: res.status, headers: out });
    } catch (err) {
      const why = err instanceof H2Error ? err.message : String(err);
      // Once the request may have reached the leader it may have been applied (outcome.ts:
      // lost_leader): never sent again, never "not applied".
      if (!(err instanceof H2Error && err.unprocessed)) {
        return outcomeUnknownReply(c, 502, "outcome_unknown", `the request to leader ${target.id} at ${target.address} failed after it was sent: ${why}; its outcome is unknown (retry with a session to apply a write exactly once)`, leaderHeaders(target));
      }
      const next = await leaderAgain(node, target, deadline, Math.min(SAME_LEADER_BACKOFF_CAP_MS, SAME_LEADER_BACKOFF_MS * 2 ** (attempt - 1)));
      if (next === null) {
        // Every attempt provably never reached a leader: definitely not applied (outcome.ts: unreachable).
        return notAppliedReply(c, "unavailable", `leader ${target.id} at ${target.address} is unreachable: ${why}; the request was not applied`, {
          "retry-after": RETRY_AFTER_S,
          ...leaderHeaders(target),
        });
      }
      node.metrics.forwardRetries++;
      target = next;
    }
  }
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
