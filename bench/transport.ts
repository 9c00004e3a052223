// Transport throughput on loopback: one sender, three peers, all in this process (h2c, HMAC auth).
// Prints delivered messages/s and batches/s for heartbeats and for appends with 256-byte entries.
// Usage: node_modules/.bin/bun bench/transport.ts [seconds per workload, default 3]

import { Hono } from "hono";
import type { Message, NodeId } from "../src/raft/types.ts";
import type { PeerAuth } from "../src/transport/auth.ts";
import { H2Client } from "../src/transport/h2_client.ts";
import { PeerTransport } from "../src/transport/peers.ts";
import { RAFT_STREAM_PATH, RaftStreamRoute } from "../src/transport/raft_stream.ts";
import { type RunningServer, serveApp } from "../src/transport/server.ts";

const seconds = Number(process.argv[2] ?? 3);
const auth: PeerAuth = { mode: "hmac", key: "bench-cluster-key-0123456789" };
const peerIds = ["p1", "p2", "p3"];
/** The queue depth at which the sender pauses to let a peer drain (so nothing is dropped). */
const HIGH_WATER = 2048;

let delivered = 0;
const servers: RunningServer[] = [];
const peers = new Map<NodeId, string>();
for (const id of peerIds) {
  const stream = new RaftStreamRoute({ self: id, auth, onMessages: (msgs) => (delivered += msgs.length) });
  const server = await serveApp(new Hono(), { listen: "127.0.0.1:0", streamRoutes: new Map([[RAFT_STREAM_PATH, stream]]) });
  servers.push(server);
  peers.set(id, `127.0.0.1:${server.port}`);
}
const client = new H2Client();

/** `burst` messages per peer per event-loop turn; a burst of 1 measures frames/s without batching. */
async function run(name: string, burst: number, make: (to: NodeId, i: number) => Message): Promise<void> {
  const transport = new PeerTransport({ self: "leader", client, auth, reportUnreachable: () => undefined });
  transport.setPeers(peers);
  delivered = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  let i = 0;
  while (performance.now() < end) {
    const backlog = Math.max(...transport.stats().map((s) => s.queued));
    if (backlog < HIGH_WATER) {
      for (let k = 0; k < burst; k++, i++) for (const to of peerIds) transport.send(make(to, i));
    }
    await new Promise((r) => setImmediate(r));
  }
  const elapsed = (performance.now() - start) / 1000;
  const stats = transport.stats();
  await transport.close();
  const batches = stats.reduce((n, s) => n + s.batches, 0);
  const dropped = stats.reduce((n, s) => n + s.dropped, 0);
  const rtt = stats.map((s) => (s.rttMs ?? 0).toFixed(1)).join("/");
  console.log(
    `${name.padEnd(27)} ${Math.round(delivered / elapsed).toLocaleString("en").padStart(10)} msg/s ` +
      `${Math.round(batches / elapsed).toLocaleString("en").padStart(7)} batches/s  ` +
      `${(delivered / Math.max(1, batches)).toFixed(0).padStart(4)} msg/batch  dropped ${dropped}  rtt ms ${rtt}`,
  );
}

const entry = new Uint8Array(256).fill(7);
const heartbeat = (to: NodeId, i: number): Message => ({ type: "heartbeat", from: "leader", to, term: 1, commit: i, seq: i });
await run("heartbeats, 1 per turn", 1, heartbeat);
await run("heartbeats, 256 per turn", 256, heartbeat);
await run("appends (256 B), 256/turn", 256, (to, i) => ({
  type: "append",
  from: "leader",
  to,
  term: 1,
  prevIndex: i,
  prevTerm: 1,
  commit: i,
  entries: [{ term: 1, index: i + 1, type: "normal", data: entry }],
}));

await client.close();
await Promise.all(servers.map((s) => s.close()));
