// Operator membership changes for static clusters (`phalanx member add|promote|remove`):
//   POST /v1/members/add?id=<id>&addr=<host:port>   a new server joins as a learner (never a voter first)
//   POST /v1/members/promote?id=<id>                a caught-up learner becomes a voter
//   POST /v1/members/remove?id=<id>                 a voter or learner leaves
// Admin scope (client_auth.ts: routes not listed there are admin). Followers forward to the leader,
// like a leader transfer. Each change is refused, with the reason, when the autopilot would refuse
// it (membership/safety.ts), and answered once it is applied here, or 504 "outcome unknown".
import { Hono, type Context } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import { encodeMemberContext, invalidRegion } from "../kv/member.ts";
import { notCaughtUp, quorumLostByRemoving } from "../node/membership/safety.ts";
import type { ConfChange } from "../raft/types.ts";
import { parseHostPort } from "../transport/address.ts";
import { nodeIdSchema } from "../transport/codec.ts";
import { Deadline } from "./deadline.ts";
import { forward, forwardTarget, leaderHeaders, noLeader } from "./forward.ts";
import { BadRequest, errorReply, reply } from "./wire.ts";

const APPLY_POLL_MS = 20;

export const MEMBER_OPS = ["add", "promote", "remove"] as const;
type MemberOp = (typeof MEMBER_OPS)[number];

export function memberRoutes(node: PhalanxNode): Hono {
  const app = new Hono();
  for (const op of MEMBER_OPS) app.post(`/v1/members/${op}`, (c) => change(c, node, op));
  return app;
}

function refuse(c: Context, node: PhalanxNode, reason: string): Response {
  return errorReply(c, 409, "change_refused", reason, leaderHeaders(node.leader()));
}

async function change(c: Context, node: PhalanxNode, op: MemberOp): Promise<Response> {
  const deadline = Deadline.of(c, node.config.requestTimeoutMs);
  const id = c.req.query("id") ?? "";
  if (id === "" || !nodeIdSchema.safeParse(id).success) throw new BadRequest("give the server as ?id=<node id>");
  // The autopilot owns membership when gossip runs; two deciders would undo each other's work.
  if (node.membershipInfo !== null) return refuse(c, node, "membership is automatic (gossip autopilot): it adds, promotes and removes servers itself");
  if (!node.isLeader()) {
    const target = forwardTarget(c, node);
    return target === null ? noLeader(c, node, "no leader to change the membership") : forward(c, node, target, undefined, deadline);
  }
  const status = node.status();
  const { voters, learners } = status.conf;
  let cc: ConfChange;
  if (op === "add") {
    const addr = c.req.query("addr") ?? "";
    try {
      parseHostPort(addr);
    } catch (err) {
      throw new BadRequest(`give the new server's address as ?addr=host:port (${(err as Error).message})`);
    }
    const region = c.req.query("region") ?? "";
    const badRegion = invalidRegion(region, "unknown allowed");
    if (badRegion !== null) throw new BadRequest(`?region=: ${badRegion}`);
    if (voters.includes(id) || learners.includes(id)) return refuse(c, node, `${id} is already a ${voters.includes(id) ? "voter" : "learner"}`);
    // Learner first: a new voter with an empty log would count towards the quorum before it can
    // help one, and with a second server down the cluster would stop committing.
    cc = { op: "addLearner", node: id, context: encodeMemberContext({ address: addr, region }) };
  } else if (op === "promote") {
    if (voters.includes(id)) return refuse(c, node, `${id} is already a voter`);
    if (!learners.includes(id)) return refuse(c, node, `${id} is not a member; add it as a learner first`);
    const why = notCaughtUp(status, id);
    if (why !== null) return refuse(c, node, `${why}; promote it once it has caught up`);
    // The whole record again: a replica that never saw the learner's row learns it from this entry.
    const m = node.members().find((x) => x.id === id);
    cc = { op: "addVoter", node: id, context: encodeMemberContext({ address: m?.address ?? "", region: m?.region ?? "" }) };
  } else {
    if (!voters.includes(id) && !learners.includes(id)) return refuse(c, node, `${id} is not a member`);
    if (id === node.id) return refuse(c, node, `${id} is the leader; transfer leadership first (phalanx leader transfer <id>)`);
    if (voters.includes(id)) {
      // Fresh evidence only: answeredRecently alone stays true for up to an election timeout after
      // a voter dies (a test killed one and had the removal of another accepted, wedging the
      // cluster). The transport's state flips at the first failed heartbeat, a tick later.
      const transport = new Map(node.peerStats().map((p) => [p.id, p.state]));
      const alive = (v: string) => v === node.id || (status.progress[v]?.answeredRecently === true && transport.get(v) === "up");
      const why = quorumLostByRemoving(voters, id, alive);
      if (why !== null) return refuse(c, node, why);
    }
    cc = { op: "remove", node: id, context: "" };
  }
  const r = node.proposeConfChange(cc);
  if (!r.ok) return refuse(c, node, r.reason);
  while (deadline.remaining() > 0 && !node.isStopped) {
    if (node.status().applied >= r.index) return reply(c, 200, { change: `${cc.op} ${id}`, index: r.index, members: node.members() }, leaderHeaders(node.leader()));
    await new Promise((res) => setTimeout(res, APPLY_POLL_MS));
  }
  // Proposed but not seen applied: it may still commit (or be lost with a leader change).
  return errorReply(c, 504, "outcome_unknown", `${cc.op} ${id} was proposed at index ${r.index} but not applied before the deadline; check phalanx members`, leaderHeaders(node.leader()));
}
