// The live cluster view on the debug server (plain HTTP/1.1, which every browser speaks; the
// client port is h2c unless TLS is on, and browsers do not speak h2c):
//   GET /ui               the page (one HTML file, inline CSS and JS, embedded in the binary)
//   GET /ui/cluster.json  what the page shows, gathered from every member (node_view.ts)
//
// Who may read it: see access(). The page itself holds no data and is served to anyone; the
// data needs the credential when the request does not come from this machine.
import type { Server } from "bun";
import type { PhalanxNode } from "../../node/node.ts";
import { clusterView } from "./node_view.ts";

type ClusterView = Awaited<ReturnType<typeof clusterView>>;
import pageModule from "./page.html" with { type: "text" };
import { NativeResponse } from "../native_response.ts";

// The import attribute makes Bun (and `bun build --compile`) inline the file as a string; the
// type declarations describe .html imports as HTML bundles, hence the cast.
const PAGE_HTML = pageModule as unknown as string;
if (typeof PAGE_HTML !== "string" || !PAGE_HTML.includes("<title>")) throw new Error("ui: the page was not embedded as text");

// Same reason as in debug_server.ts: keep the native Response class for Bun.serve.

/**
 * Views younger than this are shared: however many pages poll, a node asks its members at most
 * this often, so viewers cannot multiply the load they put on the cluster.
 */
const SHARE_VIEW_MS = 250;

export const UI_PATH = "/ui";
export const CLUSTER_JSON_PATH = "/ui/cluster.json";

const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  // Inline script and style only; data is fetched from members' debug servers (failover).
  "content-security-policy":
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; connect-src http: https:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
};

/**
 * Off-loopback check for the data. MERGE (clientauth): replace with the client API's check for
 * the **admin** scope on `req`'s Authorization header. Until client auth exists, the debug
 * server answers anyone who reaches it (as /debug/raft and /metrics do), so this allows all.
 */
export type UiAuthorizer = (req: Request) => { ok: true } | { ok: false; status: 401 | 403; message: string };
export const allowUntilClientAuth: UiAuthorizer = () => ({ ok: true });

export interface UiHandler {
  /** A response for the cluster view's paths, or null for any other path. */
  handle(req: Request, server: Server<unknown>): Promise<Response> | Response | null;
}

export function uiHandler(node: PhalanxNode, authorize: UiAuthorizer = allowUntilClientAuth): UiHandler {
  // Origins of the members' pages, learned from the last cluster view: after failover the page
  // (served by a member that is now down) reads the data from another member, cross-origin.
  let memberOrigins = new Set<string>();
  let latest: { at: number; view: Promise<ClusterView> } | null = null;

  const sharedView = (): Promise<ClusterView> => {
    const now = performance.now();
    if (latest !== null && now - latest.at < SHARE_VIEW_MS) return latest.view;
    const view = clusterView(node).then((v) => {
      const origins = new Set<string>();
      for (const n of v.nodes) {
        const ui = n.ok ? (n.view as { ui?: unknown }).ui : null;
        if (typeof ui === "string" && URL.canParse(ui)) origins.add(new URL(ui).origin);
      }
      memberOrigins = origins;
      return v;
    });
    latest = { at: now, view };
    return view;
  };

  const corsHeaders = (req: Request): Record<string, string> => {
    const origin = req.headers.get("origin");
    if (origin === null || !mayReadCrossOrigin(origin, memberOrigins)) return {};
    return { "access-control-allow-origin": origin, vary: "origin" };
  };

  const json = (req: Request, status: number, body: unknown): Response =>
    NativeResponse.json(body, { status, headers: { "cache-control": "no-store", ...corsHeaders(req) } });

  return {
    handle(req, server) {
      const path = new URL(req.url).pathname;
      if (path === UI_PATH || path === `${UI_PATH}/`) {
        if (req.method !== "GET" && req.method !== "HEAD") return new NativeResponse("method not allowed\n", { status: 405, headers: { allow: "GET" } });
        return new NativeResponse(PAGE_HTML, { headers: PAGE_HEADERS });
      }
      if (path !== CLUSTER_JSON_PATH) return null;
      if (req.method === "OPTIONS") {
        // Preflight of a request that carries a credential (Authorization header).
        return new NativeResponse(null, {
          status: 204,
          headers: { ...corsHeaders(req), "access-control-allow-methods": "GET", "access-control-allow-headers": "authorization", "access-control-max-age": "600" },
        });
      }
      if (req.method !== "GET") return json(req, 405, { error: "method_not_allowed", message: "use GET" });
      if (!fromThisMachine(server.requestIP(req)?.address ?? "", req.headers.get("host") ?? "")) {
        const a = authorize(req);
        if (!a.ok) return json(req, a.status, { error: a.status === 401 ? "unauthenticated" : "forbidden", message: a.message });
      }
      return sharedView().then(
        (view) => json(req, 200, view),
        (err: unknown) => json(req, 500, { error: "internal", message: err instanceof Error ? err.message : String(err) }),
      );
    },
  };
}

/**
 * Loopback needs no credential, like etcd's and Consul's local agents. Both the socket and the
 * Host header must be loopback: a web page whose name an attacker re-points at 127.0.0.1 (DNS
 * rebinding) reaches us over loopback, but with its own name in Host.
 */
export function fromThisMachine(ip: string, hostHeader: string): boolean {
  if (!isLoopbackIp(ip)) return false;
  return isLoopbackHost(hostHeader.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1"));
}

/**
 * Which pages may read the data cross-origin: a member's page (after failover the page, served by
 * a member that is now down, reads from another) or a page on this machine. Any other site the
 * operator has open gets nothing, even when it makes the browser ask over loopback.
 */
export function mayReadCrossOrigin(origin: string, memberOrigins: ReadonlySet<string>): boolean {
  return memberOrigins.has(origin) || isLoopbackOrigin(origin);
}

function isLoopbackIp(ip: string): boolean {
  return ip === "::1" || /^(::ffff:)?127\./.test(ip);
}

function isLoopbackHost(host: string): boolean {
  return host === "localhost" || isLoopbackIp(host);
}

function isLoopbackOrigin(origin: string): boolean {
  try {
    const u = new URL(origin);
    return (u.protocol === "http:" || u.protocol === "https:") && isLoopbackHost(u.hostname.replace(/^\[(.*)\]$/, "$1"));
  } catch {
    return false;
  }
}
