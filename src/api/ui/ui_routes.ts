// The cluster view's node-to-node route: GET /peer/v1/ui/node answers with this node's own view
// (node_view.ts). It is a peer route, not a client one: the node a browser talks to asks every
// member with the cluster credential (as Raft traffic does), and each answer is signed, so a
// view shown under a member's name provably came from that member. No client credential ever
// travels between nodes; the browser's own credential is checked where it arrives (ui_http.ts).
import { Hono } from "hono";
import type { PhalanxNode } from "../../node/node.ts";
import { PeerGate, peerAuth, peerReplyHeaders, type PeerEnv } from "../../transport/auth.ts";
import { NODE_VIEW_PATH, nodeView } from "./node_view.ts";

/** A GET has no body; the cap only bounds what a peer could make us read. */
const MAX_BODY = 64;

export function uiRoutes(node: PhalanxNode): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = new PeerGate(node.auth, node.id);
  app.get(NODE_VIEW_PATH, peerAuth(gate, MAX_BODY), (c) => {
    const body = new TextEncoder().encode(JSON.stringify(nodeView(node)));
    return c.body(body, 200, { "content-type": "application/json", ...peerReplyHeaders(node.auth, { path: NODE_VIEW_PATH, from: node.id, to: c.var.peerFrom, nonce: c.var.peerNonce, body }) });
  });
  return app;
}
