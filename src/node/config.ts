// A node's configuration: environment variables with equivalent command-line flags on top.
// Defaults give a working single-node server in ./data on 127.0.0.1:9000.
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { randomBytes } from "node:crypto";
import type { NodeId } from "../raft/types.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { DEFAULT_AUTOPILOT } from "./membership/autopilot.ts";
import { Keyring } from "../gossip/keyring.ts";
import { nodeIdSchema } from "../transport/codec.ts";
import type { Level, LogFormat } from "./log.ts";
import { authRequired, parseCertScopes, parseTokenFile, TokenFileError, type ClientAuthConfig } from "../api/client_auth.ts";

export interface TlsFiles {
  cert: string;
  key: string;
  ca: string | null;
}

/** Gossip discovery and automatic membership (null settings: static PEERS only). */
export interface DiscoveryConfig {
  /** Environment-style settings for the gossip agent (GOSSIP_ADDR, GOSSIP_KEY, JOIN, ...). */
  gossipEnv: Record<string, string | undefined>;
  /** BOOTSTRAP_EXPECT: form a new cluster once this many servers see each other. */
  bootstrapExpect: number | null;
  targetVoters: number;
  stabilizationMs: number;
  cleanupDeadMs: number;
}

export interface NodeConfig {
  id: NodeId;
  dataDir: string;
  /** Where the HTTP/2 server (peer RPC and client API) listens. */
  rpcAddr: string;
  /** The address peers and clients use to reach this node (RPC_ADDR unless it listens on a wildcard). */
  advertiseAddr: string;
  region: string;
  /** PEERS was given: a fresh data dir bootstraps from it rather than from gossip. */
  staticPeers: boolean;
  discovery: DiscoveryConfig | null;
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
  logFormat: LogFormat;
  /** Client credentials and exposure rules; see src/api/client_auth.ts. */
  clientAuth: ClientAuthConfig;
  /** Latency-aware leader placement (src/node/placement.ts). */
  placement: PlacementSettings;
}

/** The settings as strings, from env or flags (flags win). */
export type RawSettings = Partial<Record<keyof typeof ENV | keyof typeof ENV_ONLY, string>>;

/**
 * Secrets taken from the environment only, never from a flag (flags show in `ps`); each also has
 * a *_FILE setting. On Fly.io, `fly secrets set CLIENT_TOKENS=...` sets the variable.
 */
export const ENV_ONLY = { clientTokens: "CLIENT_TOKENS" } as const;

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
  advertiseAddr: "ADVERTISE_ADDR",
  region: "REGION",
  gossipAddr: "GOSSIP_ADDR",
  gossipAdvertise: "GOSSIP_ADVERTISE",
  gossipKey: "GOSSIP_KEY",
  gossipPreset: "GOSSIP_PRESET",
  join: "JOIN",
  discoveryDns: "DISCOVERY_DNS",
  bootstrapExpect: "BOOTSTRAP_EXPECT",
  targetVoters: "TARGET_VOTERS",
  stabilizationMs: "STABILIZATION_MS",
  cleanupDeadMs: "CLEANUP_DEAD_MS",
  gossipProbeIntervalMs: "GOSSIP_PROBE_INTERVAL_MS",
  gossipProbeTimeoutMs: "GOSSIP_PROBE_TIMEOUT_MS",
  gossipIndirectChecks: "GOSSIP_INDIRECT_CHECKS",
  gossipSuspicionMult: "GOSSIP_SUSPICION_MULT",
  gossipRetransmitMult: "GOSSIP_RETRANSMIT_MULT",
  gossipIntervalMs: "GOSSIP_INTERVAL_MS",
  gossipPushPullIntervalMs: "GOSSIP_PUSH_PULL_INTERVAL_MS",
  logLevel: "LOG_LEVEL",
  logFormat: "LOG_FORMAT",
  clusterKeyFile: "CLUSTER_KEY_FILE",
  gossipKeyFile: "GOSSIP_KEY_FILE",
  clientTokensFile: "CLIENT_TOKENS_FILE",
  clientCertScopes: "CLIENT_CERT_SCOPES",
  insecureClients: "INSECURE_CLIENTS",
  debugPublic: "DEBUG_PUBLIC",
  leaderPlacement: "LEADER_PLACEMENT",
  leaderPrefer: "LEADER_PREFER",
  leaderNever: "LEADER_NEVER",
} as const;

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function settingsFromEnv(env: Record<string, string | undefined>): RawSettings {
  const out: RawSettings = {};
  for (const [k, name] of [...Object.entries(ENV), ...Object.entries(ENV_ONLY)]) {
    const v = env[name];
    if (v !== undefined && v !== "") out[k as keyof RawSettings] = v;
  }
  // On Fly.io the machine id is a stable node id and <id>.vm.<app>.internal a stable address
  // (6PN addresses can change when a machine moves host).
  const machine = env.FLY_MACHINE_ID;
  if (machine !== undefined && machine !== "") {
    out.id ??= machine;
    if (env.FLY_APP_NAME !== undefined && out.advertiseAddr === undefined) {
      const port = portOf(out.rpcAddr ?? DEFAULT_RPC_ADDR);
      out.advertiseAddr = `${machine}.vm.${env.FLY_APP_NAME}.internal:${port}`;
    }
  }
  if (env.FLY_REGION !== undefined && env.FLY_REGION !== "") out.region ??= env.FLY_REGION;
  if (env.FLY_PRIVATE_IP !== undefined && out.gossipAdvertise === undefined && out.gossipAddr !== undefined) {
    out.gossipAdvertise = formatHostPort(env.FLY_PRIVATE_IP, portOf(out.gossipAddr));
  }
  return out;
}

const DEFAULT_RPC_ADDR = "127.0.0.1:9000";

function portOf(addr: string): number {
  try {
    return parseHostPort(addr).port;
  } catch {
    return 0; // reported with a clear message when the address itself is validated
  }
}

function isWildcard(addr: string): boolean {
  const host = parseHostPort(addr).host;
  return host === "::" || host === "0.0.0.0" || host === "";
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

/** A secret given inline or as a file (*_FILE; one trailing newline is not part of it), not both. */
function secret(name: string, inline: string | undefined, file: string | undefined): string | undefined {
  if (file === undefined) return inline;
  if (inline !== undefined) throw new ConfigError(`give ${name} or ${name}_FILE, not both`);
  const text = readFile(`${name}_FILE`, file).replace(/\r?\n$/, "");
  if (text === "") throw new ConfigError(`${name}_FILE: ${file} is empty`);
  return text;
}

/** 127.0.0.0/8, ::1, localhost. */
export function isLoopback(addr: string): boolean {
  const host = parseHostPort(addr).host.toLowerCase();
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

const INSECURE_VALUES = new Set(["1", "true", "yes"]);

/**
 * Client credentials and the rule without them: a node with no client credential is open (every
 * client is admin), so it may listen only on loopback, unless INSECURE_CLIENTS says so explicitly.
 */
function resolveClientAuth(s: RawSettings, rpcAddr: string, tlsCa: string | null): ClientAuthConfig {
  const insecureText = s.insecureClients?.toLowerCase();
  if (insecureText !== undefined && !INSECURE_VALUES.has(insecureText) && insecureText !== "0" && insecureText !== "false") {
    throw new ConfigError(`INSECURE_CLIENTS must be 1/true or 0/false, got "${s.insecureClients}"`);
  }
  const insecure = insecureText !== undefined && INSECURE_VALUES.has(insecureText);
  let cfg: ClientAuthConfig;
  try {
    const tokensText = secret("CLIENT_TOKENS", s.clientTokens, s.clientTokensFile);
    const tokens = tokensText === undefined ? [] : parseTokenFile(tokensText, s.clientTokensFile ?? "CLIENT_TOKENS");
    if (tokensText !== undefined && tokens.length === 0) throw new ConfigError(`${s.clientTokensFile ?? "CLIENT_TOKENS"} lists no token`);
    const certs = s.clientCertScopes === undefined ? new Map() : parseCertScopes(s.clientCertScopes);
    if (certs.size > 0 && tlsCa === null) throw new ConfigError("CLIENT_CERT_SCOPES needs TLS_CA (client certificates are verified against it)");
    const extra = (s.debugPublic ?? "").split(",").map((p) => p.trim()).filter((p) => p !== "");
    for (const p of extra) if (!["/healthz", "/readyz", "/metrics"].includes(p)) throw new ConfigError(`DEBUG_PUBLIC: ${p} cannot be public (only /healthz, /readyz, /metrics)`);
    cfg = { tokens, certs, insecure, debugPublic: [...new Set(["/healthz", ...extra])] };
  } catch (err) {
    if (err instanceof TokenFileError) throw new ConfigError(err.message);
    throw err;
  }
  if (!authRequired(cfg) && !insecure) {
    for (const [name, addr] of [["RPC_ADDR", rpcAddr], ["DEBUG_ADDR", s.debugAddr]] as const) {
      if (addr !== undefined && !isLoopback(addr)) {
        throw new ConfigError(
          `${name} ${addr} is not a loopback address and no client credential is configured: anyone who reaches it would be admin. ` +
            "Set CLIENT_TOKENS_FILE (lines '<name> <scope> <token>') or CLIENT_CERT_SCOPES with TLS_CA, " +
            "or INSECURE_CLIENTS=1 to accept unauthenticated clients on purpose",
        );
      }
    }
  }
  return cfg;
}

export function resolveConfig(s: RawSettings): NodeConfig {
  const id = s.id ?? "n1";
  if (!nodeIdSchema.safeParse(id).success) throw new ConfigError(`NODE_ID "${id}" must be visible ASCII`);
  const rpcAddr = s.rpcAddr ?? DEFAULT_RPC_ADDR;
  for (const [name, addr] of [["RPC_ADDR", rpcAddr], ["DEBUG_ADDR", s.debugAddr], ["ADVERTISE_ADDR", s.advertiseAddr]] as const) {
    if (addr === undefined) continue;
    try {
      parseHostPort(addr);
    } catch (err) {
      throw new ConfigError(`${name}: ${(err as Error).message}`);
    }
  }
  const advertiseAddr = s.advertiseAddr ?? rpcAddr;
  if (isWildcard(advertiseAddr)) throw new ConfigError(`RPC_ADDR ${rpcAddr} is a wildcard: set ADVERTISE_ADDR to the address peers can reach`);
  const peers = s.peers === undefined ? new Map([[id, advertiseAddr]]) : parsePeers(s.peers);
  if (!peers.has(id)) throw new ConfigError(`PEERS must include this node (${id})`);
  const discovery = resolveDiscovery(s);
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
  let clusterKey = secret("CLUSTER_KEY", s.clusterKey, s.clusterKeyFile) ?? null;
  if (clusterKey === null && tls?.ca == null) {
    // Peers must prove membership. A lone node has no peers, so a random key costs nothing.
    if (peers.size > 1 || discovery !== null) throw new ConfigError("a multi-node cluster needs CLUSTER_KEY (or TLS_CA for mutual TLS)");
    clusterKey = randomBytes(32).toString("hex");
  }
  if (discovery !== null) checkGossipKey(s);
  const electionTicks = positiveInt("ELECTION_TICKS", s.electionTicks, 10);
  if (electionTicks < 4) throw new ConfigError("ELECTION_TICKS must be at least 4");
  const level = s.logLevel ?? "info";
  if (level !== "debug" && level !== "info" && level !== "warn" && level !== "error") {
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got "${level}"`);
  }
  const logFormat = s.logFormat ?? "text";
  if (logFormat !== "text" && logFormat !== "json") throw new ConfigError(`LOG_FORMAT must be text (logfmt) or json, got "${logFormat}"`);
  return {
    id,
    dataDir: s.dataDir ?? "./data",
    rpcAddr,
    advertiseAddr,
    region: s.region ?? "local",
    staticPeers: s.peers !== undefined,
    discovery,
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
    logFormat,
    clientAuth: resolveClientAuth(s, rpcAddr, tls?.ca ?? null),
    placement: resolvePlacement(s),
  };
}

/**
 * Gossip is always authenticated (issue 9: one unauthenticated packet removed a voter): its key is
 * GOSSIP_KEY, or derived from CLUSTER_KEY; with mutual TLS and no CLUSTER_KEY there is nothing to
 * derive it from, so GOSSIP_KEY is required.
 */
function checkGossipKey(s: RawSettings): void {
  const gossipKey = secret("GOSSIP_KEY", s.gossipKey, s.gossipKeyFile);
  if (gossipKey !== undefined) {
    try {
      Keyring.fromEnv(gossipKey);
    } catch (err) {
      throw new ConfigError(`GOSSIP_KEY: ${(err as Error).message} (comma-separated base64 keys of 16, 24 or 32 bytes)`);
    }
    return;
  }
  if (secret("CLUSTER_KEY", s.clusterKey, s.clusterKeyFile) === undefined) {
    throw new ConfigError("gossip needs a key: with mutual TLS (TLS_CA) and no CLUSTER_KEY, set GOSSIP_KEY (base64 of 32 random bytes, the same on every server)");
  }
}

/** Gossip is on when any way to find peers is given. */
function resolveDiscovery(s: RawSettings): DiscoveryConfig | null {
  if (s.gossipAddr === undefined && s.join === undefined && s.discoveryDns === undefined && s.bootstrapExpect === undefined) return null;
  return {
    gossipEnv: {
      GOSSIP_ADDR: s.gossipAddr,
      GOSSIP_ADVERTISE: s.gossipAdvertise,
      GOSSIP_KEY: secret("GOSSIP_KEY", s.gossipKey, s.gossipKeyFile),
      // The gossip key is derived from it when GOSSIP_KEY is not set.
      CLUSTER_KEY: secret("CLUSTER_KEY", s.clusterKey, s.clusterKeyFile),
      GOSSIP_PRESET: s.gossipPreset,
      JOIN: s.join,
      DISCOVERY_DNS: s.discoveryDns,
      GOSSIP_PROBE_INTERVAL_MS: s.gossipProbeIntervalMs,
      GOSSIP_PROBE_TIMEOUT_MS: s.gossipProbeTimeoutMs,
      GOSSIP_INDIRECT_CHECKS: s.gossipIndirectChecks,
      GOSSIP_SUSPICION_MULT: s.gossipSuspicionMult,
      GOSSIP_RETRANSMIT_MULT: s.gossipRetransmitMult,
      GOSSIP_INTERVAL_MS: s.gossipIntervalMs,
      GOSSIP_PUSH_PULL_INTERVAL_MS: s.gossipPushPullIntervalMs,
    },
    bootstrapExpect: s.bootstrapExpect === undefined ? null : positiveInt("BOOTSTRAP_EXPECT", s.bootstrapExpect, 1),
    targetVoters: positiveInt("TARGET_VOTERS", s.targetVoters, DEFAULT_AUTOPILOT.targetVoters),
    stabilizationMs: positiveInt("STABILIZATION_MS", s.stabilizationMs, DEFAULT_AUTOPILOT.stabilizationMs),
    cleanupDeadMs: positiveInt("CLEANUP_DEAD_MS", s.cleanupDeadMs, DEFAULT_AUTOPILOT.cleanupDeadMs),
  };
}

/** A UDP socket binds to an IP: resolve a name such as Fly's fly-local-6pn first. */
export async function resolveBindAddress(name: string, addr: string): Promise<string> {
  const { host, port } = parseHostPort(addr);
  if (isIP(host) !== 0) return addr;
  try {
    const { address } = await lookup(host, { verbatim: true });
    return formatHostPort(address, port);
  } catch (err) {
    throw new ConfigError(`${name}: cannot resolve ${host}: ${(err as Error).message}`);
  }
}

/** LEADER_PLACEMENT (latency, the default, or off), LEADER_PREFER and LEADER_NEVER (region lists). */
export interface PlacementSettings {
  enabled: boolean;
  prefer: string[];
  never: string[];
}

function resolvePlacement(s: RawSettings): PlacementSettings {
  const mode = s.leaderPlacement ?? "latency";
  if (mode !== "latency" && mode !== "off") throw new ConfigError(`LEADER_PLACEMENT must be latency or off, got "${mode}"`);
  const regions = (name: string, text: string | undefined): string[] => {
    const list = (text ?? "").split(",").map((r) => r.trim()).filter((r) => r !== "");
    const bad = list.find((r) => !/^[a-z0-9][a-z0-9-]{0,31}$/.test(r));
    if (bad !== undefined) throw new ConfigError(`${name}: "${bad}" is not a region name (lowercase, e.g. lhr,fra)`);
    return list;
  };
  const prefer = regions("LEADER_PREFER", s.leaderPrefer);
  const never = regions("LEADER_NEVER", s.leaderNever);
  const both = prefer.filter((r) => never.includes(r));
  if (both.length > 0) throw new ConfigError(`region ${both.join(",")} is in both LEADER_PREFER and LEADER_NEVER`);
  return { enabled: mode === "latency", prefer, never };
}
