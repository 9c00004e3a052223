// `phalanx serve`: one node. Configured by environment variables, with flags that override them.
// Shutdown on SIGTERM/SIGINT: a leader first hands leadership to a caught-up voter, then stop accepting, let in-flight requests finish (bounded grace), persist
// and apply the last batch, close SQLite cleanly. A second signal exits at once.
import { parseArgs } from "node:util";
import { nodeApp, nodeStreams } from "../api/app.ts";
import { PendingStreamRoute, RAFT_STREAM_PATH } from "../transport/raft_stream.ts";
import { startDebugServer, type DebugServer } from "../api/debug_server.ts";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { Hono } from "hono";
import { GossipAgent, gossipOptionsFromEnv } from "../gossip/agent.ts";
import { pushPullRoute } from "../gossip/push_pull_route.ts";
import { ConfigError, resolveBindAddress, SETTINGS, type SettingDoc, resolveConfig, settingsFromEnv, type DiscoveryConfig, type NodeConfig, type RawSettings } from "../node/config.ts";
import { createLogger, type Logger } from "../node/log.ts";
import { findCluster, readClusterId, staticClusterId, writeClusterId } from "../node/membership/formation.ts";
import { MembershipManager } from "../node/membership/manager.ts";
import { DB_FILE } from "../storage/data_dir.ts";
import type { PeerAuth } from "../transport/auth.ts";
import type { ClientTls } from "../transport/h2_client.ts";
import { identityRoute, verifyIdentity } from "../transport/identity_route.ts";
import { PhalanxNode } from "../node/node.ts";
import { PlacementRunner } from "../node/placement_runner.ts";
import { StartupTimeline } from "../node/startup_timeline.ts";
import { StorageError } from "../storage/errors.ts";
import { serveApp, type RunningServer, type ServeOptions } from "../transport/server.ts";
import { EXIT, fail } from "./output.ts";
import { argsProblem, usageLine } from "./command.ts";

/** Setting → flag name, from the one settings table. */
const FLAGS = Object.fromEntries(Object.entries(SETTINGS).map(([k, v]) => [k, v.flag])) as { readonly [K in keyof typeof SETTINGS]: string };

/** `  --rpc-addr <v>   RPC_ADDR   listen address ... (default 127.0.0.1:9000)`, wrapped to 100 columns. */
function flagLines(): string {
  const rows = Object.values(SETTINGS).map((d: SettingDoc) => {
    const flag = d.flag === SETTINGS.insecureClients.flag ? `--${d.flag}` : `--${d.flag} <v>`;
    const text = d.default === undefined ? d.help : `${d.help} (default ${d.default})`;
    return { head: `  ${flag.padEnd(32)} ${d.env}`, text };
  });
  return rows.map((r) => `${r.head}\n${wrap(r.text, 96).map((l) => `      ${l}`).join("\n")}`).join("\n");
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line !== "" && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") out.push(line);
  return out;
}

export const SERVE_HELP = `usage: phalanx serve [flags]

Runs one node: peer RPC and the client API on one port, HTTP/2 (h2c, or h2 over TLS with a cert)
and HTTP/1.1 for plain HTTP clients.
Every flag has an environment variable; flags win. With no settings: a single node in ./data
on 127.0.0.1:9000.

${flagLines()}

PEERS is the static bootstrap list "id=host:port,..." including this node; it is used only when
the data dir is new (a restart uses the membership stored in the data dir). A multi-node cluster
needs CLUSTER_KEY (≥ 16 bytes, the same on every node) or TLS_CA for mutual TLS. Gossip is
always encrypted and authenticated: with GOSSIP_KEY, else with a key derived from CLUSTER_KEY; a
cluster with TLS_CA and no CLUSTER_KEY must set GOSSIP_KEY.

Secrets come from files or the environment rather than flags (flags show in ps): CLUSTER_KEY_FILE,
GOSSIP_KEY_FILE, CLIENT_TOKENS_FILE (or CLIENT_TOKENS). Clients authenticate with a bearer token
from CLIENT_TOKENS_FILE ('<name> <read|write|admin|metrics> <token>' per line) or a TLS client
certificate whose CN is listed in CLIENT_CERT_SCOPES ('cn=scope,...'). With no client credential
the node listens on loopback only, unless --insecure-clients (INSECURE_CLIENTS=1).
`;

export async function serveCommand(argv: string[]): Promise<number> {
  const timeline = new StartupTimeline();
  timeline.mark("serving");
  const options: Record<string, { type: "string" | "boolean" }> = Object.fromEntries(Object.values(FLAGS).map((f) => [f, { type: "string" as const }]));
  // A switch, not a value: `--insecure-clients` alone opts in.
  options[FLAGS.insecureClients] = { type: "boolean" };
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true }));
  } catch (err) {
    return fail(EXIT.usage, `${argsProblem(err, options)}\n${usageLine(SERVE_HELP)}`);
  }
  if (values.help === true) {
    process.stdout.write(SERVE_HELP);
    return EXIT.ok;
  }
  const settings: RawSettings = settingsFromEnv(process.env);
  for (const [k, f] of Object.entries(FLAGS)) {
    const v = (values as Record<string, unknown>)[f];
    if (typeof v === "string") settings[k as keyof RawSettings] = v;
    else if (v === true) settings[k as keyof RawSettings] = "1";
  }
  let config;
  try {
    config = resolveConfig(settings);
  } catch (err) {
    if (err instanceof ConfigError) return fail(EXIT.usage, err.message);
    throw err;
  }
  timeline.mark("config");
  const log = createLogger(config.id, { minLevel: config.logLevel, format: config.logFormat });
  let started: Started | number;
  try {
    started = config.discovery === null ? await startStatic(config, log, timeline) : await startWithGossip(config, config.discovery, log, timeline);
  } catch (err) {
    if (err instanceof StorageError || err instanceof ConfigError) return fail(EXIT.error, err.message);
    return fail(EXIT.error, (err as Error).message);
  }
  if (typeof started === "number") return started;
  const { node, server, debug, gossip, membership } = started;
  const placement = config.placement.enabled ? new PlacementRunner(node, config.placement, log) : null;
  placement?.start();
  log.info("serving", { rpc: config.rpcAddr, advertise: config.advertiseAddr, debug: config.debugAddr ?? "off", tls: config.tls !== null, gossip: gossip?.gossipAddr ?? "off", pid: process.pid });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = async (code: number, why: string) => {
      if (stopping) return;
      stopping = true;
      log.info("shutting down", { reason: why });
      // Still serving while handing over: peers need our routes for the transfer.
      if (code === EXIT.ok) await node.handOffLeadership(config.tickMs * config.electionTicks);
      placement?.stop();
      membership?.stop();
      // No graceful gossip leave: a restart must not read as "gone for good" to the autopilot.
      await gossip?.stop();
      debug?.stop();
      await server.close();
      await node.stop();
      resolve(code);
    };
    const onSignal = (sig: string) => {
      if (stopping) {
        log.warn(`second ${sig}: exiting now`);
        process.exit(EXIT.error);
      }
      void shutdown(EXIT.ok, sig);
    };
    process.on("SIGTERM", () => onSignal("SIGTERM"));
    process.on("SIGINT", () => onSignal("SIGINT"));
    node.onFatal = () => void shutdown(EXIT.error, "fatal storage error");
    // A bug on some request path must not take the node down with it; it is logged loudly.
    process.on("unhandledRejection", (reason) => log.error("unhandled rejection", { error: reason }));
  });
}

interface Started {
  node: PhalanxNode;
  server: RunningServer;
  debug: DebugServer | null;
  gossip: GossipAgent | null;
  membership: MembershipManager | null;
}

function serveOptions(config: NodeConfig): ServeOptions {
  const tls = config.tls;
  return {
    listen: config.rpcAddr,
    ...(tls === null ? {} : { tls: { cert: tls.cert, key: tls.key, ...(tls.ca === null ? {} : { ca: tls.ca, requireClientCert: false }) } }),
  };
}

/** Static membership: PEERS (or a single node) bootstraps a new data dir. */
async function startStatic(config: NodeConfig, log: Logger, timeline: StartupTimeline): Promise<Started> {
  const node = PhalanxNode.open(config, log, { timeline });
  timeline.mark("dataDir");
  // Joining a running cluster: where its members are, until the log says so itself.
  if (config.joinAddresses.size > 0) node.setAddressHints(config.joinAddresses);
  try {
    const server = await serveApp(nodeApp(node, log), { ...serveOptions(config), streamRoutes: nodeStreams(node, log) });
    timeline.mark("listening");
    // The clock first: a brand-new cluster's first election need not wait for the debug listener.
    node.run();
    timeline.mark("running");
    const debug = config.debugAddr === null ? null : startDebugServer(node, config.debugAddr, config.clientAuth);
    return { node, server, debug, gossip: null, membership: null };
  } catch (err) {
    await node.stop();
    throw err;
  }
}

/**
 * Gossip discovery: the agent and the HTTP/2 server start first (peers need our push-pull route
 * while the cluster forms), then a brand-new data dir finds its cluster, then the node opens.
 */
async function startWithGossip(config: NodeConfig, discovery: DiscoveryConfig, log: Logger, timeline: StartupTimeline): Promise<Started | number> {
  const fresh = !existsSync(join(config.dataDir, DB_FILE));
  const knownCluster = fresh ? null : readClusterId(config.dataDir);
  const gossipEnv = { ...discovery.gossipEnv };
  if (gossipEnv.GOSSIP_ADDR !== undefined) gossipEnv.GOSSIP_ADDR = await resolveBindAddress("GOSSIP_ADDR", gossipEnv.GOSSIP_ADDR);
  // The same proof the node's Raft traffic uses (node.ts builds it the same way from the config).
  const peerAuth: PeerAuth = config.clusterKey !== null ? { mode: "hmac", key: config.clusterKey } : { mode: "mtls" };
  const tls = config.tls;
  const peerTls: ClientTls | undefined = tls === null ? undefined : { cert: tls.cert, key: tls.key, ...(tls.ca === null ? {} : { ca: tls.ca }) };
  const agent = await GossipAgent.start({
    id: config.id,
    rpcAddr: config.advertiseAddr,
    region: config.region,
    role: "candidate",
    cluster: knownCluster ?? "",
    ...gossipOptionsFromEnv(gossipEnv),
    peerAuth,
    ...(peerTls === undefined ? {} : { peerTls }),
    log: (level, msg, fields) => log[level](`gossip: ${msg}`, fields),
  });
  timeline.mark("gossip");
  let clusterId = knownCluster ?? "";
  let app: Hono | null = null;
  const root = new Hono();
  root.route("/", pushPullRoute(peerAuth, config.id, (bytes, from) => agent.handlePushPull(bytes, from)) as unknown as Hono);
  root.route("/", identityRoute({ self: config.id, auth: peerAuth, cluster: () => clusterId }) as unknown as Hono);
  root.all("*", (c) => (app === null ? c.json({ error: "starting", message: "this server is still looking for its cluster" }, 503) : app.fetch(c.req.raw, c.env)));
  const stream = new PendingStreamRoute();
  let server: RunningServer;
  try {
    server = await serveApp(root, { ...serveOptions(config), streamRoutes: new Map([[RAFT_STREAM_PATH, stream]]) });
    timeline.mark("listening");
  } catch (err) {
    await agent.stop();
    throw err;
  }
  let stopped = false;
  const stopEarly = () => {
    stopped = true;
  };
  process.once("SIGTERM", stopEarly);
  process.once("SIGINT", stopEarly);
  let peers = config.peers;
  if (fresh && !config.staticPeers) {
    const found = await findCluster(agent, config.id, discovery.bootstrapExpect, { voterRegions: discovery.voterRegions }, log, () => stopped);
    if (found === null) {
      await server.close();
      await agent.stop();
      return EXIT.ok;
    }
    ({ peers, clusterId } = found);
  } else if (fresh) {
    clusterId = staticClusterId(config.peers);
  }
  process.off("SIGTERM", stopEarly);
  process.off("SIGINT", stopEarly);
  let node: PhalanxNode;
  try {
    node = PhalanxNode.open({ ...config, peers }, log, { timeline });
    timeline.mark("dataDir");
    // A cluster that started without gossip gets an id now, so servers can find it to join.
    if (clusterId === "") clusterId = staticClusterId(new Map(node.members().map((m) => [m.id, m.address])));
    if (fresh || knownCluster === null) writeClusterId(config.dataDir, clusterId);
  } catch (err) {
    await server.close();
    await agent.stop();
    throw err;
  }
  app = nodeApp(node, log);
  stream.target = nodeStreams(node, log).get(RAFT_STREAM_PATH) ?? null;
  const debug = config.debugAddr === null ? null : startDebugServer(node, config.debugAddr, config.clientAuth);
  const membership = new MembershipManager(
    node,
    agent,
    { targetVoters: discovery.targetVoters, stabilizationMs: discovery.stabilizationMs, maxTrailingLogs: 250, cleanupDeadMs: discovery.cleanupDeadMs, voterRegions: discovery.voterRegions },
    clusterId,
    log,
    (id, rpcAddr) => verifyIdentity({ client: node.client, auth: node.auth, self: config.id, node: id, rpcAddr, cluster: clusterId }),
  );
  membership.start();
  node.run();
  timeline.mark("running");
  return { node, server, debug, gossip: agent, membership };
}

