// The follower → leader hop of a forwarded write, alone, in this process (h2c, HMAC): one client
// at a time sends a 100-byte PUT through the hop to a Hono app whose route answers at once (no
// Raft, no disk), the way the leader's app answers a forwarded request. Two ways, alternated:
//   request  one HTTP/2 request per forward through the pooled client into serveApp's Hono
//            adapter (the per-request forward phalanx used before the peer stream carried it);
//   stream   a Forward frame on the long-lived peer stream, run by app.fetch (api/forward.ts).
// Prints the process CPU (both ends of the hop) and wall time per forward.
// Usage: node_modules/.bin/bun bench/forward_hop.ts [forwards per run, default 3000] [rounds, default 3]

import { Hono } from "hono";
import { median } from "./cluster.ts";
import { runForwarded } from "../src/api/forward.ts";
import type { PeerAuth } from "../src/transport/auth.ts";
import { DEFAULT_MAX_FORWARD_BYTES } from "../src/transport/forward_frame.ts";
import { H2Client } from "../src/transport/h2_client.ts";
import { PeerTransport } from "../src/transport/peers.ts";
import { RAFT_STREAM_PATH, RaftStreamRoute } from "../src/transport/raft_stream.ts";
import { serveApp } from "../src/transport/server.ts";

const n = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 3);
const auth: PeerAuth = { mode: "hmac", key: "bench-cluster-key-0123456789" };
const value = new Uint8Array(100).fill(120);

let revision = 0;
const app = new Hono();
app.put("/v1/kv/*", async (c) => {
  const body = new Uint8Array(await c.req.arrayBuffer());
  if (body.byteLength !== value.byteLength) return c.json({ error: "bad body" }, 400);
  revision++;
  return c.json({ revision }, 200, { "x-phalanx-revision": String(revision), "x-phalanx-leader": "leader" });
});
const stream = new RaftStreamRoute({ self: "leader", auth, onMessages: () => undefined, onForward: runForwarded(app, DEFAULT_MAX_FORWARD_BYTES) });
const server = await serveApp(app, { listen: "127.0.0.1:0", streamRoutes: new Map([[RAFT_STREAM_PATH, stream]]) });
const address = `127.0.0.1:${server.port}`;
const client = new H2Client();
const transport = new PeerTransport({ self: "follower", client, auth, reportUnreachable: () => undefined });
transport.setPeers(new Map([["leader", address]]));
const headers = { "content-type": "application/octet-stream", authorization: "Bearer app-write-token-0123456789abcdef" };

async function viaRequest(i: number): Promise<number> {
  const res = await client.request(client.originFor(address), { method: "PUT", path: `/v1/kv/k${i % 10_000}`, headers: { ...headers, "x-phalanx-timeout-ms": "5000" }, body: value, timeoutMs: 5500 });
  return res.status;
}

async function viaStream(i: number): Promise<number> {
  const o = await transport.forward("leader", { method: "PUT", path: `/v1/kv/k${i % 10_000}`, headers, body: value, timeoutMs: 5000 });
  if (o.kind !== "answered") throw new Error(`forward ${o.kind}: ${o.reason}`);
  return o.answer.status;
}

async function run(name: string, hop: (i: number) => Promise<number>): Promise<{ cpuUs: number; wallUs: number }> {
  for (let i = 0; i < 200; i++) await hop(i); // warm-up
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const status = await hop(i);
    if (status !== 200) throw new Error(`${name}: HTTP ${status}`);
  }
  const wallUs = ((performance.now() - t0) * 1000) / n;
  const cpu = process.cpuUsage(cpu0);
  return { cpuUs: (cpu.user + cpu.system) / n, wallUs };
}

const results: Record<string, { cpuUs: number[]; wallUs: number[] }> = { request: { cpuUs: [], wallUs: [] }, stream: { cpuUs: [], wallUs: [] } };
for (let r = 0; r < rounds; r++) {
  const order: Array<["request" | "stream", (i: number) => Promise<number>]> = r % 2 === 0 ? [["request", viaRequest], ["stream", viaStream]] : [["stream", viaStream], ["request", viaRequest]];
  for (const [name, hop] of order) {
    const { cpuUs, wallUs } = await run(name, hop);
    results[name]!.cpuUs.push(cpuUs);
    results[name]!.wallUs.push(wallUs);
    console.log(`round ${r + 1} ${name.padEnd(7)}: ${cpuUs.toFixed(0)} µs CPU, ${wallUs.toFixed(0)} µs wall per forward`);
  }
}
for (const [name, r] of Object.entries(results)) console.log(`${name.padEnd(7)} median: ${median(r.cpuUs).toFixed(0)} µs CPU, ${median(r.wallUs).toFixed(0)} µs wall per forward (both ends, ${n} forwards × ${rounds})`);
await transport.close();
await client.close();
await server.close();
