// 405 with `Allow` for a known path asked with the wrong method (RFC 9110 §15.5.6), instead of a
// 404 that makes a client think the key or the route does not exist. The methods come from the
// app's own routing table, so a route added anywhere is counted without a second list.
import type { Hono } from "hono";

const METHODS = ["GET", "HEAD", "PUT", "POST", "DELETE", "PATCH"] as const;

interface RouteEntry {
  method: string;
  handler: ((...args: never[]) => unknown) & { __COMPOSED_HANDLER?: (...args: never[]) => unknown };
}

/**
 * The methods that have an endpoint (not only middleware) at `path`. An endpoint is a handler
 * that takes no `next`: middleware such as auth or fairness is registered per method too
 * (`app.on(["PUT", ...], ...)`) and would otherwise make POST /v1/kv/x look allowed. Hono wraps
 * the handlers of a sub-app with its own error handler; the original is under __COMPOSED_HANDLER.
 */
export function allowedMethods(app: Hono<any, any, any>, path: string): string[] {
  const allowed = new Set<string>();
  for (const method of METHODS) {
    if (method === "HEAD") continue;
    const [matches] = app.router.match(method, path) as unknown as [[[unknown, RouteEntry], unknown][]];
    const endpoint = matches.some(([[, route]]) => {
      if (route.method !== method) return false;
      const original = route.handler.__COMPOSED_HANDLER ?? route.handler;
      return original.length < 2;
    });
    if (endpoint) allowed.add(method);
  }
  // Hono answers HEAD wherever GET is routed.
  if (allowed.has("GET")) allowed.add("HEAD");
  return METHODS.filter((m) => allowed.has(m));
}
