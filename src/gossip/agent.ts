// The gossip agent: drives the pure SWIM core (swim.ts) from real timers, a UDP socket, the
// keyring and push-pull over HTTP/2. All I/O of the gossip layer lives here.
//
// Public API for the node layer:
//
//   const agent = await GossipAgent.start({
//     id, rpcAddr, region, role,            // our identity and metadata
//     bind?: "[::]:7946",                   // GOSSIP_ADDR; port 0 picks a free port
//     advertise?: "[fdaa::1]:7946",         // needed when bind is unspecified ("::", "0.0.0.0")
//     config?: "lan" | "wan" | "local" | GossipConfig,
//     keyring: Keyring,                     // GOSSIP_KEY, or derived from CLUSTER_KEY: gossip is never plaintext
//     peerAuth: PeerAuth, peerTls?,         // push-pull is a signed peer request (CLUSTER_KEY or mTLS)
//     join?: string[], discoveryDns?: string,
//     pushPull?: PushPullFn,                // default: a signed HTTP/2 client to the peer's rpcAddr
//     log?: GossipLog, seed?: number,
//   });                                     // or gossipOptionsFromEnv(process.env) for the env part
//   app.route("/", pushPullRoute(peerAuth, selfId, (b, from) => agent.handlePushPull(b, from)));   // on the node's HTTP/2 server
//   agent.members(): GossipPeer[]               // id, incarnation, state alive|suspect|dead|left, meta
//   agent.self(): GossipPeer
//   agent.onEvent((e: PeerEvent) => ...): () => void   // join|update|suspect|dead|leave; returns unsubscribe
//   agent.setMeta({ role: "voter" })        // bumps our incarnation and gossips it
//   agent.counters(): GossipCounters        // plain object for /metrics
//   agent.gossipAddr: string                // advertised "host:port"
//   await agent.leave(timeoutMs?)           // announce a graceful leave, then stop
//   await agent.stop()                      // stop without a word (peers will call us dead)

import { randomInt as cryptoRandomInt } from "node:crypto";
import { isIP } from "node:net";
import { formatHostPort, parseHostPort } from "./address.ts";
import { PRESETS, gossipConfig, type GossipConfig, type PresetName } from "./config.ts";
import { discoverSeeds, parseJoin } from "./discovery.ts";
import type { PeerAuth } from "../transport/auth.ts";
import type { ClientTls } from "../transport/h2_client.ts";
import { ENCRYPTION_OVERHEAD, Keyring } from "./keyring.ts";
import type { GossipPeer, PeerEvent, PeerMeta, PeerState, Role } from "./peer.ts";
import { pushPullClient, type PushPullClient, type PushPullFn } from "./push_pull_route.ts";
import { RateLimitedLog, stderrLog, type GossipLog } from "./rate_limited_log.ts";
import { seededRng } from "./rng.ts";
import { nextJoinBackoffMs, Swim } from "./swim.ts";
import { openUdp, type UdpEndpoint } from "./udp.ts";

export const DEFAULT_GOSSIP_PORT = 7946;
const WARN_INTERVAL_MS = 10_000;

export interface GossipAgentOptions {
  id: string;
  rpcAddr: string;
  region: string;
  role: Role;
  /** Cluster formation state to advertise (see PeerMeta.cluster); "" by default. */
  cluster?: string;
  bind?: string;
  advertise?: string;
  config?: PresetName | GossipConfig;
  /** Gossip is always authenticated: there is no plaintext mode. */
  keyring: Keyring;
  /** How push-pull requests prove who sends them (the node's peer auth). */
  peerAuth: PeerAuth;
  /** TLS for push-pull when the node serves TLS. */
  peerTls?: ClientTls;
  join?: readonly string[];
  discoveryDns?: string;
  pushPull?: PushPullFn;
  log?: GossipLog;
  /** Seeds the core's randomness; random by default. */
  seed?: number;
}

export interface GossipCounters {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  malformed: number;
  decryptFailures: number;
  /** Authentic packets sealed outside the accepted epochs: replays (or a clock off by > 30 s). Also counted in decryptFailures. */
  stale: number;
  sendErrors: number;
  /** Asynchronous socket errors, e.g. ICMP port unreachable after sending to a dead peer. */
  socketErrors: number;
  pushPulls: number;
  pushPullFailures: number;
  pushPullsServed: number;
  joinAttempts: number;
  /** Exceptions from the core while handling input: bugs, counted and logged instead of crashing. */
  internalErrors: number;
  health: number;
  members: Record<PeerState, number>;
}

/** Tuning variables that override single parameters of the preset. */
export const GOSSIP_TUNING_ENV = {
  GOSSIP_PROBE_INTERVAL_MS: "probeIntervalMs",
  GOSSIP_PROBE_TIMEOUT_MS: "probeTimeoutMs",
  GOSSIP_INDIRECT_CHECKS: "indirectChecks",
  GOSSIP_SUSPICION_MULT: "suspicionMult",
  GOSSIP_RETRANSMIT_MULT: "retransmitMult",
  GOSSIP_INTERVAL_MS: "gossipIntervalMs",
  GOSSIP_PUSH_PULL_INTERVAL_MS: "pushPullIntervalMs",
} as const satisfies Record<string, keyof GossipConfig>;

/**
 * The environment's part of the options: GOSSIP_ADDR, GOSSIP_ADVERTISE (or FLY_PRIVATE_IP),
 * GOSSIP_KEY (else derived from CLUSTER_KEY), JOIN, DISCOVERY_DNS, GOSSIP_PRESET and the tuning.
 */
export function gossipOptionsFromEnv(
  env: Record<string, string | undefined>,
): Pick<GossipAgentOptions, "bind" | "advertise" | "keyring" | "join" | "discoveryDns" | "config"> {
  const preset = env.GOSSIP_PRESET ?? "lan";
  if (!(preset in PRESETS)) throw new Error(`GOSSIP_PRESET must be lan, wan or local, got "${preset}"`);
  const overrides: Partial<GossipConfig> = {};
  for (const [name, key] of Object.entries(GOSSIP_TUNING_ENV)) {
    const text = env[name];
    if (text === undefined || text === "") continue;
    const v = Number(text);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a positive integer, got "${text}"`);
    overrides[key] = v;
  }
  const bind = env.GOSSIP_ADDR ?? formatHostPort("::", DEFAULT_GOSSIP_PORT);
  const bindPort = parseHostPort(bind, DEFAULT_GOSSIP_PORT)?.port ?? DEFAULT_GOSSIP_PORT;
  const advertise = env.GOSSIP_ADVERTISE ?? (env.FLY_PRIVATE_IP !== undefined ? formatHostPort(env.FLY_PRIVATE_IP, bindPort) : undefined);
  return {
    bind,
    ...(advertise !== undefined ? { advertise } : {}),
    keyring: gossipKeyring(env),
    join: parseJoin(env.JOIN),
    ...(env.DISCOVERY_DNS !== undefined && env.DISCOVERY_DNS !== "" ? { discoveryDns: env.DISCOVERY_DNS } : {}),
    // Validated here, so a bad combination is a startup error, not a runtime surprise.
    config: Object.keys(overrides).length === 0 ? (preset as PresetName) : gossipConfig(preset as PresetName, overrides),
  };
}

/**
 * Unauthenticated gossip let one forged UDP packet remove a Raft voter (issue 9), so there is no
 * plaintext mode: GOSSIP_KEY if set, else a key derived from CLUSTER_KEY, else refuse to start.
 */
export function gossipKeyring(env: Record<string, string | undefined>): Keyring {
  if (env.GOSSIP_KEY !== undefined && env.GOSSIP_KEY !== "") return Keyring.fromEnv(env.GOSSIP_KEY);
  if (env.CLUSTER_KEY !== undefined && env.CLUSTER_KEY !== "") return Keyring.fromClusterKey(env.CLUSTER_KEY);
  throw new Error("gossip needs a key: set CLUSTER_KEY (the gossip key is derived from it) or GOSSIP_KEY; a cluster with mutual TLS and no CLUSTER_KEY must set GOSSIP_KEY");
}

type Listener = (e: PeerEvent) => void;

export class GossipAgent {
  readonly gossipAddr: string;
  private readonly listeners = new Set<Listener>();
  private readonly warn: RateLimitedLog;
  private readonly c: Omit<GossipCounters, "health" | "members"> = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    malformed: 0,
    decryptFailures: 0,
    stale: 0,
    sendErrors: 0,
    socketErrors: 0,
    pushPulls: 0,
    pushPullFailures: 0,
    pushPullsServed: 0,
    joinAttempts: 0,
    internalErrors: 0,
  };
  private ticker: ReturnType<typeof setInterval> | undefined;
  private joinTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;

  private constructor(
    private readonly core: Swim,
    private readonly cfg: GossipConfig,
    private readonly udp: UdpEndpoint,
    private readonly keyring: Keyring,
    private readonly pushPull: PushPullFn,
    private readonly ownedClient: PushPullClient | null,
    private readonly log: GossipLog,
  ) {
    this.gossipAddr = core.member(core.id)?.meta.gossipAddr ?? "";
    this.warn = new RateLimitedLog(log, WARN_INTERVAL_MS);
  }

  static async start(o: GossipAgentOptions): Promise<GossipAgent> {
    const cfg = typeof o.config === "object" ? o.config : gossipConfig(o.config ?? "lan");
    const log = o.log ?? stderrLog;
    const keyring = o.keyring;
    const bind = o.bind ?? formatHostPort("::", DEFAULT_GOSSIP_PORT);
    // The socket exists before the core so that port 0 can be resolved into the advertised address.
    let onPacket: (from: string, bytes: Uint8Array) => void = () => undefined;
    let onError: (err: unknown) => void = () => undefined;
    const udp = await openUdp(
      bind,
      (from, bytes) => onPacket(from, bytes),
      (err) => onError(err),
    );
    let agent: GossipAgent;
    try {
      const gossipAddr = advertisedAddr(bind, o.advertise, udp.port);
      const client = o.pushPull === undefined ? pushPullClient({ auth: o.peerAuth, from: o.id, ...(o.peerTls === undefined ? {} : { tls: o.peerTls }) }) : null;
      const core = new Swim({
        id: o.id,
        meta: { gossipAddr, rpcAddr: o.rpcAddr, region: o.region, role: o.role, cluster: o.cluster ?? "" },
        config: cfg,
        rng: seededRng(o.seed ?? cryptoRandomInt(0, 2 ** 32)),
        now: performance.now(),
        packetOverhead: ENCRYPTION_OVERHEAD,
      });
      agent = new GossipAgent(core, cfg, udp, keyring, o.pushPull ?? (client as PushPullClient).pushPull, client, log);
    } catch (err) {
      udp.close();
      throw err;
    }
    onPacket = (from, bytes) => agent.onPacket(from, bytes);
    onError = (err) => agent.onSocketError(err);
    agent.ticker = setInterval(() => agent.tick(), cfg.tickMs);
    log("info", "gossip started", { id: o.id, gossipAddr: agent.gossipAddr, bind, port: udp.port });
    const join = o.join ?? [];
    if (join.length > 0 || (o.discoveryDns !== undefined && o.discoveryDns !== "")) {
      agent.joinLoop(join, o.discoveryDns, cfg);
    }
    return agent;
  }

  members(): GossipPeer[] {
    return this.core.members();
  }

  self(): GossipPeer {
    const s = this.core.member(this.core.id);
    if (s === undefined) throw new Error("gossip invariant: own member entry missing");
    return s;
  }

  onEvent(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  setMeta(change: Partial<Pick<PeerMeta, "rpcAddr" | "region" | "role" | "cluster">>): void {
    this.core.setMeta(performance.now(), { ...this.self().meta, ...change });
    this.flush();
  }

  /** Serves a push-pull from authenticated peer `from` (mount pushPullRoute with this). Null refuses the body. */
  handlePushPull(sealed: Uint8Array, from: string): Uint8Array | null {
    if (this.stopped) return null;
    const plain = this.open(sealed, `push-pull from ${from}`);
    if (plain === null) return null;
    try {
      const answer = this.core.handlePushPull(performance.now(), plain, from);
      this.flush();
      if (answer === null) {
        this.c.malformed++;
        this.warn.warn(performance.now(), "malformed-push-pull", "gossip: malformed push-pull state");
        return null;
      }
      this.c.pushPullsServed++;
      return this.seal(answer);
    } catch (err) {
      this.internalError(err);
      return null;
    }
  }

  counters(): GossipCounters {
    const members: Record<PeerState, number> = { alive: 0, suspect: 0, dead: 0, left: 0 };
    for (const m of this.core.members()) members[m.state]++;
    return { ...this.c, health: this.core.health(), members };
  }

  /** Announces that we leave, waits (bounded) for the news to go out, then stops. */
  async leave(timeoutMs = 4 * this.cfg.gossipIntervalMs + this.cfg.probeIntervalMs): Promise<void> {
    if (this.stopped) return;
    this.core.leave(performance.now());
    this.flush();
    const deadline = performance.now() + timeoutMs;
    while (this.core.pendingBroadcasts() > 0 && performance.now() < deadline) await Bun.sleep(this.cfg.tickMs);
    await this.stop();
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.ticker);
    clearTimeout(this.joinTimer);
    this.udp.close();
    this.ownedClient?.close();
    this.log("info", "gossip stopped", { id: this.core.id });
  }

  // ---- edge ----

  private tick(): void {
    if (this.stopped) return;
    try {
      this.core.tick(performance.now());
    } catch (err) {
      this.internalError(err);
    }
    this.flush();
  }

  private onPacket(from: string, bytes: Uint8Array): void {
    if (this.stopped) return;
    this.c.packetsIn++;
    this.c.bytesIn += bytes.length;
    const plain = this.open(bytes, from);
    if (plain === null) return;
    try {
      if (!this.core.receive(performance.now(), from, plain)) {
        this.c.malformed++;
        this.warn.warn(performance.now(), "malformed", "gossip: dropped a malformed packet or message (the rest of the packet was handled)", { from, bytes: bytes.length });
      }
    } catch (err) {
      this.internalError(err);
    }
    this.flush();
  }

  /** Socket errors are mostly ICMP unreachable from a dead peer: expected, and the probe will notice. */
  private onSocketError(err: unknown): void {
    this.c.socketErrors++;
    this.warn.warn(performance.now(), "socket", "gossip: UDP socket error", { error: String(err) });
  }

  /** Decrypts, or counts and logs the failure. */
  private open(bytes: Uint8Array, from: string): Uint8Array | null {
    const r = this.keyring.open(bytes);
    if (r.refused === null) return r.plain;
    this.c.decryptFailures++;
    if (r.refused === "stale") {
      this.c.stale++;
      this.warn.warn(performance.now(), "stale", "gossip: dropped an authentic but stale packet (a replay, or clocks more than 30 s apart)", {
        from,
        bytes: bytes.length,
      });
    } else {
      this.warn.warn(performance.now(), "decrypt", "gossip: dropped data no key decrypts (wrong GOSSIP_KEY or garbage)", {
        from,
        bytes: bytes.length,
      });
    }
    return null;
  }

  private seal(plain: Uint8Array): Uint8Array {
    return this.keyring.encrypt(plain);
  }

  private flush(): void {
    const out = this.core.drain();
    for (const p of out.packets) {
      const bytes = this.seal(p.bytes);
      if (bytes.length > this.cfg.maxPacketBytes) throw new Error(`gossip invariant: ${bytes.length}-byte packet over the limit`);
      if (this.udp.send(p.addr, bytes)) {
        this.c.packetsOut++;
        this.c.bytesOut += bytes.length;
      } else {
        this.c.sendErrors++;
        this.warn.warn(performance.now(), "send", "gossip: could not send a packet", { to: p.addr });
      }
    }
    for (const r of out.pushPulls) this.startPushPull(r.addr, r.to, r.state);
    for (const e of out.events) {
      for (const fn of this.listeners) {
        try {
          fn(e);
        } catch (err) {
          this.log("error", "gossip: event listener threw", { error: String(err) });
        }
      }
    }
  }

  private startPushPull(addr: string, to: string, state: Uint8Array): void {
    this.c.pushPulls++;
    this.pushPull(addr, to, this.seal(state)).then(
      (answer) => {
        if (this.stopped) return;
        const plain = this.open(answer, addr);
        if (plain === null) return;
        if (!this.core.mergePushPull(performance.now(), plain)) {
          this.c.malformed++;
          this.warn.warn(performance.now(), "malformed-push-pull", "gossip: malformed push-pull answer", { from: addr });
        }
        this.flush();
      },
      (err: unknown) => {
        this.c.pushPullFailures++;
        this.warn.warn(performance.now(), "push-pull", "gossip: push-pull failed", { to: addr, error: String(err) });
      },
    );
  }

  /** Pings the seeds until one of them answers (the core's joined(): see there), waiting by nextJoinBackoffMs. */
  private joinLoop(join: readonly string[], discoveryDns: string | undefined, cfg: GossipConfig): void {
    let backoffMs: number | null = null;
    const attempt = async () => {
      if (this.stopped || this.core.joined()) {
        if (!this.stopped) this.log("info", "gossip joined", { members: this.core.memberCount(), attempts: this.c.joinAttempts });
        return;
      }
      const seeds = (await discoverSeeds(join, discoveryDns, DEFAULT_GOSSIP_PORT)).filter((s) => s !== this.gossipAddr);
      if (this.stopped) return;
      this.c.joinAttempts++;
      if (seeds.length === 0) this.warn.warn(performance.now(), "join", "gossip: no seeds found yet", { join, discoveryDns });
      else this.core.join(performance.now(), seeds);
      this.flush();
      backoffMs = nextJoinBackoffMs(cfg, backoffMs);
      this.joinTimer = setTimeout(() => void attempt(), backoffMs);
    };
    void attempt();
  }

  private internalError(err: unknown): void {
    this.c.internalErrors++;
    this.log("error", "gossip: internal error handling input", { error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  }
}

/** The address peers reach us at: the bind address, unless it is unspecified ("::", "0.0.0.0"). */
function advertisedAddr(bind: string, advertise: string | undefined, boundPort: number): string {
  if (advertise !== undefined) {
    const hp = parseHostPort(advertise, boundPort);
    if (hp === null || isIP(hp.host) === 0) throw new Error(`gossip advertise address must be an IP "host:port", got "${advertise}"`);
    return formatHostPort(canonicalIp(hp.host), hp.port === 0 ? boundPort : hp.port);
  }
  const hp = parseHostPort(bind);
  if (hp === null || hp.host === "::" || hp.host === "0.0.0.0") {
    throw new Error(`gossip binds "${bind}": set an advertise address (GOSSIP_ADVERTISE or FLY_PRIVATE_IP)`);
  }
  return formatHostPort(canonicalIp(hp.host), boundPort);
}

/**
 * The form the socket reports source addresses in ("fdaa:0:1::3", not "fdaa:0000:1::0003"):
 * members' addresses are compared with what a packet claims, so one address has one spelling.
 */
function canonicalIp(host: string): string {
  return isIP(host) === 6 ? new URL(`http://[${host}]/`).hostname.slice(1, -1) : host;
}
