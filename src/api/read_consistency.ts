// How a read route decides that it may answer from this node's state: `?consistency=` and
// `?max_staleness=`, shared by every route that reads (kv get, range, snapshot).
//
// - linearizable (the default): the core's read barrier (lease or ReadIndex; a follower asks the
//   leader), then the local state machine.
// - stale: whatever this node has applied, no bound (works without a leader).
// - max_staleness=<duration>: an answer at most that stale, by the rule in src/node/freshness.ts
//   (every write acknowledged more than the bound before the answer is in it, measured on this
//   node's clock only), or a 503 naming the staleness the node can prove. Never older data.
//
// Every answer carries STALENESS_HEADER: the bound, in whole milliseconds rounded up, that this
// node proved for that answer when it read its state. A stale read by a node with no proof at all
// (no leader since it started) carries none: nothing bounds it.
import type { Context } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import type { Deadline } from "./deadline.ts";
import { parseDuration } from "./duration.ts";
import { leaderHeaders, noLeader, RETRY_AFTER_S } from "./forward.ts";
import { BadRequest, reply } from "./wire.ts";

export const STALENESS_HEADER = "x-phalanx-staleness-ms";
/**
 * The largest bound a client may ask for. Beyond an hour the bound is no longer a promise a
 * client plans around; `consistency=stale` says "anything" honestly.
 */
export const MAX_STALENESS_MS = 3_600_000;

export type ReadMode = { kind: "linearizable" } | { kind: "stale" } | { kind: "bounded"; maxMs: number };

/** The read mode the request asks for: 400 on anything else. */
export function readModeOf(c: Context): ReadMode {
  const consistency = c.req.query("consistency");
  const bound = c.req.query("max_staleness");
  if (bound !== undefined) {
    // `consistency=stale&max_staleness=5s` reads naturally (Consul's ?stale&max_stale); linearizable with a bound does not.
    if (consistency !== undefined && consistency !== "stale") throw new BadRequest("max_staleness bounds a stale read: drop consistency=linearizable, or the bound");
    const ms = parseDuration(bound.trim());
    if (ms === null) throw new BadRequest(`max_staleness must be a duration like "500ms", "5s" or "1m" (got ${JSON.stringify(bound.slice(0, 64))})`);
    if (ms <= 0) throw new BadRequest("max_staleness must be more than 0 (for a fresh read use consistency=linearizable, the default)");
    if (ms > MAX_STALENESS_MS) throw new BadRequest("max_staleness must be at most 1h (consistency=stale reads without a bound)");
    return { kind: "bounded", maxMs: ms };
  }
  if (consistency === undefined || consistency === "linearizable") return { kind: "linearizable" };
  if (consistency === "stale") return { kind: "stale" };
  throw new BadRequest("consistency must be linearizable or stale (or give max_staleness=<duration>)");
}

/**
 * Waits until a read in `mode` may be served here (`what`, for the refusal: "serve a linearizable
 * read"). null: go on, then read the state and take
 * readHeaders() in one synchronous stretch. A Response: the refusal to send instead.
 */
export async function readGate(c: Context, node: PhalanxNode, mode: ReadMode, deadline: Deadline, what: string): Promise<Response | null> {
  if (mode.kind === "stale") {
    node.metrics.readsStale++;
    return null;
  }
  if (mode.kind === "bounded") {
    const o = await node.boundedRead(mode.maxMs, deadline.remaining());
    if (o.kind === "ready") return null;
    if (o.kind === "unproven") return tooStale(c, node, mode.maxMs, o.provableStalenessMs, o.why);
    return noLeader(c, node, "node is shutting down");
  }
  const o = await node.readBarrier(deadline.remaining());
  if (o.kind === "ready") return null;
  if (o.kind === "closed") return noLeader(c, node, "node is shutting down");
  const why = o.kind === "failed" ? `no leader confirmed its leadership (${o.reason})` : "no quorum confirmed the read before the deadline";
  return noLeader(c, node, `cannot ${what}: ${why} (consistency=stale, or max_staleness=<duration>, reads this node's state)`);
}

/**
 * The staleness header for an answer read from the state right now, or the refusal when a
 * bounded read's proof aged past its bound since readGate() (e.g. while it waited for room).
 */
export function readHeaders(c: Context, node: PhalanxNode, mode: ReadMode): Record<string, string> | Response {
  const s = node.provableStalenessMs();
  if (mode.kind === "bounded" && (s === null || s > mode.maxMs)) return tooStale(c, node, mode.maxMs, s, "the proof aged past the bound while the read waited");
  return s === null ? {} : { [STALENESS_HEADER]: String(Math.ceil(s)) };
}

function tooStale(c: Context, node: PhalanxNode, maxMs: number, provable: number | null, why: string): Response {
  const proof = provable === null ? "it has no proof of freshness (no leader answered it since it started)" : `it can prove ${Math.ceil(provable)} ms`;
  return reply(
    c,
    503,
    {
      error: "too_stale",
      message: `this node cannot prove its state is at most ${Math.ceil(maxMs)} ms stale: ${proof}; ${why}. Retry, read from another node, or use consistency=stale`,
      provable_staleness_ms: provable === null ? null : Math.ceil(provable),
    },
    { "retry-after": RETRY_AFTER_S, ...leaderHeaders(node.leader()) },
  );
}
