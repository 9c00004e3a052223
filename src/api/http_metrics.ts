// Counts every HTTP request of the node's app by method, route pattern and status code, with its
// latency until the response starts (a streamed body, such as a snapshot, is not waited for).
// The route label is the pattern that answered (/v1/kv/*), never the raw path: a label per key
// would let any client grow /metrics without bound.
import type { MiddlewareHandler } from "hono";
import { matchedRoutes } from "hono/route";
import type { HttpMetrics } from "../node/metrics.ts";

const METHODS = new Set(["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"]);

export function httpMetrics(metrics: HttpMetrics): MiddlewareHandler {
  return async (c, next) => {
    const t0 = performance.now();
    try {
      await next();
    } finally {
      const method = METHODS.has(c.req.method) ? c.req.method : "OTHER";
      metrics.observe(method, routeLabel(c), c.res.status, (performance.now() - t0) / 1000);
    }
  };
}

/** The registered path of the handler that answered; "unmatched" when only middleware ran (404, refused early). */
function routeLabel(c: Parameters<MiddlewareHandler>[0]): string {
  const route = matchedRoutes(c)[c.req.routeIndex];
  if (route === undefined || route.path === "*" || route.path === "/*") return "unmatched";
  return route.path;
}
