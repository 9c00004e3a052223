// The debug server's exposure rule: open on loopback; reachable from the network, only /healthz
// (and DEBUG_PUBLIC paths) without a token, /readyz and /metrics with a metrics-scope token,
// /debug/raft with admin. Bound to 127.0.0.1 here, with the exposure the server would infer for [::].
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { debugExposureOf, startDebugServer, type DebugServer } from "../../src/api/debug_server.ts";
import { parseTokenFile } from "../../src/api/client_auth.ts";
import { resolveConfig } from "../../src/node/config.ts";
import { createLogger } from "../../src/node/log.ts";
import { PhalanxNode } from "../../src/node/node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-debug-"));
const METRICS = "scrape-token-0123456789abcdef";
const ADMIN = "admin-token-0123456789abcdef";
let node: PhalanxNode;
let network: DebugServer;
let networkPublic: DebugServer;
let loopback: DebugServer;

beforeAll(() => {
  node = PhalanxNode.open(resolveConfig({ id: "n1", dataDir: dir, rpcAddr: "127.0.0.1:0", tickMs: "20" }), createLogger("n1", { minLevel: "warn" }));
  node.run();
  const auth = { tokens: parseTokenFile(`scraper metrics ${METRICS}\nops admin ${ADMIN}`, "t"), certs: new Map(), insecure: false, debugPublic: ["/healthz"] };
  network = startDebugServer(node, "127.0.0.1:0", auth, "network");
  networkPublic = startDebugServer(node, "127.0.0.1:0", { ...auth, debugPublic: ["/healthz", "/metrics"] }, "network");
  loopback = startDebugServer(node, "127.0.0.1:0", auth);
});

afterAll(async () => {
  for (const s of [network, networkPublic, loopback]) s.stop();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const get = (s: DebugServer, path: string, token?: string) =>
  fetch(`http://127.0.0.1:${s.port}${path}`, token === undefined ? {} : { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);

test("exposure follows the address", () => {
  expect(debugExposureOf("127.0.0.1:9100")).toBe("loopback");
  expect(debugExposureOf("[::1]:9100")).toBe("loopback");
  expect(debugExposureOf("[::]:9100")).toBe("network");
  expect(debugExposureOf("fly-local-6pn:9100")).toBe("network");
});

test("off loopback: /healthz open, /metrics and /readyz need metrics, /debug/raft needs admin", async () => {
  expect(await get(network, "/healthz")).toBe(200);
  expect(await get(network, "/metrics")).toBe(401);
  expect(await get(network, "/readyz")).toBe(401);
  expect(await get(network, "/debug/raft")).toBe(401);
  expect(await get(network, "/metrics", METRICS)).toBe(200);
  expect(await get(network, "/debug/raft", METRICS)).toBe(403);
  expect(await get(network, "/debug/raft", ADMIN)).toBe(200);
  expect(await get(network, "/metrics", "wrong-token-0123456789abcdef")).toBe(401);
  expect(await get(networkPublic, "/metrics")).toBe(200);
  expect(await get(networkPublic, "/debug/raft")).toBe(401);
});

test("on loopback everything is open", async () => {
  expect(await get(loopback, "/metrics")).toBe(200);
  expect(await get(loopback, "/debug/raft")).toBe(200);
});
