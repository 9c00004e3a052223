// Cluster introspection and control: GET /v1/status, GET /v1/members, POST /v1/leader/transfer.
import { Hono } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import { VERSION } from "../node/version.ts";
import { dbSize } from "./metrics_text.ts";
import { Deadline } from "./deadline.ts";
import { forward, forwardTarget, leaderHeaders, noLeader } from "./forward.ts";
import { BadRequest, errorReply, reply } from "./wire.ts";

/** How often a transfer checks whether the target took over (server-side, bounded by the deadline). */
const TRANSFER_POLL_MS = 20;

export function statusOf(node: PhalanxNode) {
  const s = node.status();
  const leader = node.leader();
  const peers = new Map(node.peerStats().map((p) => [p.id, p]));
  return {
    id: s.id,
    version: VERSION,
    role: s.role,
    term: s.term,
    leader: leader?.id ?? null,
    leaderAddr: leader?.address ?? null,
    commit: s.commit,
    applied: s.applied,
    lastIndex: s.lastIndex,
    firstIndex: s.firstIndex,
    leaseValid: s.leaseValid,
    dbSizeBytes: node.isStopped ? null : dbSize(node).bytes,
    members: node.members().map((m) => ({
      ...m,
      progress: s.progress[m.id] ?? null,
      rttMs: peers.get(m.id)?.rttMs ?? null,
      peerState: peers.get(m.id)?.state ?? null,
    })),
    placement: node.placement?.info() ?? null,
    /** VOTER_REGIONS and, on the leader, what keeps the voters from matching it (automatic membership only). */
    voterRegions: node.membershipInfo?.().voterRegions ?? null,
  };
}

export function clusterRoutes(node: PhalanxNode): Hono {
  const app = new Hono();

  app.get("/v1/status", (c) => reply(c, 200, statusOf(node), leaderHeaders(node.leader())));

  app.get("/v1/members", async (c) => {
    const automatic = node.membershipInfo?.() ?? null;
    // With automatic membership the leader holds the autopilot's decisions: ask it.
    if (automatic !== null && !node.isLeader() && c.req.query("local") === undefined) {
      const target = forwardTarget(c, node);
      if (target !== null) return forward(c, node, target, undefined, Deadline.of(c, node.config.requestTimeoutMs));
    }
    return reply(c, 200, { members: node.members(), ...(automatic === null ? {} : { automatic }) }, leaderHeaders(node.leader()));
  });

  app.post("/v1/leader/transfer", async (c) => {
    const deadline = Deadline.of(c, node.config.requestTimeoutMs);
    const to = c.req.query("to");
    if (to === undefined || to === "") throw new BadRequest("give the target node as ?to=<id>");
    if (!node.members().some((m) => m.id === to && m.role === "voter")) throw new BadRequest(`${to} is not a voting member`);
    if (node.leader()?.id === to) return reply(c, 200, { leader: to, term: node.status().term });
    if (!node.isLeader()) {
      const target = forwardTarget(c, node);
      return target === null ? noLeader(c, node, "no leader to transfer from") : forward(c, node, target, undefined, deadline);
    }
    const r = node.transferLeadership(to);
    if (!r.ok) return errorReply(c, 409, "transfer_refused", r.reason, leaderHeaders(node.leader()));
    while (deadline.remaining() > 0 && !node.isStopped) {
      const leader = node.leader();
      if (leader?.id === to) return reply(c, 200, { leader: to, term: node.status().term }, leaderHeaders(leader));
      await new Promise((r) => setTimeout(r, TRANSFER_POLL_MS));
    }
    return errorReply(c, 504, "timeout", `${to} did not take over before the deadline`, leaderHeaders(node.leader()));
  });

  return app;
}
