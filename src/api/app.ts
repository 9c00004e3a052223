// The one HTTP/2 app of a node: peer RPC (authenticated) and the client API, side by side.
// Errors thrown by handlers become typed answers here; nothing a client sends crashes the node.
import { Hono } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import type { Logger } from "../node/log.ts";
import { BodyTooLargeError } from "../transport/body.ts";
import { raftRoutes } from "../transport/raft_routes.ts";
import { placementReportRoutes } from "../node/placement_report.ts";
import { clusterRoutes } from "./cluster_routes.ts";
import { kvRoutes } from "./kv_routes.ts";
import { BadRequest, errorReply } from "./wire.ts";

export function nodeApp(node: PhalanxNode, log: Logger): Hono {
  const app = new Hono();
  const onMessages = (msgs: Parameters<PhalanxNode["receive"]>[0], from: string) => {
    try {
      node.receive(msgs);
    } catch (err) {
      // The peer gets a 500 from the raft routes; the operator needs to know which peer and why.
      log.warn("refused a batch from a peer", { from, messages: msgs.length, error: err });
      throw err;
    }
  };
  const raft = raftRoutes({ self: node.id, auth: node.auth, onMessages, awaitReplies: (from) => node.awaitReplies(from) });
  // The raft routes carry their own Env (authenticated peer); the composed app does not use it.
  app.route("/", raft as unknown as Hono);
  app.route("/", placementReportRoutes({ self: node.id, auth: node.auth, report: () => node.placement?.report() ?? null }) as unknown as Hono);
  app.route("/", kvRoutes(node));
  app.route("/", clusterRoutes(node));
  app.notFound((c) => errorReply(c, 404, "no_route", `no route ${c.req.method} ${new URL(c.req.url).pathname}`));
  app.onError((err, c) => {
    if (err instanceof BadRequest) return errorReply(c, 400, "bad_request", err.message);
    if (err instanceof BodyTooLargeError) return errorReply(c, 413, "too_large", err.message);
    log.error("request failed", { method: c.req.method, path: new URL(c.req.url).pathname, error: err });
    return errorReply(c, 500, "internal", err.message);
  });
  return app;
}
