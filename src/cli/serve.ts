// `phalanx serve`: one node. Configured by environment variables, with flags that override them.
// Shutdown on SIGTERM/SIGINT: a leader first hands leadership to a caught-up voter, then stop accepting, let in-flight requests finish (bounded grace), persist
// and apply the last batch, close SQLite cleanly. A second signal exits at once.
import { parseArgs } from "node:util";
import { nodeApp } from "../api/app.ts";
import { startDebugServer, type DebugServer } from "../api/debug_server.ts";
import { ConfigError, ENV, resolveConfig, settingsFromEnv, type RawSettings } from "../node/config.ts";
import { createLogger } from "../node/log.ts";
import { PhalanxNode } from "../node/node.ts";
import { StorageError } from "../storage/errors.ts";
import { serveApp, type RunningServer } from "../transport/server.ts";
import { EXIT, fail } from "./output.ts";

const FLAGS = {
  id: "id",
  dataDir: "data-dir",
  rpcAddr: "rpc-addr",
  debugAddr: "debug-addr",
  peers: "peers",
  clusterKey: "cluster-key",
  tlsCert: "tls-cert",
  tlsKey: "tls-key",
  tlsCa: "tls-ca",
  tickMs: "tick-ms",
  electionTicks: "election-ticks",
  requestTimeoutMs: "request-timeout-ms",
  snapshotEvery: "snapshot-every",
  catchupEntries: "catchup-entries",
  logLevel: "log-level",
} as const satisfies Record<keyof typeof ENV, string>;

export const SERVE_HELP = `usage: phalanx serve [flags]

Runs one node: peer RPC and the client API on one HTTP/2 port (h2c, or TLS with a cert).
Every flag has an environment variable; flags win. With no settings: a single node in ./data
on 127.0.0.1:9000.

${Object.entries(FLAGS)
  .map(([k, f]) => `  --${f.padEnd(20)} ${ENV[k as keyof typeof ENV]}`)
  .join("\n")}

PEERS is the static bootstrap list "id=host:port,..." including this node; it is used only when
the data dir is new (a restart uses the membership stored in the data dir). A multi-node cluster
needs CLUSTER_KEY (≥ 16 bytes, the same on every node) or TLS_CA for mutual TLS.
`;

export async function serveCommand(argv: string[]): Promise<number> {
  const options = Object.fromEntries(Object.values(FLAGS).map((f) => [f, { type: "string" as const }]));
  const { values } = parseArgs({ args: argv, options: { ...options, help: { type: "boolean", short: "h" } }, strict: true });
  if (values.help === true) {
    process.stdout.write(SERVE_HELP);
    return EXIT.ok;
  }
  const settings: RawSettings = settingsFromEnv(process.env);
  for (const [k, f] of Object.entries(FLAGS)) {
    const v = (values as Record<string, unknown>)[f];
    if (typeof v === "string") settings[k as keyof RawSettings] = v;
  }
  let config;
  try {
    config = resolveConfig(settings);
  } catch (err) {
    if (err instanceof ConfigError) return fail(EXIT.usage, err.message);
    throw err;
  }
  const log = createLogger(config.id, config.logLevel);
  let node: PhalanxNode;
  try {
    node = PhalanxNode.open(config, log);
  } catch (err) {
    if (err instanceof StorageError) return fail(EXIT.error, err.message);
    throw err;
  }
  let server: RunningServer;
  let debug: DebugServer | null = null;
  try {
    const tls = config.tls;
    server = await serveApp(nodeApp(node, log), {
      listen: config.rpcAddr,
      ...(tls === null ? {} : { tls: { cert: tls.cert, key: tls.key, ...(tls.ca === null ? {} : { ca: tls.ca, requireClientCert: false }) } }),
    });
    if (config.debugAddr !== null) debug = startDebugServer(node, config.debugAddr);
    node.run();
  } catch (err) {
    await node.stop();
    return fail(EXIT.error, (err as Error).message);
  }
  log.info("serving", { rpc: config.rpcAddr, debug: config.debugAddr ?? "off", tls: config.tls !== null, pid: process.pid });

  return new Promise<number>((resolve) => {
    let stopping = false;
    const shutdown = async (code: number, why: string) => {
      if (stopping) return;
      stopping = true;
      log.info("shutting down", { reason: why });
      // Still serving while handing over: peers need our routes for the transfer.
      if (code === EXIT.ok) await node.handOffLeadership(config.tickMs * config.electionTicks);
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
