// A node's configuration: environment variables with equivalent command-line flags on top.
// Defaults give a working single-node server in ./data on 127.0.0.1:9000.
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import type { NodeId } from "../raft/types.ts";
import { parseHostPort } from "../transport/address.ts";
import { nodeIdSchema } from "../transport/codec.ts";
import type { Level } from "./log.ts";

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string | null;
}

export interface NodeConfig {
  id: NodeId;
  dataDir: string;
  /** Where the HTTP/2 server (peer RPC and client API) listens; also the address peers use. */
  rpcAddr: string;
  /** Plain HTTP/1.1 health, metrics and debug endpoints; null: off. */
  debugAddr: string | null;
  /** Bootstrap voters (id → address), used only when the data dir is brand new. */
  peers: Map<NodeId, string>;
  /** HMAC key for peer requests; null with mTLS (tls.ca set). */
  clusterKey: string | null;
  tls: TlsFiles | null;
  tickMs: number;
  electionTicks: number;
  heartbeatTicks: number;
  /** Deadline of a client request that does not ask for one. */
  requestTimeoutMs: number;
  snapshotEvery: number;
  /** Entries kept below a snapshot, so a follower slightly behind catches up from the log (etcd: snapshot-catchup-entries). */
  catchupEntries: number;
  logLevel: Level;
}

/** The settings as strings, from env or flags (flags win). */
export type RawSettings = Partial<Record<keyof typeof ENV, string>>;

/** Setting → environment variable. */
export const ENV = {
  id: "NODE_ID",
  dataDir: "DATA_DIR",
  rpcAddr: "RPC_ADDR",
  debugAddr: "DEBUG_ADDR",
  peers: "PEERS",
  clusterKey: "CLUSTER_KEY",
  tlsCert: "TLS_CERT",
  tlsKey: "TLS_KEY",
  tlsCa: "TLS_CA",
  tickMs: "TICK_MS",
  electionTicks: "ELECTION_TICKS",
  requestTimeoutMs: "REQUEST_TIMEOUT_MS",
  snapshotEvery: "SNAPSHOT_EVERY",
  catchupEntries: "CATCHUP_ENTRIES",
  logLevel: "LOG_LEVEL",
} as const;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function settingsFromEnv(env: Record<string, string | undefined>): RawSettings {
  const out: RawSettings = {};
  for (const [k, name] of Object.entries(ENV)) {
    const v = env[name];
    if (v !== undefined && v !== "") out[k as keyof RawSettings] = v;
  }
  return out;
}

/** "n1=127.0.0.1:9000,n2=127.0.0.1:9001" → map; throws ConfigError naming the bad item. */
export function parsePeers(text: string): Map<NodeId, string> {
  const peers = new Map<NodeId, string>();
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = item.indexOf("=");
    const id = item.slice(0, eq);
    const addr = item.slice(eq + 1);
    if (eq <= 0 || !nodeIdSchema.safeParse(id).success) throw new ConfigError(`PEERS: "${item}" is not id=host:port`);
    try {
      parseHostPort(addr);
    } catch (err) {
      throw new ConfigError(`PEERS: ${(err as Error).message}`);
    }
    if (peers.has(id)) throw new ConfigError(`PEERS: node ${id} is listed twice`);
    peers.set(id, addr);
  }
  return peers;
}

function positiveInt(name: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new ConfigError(`${name} must be a positive integer, got "${text}"`);
  return n;
}

function readFile(name: string, path: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    throw new ConfigError(`${name}: cannot read ${path}: ${(err as Error).message}`);
  }
}

export function resolveConfig(s: RawSettings): NodeConfig {
  const id = s.id ?? "n1";
  if (!nodeIdSchema.safeParse(id).success) throw new ConfigError(`NODE_ID "${id}" must be visible ASCII`);
  const rpcAddr = s.rpcAddr ?? "127.0.0.1:9000";
  for (const [name, addr] of [["RPC_ADDR", rpcAddr], ["DEBUG_ADDR", s.debugAddr]] as const) {
    if (addr === undefined) continue;
    try {
      parseHostPort(addr);
    } catch (err) {
      throw new ConfigError(`${name}: ${(err as Error).message}`);
    }
  }
  const peers = s.peers === undefined ? new Map([[id, rpcAddr]]) : parsePeers(s.peers);
  if (!peers.has(id)) throw new ConfigError(`PEERS must include this node (${id})`);
  let tls: TlsFiles | null = null;
  if (s.tlsCert !== undefined || s.tlsKey !== undefined) {
    if (s.tlsCert === undefined || s.tlsKey === undefined) throw new ConfigError("TLS_CERT and TLS_KEY go together");
    tls = {
      cert: readFile("TLS_CERT", s.tlsCert),
      key: readFile("TLS_KEY", s.tlsKey),
      ca: s.tlsCa === undefined ? null : readFile("TLS_CA", s.tlsCa),
    };
  } else if (s.tlsCa !== undefined) {
    throw new ConfigError("TLS_CA needs TLS_CERT and TLS_KEY");
  }
  let clusterKey = s.clusterKey ?? null;
  if (clusterKey === null && tls?.ca == null) {
    // Peers must prove membership. A lone node has no peers, so a random key costs nothing.
    if (peers.size > 1) throw new ConfigError("a multi-node cluster needs CLUSTER_KEY (or TLS_CA for mutual TLS)");
    clusterKey = randomBytes(32).toString("hex");
  }
  const electionTicks = positiveInt("ELECTION_TICKS", s.electionTicks, 10);
  if (electionTicks < 4) throw new ConfigError("ELECTION_TICKS must be at least 4");
  const level = s.logLevel ?? "info";
  if (level !== "debug" && level !== "info" && level !== "warn" && level !== "error") {
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got "${level}"`);
  }
  return {
    id,
    dataDir: s.dataDir ?? "./data",
    rpcAddr,
    debugAddr: s.debugAddr ?? null,
    peers,
    clusterKey,
    tls,
    tickMs: positiveInt("TICK_MS", s.tickMs, 100),
    electionTicks,
    heartbeatTicks: 1,
    requestTimeoutMs: positiveInt("REQUEST_TIMEOUT_MS", s.requestTimeoutMs, 5000),
    snapshotEvery: positiveInt("SNAPSHOT_EVERY", s.snapshotEvery, 10_000),
    catchupEntries: positiveInt("CATCHUP_ENTRIES", s.catchupEntries, 5_000),
    logLevel: level,
  };
}
