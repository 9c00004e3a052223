// Proposing one command from a route of the txn / lease API and turning the outcome into an honest
// HTTP answer: applied (the state machine's result), not applied (lost: retry), or unknown
// (timeout, disk full). The same mapping as kv_routes.ts's write(); see the merge note in
// docs-notes/kvfeatures.md (the two should become one helper once kv_routes settles).
import type { Context } from "hono";
import { z } from "zod";
import { DEFAULT_LIMITS, isError, validateCommand, type Command, type ErrorResult, type Proposal, type Result } from "../kv/command.ts";
import type { PhalanxNode } from "../node/node.ts";
import { BodyTooLargeError, incomingOf, readCappedBody } from "../transport/body.ts";
import type { Deadline } from "./deadline.ts";
import { forward, forwardTarget, leaderHeaders, noLeader, RETRY_AFTER_S } from "./forward.ts";
import { BadRequest, errorReply, reply } from "./wire.ts";

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

export function errorStatus(r: ErrorResult): number {
  switch (r.error) {
    case "value_too_large":
      return 413;
    case "session_expired":
      return 410;
    case "stale_sequence":
      return 409;
    case "lease_not_found":
      return 404;
    default:
      return 400;
  }
}

/**
 * Proposes `cmd` on the leader (forwarding the original `body` from a follower) and answers with
 * `onApplied(result)` for a successful result, or the typed error.
 */
export async function proposeAndReply(
  c: Context,
  node: PhalanxNode,
  req: { body: Uint8Array | undefined; cmd: Command; session: Proposal["session"]; deadline: Deadline },
  onApplied: (r: Exclude<Result, ErrorResult>) => { status: number; payload: unknown },
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
      const r = o.result;
      if (isError(r)) return reply(c, errorStatus(r), r, lh);
      const { status, payload } = onApplied(r);
      const rev: Record<string, string> = "revision" in r ? { [REVISION_HEADER]: String(r.revision) } : {};
      return reply(c, status, payload, { ...lh, ...rev });
    }
    case "rejected": {
      const moved = forwardTarget(c, node);
      if (moved !== null) return forward(c, node, moved, body, deadline);
      return noLeader(c, node, `write refused: ${o.reason}`);
    }
    case "lost":
      return errorReply(c, 503, "retry", "leadership changed before the write committed; it was not applied, retry", {
        "retry-after": RETRY_AFTER_S,
        ...lh,
      });
    case "timeout":
      return errorReply(c, 504, "timeout", "deadline passed before the write was applied; its outcome is unknown (retry with a client id, POST /v1/clients, to apply it exactly once)", lh);
    case "unknown":
      return errorReply(c, 507, "insufficient_storage", `${o.reason}; retry with a client id (POST /v1/clients) to apply it exactly once`, lh);
    case "closed":
      return noLeader(c, node, "node is shutting down");
  }
}
