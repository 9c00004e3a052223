// The identity proof the leader asks for before adding a server gossip found, and the peer auth
// in front of gossip's push-pull route: real HTTP/2 on loopback, the routes as the node mounts them.
import { afterAll, expect, test } from "bun:test";
import { Hono } from "hono";
import { PUSH_PULL_PATH, pushPullRoute } from "../../src/gossip/push_pull_route.ts";
import { type PeerAuth, peerRequestHeaders } from "../../src/transport/auth.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { identityRoute, verifyIdentity } from "../../src/transport/identity_route.ts";
import { type RunningServer, serveApp } from "../../src/transport/server.ts";

const KEY: PeerAuth = { mode: "hmac", key: "identity-test-cluster-key" };
const OTHER_KEY: PeerAuth = { mode: "hmac", key: "some-other-cluster-key!!" };
const servers: RunningServer[] = [];
const client = new H2Client({ connectTimeoutMs: 1000 });
afterAll(async () => {
  for (const s of servers) await s.close();
  await client.close();
});

async function serve(app: Hono<any>): Promise<string> {
  const s = await serveApp(app, { listen: "127.0.0.1:0" });
  servers.push(s);
  return `127.0.0.1:${s.port}`;
}

const server = (self: string, auth: PeerAuth, cluster: string) => {
  const app = new Hono();
  app.route("/", identityRoute({ self, auth, cluster: () => cluster }) as unknown as Hono);
  app.route("/", pushPullRoute(auth, self, (bytes) => bytes) as unknown as Hono);
  return serve(app);
};
const check = (rpcAddr: string, node: string, cluster = "c:abc", auth = KEY) => verifyIdentity({ client, auth, self: "n1", node, rpcAddr, cluster, timeoutMs: 2000 });

test("a server of our cluster proves who it is", async () => {
  const addr = await server("n4", KEY, "c:abc");
  expect(await check(addr, "n4")).toEqual({ ok: true });
});

test("no proof without the cluster credential, for another id, from another cluster, or from a server that just says yes", async () => {
  const stranger = await server("evil", OTHER_KEY, "c:abc");
  const v1 = await check(stranger, "evil");
  expect(v1.ok).toBe(false);
  expect(!v1.ok && v1.reason).toContain("401");

  // An address may not vouch for a server that is not there (gossip said n5 lives at n4's address).
  const n4 = await server("n4", KEY, "c:abc");
  const v2 = await check(n4, "n5");
  expect(!v2.ok && v2.reason).toContain("request is for n5, this node is n4");

  const elsewhere = await server("n6", KEY, "c:other");
  const v3 = await check(elsewhere, "n6");
  expect(!v3.ok && v3.reason).toContain("cluster");

  const yes = new Hono();
  yes.all("*", (c) => c.json({ node: "evil", cluster: "c:abc", nonce: "0".repeat(32) }));
  const v4 = await check(await serve(yes), "evil");
  expect(!v4.ok && v4.reason).toContain("did not prove");

  const v5 = await check("127.0.0.1:1", "n7");
  expect(!v5.ok && v5.reason).toContain("no answer");
});

test("the push-pull route is behind the peer auth: an unsigned or wrongly signed body is never read", async () => {
  const addr = await server("n4", KEY, "c:abc");
  const unsigned = await client.request(client.originFor(addr), { method: "POST", path: PUSH_PULL_PATH, body: new Uint8Array(64) });
  expect(unsigned.status).toBe(401);
  const body = new Uint8Array([1, 2, 3]);
  const wrong = await client.request(client.originFor(addr), {
    method: "POST",
    path: PUSH_PULL_PATH,
    headers: peerRequestHeaders(OTHER_KEY, { method: "POST", path: PUSH_PULL_PATH, from: "n9", to: "n4", body }),
    body,
  });
  expect(wrong.status).toBe(401);
  const right = await client.request(client.originFor(addr), {
    method: "POST",
    path: PUSH_PULL_PATH,
    headers: peerRequestHeaders(KEY, { method: "POST", path: PUSH_PULL_PATH, from: "n9", to: "n4", body }),
    body,
  });
  expect(right.status).toBe(200);
  expect(new Uint8Array(right.body)).toEqual(body);
});
