// The one HTTP/2 app of a node: peer RPC (authenticated) and the client API, side by side.
// Errors thrown by handlers become typed answers here; nothing a client sends crashes the node.
import { Hono } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import { rateLimited, type Logger } from "../node/log.ts";
import { BodyTooLargeError } from "../transport/body.ts";
import { raftRoutes } from "../transport/raft_routes.ts";
import { RAFT_STREAM_PATH, RaftStreamRoute } from "../transport/raft_stream.ts";
import { placementReportRoutes } from "../node/placement_report.ts";
import { clusterRoutes } from "./cluster_routes.ts";
import { memberRoutes } from "./member_routes.ts";
import { httpMetrics } from "./http_metrics.ts";
import { kvRoutes } from "./kv_routes.ts";
import { snapshotRoutes } from "./snapshot_route.ts";
import { refuseRewrittenPaths } from "./raw_path.ts";
import { clientAuth } from "./client_auth.ts";
import { busy, Fairness, OverShareError } from "./fairness.ts";
import { uiRoutes } from "./ui/ui_routes.ts";
import { txnRoutes } from "./txn_routes.ts";
import { blockingReads, watchRoutes } from "./watch_routes.ts";
import { WatchHub } from "../kv/watch_hub.ts";
import { LeaseTimer } from "../node/lease_timer.ts";
import { leaseRoutes } from "./lease_routes.ts";
import { clientRoutes } from "./client_routes.ts";
import { BadRequest, errorReply } from "./wire.ts";
import { allowedMethods } from "./method_not_allowed.ts";
import { runForwarded } from "./forward.ts";
import { DEFAULT_MAX_FORWARD_BYTES } from "../transport/forward_frame.ts";

/** Hands a peer's batch to the node; a refusal is logged (the peer is told by its route). */
function peerInbox(node: PhalanxNode, log: Logger): (msgs: Parameters<PhalanxNode["receive"]>[0], from: string) => void {
  return (msgs, from) => {
    try {
      node.receive(msgs);
    } catch (err) {
      // The peer gets a 500 (or a refused frame); the operator needs to know which peer and why.
      log.warn("refused a batch from a peer", { from, messages: msgs.length, error: err });
      throw err;
    }
  };
}

/** The node's peer stream (served below the app, see raft_stream.ts); mount it with serveApp's streamRoutes. */
export function nodeStreams(node: PhalanxNode, log: Logger): Map<string, RaftStreamRoute> {
  const route = new RaftStreamRoute({
    self: node.id,
    auth: node.auth,
    onMessages: peerInbox(node, log),
    awaitReplies: (from) => node.awaitReplies(from),
    // A follower's forwarded client request runs through this node's app (api/forward.ts).
    onForward: (req, from) => node.runForwarded(req, from),
    onForwardRefused: () => node.metrics.forwardsRefused++,
    // A stranger can open (and be refused) many streams: one line per 10 s says it is happening.
    warn: rateLimited(log, 10_000).warn,
  });
  return new Map([[RAFT_STREAM_PATH, route]]);
}

export function nodeApp(node: PhalanxNode, log: Logger): Hono {
  const app = new Hono();
  app.use(httpMetrics(node.metrics.http));
  app.use(refuseRewrittenPaths());
  const onMessages = peerInbox(node, log);
  const raft = raftRoutes({ self: node.id, auth: node.auth, onMessages });
  // The raft routes carry their own Env (authenticated peer); the composed app does not use it.
  app.route("/", raft as unknown as Hono);
  app.route("/", placementReportRoutes({ self: node.id, auth: node.auth, report: () => node.placement?.report() ?? null, ranked: (from, r) => node.placement?.ranked(from, r) }) as unknown as Hono);
  // Every client route authenticates first; peer routes above carry their own (peer) proof.
  app.use("/v1/*", clientAuth({ cfg: node.config.clientAuth, isMember: (id) => node.isMember(id) }));
  // One share per connection and per client across every route that proposes: a client cannot
  // dodge its write share by switching between puts, transactions and leases.
  const fair = new Fairness();
  app.on(["PUT", "DELETE", "POST"], ["/v1/kv/*", "/v1/session", "/v1/clients", "/v1/txn", "/v1/lease", "/v1/lease/*"], fair.writes());
  app.post("/v1/session", fair.sessionRate());
  app.post("/v1/clients", fair.sessionRate());
  const hub = new WatchHub(node.kv);
  // Hono's "/v1/kv/*" also matches "/v1/kv" (the range route): one registration covers both.
  app.use("/v1/kv/*", blockingReads(hub));
  app.route("/", kvRoutes(node));
  app.route("/", txnRoutes(node));
  app.route("/", watchRoutes(hub));
  app.route("/", leaseRoutes(node, new LeaseTimer(node)));
  app.route("/", clientRoutes(node));
  app.route("/", clusterRoutes(node));
  app.route("/", memberRoutes(node)); // admin scope, static clusters only
  app.route("/", snapshotRoutes(node)); // admin scope: it returns every key
  app.route("/", uiRoutes(node));
  app.notFound((c) => {
    const path = new URL(c.req.url).pathname;
    const allow = allowedMethods(app, path);
    if (allow.length > 0) return errorReply(c, 405, "method_not_allowed", `${c.req.method} is not allowed on ${path}; use ${allow.join(", ")}`, { allow: allow.join(", ") });
    return errorReply(c, 404, "no_route", `no route ${c.req.method} ${path}`);
  });
  app.onError((err, c) => {
    if (err instanceof BadRequest) return errorReply(c, 400, "bad_request", err.message);
    if (err instanceof BodyTooLargeError) return errorReply(c, 413, "too_large", err.message);
    if (err instanceof OverShareError) return busy(c, err.message);
    log.error("request failed", { method: c.req.method, path: new URL(c.req.url).pathname, error: err });
    return errorReply(c, 500, "internal", err.message);
  });
  // Forwards from followers (and this node's own, once it leads) run through this same app; the
  // answer leaves room in its frame for the status and headers.
  node.serveForwards(runForwarded(app, DEFAULT_MAX_FORWARD_BYTES - 64 * 1024));
  return app;
}
