// Proposing one command from any write route (kv, txn, leases, client ids) and turning the outcome
// into an honest HTTP answer: applied (the state machine's result), not applied (definite: retry),
// or outcome unknown (retry with a client id). See src/node/outcome.ts for which is which.
import type { Context } from "hono";
import { z } from "zod";
import { DEFAULT_LIMITS, isError, validateCommand, type Command, type ErrorCode, type ErrorResult, type Proposal, type Result } from "../kv/command.ts";
import type { PhalanxNode } from "../node/node.ts";
import { BodyTooLargeError, incomingOf, readCappedBody } from "../transport/body.ts";
import type { Deadline } from "./deadline.ts";
import { forward, forwardTarget, leaderHeaders, notAppliedReply, outcomeUnknownReply, RETRY_AFTER_S } from "./forward.ts";
import { BadRequest, reply } from "./wire.ts";

export const WRITE_SESSION_HEADER = "x-phalanx-session";
export const REVISION_HEADER = "x-phalanx-revision";

const counter = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
/** An exactly-once write session (client id + sequence number) given in a JSON or msgpack body. */
export const writeSessionSchema = z.strictObject({ client: counter, seq: counter });

/** The write session from the header (`<client>:<seq>`) or the body; null when none. */
export function writeSessionOf(c: Context, fromBody: Proposal["session"] | undefined): Proposal["session"] {
  const header = c.req.header(WRITE_SESSION_HEADER);
  if (header !== undefined) {
    const m = /^(\d{1,15}):(\d{1,15})$/.exec(header.trim());
    if (m === null) throw new BadRequest(`${WRITE_SESSION_HEADER} must be <client>:<seq>`);
    return { client: Number(m[1]), seq: Number(m[2]) };
  }
  return fromBody ?? null;
}

export async function readBody(c: Context, maxBytes: number): Promise<Uint8Array> {
  try {
    return await readCappedBody(c.req.raw, maxBytes, incomingOf(c.env));
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw err;
    throw new BadRequest(`could not read the body: ${(err as Error).message}`);
  }
}

/** The HTTP status of a state machine's refusal; anything not listed is a 400. */
const ERROR_STATUS: Partial<Record<ErrorCode, number>> = {
  value_too_large: 413,
  session_expired: 410,
  stale_sequence: 409,
  too_many_sessions: 429,
  lease_not_found: 404,
};

export function errorStatus(r: ErrorResult): number {
  return ERROR_STATUS[r.error] ?? 400;
}

/** An HTTP answer for an applied result: refusals by errorStatus, successes by `onApplied`. */
export function answerResult(onApplied: (r: Exclude<Result, ErrorResult>) => { status: number; payload: unknown }): (r: Result) => { status: number; payload: unknown } {
  return (r) => (isError(r) ? { status: errorStatus(r), payload: r } : onApplied(r));
}

/**
 * Proposes `cmd` on the leader (forwarding the original `body` from a follower) and answers with
 * `answer(result)` once applied, or with the outcome the node reported. The one place a write's
 * outcome becomes HTTP; which outcomes are definite is decided in src/node/outcome.ts:
 * - not applied (definite): 503 `outcome: "not_applied"`, safe to retry with or without a client id;
 * - unknown: never a 503 (a client that retries every 503 must not apply a write twice): 504
 *   timeout / outcome_unknown, 507 for a full disk; retry with a client id to apply it once.
 */
export async function proposeAndReply(
  c: Context,
  node: PhalanxNode,
  req: { body: Uint8Array | undefined; cmd: Command; session: Proposal["session"]; deadline: Deadline },
  answer: (r: Result) => { status: number; payload: unknown },
): Promise<Response> {
  const { body, cmd, session, deadline } = req;
  const invalid = validateCommand(cmd, DEFAULT_LIMITS);
  if (invalid !== null) return reply(c, errorStatus(invalid), invalid);
  const target = forwardTarget(c, node);
  if (target !== null && !node.isLeader()) return forward(c, node, target, body, deadline);
  const o = await node.propose(cmd, session, deadline.remaining());
  const lh = leaderHeaders(node.leader());
  switch (o.kind) {
    case "applied": {
      const { status, payload } = answer(o.result);
      const rev: Record<string, string> = "revision" in o.result ? { [REVISION_HEADER]: String(o.result.revision) } : {};
      return reply(c, status, payload, { ...lh, ...rev });
    }
    case "rejected": {
      const moved = forwardTarget(c, node);
      if (moved !== null) return forward(c, node, moved, body, deadline);
      return notAppliedReply(c, "unavailable", `write refused: ${o.reason}; it was not applied`, { "retry-after": RETRY_AFTER_S, ...lh });
    }
    case "not_applied":
      return notAppliedReply(c, o.reason === "not_started" ? "unavailable" : "not_applied", `${o.message}; retry`, {
        "retry-after": RETRY_AFTER_S,
        ...lh,
      });
    case "unknown": {
      const [status, code] =
        o.reason === "disk_full" ? ([507, "insufficient_storage"] as const) : o.reason === "timeout" ? ([504, "timeout"] as const) : ([504, "outcome_unknown"] as const);
      return outcomeUnknownReply(c, status, code, `${o.message}; its outcome is unknown: retry with a client id (POST /v1/clients) to apply it exactly once`, lh);
    }
  }
}
