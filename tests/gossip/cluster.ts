// Spawns agent_process.ts children on loopback and follows their reports, for the real-UDP tests
// and the bench. Every wait is a bounded poll on a condition.

import type { Subprocess } from "bun";
import type { GossipCounters } from "../../src/gossip/agent.ts";
import type { PeerState } from "../../src/gossip/peer.ts";

const SCRIPT = new URL("./agent_process.ts", import.meta.url).pathname;

export interface Status {
  members: [string, PeerState, number][];
  counters: GossipCounters;
}

export class AgentProc {
  gossipAddr = "";
  rpcAddr = "";
  status: Status | null = null;
  stderr = "";
  private readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  private readyResolve: () => void = () => undefined;
  readonly ready: Promise<void>;

  constructor(
    readonly id: string,
    opts: { host: string; join?: string; key?: string; preset?: string },
  ) {
    this.ready = new Promise((r) => (this.readyResolve = r));
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      GOSSIP_ID: id,
      GOSSIP_ADDR: opts.host.includes(":") ? `[${opts.host}]:0` : `${opts.host}:0`,
      GOSSIP_PRESET: opts.preset ?? "local",
      JOIN: opts.join ?? "",
      GOSSIP_KEY: opts.key ?? "",
      CLUSTER_KEY: "gossip-tests-peer-key-0123456789",
    };
    this.proc = Bun.spawn([process.execPath, SCRIPT], { env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    void this.readLines(this.proc.stdout, (line) => this.onLine(line));
    void this.readLines(this.proc.stderr, (line) => {
      // Keep the tail only: a long run logs a lot.
      this.stderr = (this.stderr + line + "\n").slice(-64_000);
    });
  }

  kill(signal: number | NodeJS.Signals = 9): void {
    this.proc.kill(signal);
  }

  get exited(): Promise<number> {
    return this.proc.exited;
  }

  /** Our view of `id`'s state, if we know it. */
  stateOf(id: string): PeerState | undefined {
    return this.status?.members.find((m) => m[0] === id)?.[1];
  }

  aliveIds(): string[] {
    return (this.status?.members ?? []).filter((m) => m[1] === "alive").map((m) => m[0]);
  }

  private onLine(line: string): void {
    let msg: { type?: string; gossipAddr?: string; rpcAddr?: string } & Partial<Status>;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    if (msg.type === "ready") {
      this.gossipAddr = msg.gossipAddr ?? "";
      this.rpcAddr = msg.rpcAddr ?? "";
      this.readyResolve();
    } else if (msg.type === "status" && msg.members !== undefined && msg.counters !== undefined) {
      this.status = { members: msg.members, counters: msg.counters };
    }
  }

  private async readLines(stream: ReadableStream<Uint8Array>, onLine: (line: string) => void): Promise<void> {
    const decoder = new TextDecoder();
    let buf = "";
    for await (const chunk of stream) {
      buf += decoder.decode(chunk, { stream: true });
      let nl = buf.indexOf("\n");
      while (nl >= 0) {
        onLine(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        nl = buf.indexOf("\n");
      }
    }
  }
}

/** Starts n agents one after another; each joins through one earlier agent only (a binary tree of seeds). */
export async function startCluster(n: number, host: string, key: string, readyMs = 10_000, preset = "local"): Promise<AgentProc[]> {
  const procs: AgentProc[] = [];
  for (let i = 0; i < n; i++) {
    const seed = i === 0 ? undefined : procs[(i - 1) >> 1];
    const p = new AgentProc(`a${i}`, { host, key, preset, ...(seed !== undefined ? { join: seed.gossipAddr } : {}) });
    procs.push(p);
    if (!(await withTimeout(p.ready, readyMs))) throw new Error(`agent ${p.id} did not start`);
  }
  return procs;
}

/** Each agent's view, for a wait that timed out: "a0 sees a1 alive, a2 suspect; a1 sees ...". */
export function views(procs: readonly AgentProc[]): string {
  return procs.map((p) => `${p.id} sees ${p.status === null ? "nothing yet" : p.status.members.map((m) => `${m[0]} ${m[1]}`).join(", ")}`).join("; ");
}

/** Every agent in `procs` sees exactly the agents in `procs` as alive. */
export function converged(procs: readonly AgentProc[]): boolean {
  const want = procs.map((p) => p.id).sort().join(",");
  return procs.every((p) => p.aliveIds().sort().join(",") === want);
}

async function withTimeout(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)));
  const ok = await Promise.race([p.then(() => true), t]);
  clearTimeout(timer);
  return ok;
}
