// Every client route (/v1/...) of the node's app keeps the guards that run in front of it, read
// from the app's own route table so a route added later is covered too: a path the URL parser
// would rewrite is refused (400 bad_path) before anything else, and a request without a
// credential gets 401. Over real HTTP/2 on loopback: in process (app.request) the URL is already
// normalised and the dot segment would be invisible.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { serveSingleNode, type ServedNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-guards-"));
const ADMIN = "admin-token-0123456789abcdef";
const tokenFile = join(dir, "tokens");
writeFileSync(tokenFile, `ops admin ${ADMIN}\n`);
let served: ServedNode;
let app: Hono;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  served = await serveSingleNode(join(dir, "data"), { clientTokensFile: tokenFile });
  ({ app, session } = served);
});

afterAll(async () => {
  await served.close();
  rmSync(dir, { recursive: true, force: true });
});

/** One request with the :path exactly as given; the status and the parsed error code. */
function send(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; error: string | undefined }> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ":method": method, ":path": path, ...headers }, { endStream: true });
    let status = 0;
    const chunks: Buffer[] = [];
    s.on("response", (h) => (status = Number(h[":status"])));
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("close", () => {
      let error: string | undefined;
      try {
        error = (JSON.parse(Buffer.concat(chunks).toString()) as { error?: string }).error;
      } catch {
        error = undefined;
      }
      resolve({ status, error });
    });
  });
}

/** Every method and path pattern registered under /v1, as a concrete path (`*` and `:x` filled in). */
function clientRoutes(): { method: string; path: string }[] {
  const seen = new Set<string>();
  const out: { method: string; path: string }[] = [];
  for (const r of app.routes) {
    if (r.method === "ALL" || !r.path.startsWith("/v1/")) continue;
    const path = r.path.replace(/\*/g, "k").replace(/:[A-Za-z]+/g, "1");
    const key = `${r.method} ${path}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ method: r.method, path });
  }
  return out;
}

describe("every client route keeps its guards", () => {
  test("the route table has the client routes (the loop below is not empty)", () => {
    const routes = clientRoutes().map((r) => `${r.method} ${r.path}`);
    for (const r of ["GET /v1/kv/k", "PUT /v1/kv/k", "DELETE /v1/kv/k", "POST /v1/txn", "GET /v1/status", "POST /v1/clients"]) expect(routes).toContain(r);
  });

  test("a path with a dot segment is refused with 400 bad_path on every route, also with an admin token", async () => {
    for (const { method, path } of clientRoutes()) {
      // "/v1/zz/../<rest>" normalises to the route's own path: the route would run without the guard.
      const rewritten = `/v1/zz/..${path.slice("/v1".length)}`;
      const got = await send(method, rewritten, { authorization: `Bearer ${ADMIN}` });
      expect({ route: `${method} ${path}`, ...got }).toEqual({ route: `${method} ${path}`, status: 400, error: "bad_path" });
    }
  });

  test("no credential: 401 on every route", async () => {
    for (const { method, path } of clientRoutes()) {
      const got = await send(method, path);
      expect({ route: `${method} ${path}`, ...got }).toEqual({ route: `${method} ${path}`, status: 401, error: "unauthenticated" });
    }
  });
});
