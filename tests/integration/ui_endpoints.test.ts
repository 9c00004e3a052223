// The cluster view's endpoints on real processes, and the attacks on them: a stranger reading a
// node's view without the cluster key, an impostor at a member's address answering with a forged
// view (it must be shown as down, never under the member's name), another web site reading the
// data through the operator's browser, and a re-pointed name (DNS rebinding) passing for loopback.
import { afterAll, expect, test } from "bun:test";
import { Hono } from "hono";
import { fromThisMachine, mayReadCrossOrigin } from "../../src/api/ui/ui_http.ts";
import { NODE_VIEW_PATH } from "../../src/api/ui/node_view.ts";
import { peerReplyHeaders, peerRequestHeaders } from "../../src/transport/auth.ts";
import { serveApp, type RunningServer } from "../../src/transport/server.ts";
import { freePort, TestCluster, waitFor } from "./harness.ts";

const CLUSTER_KEY = "integration-test-cluster-key"; // harness.ts sets this on every node

let cluster: TestCluster | null = null;
let impostor: RunningServer | null = null;
afterAll(async () => {
  await impostor?.close();
  await cluster?.stopAll();
});

test("the cluster view: signed member views, forged ones shown as down, no data for strangers or other sites", async () => {
  cluster = await TestCluster.create(3);
  const debug = new Map<string, number>();
  for (const id of ["n1", "n2"]) {
    debug.set(id, await freePort());
    cluster.start(id, { DEBUG_ADDR: `127.0.0.1:${debug.get(id)}` });
  }
  // n3's address answers, with n3's name, but signs with a key that is not the cluster's.
  const forged = new Hono();
  forged.get(NODE_VIEW_PATH, (c) => {
    const body = new TextEncoder().encode(JSON.stringify({ id: "n3", region: "forged", ui: "http://198.51.100.7/ui", status: { role: "leader", term: 999 } }));
    return c.body(body, 200, { "content-type": "application/json", ...peerReplyHeaders({ mode: "hmac", key: "not-the-cluster-key-0123" }, { path: NODE_VIEW_PATH, from: "n3", to: "n1", nonce: c.req.header("x-phalanx-nonce") ?? "", body }) });
  });
  impostor = await serveApp(forged, { listen: cluster.node("n3").addr });
  try {
    const leader = await cluster.waitForLeader(["n1", "n2"]);
    const base = `http://127.0.0.1:${debug.get("n1")}`;

    const page = await fetch(`${base}/ui`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toContain("text/html");
    expect(page.headers.get("content-security-policy")).toContain("default-src 'none'");
    expect(await page.text()).toContain("<title>phalanx");

    const view = await waitFor("a view in which n2 answered", async () => {
      const v = (await (await fetch(`${base}/ui/cluster.json`)).json()) as any;
      return v.nodes.find((n: any) => n.id === "n2")?.ok === true ? v : undefined;
    });
    expect(view.via).toBe("n1");
    expect(view.leader).toBe(leader);
    const byId = new Map<string, any>(view.nodes.map((n: any) => [n.id, n]));
    expect(byId.get("n2").view.status.id).toBe("n2");
    expect(byId.get("n2").view.ui).toBe(`http://127.0.0.1:${debug.get("n2")}/ui`);
    expect(byId.get("n1").view.counters.proposals).toBeGreaterThanOrEqual(0);
    // The impostor's view is not shown as n3's.
    expect(byId.get("n3").ok).toBe(false);
    expect(byId.get("n3").error).toContain("not proven to come from n3");
    expect(JSON.stringify(view)).not.toContain("198.51.100.7");

    // A stranger (no cluster key, or a wrong one) cannot read a node's view on the peer port.
    const unsigned = await cluster.request("n2", "GET", NODE_VIEW_PATH);
    expect(unsigned.status).toBe(401);
    const wrongKey = peerRequestHeaders({ mode: "hmac", key: "not-the-cluster-key-0123" }, { method: "GET", path: NODE_VIEW_PATH, from: "n1", to: "n2", body: new Uint8Array(0) });
    expect((await cluster.request("n2", "GET", NODE_VIEW_PATH, { headers: wrongKey })).status).toBe(401);
    const signed = peerRequestHeaders({ mode: "hmac", key: CLUSTER_KEY }, { method: "GET", path: NODE_VIEW_PATH, from: "n1", to: "n2", body: new Uint8Array(0) });
    const ok = await cluster.request("n2", "GET", NODE_VIEW_PATH, { headers: signed });
    expect(ok.status).toBe(200);
    expect(ok.json.id).toBe("n2");

    // Another site open in the operator's browser gets no CORS grant; a member's page does.
    const evil = await fetch(`${base}/ui/cluster.json`, { headers: { origin: "https://evil.example" } });
    expect(evil.headers.get("access-control-allow-origin")).toBeNull();
    const member = `http://127.0.0.1:${debug.get("n2")}`;
    const fromMember = await fetch(`${base}/ui/cluster.json`, { headers: { origin: member } });
    expect(fromMember.headers.get("access-control-allow-origin")).toBe(member);
    const preflight = await fetch(`${base}/ui/cluster.json`, { method: "OPTIONS", headers: { origin: member, "access-control-request-headers": "authorization" } });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get("access-control-allow-headers")).toBe("authorization");
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);

test("only loopback with a loopback Host needs no credential (a re-pointed name does)", () => {
  expect(fromThisMachine("127.0.0.1", "127.0.0.1:9100")).toBe(true);
  expect(fromThisMachine("::1", "[::1]:9100")).toBe(true);
  expect(fromThisMachine("::ffff:127.0.0.1", "localhost:9100")).toBe(true);
  // DNS rebinding: evil.example resolved to 127.0.0.1, so the socket is loopback but Host is not.
  expect(fromThisMachine("127.0.0.1", "evil.example:9100")).toBe(false);
  expect(fromThisMachine("10.0.0.5", "127.0.0.1:9100")).toBe(false);
  expect(fromThisMachine("fdaa::3", "localhost")).toBe(false);
  const members = new Set(["http://n2.internal:9100"]);
  expect(mayReadCrossOrigin("http://n2.internal:9100", members)).toBe(true);
  expect(mayReadCrossOrigin("http://localhost:9100", members)).toBe(true);
  expect(mayReadCrossOrigin("https://evil.example", members)).toBe(false);
  expect(mayReadCrossOrigin("null", members)).toBe(false);
});
