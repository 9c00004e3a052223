// A node's configuration: environment variables with equivalent command-line flags on top.
// Defaults give a working single-node server in ./data on 127.0.0.1:9000.
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { randomBytes } from "node:crypto";
import type { NodeId } from "../raft/types.ts";
import { formatHostPort, parseHostPort } from "../transport/address.ts";
import { DEFAULT_AUTOPILOT } from "./membership/autopilot.ts";
import { invalidRegion } from "../kv/member.ts";
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
  /** VOTER_REGIONS: voters only in these regions (the autopilot's rule, autopilot.ts); empty: any. */
  voterRegions: string[];
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
  /** INITIAL_CLUSTER_STATE=existing: the running members' addresses (PEERS); empty otherwise. */
  joinAddresses: Map<NodeId, string>;
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

const DEFAULT_RPC_ADDR = "127.0.0.1:9000";

/** One row per setting: its variable, its flag, the default used when unset, what it means. */
export interface SettingDoc {
  env: string;
  flag: string;
  /** The value used when the setting is not given; absent when the setting is off or derived. */
  default?: string;
  help: string;
}

/**
 * The one table of `phalanx serve` settings: ENV, the flags and `serve --help` come from it, and
 * resolveConfig takes its plain defaults from here, so the help cannot drift from the code.
 */
export const SETTINGS = {
  id: { env: "NODE_ID", flag: "id", default: "n1", help: "this node's id (FLY_MACHINE_ID on Fly.io)" },
  dataDir: { env: "DATA_DIR", flag: "data-dir", default: "./data", help: "where the SQLite file lives" },
  rpcAddr: { env: "RPC_ADDR", flag: "rpc-addr", default: DEFAULT_RPC_ADDR, help: "listen address for peers and clients: HTTP/2 and HTTP/1.1 on one port (IPv4, [::1]:9000, a host name; a wildcard needs ADVERTISE_ADDR)" },
  debugAddr: { env: "DEBUG_ADDR", flag: "debug-addr", help: "health, metrics and debug server (HTTP/1.1); off when unset" },
  initialClusterState: { env: "INITIAL_CLUSTER_STATE", flag: "initial-cluster-state", default: "new", help: "new, or existing: a brand-new data dir joins a running static cluster; it starts with no membership, finds the members at the PEERS addresses and waits for `phalanx member add` (etcd's --initial-cluster-state)" },
  peers: { env: "PEERS", flag: "peers", help: "static bootstrap voters id=host:port,... including this node (used only on a new data dir); default: this node alone" },
  clusterKey: { env: "CLUSTER_KEY", flag: "cluster-key", help: "shared secret peers prove with HMAC (required for more than one node, unless TLS_CA); prefer CLUSTER_KEY_FILE" },
  tlsCert: { env: "TLS_CERT", flag: "tls-cert", help: "certificate file: TLS on the port (h2 and HTTP/1.1 by ALPN)" },
  tlsKey: { env: "TLS_KEY", flag: "tls-key", help: "private key file for TLS_CERT" },
  tlsCa: { env: "TLS_CA", flag: "tls-ca", help: "CA file: mutual TLS between peers (and client certificates)" },
  tickMs: { env: "TICK_MS", flag: "tick-ms", default: "100", help: "clock tick; a leader heartbeats every tick" },
  electionTicks: { env: "ELECTION_TICKS", flag: "election-ticks", default: "10", help: "election timeout in ticks (randomised between this and twice this)" },
  requestTimeoutMs: { env: "REQUEST_TIMEOUT_MS", flag: "request-timeout-ms", default: "5000", help: "how long a client request may wait for the cluster" },
  snapshotEvery: { env: "SNAPSHOT_EVERY", flag: "snapshot-every", default: "10000", help: "snapshot and compact the log every N applied entries" },
  catchupEntries: { env: "CATCHUP_ENTRIES", flag: "catchup-entries", default: "5000", help: "log entries kept after a snapshot for slow followers" },
  advertiseAddr: { env: "ADVERTISE_ADDR", flag: "advertise-addr", help: "the address others use to reach this node; default: RPC_ADDR (<machine>.vm.<app>.internal:port on Fly.io)" },
  region: { env: "REGION", flag: "region", default: "local", help: "shown in membership, used to spread voters (FLY_REGION on Fly.io)" },
  gossipAddr: { env: "GOSSIP_ADDR", flag: "gossip-addr", help: "UDP address for SWIM gossip (turns discovery on; [::]:7946 when on)" },
  gossipAdvertise: { env: "GOSSIP_ADVERTISE", flag: "gossip-advertise", help: "the gossip address others use; default: GOSSIP_ADDR" },
  gossipKey: { env: "GOSSIP_KEY", flag: "gossip-key", help: "AES-256-GCM keyring, base64 keys separated by commas (first encrypts); default: derived from CLUSTER_KEY" },
  gossipPreset: { env: "GOSSIP_PRESET", flag: "gossip-preset", default: "lan", help: "lan, wan or local gossip timing (hashicorp/memberlist's defaults)" },
  join: { env: "JOIN", flag: "join", help: "gossip seeds host:port,..." },
  discoveryDns: { env: "DISCOVERY_DNS", flag: "discovery-dns", help: "a DNS name whose A/AAAA records are gossip seeds" },
  bootstrapExpect: { env: "BOOTSTRAP_EXPECT", flag: "bootstrap-expect", help: "form a new cluster once exactly this many servers see each other; off when unset" },
  targetVoters: { env: "TARGET_VOTERS", flag: "target-voters", default: String(DEFAULT_AUTOPILOT.targetVoters), help: "autopilot: voters to keep" },
  stabilizationMs: { env: "STABILIZATION_MS", flag: "stabilization-ms", default: String(DEFAULT_AUTOPILOT.stabilizationMs), help: "autopilot: how long a learner must be healthy before promotion" },
  cleanupDeadMs: { env: "CLEANUP_DEAD_MS", flag: "cleanup-dead-ms", default: String(DEFAULT_AUTOPILOT.cleanupDeadMs), help: "autopilot: how long a dead server stays a member" },
  voterRegions: { env: "VOTER_REGIONS", flag: "voter-regions", help: "autopilot: regions voters run in, e.g. lhr,fra,ord; servers elsewhere join and stay learners (never campaign, never lead), a voter elsewhere leaves the voters once those inside keep a quorum; the same on every server; default: any region" },
  gossipProbeIntervalMs: { env: "GOSSIP_PROBE_INTERVAL_MS", flag: "gossip-probe-interval-ms", help: "override the preset's probe interval" },
  gossipProbeTimeoutMs: { env: "GOSSIP_PROBE_TIMEOUT_MS", flag: "gossip-probe-timeout-ms", help: "override the preset's probe timeout" },
  gossipIndirectChecks: { env: "GOSSIP_INDIRECT_CHECKS", flag: "gossip-indirect-checks", help: "override the preset's indirect probes" },
  gossipSuspicionMult: { env: "GOSSIP_SUSPICION_MULT", flag: "gossip-suspicion-mult", help: "override the preset's suspicion multiplier" },
  gossipRetransmitMult: { env: "GOSSIP_RETRANSMIT_MULT", flag: "gossip-retransmit-mult", help: "override the preset's retransmit multiplier" },
  gossipIntervalMs: { env: "GOSSIP_INTERVAL_MS", flag: "gossip-interval-ms", help: "override the preset's gossip interval" },
  gossipPushPullIntervalMs: { env: "GOSSIP_PUSH_PULL_INTERVAL_MS", flag: "gossip-push-pull-interval-ms", help: "override the preset's push-pull interval" },
  logLevel: { env: "LOG_LEVEL", flag: "log-level", default: "info", help: "debug, info, warn or error" },
  logFormat: { env: "LOG_FORMAT", flag: "log-format", default: "text", help: "text (logfmt) or json" },
  clusterKeyFile: { env: "CLUSTER_KEY_FILE", flag: "cluster-key-file", help: "file holding CLUSTER_KEY (kept out of ps and the environment)" },
  gossipKeyFile: { env: "GOSSIP_KEY_FILE", flag: "gossip-key-file", help: "file holding GOSSIP_KEY" },
  clientTokensFile: { env: "CLIENT_TOKENS_FILE", flag: "client-tokens-file", help: "client bearer tokens, '<name> <read|write|admin|metrics> <token>' per line" },
  clientCertScopes: { env: "CLIENT_CERT_SCOPES", flag: "client-cert-scopes", help: "client certificate CNs and their scopes, 'cn=scope,...'" },
  insecureClients: { env: "INSECURE_CLIENTS", flag: "insecure-clients", help: "a switch: serve clients without credentials beyond loopback (off)" },
  debugPublic: { env: "DEBUG_PUBLIC", flag: "debug-public", default: "/healthz", help: "debug paths served without a token off loopback: /healthz, /readyz, /metrics (never /debug/raft)" },
  leaderPlacement: { env: "LEADER_PLACEMENT", flag: "leader-placement", default: "latency", help: "latency: hand leadership to the voter that commits fastest (by a clear margin, sustained); off: leave it where the election put it" },
  leaderPrefer: { env: "LEADER_PREFER", flag: "leader-prefer", help: "regions whose voters lead while one is healthy, e.g. lhr,fra" },
  leaderNever: { env: "LEADER_NEVER", flag: "leader-never", help: "regions that never lead, e.g. jnb,sin" },
} as const satisfies Record<string, SettingDoc>;

/** Setting → environment variable. */
export const ENV = Object.fromEntries(Object.entries(SETTINGS).map(([k, v]) => [k, v.env])) as {
  readonly [K in keyof typeof SETTINGS]: (typeof SETTINGS)[K]["env"];
};

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
  const id = s.id ?? SETTINGS.id.default;
  if (!nodeIdSchema.safeParse(id).success) throw new ConfigError(`NODE_ID "${id}" must be visible ASCII`);
  const rpcAddr = s.rpcAddr ?? SETTINGS.rpcAddr.default;
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
  const state = s.initialClusterState ?? SETTINGS.initialClusterState.default;
  if (state !== "new" && state !== "existing") throw new ConfigError(`INITIAL_CLUSTER_STATE must be new or existing, got "${state}"`);
  // Joining: no bootstrap voters at all, so this node can never elect itself into a cluster of
  // its own; it learns the membership from the leader once an admin adds it as a learner.
  // PEERS then names where the running members are (so this node can answer the leader before
  // the log has told it their addresses), not who founds a cluster.
  if (state === "existing" && s.peers === undefined) throw new ConfigError("INITIAL_CLUSTER_STATE=existing needs PEERS: the running members' id=host:port,...");
  const joinAddresses = state === "existing" ? parsePeers(s.peers!) : new Map<NodeId, string>();
  joinAddresses.delete(id);
  const peers = state === "existing" ? new Map<NodeId, string>() : s.peers === undefined ? new Map([[id, advertiseAddr]]) : parsePeers(s.peers);
  if (state === "new" && !peers.has(id)) throw new ConfigError(`PEERS must include this node (${id})`);
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
    if (peers.size > 1 || discovery !== null || state === "existing") throw new ConfigError("a multi-node cluster needs CLUSTER_KEY (or TLS_CA for mutual TLS)");
    clusterKey = randomBytes(32).toString("hex");
  }
  if (discovery !== null) checkGossipKey(s);
  const electionTicks = positiveInt("ELECTION_TICKS", s.electionTicks, Number(SETTINGS.electionTicks.default));
  if (electionTicks < 4) throw new ConfigError("ELECTION_TICKS must be at least 4");
  const level = s.logLevel ?? SETTINGS.logLevel.default;
  if (level !== "debug" && level !== "info" && level !== "warn" && level !== "error") {
    throw new ConfigError(`LOG_LEVEL must be debug, info, warn or error, got "${level}"`);
  }
  const logFormat = s.logFormat ?? SETTINGS.logFormat.default;
  if (logFormat !== "text" && logFormat !== "json") throw new ConfigError(`LOG_FORMAT must be text (logfmt) or json, got "${logFormat}"`);
  return {
    id,
    dataDir: s.dataDir ?? SETTINGS.dataDir.default,
    rpcAddr,
    advertiseAddr,
    region: resolveRegion(s.region ?? SETTINGS.region.default),
    staticPeers: s.peers !== undefined,
    joinAddresses,
    discovery,
    debugAddr: s.debugAddr ?? null,
    peers,
    clusterKey,
    tls,
    tickMs: positiveInt("TICK_MS", s.tickMs, Number(SETTINGS.tickMs.default)),
    electionTicks,
    heartbeatTicks: 1,
    requestTimeoutMs: positiveInt("REQUEST_TIMEOUT_MS", s.requestTimeoutMs, Number(SETTINGS.requestTimeoutMs.default)),
    snapshotEvery: positiveInt("SNAPSHOT_EVERY", s.snapshotEvery, Number(SETTINGS.snapshotEvery.default)),
    catchupEntries: positiveInt("CATCHUP_ENTRIES", s.catchupEntries, Number(SETTINGS.catchupEntries.default)),
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
    voterRegions: regionList("VOTER_REGIONS", s.voterRegions),
  };
}

/** REGION (or FLY_REGION): recorded in the replicated members table, so it must be a region name. */
function resolveRegion(region: string): string {
  const bad = invalidRegion(region, "must be known");
  if (bad !== null) throw new ConfigError(`REGION: ${bad}`);
  return region;
}

/** A comma-separated list of region names (VOTER_REGIONS, LEADER_PREFER, LEADER_NEVER). */
function regionList(name: string, text: string | undefined): string[] {
  const list = (text ?? "").split(",").map((r) => r.trim()).filter((r) => r !== "");
  const bad = list.find((r) => invalidRegion(r, "must be known") !== null);
  if (bad !== undefined) throw new ConfigError(`${name}: "${bad}" is not a region name (lowercase, e.g. lhr,fra)`);
  return [...new Set(list)];
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
  // With VOTER_REGIONS and no LEADER_PREFER, leadership prefers the voter regions: a voter left
  // outside them (waiting to leave the voters) hands leadership over instead of keeping it.
  const never = regionList("LEADER_NEVER", s.leaderNever);
  const prefer =
    s.leaderPrefer !== undefined ? regionList("LEADER_PREFER", s.leaderPrefer) : regionList("VOTER_REGIONS", s.voterRegions).filter((r) => !never.includes(r));
  const both = prefer.filter((r) => never.includes(r));
  if (both.length > 0) throw new ConfigError(`region ${both.join(",")} is in both LEADER_PREFER and LEADER_NEVER`);
  return { enabled: mode === "latency", prefer, never };
}
