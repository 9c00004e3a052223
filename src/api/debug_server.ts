// Operator endpoints on DEBUG_ADDR, plain HTTP/1.1 (Bun.serve) so curl, load balancers and
// Prometheus need nothing special: /healthz (process alive), /readyz (a leader is known),
// /metrics, /debug/raft (the core's status with peer transport stats), /ui (the live cluster view).
import type { PhalanxNode } from "../node/node.ts";
import { parseHostPort } from "../transport/address.ts";
import { statusOf } from "./cluster_routes.ts";
import { metricsText } from "./metrics_text.ts";
import { uiHandler } from "./ui/ui_http.ts";

// @hono/node-server's serve() replaces the global Response with a lightweight one that Bun.serve
// rejects; this module is evaluated before any serve() call, so it keeps the native class.
const NativeResponse = globalThis.Response;

export interface DebugServer {
  port: number;
  stop(): void;
}

export function startDebugServer(node: PhalanxNode, addr: string): DebugServer {
  const { host, port } = parseHostPort(addr);
  const ui = uiHandler(node);
  const server = Bun.serve({
    hostname: host,
    port,
    fetch(req, srv) {
      const path = new URL(req.url).pathname;
      const uiResponse = ui.handle(req, srv);
      if (uiResponse !== null) return uiResponse;
      switch (path) {
        case "/healthz":
          return node.isStopped ? new NativeResponse("stopping\n", { status: 503 }) : new NativeResponse("ok\n");
        case "/readyz": {
          const leader = node.leader();
          if (node.diskFull()) return new NativeResponse("disk full\n", { status: 503 });
          if (node.isStopped || leader === null) return new NativeResponse("no leader\n", { status: 503 });
          return new NativeResponse(`ok leader=${leader.id}\n`);
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
  return { port: server.port ?? port, stop: () => void server.stop(true) };
}
