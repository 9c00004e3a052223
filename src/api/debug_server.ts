// Operator endpoints on DEBUG_ADDR, plain HTTP/1.1 (Bun.serve) so curl, load balancers and
// Prometheus need nothing special: /healthz (process alive), /readyz (a leader is known; on the
// leader, also lists followers that lost acknowledged entries and are catching up), /metrics,
// /debug/raft (the core's status with peer transport stats), /ui (the live cluster view).
// On loopback it is open. Elsewhere it needs a client credential (bearer token): /readyz and
// /metrics the metrics scope (or above), /debug/raft and the cluster view's data admin; /healthz
// (reveals nothing) and the paths in DEBUG_PUBLIC (e.g. /metrics for a scraper) need none.
import type { PhalanxNode } from "../node/node.ts";
import { parseHostPort } from "../transport/address.ts";
import { statusOf } from "./cluster_routes.ts";
import { eventLoopLag } from "../node/process_metrics.ts";
import { metricsText } from "./metrics_text.ts";
import { authRequired, bearerToken, scopeAllows, tokenIdentity, type ClientAuthConfig, type Scope } from "./client_auth.ts";
import { isLoopback } from "../node/config.ts";

const DEBUG_SCOPES: Record<string, Scope> = { "/healthz": "metrics", "/readyz": "metrics", "/metrics": "metrics", "/debug/raft": "admin" };
import { uiHandler } from "./ui/ui_http.ts";
import { NativeResponse } from "./native_response.ts";


export interface DebugServer {
  port: number;
  stop(): void;
}

/** Who can reach the debug port: only this machine (open), or the network (credentials needed). */
export type DebugExposure = "loopback" | "network";

export function debugExposureOf(addr: string): DebugExposure {
  return isLoopback(addr) ? "loopback" : "network";
}

export function startDebugServer(node: PhalanxNode, addr: string, auth: ClientAuthConfig, exposure: DebugExposure = debugExposureOf(addr)): DebugServer {
  const { host, port } = parseHostPort(addr);
  // The lag probe runs while someone can scrape it; it is one timer per process.
  eventLoopLag.start();
  const open = exposure === "loopback" || !authRequired(auth);
  /** Whether `req` carries a credential with scope `need` (always, when the server is open). */
  const authorize = (req: Request, need: Scope): { ok: true } | { ok: false; status: 401 | 403; message: string } => {
    if (open) return { ok: true };
    const token = bearerToken(req.headers.get("authorization"));
    const who = token === null ? null : tokenIdentity(auth, token);
    if (who === null) return { ok: false, status: 401, message: "authentication required: Authorization: Bearer <token>" };
    if (!scopeAllows(who.scope, need)) return { ok: false, status: 403, message: `${who.name} has scope ${who.scope}; this needs ${need}` };
    return { ok: true };
  };
  /** null when the request may be served, else the refusal. */
  const refuse = (req: Request, path: string): Response | null => {
    const need = DEBUG_SCOPES[path];
    if (need === undefined || auth.debugPublic.includes(path)) return null;
    const verdict = authorize(req, need);
    if (verdict.ok) return null;
    const headers: Record<string, string> = verdict.status === 401 ? { "www-authenticate": 'Bearer realm="phalanx"' } : {};
    return new NativeResponse(`${verdict.message}\n`, { status: verdict.status, headers });
  };
  // The page itself is static; its data (every member's state) needs admin off loopback.
  const ui = uiHandler(node, (req) => authorize(req, "admin"));
  const server = Bun.serve({
    hostname: host,
    port,
    fetch(req, srv) {
      const path = new URL(req.url).pathname;
      const uiResponse = ui.handle(req, srv);
      if (uiResponse !== null) return uiResponse;
      const refused = refuse(req, path);
      if (refused !== null) return refused;
      switch (path) {
        case "/healthz":
          return node.isStopped ? new NativeResponse("stopping\n", { status: 503 }) : new NativeResponse("ok\n");
        case "/readyz": {
          const leader = node.leader();
          if (node.diskFull()) return new NativeResponse("disk full\n", { status: 503 });
          if (node.isStopped || leader === null) return new NativeResponse("no leader\n", { status: 503 });
          // Still ready (the leader serves), but say which followers lost acknowledged entries.
          const regressed = Object.entries(node.status().progress).filter(([, p]) => p.regressedFrom > 0);
          const warn = regressed.map(([id, p]) => `follower ${id} lost acknowledged entries (had ${p.regressedFrom}, now ${p.match}), catching up\n`);
          return new NativeResponse(`ok leader=${leader.id}\n${warn.join("")}`);
        }
        case "/metrics":
          return new NativeResponse(metricsText(node), { headers: { "content-type": "text/plain; version=0.0.4" } });
        case "/debug/raft":
          return NativeResponse.json({ ...statusOf(node), raft: node.status(), peers: node.peerStats(), metrics: node.metrics });
        default:
          return new NativeResponse("not found: try /healthz /readyz /metrics /debug/raft /ui\n", { status: 404 });
      }
    },
  });
  return {
    port: server.port ?? port,
    stop: () => {
      eventLoopLag.stop();
      void server.stop(true);
    },
  };
}
