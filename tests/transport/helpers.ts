// Shared fixtures for the transport tests: a node (server + peer transport), an inbox that resolves
// waits on arrival, condition waits with deadlines, and a throwaway CA made with openssl.

import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Hono } from "hono";
import type { Message, NodeId } from "../../src/raft/types.ts";
import { formatHostPort, parseHostPort } from "../../src/transport/address.ts";
import type { PeerAuth } from "../../src/transport/auth.ts";
import { type ClientTls, H2Client } from "../../src/transport/h2_client.ts";
import { PeerTransport, type PeerTransportOptions } from "../../src/transport/peers.ts";
import { raftRoutes } from "../../src/transport/raft_routes.ts";
import { RAFT_STREAM_PATH, RaftStreamRoute, type RaftStreamOptions } from "../../src/transport/raft_stream.ts";
import { type RunningServer, serveApp, type TlsConfig } from "../../src/transport/server.ts";

export const KEY = "test-cluster-key-0123456789";
export const HMAC: PeerAuth = { mode: "hmac", key: KEY };

/** Messages delivered to one node; waits resolve as soon as enough have arrived. */
export class Inbox {
  readonly msgs: Message[] = [];
  readonly senders: NodeId[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];

  push = (msgs: Message[], from: NodeId): void => {
    this.msgs.push(...msgs);
    this.senders.push(from);
    this.waiters = this.waiters.filter((w) => (this.msgs.length >= w.n ? (w.resolve(), false) : true));
  };

  waitFor(n: number, timeoutMs = 5000): Promise<void> {
    if (this.msgs.length >= n) return Promise.resolve();
    return withDeadline(new Promise<void>((resolve) => this.waiters.push({ n, resolve })), timeoutMs, `${n} messages (have ${this.msgs.length})`);
  }
}

export function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, deadline]).finally(() => clearTimeout(timer));
}

/** Re-checks `cond` on each timer tick until it holds; bounded by the deadline. */
export async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const end = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

export interface TestNode {
  id: NodeId;
  address: string;
  inbox: Inbox;
  server: RunningServer;
  stream: RaftStreamRoute;
  client: H2Client;
  transport: PeerTransport;
  unreachable: NodeId[];
  stop(): Promise<void>;
}

export interface NodeOptions {
  listen?: string;
  auth?: PeerAuth;
  serverTls?: TlsConfig;
  clientTls?: ClientTls;
  transport?: Partial<PeerTransportOptions>;
  maxSnapshotBody?: number;
  stream?: Partial<RaftStreamOptions>;
}

export async function startNode(id: NodeId, opts: NodeOptions = {}): Promise<TestNode> {
  const auth = opts.auth ?? HMAC;
  const inbox = new Inbox();
  const app = new Hono();
  app.route("/", raftRoutes({ self: id, auth, onMessages: inbox.push, maxSnapshotBody: opts.maxSnapshotBody }));
  const listen = opts.listen ?? "127.0.0.1:0";
  // As the node does: a verified batch from a peer tells the transport it is alive.
  const onMessages = (msgs: Message[], from: NodeId) => {
    inbox.push(msgs, from);
    transport.heardFrom(from);
  };
  const stream = new RaftStreamRoute({ self: id, auth, onMessages, ...opts.stream });
  const server = await serveApp(app, { listen, tls: opts.serverTls, streamRoutes: new Map([[RAFT_STREAM_PATH, stream]]) });
  const client = new H2Client({ tls: opts.clientTls, connectTimeoutMs: 2000 });
  const unreachable: NodeId[] = [];
  const transport = new PeerTransport({
    self: id,
    client,
    auth,
    reportUnreachable: (peer) => unreachable.push(peer),
    backoffMinMs: 10,
    backoffMaxMs: 100,
    random: () => 0.5,
    // Failures are what these tests look at: no grace for peers still starting, unless asked.
    startupWindowMs: 0,
    ...opts.transport,
  });
  const address = formatHostPort(parseHostPort(listen).host, server.port);
  const stop = async () => {
    await transport.close();
    await client.close();
    await server.close();
  };
  return { id, address, inbox, server, stream, client, transport, unreachable, stop };
}

/** Tells every node about every other. */
export function mesh(nodes: TestNode[]): void {
  const peers = new Map(nodes.map((n) => [n.id, n.address] as const));
  for (const n of nodes) n.transport.setPeers(peers);
}

export function heartbeat(from: NodeId, to: NodeId, seq: number): Message {
  return { type: "heartbeat", from, to, term: 1, commit: 0, seq };
}

/** A small snapshot chunk (what the snapshot route takes), told apart by its offset. */
export function snapshotChunk(from: NodeId, to: NodeId, offset: number): Message {
  return { type: "snapshot", from, to, term: 1, meta: { index: 5, term: 1, conf: { voters: [from, to], learners: [] } }, offset, total: offset + 16, chunk: new Uint8Array(16) };
}

export const haveOpenssl = Bun.which("openssl") !== null;

export interface TestPki {
  ca: string;
  server: { cert: string; key: string };
  client: { cert: string; key: string };
  /** Signed by a different CA: valid-looking, not ours. */
  stranger: { cert: string; key: string };
  /** One certificate per node id in NODE_CERT_IDS: CN and DNS SAN are the id (plus the loopback IPs). */
  nodes: Record<string, { cert: string; key: string }>;
}

/** Node ids that makePki() issues certificates for (the transport tests' and TestCluster's). */
export const NODE_CERT_IDS = ["a", "b", "c", "n1", "n2", "n3", "n4"];

/**
 * A throwaway CA with a server cert (IP SANs 127.0.0.1 and ::1), a client cert (CN=client, names
 * no node), per-node certs, and a stranger's cert from another CA, in a temp dir.
 */
export function makePki(): Promise<TestPki> {
  // Made once per test process and shared: it takes about 25 openssl runs, some seconds on a
  // loaded machine, which a test's own 5 s budget did not always cover (a CI flake).
  made ??= buildPki();
  return made;
}
let made: Promise<TestPki> | undefined;

async function buildPki(): Promise<TestPki> {
  const dir = mkdtempSync(join(tmpdir(), "phalanx-pki-"));
  const run = async (...args: string[]) => {
    const p = Bun.spawn(["openssl", ...args], { cwd: dir, stdout: "ignore", stderr: "pipe" });
    if ((await p.exited) !== 0) throw new Error(`openssl ${args[0]} failed: ${await new Response(p.stderr).text()}`);
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  const makeCa = (name: string) => run("req", "-x509", ...ec, "-keyout", `${name}.key`, "-out", `${name}.crt`, "-days", "1", "-subj", `/CN=${name}`);
  await Promise.all([makeCa("ca"), makeCa("otherca")]);
  const leaf = async (name: string, ca: string, dns: string) => {
    writeFileSync(join(dir, `${name}.ext`), `subjectAltName=IP:127.0.0.1,IP:::1,DNS:${dns}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    await run("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
    await run("x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`, "-CAcreateserial", "-out", `${name}.crt`, "-days", "1", "-extfile", `${name}.ext`);
  };
  await leaf("server", "ca", "localhost");
  await leaf("client", "ca", "localhost");
  await leaf("stranger", "otherca", "localhost");
  // Sequential: -CAcreateserial writes ca.srl, and parallel runs would race on it.
  for (const id of NODE_CERT_IDS) await leaf(id, "ca", id);
  const read = (f: string) => readFileSync(join(dir, f), "utf8");
  const pair = (n: string) => ({ cert: read(`${n}.crt`), key: read(`${n}.key`) });
  const nodes = Object.fromEntries(NODE_CERT_IDS.map((id) => [id, pair(id)]));
  return { ca: read("ca.crt"), server: pair("server"), client: pair("client"), stranger: pair("stranger"), nodes };
}
