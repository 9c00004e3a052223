// Operator endpoints on DEBUG_ADDR, plain HTTP/1.1 (Bun.serve) so curl, load balancers and
// Prometheus need nothing special: /healthz (process alive), /readyz (a leader is known; on the
// leader, also lists followers that lost acknowledged entries and are catching up),
// /metrics, /debug/raft (the core's status with peer transport stats).
import type { PhalanxNode } from "../node/node.ts";
import { parseHostPort } from "../transport/address.ts";
import { statusOf } from "./cluster_routes.ts";
import { metricsText } from "./metrics_text.ts";

// @hono/node-server's serve() replaces the global Response with a lightweight one that Bun.serve
// rejects; this module is evaluated before any serve() call, so it keeps the native class.
const NativeResponse = globalThis.Response;

export interface DebugServer {
  port: number;
  stop(): void;
}

export function startDebugServer(node: PhalanxNode, addr: string): DebugServer {
  const { host, port } = parseHostPort(addr);
  const server = Bun.serve({
    hostname: host,
    port,
    fetch(req) {
      const path = new URL(req.url).pathname;
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
          return new NativeResponse("not found: try /healthz /readyz /metrics /debug/raft\n", { status: 404 });
      }
    },
  });
  return { port: server.port ?? port, stop: () => void server.stop(true) };
}
