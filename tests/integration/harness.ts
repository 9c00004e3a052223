// Process-level test cluster: real `phalanx serve` processes on loopback over HTTP/2. Ports are
// picked below the ephemeral range and checked free, waits poll a condition with a deadline, and every child is
// tracked so afterAll can SIGKILL whatever is left, even after a failed assertion.
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { formatHostPort } from "../../src/transport/address.ts";
import { H2Client, type ClientTls, type H2Response } from "../../src/transport/h2_client.ts";

const ROOT = join(import.meta.dir, "..", "..");
export const BUN = process.execPath;
export const MAIN = join(ROOT, "main.ts");

/** Every port freePort() gave out in this process: a port given out is free until its server starts. */
const givenPorts = new Set<number>();

/**
 * A port that is free now, below Linux's ephemeral range (32768-60999): a server a test restarts
 * must get its port back, and an ephemeral port may meanwhile be taken by some outgoing connection.
 * Random in 20000-32767 (so parallel suites rarely collide), checked by binding it, retried.
 * Never the same port twice in one process: a cluster's ports are picked before its nodes start,
 * so a later pick (a gossip or debug port) could otherwise get a node's port that is still free
 * (seen: a debug server failing on the RPC port of a node started just before).
 */
export async function freePort(host = "127.0.0.1"): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    if (givenPorts.has(port)) continue;
    const ok = await new Promise<boolean>((resolve) => {
      const srv = createServer();
      srv.once("error", () => resolve(false));
      srv.listen(port, host, () => srv.close(() => resolve(true)));
    });
    if (ok) {
      givenPorts.add(port);
      return port;
    }
  }
  throw new Error(`no free port in 20000-32767 on ${host}`);
}

/** Thrown from a waitFor check to stop waiting at once (e.g. a node process died). */
export class GiveUp extends Error {}

/** TestCluster.putAcknowledged: this many tries, this far apart (an election or two fits). */
const PUT_ATTEMPTS = 40;
const PUT_RETRY_MS = 100;

/**
 * Polls `check` until it returns a value other than undefined/false, or throws after `timeoutMs`.
 * `what` names the wait in the error; a function is asked at the time-out, so the error can say
 * what the state was then (each agent's view, say).
 */
export async function waitFor<T>(what: string | (() => string), check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 15_000, everyMs = 50): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  while (performance.now() < deadline) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      lastError = err;
    }
    await Bun.sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${typeof what === "string" ? what : what()}${lastError === null ? "" : ` (last error: ${String(lastError)})`}`);
}

/** An unlabelled sample from a node's /metrics (its debug server at `debugAddr`); 0 when absent. */
export async function metricValue(debugAddr: string, name: string, headers: Record<string, string> = {}): Promise<number> {
  const text = await (await fetch(`http://${debugAddr}/metrics`, { headers })).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.split(" ")[1]);
}

/** How a new cluster's first write is tried and seen (the startup test and bench/startup.ts). */
export interface FirstWriteProbe {
  nodes: number;
  /** Tries the write once on node i; true when it was applied. */
  write(i: number): Promise<boolean>;
  /** Node i's local (stale) read: true when it holds the value. */
  sees(i: number): Promise<boolean>;
  /** Throws (a GiveUp) when a node died: no point waiting. */
  alive?: () => void;
}

/**
 * From a brand-new cluster's start (`since`, performance.now()): tries the write on every node in
 * turn, `everyMs` apart, until one is accepted, then reads every node until all hold it. Returns
 * both moments in ms since `since`; gives up after `timeoutMs`.
 */
export async function timeFirstWrite(probe: FirstWriteProbe, since: number, opts: { everyMs: number; timeoutMs: number }): Promise<{ writeMs: number; allMs: number }> {
  let next = 0;
  await waitFor(
    "a write accepted",
    async () => {
      probe.alive?.();
      return probe.write(next++ % probe.nodes);
    },
    opts.timeoutMs,
    opts.everyMs,
  );
  const writeMs = performance.now() - since;
  const seen = new Set<number>();
  await waitFor(
    `the write on all ${probe.nodes} nodes`,
    async () => {
      probe.alive?.();
      for (let i = 0; i < probe.nodes; i++) if (!seen.has(i) && (await probe.sees(i))) seen.add(i);
      return seen.size === probe.nodes;
    },
    opts.timeoutMs,
    opts.everyMs,
  );
  return { writeMs, allMs: performance.now() - since };
}

export interface NodeSpec {
  id: string;
  addr: string;
  dataDir: string;
}

export interface Status {
  id: string;
  role: string;
  term: number;
  leader: string | null;
  commit: number;
  applied: number;
  leaseValid: boolean;
}

export class TestCluster {
  readonly nodes: NodeSpec[];
  readonly procs = new Map<string, Subprocess>();
  readonly logs = new Map<string, string>();
  readonly client: H2Client;

  private constructor(
    nodes: NodeSpec[],
    readonly dir: string,
    private readonly command: string[],
    private readonly env: Record<string, string>,
    tls: ClientTls | undefined,
    /** Sent with every request (e.g. a bearer token when the cluster requires client auth). */
    private readonly headers: Record<string, string> = {},
  ) {
    this.nodes = nodes;
    this.client = new H2Client({ connectTimeoutMs: 1000, ...(tls === undefined ? {} : { tls }) });
  }

  /** `host`: loopback address to listen on (127.0.0.1 or ::1); `tls`: how the test client connects. */
  static async create(
    n: number,
    opts: { command?: string[]; env?: Record<string, string>; host?: string; tls?: ClientTls; headers?: Record<string, string> } = {},
  ): Promise<TestCluster> {
    const dir = mkdtempSync(join(tmpdir(), "phalanx-it-"));
    const host = opts.host ?? "127.0.0.1";
    const nodes: NodeSpec[] = [];
    for (let i = 1; i <= n; i++) nodes.push({ id: `n${i}`, addr: formatHostPort(host, await freePort(host)), dataDir: join(dir, `node-${i}`) });
    return new TestCluster(nodes, dir, opts.command ?? [BUN, MAIN], opts.env ?? {}, opts.tls, opts.headers);
  }

  node(id: string): NodeSpec {
    const n = this.nodes.find((x) => x.id === id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** `env` adds per-node settings (e.g. gossip ports) on top of the cluster's. */
  start(id: string, env: Record<string, string> = {}): void {
    const n = this.node(id);
    const proc = Bun.spawn([...this.command, "serve"], {
      env: {
        ...process.env,
        NODE_ID: n.id,
        DATA_DIR: n.dataDir,
        RPC_ADDR: n.addr,
        PEERS: this.nodes.map((x) => `${x.id}=${x.addr}`).join(","),
        CLUSTER_KEY: "integration-test-cluster-key",
        TICK_MS: "50",
        ...this.env,
        ...env,
      },
      stdout: "pipe",
      stderr: "pipe",
    });
    this.procs.set(id, proc);
    this.logs.set(id, "");
    const collect = async (stream: ReadableStream<Uint8Array>) => {
      const dec = new TextDecoder();
      for await (const chunk of stream) this.logs.set(id, (this.logs.get(id) ?? "") + dec.decode(chunk));
    };
    void collect(proc.stdout as ReadableStream<Uint8Array>);
    void collect(proc.stderr as ReadableStream<Uint8Array>);
  }

  startAll(): void {
    for (const n of this.nodes) this.start(n.id);
  }

  signal(id: string, sig: "SIGKILL" | "SIGSTOP" | "SIGCONT" | "SIGTERM"): void {
    this.procs.get(id)?.kill(sig);
  }

  async kill(id: string): Promise<void> {
    const p = this.procs.get(id);
    if (p === undefined) return;
    p.kill("SIGKILL");
    await p.exited;
    this.procs.delete(id);
  }

  async request(id: string, method: string, path: string, opts: { json?: unknown; body?: Uint8Array; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<H2Response & { json: any }> {
    const body = opts.json !== undefined ? new TextEncoder().encode(JSON.stringify(opts.json)) : opts.body;
    const headers: Record<string, string> = { ...this.headers, ...(opts.json !== undefined ? { "content-type": "application/json" } : {}), ...opts.headers };
    const res = await this.client.request(this.client.originFor(this.node(id).addr), {
      method,
      path,
      headers,
      ...(body === undefined ? {} : { body }),
      timeoutMs: opts.timeoutMs ?? 5000,
    });
    let json: unknown = null;
    try {
      json = JSON.parse(new TextDecoder().decode(res.body));
    } catch {
      json = null;
    }
    return { ...res, json };
  }

  /**
   * A PUT the cluster acknowledged (200), sent again while the answer is a 503 (not applied: no
   * leader during an election, say) or an unknown outcome (502, 504), as a client does: for a key
   * a test writes with one value only, sending again changes nothing the test compares. Bounded:
   * PUT_ATTEMPTS tries, PUT_RETRY_MS apart; any other answer, or the last one, throws with its body.
   */
  async putAcknowledged(id: string, path: string, opts: { json?: unknown; body?: Uint8Array }): Promise<H2Response & { json: any }> {
    for (let attempt = 1; ; attempt++) {
      const res = await this.request(id, "PUT", path, opts);
      if (res.status === 200) return res;
      if (![502, 503, 504].includes(res.status) || attempt >= PUT_ATTEMPTS) throw new Error(`PUT ${path} on ${id}: HTTP ${res.status} ${JSON.stringify(res.json)} (attempt ${attempt})`);
      await new Promise((r) => setTimeout(r, PUT_RETRY_MS));
    }
  }

  async status(id: string): Promise<Status> {
    const res = await this.request(id, "GET", "/v1/status", { timeoutMs: 1000 });
    if (res.status !== 200) throw new Error(`status of ${id}: HTTP ${res.status}`);
    return res.json as Status;
  }

  /** Waits until every listed node reports the same leader, itself among them; returns its id. */
  async waitForLeader(ids: string[], timeoutMs = 15_000): Promise<string> {
    return waitFor(`a leader among ${ids.join(",")}`, async () => {
      for (const id of ids) {
        const code = this.procs.get(id)?.exitCode;
        if (code !== null && code !== undefined) throw new GiveUp(`node ${id} exited with code ${code}`);
      }
      const all = await Promise.all(ids.map((id) => this.status(id)));
      const leader = all[0]!.leader;
      if (leader === null || !ids.includes(leader) || !all.every((s) => s.leader === leader)) return undefined;
      return all.find((s) => s.id === leader)?.role === "leader" ? leader : undefined;
    }, timeoutMs);
  }

  async stopAll(): Promise<void> {
    for (const [id, p] of this.procs) {
      p.kill("SIGCONT");
      p.kill("SIGKILL");
      await p.exited;
      this.procs.delete(id);
    }
    await this.client.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  dumpLogs(): string {
    return [...this.logs].map(([id, l]) => `----- ${id}\n${l.slice(-4000)}`).join("\n");
  }
}
