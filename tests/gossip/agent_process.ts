// One gossip agent in its own process, for the real-UDP tests and the bench. Configured by env
// (GOSSIP_ID, GOSSIP_ADDR, JOIN, GOSSIP_KEY, CLUSTER_KEY for push-pull's peer auth, GOSSIP_PRESET,
// STATUS_MS); binds port 0 for both
// UDP and the push-pull HTTP/2 server, and reports on stdout as JSON lines: one "ready" with the
// addresses, then "status" every STATUS_MS with the member view and counters. SIGTERM leaves.

import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { GossipAgent, gossipOptionsFromEnv } from "../../src/gossip/agent.ts";
import { formatHostPort, parseHostPort } from "../../src/gossip/address.ts";
import { pushPullRoute } from "../../src/gossip/push_pull_route.ts";

const env = process.env;
const id = env.GOSSIP_ID ?? "node";
const fromEnv = gossipOptionsFromEnv(env);
const peerAuth = { mode: "hmac" as const, key: env.CLUSTER_KEY ?? "" };
const host = parseHostPort(fromEnv.bind ?? "", 0)?.host ?? "127.0.0.1";

let agent: GossipAgent | undefined;
const app = pushPullRoute(peerAuth, id, (bytes, from) => (agent === undefined ? null : agent.handlePushPull(bytes, from)));
const rpcPort = await new Promise<number>((resolve) => {
  serve({ fetch: app.fetch, createServer: http2.createServer, hostname: host, port: 0 }, (info: AddressInfo) => resolve(info.port));
});
const rpcAddr = formatHostPort(host, rpcPort);

agent = await GossipAgent.start({ ...fromEnv, peerAuth, id, rpcAddr, region: env.GOSSIP_REGION ?? "local", role: "voter" });
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
out({ type: "ready", id, gossipAddr: agent.gossipAddr, rpcAddr, pid: process.pid });

const started = agent;
const status = () =>
  out({
    type: "status",
    id,
    members: started.members().map((m) => [m.id, m.state, m.incarnation]),
    counters: started.counters(),
  });
setInterval(status, Number(env.STATUS_MS ?? "100"));
process.on("SIGTERM", () => {
  void started.leave().then(() => process.exit(0));
});
