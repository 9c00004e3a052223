// Leases over HTTP (etcd's Lease service):
//   POST   /v1/lease               {"ttl": 10} (seconds) → {"id": 42, "ttl": 10, "revision": N}   scope: write
//   POST   /v1/lease/<id>/keepalive                     → {"id": 42, "ttl": 10}                scope: write
//   GET    /v1/lease/<id>[?keys]                        → {"id", "ttl", "remainingMs", "keys"} scope: read
//   GET    /v1/leases                                   → {"leases": [{"id", "ttl"}]}          scope: read
//   DELETE /v1/lease/<id>                               → {"id", "deleted": <keys>, "revision"} scope: write
// Keys are attached with PUT /v1/kv/<key>?lease=<id> or a txn put with "lease". Keep-alives and the
// remaining time are the leader's business (src/node/lease_timer.ts): followers forward them, and
// the leader confirms its leadership (read barrier) before saying a lease was renewed.
import { Hono, type Context } from "hono";
import { z } from "zod";
import { LEASE_TTL_MS } from "../kv/command.ts";
import type { LeaseTimer } from "../node/lease_timer.ts";
import type { PhalanxNode } from "../node/node.ts";
import { Deadline } from "./deadline.ts";
import { forward, forwardTarget, leaderHeaders, noLeader } from "./forward.ts";
import { answerResult, proposeAndReply, readBody, writeSessionOf, writeSessionSchema } from "./propose_reply.ts";
import { BadRequest, bodyKind, decodeBody, errorReply, reply } from "./wire.ts";

const MAX_KEYS_LISTED = 1000;
const grantBody = z.strictObject({ ttl: z.number().int().positive(), session: writeSessionSchema.optional() });

function idOf(c: Context): number {
  const text = c.req.param("id") ?? "";
  const n = Number(text);
  if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(n) || n < 1) throw new BadRequest("a lease id is a positive integer");
  return n;
}

export function leaseRoutes(node: PhalanxNode, timer: LeaseTimer): Hono {
  const app = new Hono();
  const timeout = node.config.requestTimeoutMs;

  /** Forwards to the leader when this node is not it; null when this node must answer. */
  const onLeader = async (c: Context, deadline: Deadline): Promise<Response | null> => {
    if (node.isLeader()) {
      const o = await node.readBarrier(deadline.remaining());
      if (o.kind === "ready" && node.isLeader()) return null;
      return noLeader(c, node, "cannot confirm this node still leads; retry");
    }
    const target = forwardTarget(c, node);
    if (target === null) return noLeader(c, node, "no leader to answer for leases");
    return forward(c, node, target, undefined, deadline);
  };

  app.post("/v1/lease", async (c) => {
    const deadline = Deadline.of(c, timeout);
    const body = await readBody(c, 4096);
    const q = c.req.query("ttl");
    let parsed: z.infer<typeof grantBody>;
    if (q !== undefined) parsed = { ttl: Number(q) };
    else {
      const kind = bodyKind(c.req.header("content-type"));
      if (kind === "raw") throw new BadRequest('give the TTL as ?ttl=<seconds> or a JSON body {"ttl": <seconds>}');
      const r = grantBody.safeParse(decodeBody(kind, body));
      if (!r.success) throw new BadRequest(z.prettifyError(r.error));
      parsed = r.data;
    }
    if (!Number.isSafeInteger(parsed.ttl) || parsed.ttl * 1000 < LEASE_TTL_MS.min || parsed.ttl * 1000 > LEASE_TTL_MS.max) {
      throw new BadRequest(`ttl must be whole seconds in [${LEASE_TTL_MS.min / 1000}, ${LEASE_TTL_MS.max / 1000}]`);
    }
    const cmd = { op: "leaseGrant" as const, ttlMs: parsed.ttl * 1000 };
    return proposeAndReply(c, node, { body, cmd, session: writeSessionOf(c, parsed.session), deadline }, answerResult((r) => {
      if (r.op !== "leaseGrant") throw new Error(`a lease grant returned a ${r.op} result`);
      return { status: 200, payload: { id: r.id, ttl: r.ttlMs / 1000, revision: r.revision } };
    }));
  });

  app.post("/v1/lease/:id/keepalive", async (c) => {
    const deadline = Deadline.of(c, timeout);
    const id = idOf(c);
    const elsewhere = await onLeader(c, deadline);
    if (elsewhere !== null) return elsewhere;
    const o = timer.keepAlive(id);
    const lh = leaderHeaders(node.leader());
    if (o.kind === "not_leader") return noLeader(c, node, "leadership moved; retry");
    if (o.kind === "not_found") return errorReply(c, 404, "lease_not_found", `lease ${id} does not exist (expired or revoked)`, lh);
    return reply(c, 200, { id, ttl: o.ttlMs / 1000 }, lh);
  });

  app.get("/v1/lease/:id", async (c) => {
    const deadline = Deadline.of(c, timeout);
    const id = idOf(c);
    const elsewhere = await onLeader(c, deadline);
    if (elsewhere !== null) return elsewhere;
    const lease = node.kv.lease(id);
    const lh = leaderHeaders(node.leader());
    if (lease === null) return errorReply(c, 404, "lease_not_found", `lease ${id} does not exist (expired or revoked)`, lh);
    const keys = c.req.query("keys") !== undefined ? { keys: node.kv.leaseKeys(id, MAX_KEYS_LISTED) } : {};
    return reply(c, 200, { id, ttl: lease.ttlMs / 1000, remainingMs: timer.remainingMs(id), ...keys }, lh);
  });

  app.get("/v1/leases", (c) => {
    const leases = node.kv.allLeases().map((l) => ({ id: l.id, ttl: l.ttlMs / 1000 }));
    return reply(c, 200, { leases }, leaderHeaders(node.leader()));
  });

  app.delete("/v1/lease/:id", async (c) => {
    const deadline = Deadline.of(c, timeout);
    const id = idOf(c);
    return proposeAndReply(c, node, { body: undefined, cmd: { op: "leaseRevoke", id }, session: writeSessionOf(c, undefined), deadline }, answerResult((r) => {
      if (r.op !== "leaseRevoke") throw new Error(`a lease revoke returned a ${r.op} result`);
      if (!r.found) return { status: 404, payload: { error: "lease_not_found", message: `lease ${id} does not exist (expired or revoked)`, revision: r.revision } };
      return { status: 200, payload: { id, deleted: r.deleted, revision: r.revision } };
    }));
  });

  return app;
}
