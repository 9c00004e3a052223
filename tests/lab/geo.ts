// `npm run lab:geo` (as root): the five Fly regions emulated on one machine, and what phalanx does
// in them. It builds its own network: one namespace per region (pxgeo-jnb, -lhr, -ord, -sin, -fra)
// on a bridge in a hub namespace, IPv6 ULA addresses (fd00:6e0::/64) that exist only inside those
// namespaces, no route anywhere else. The kernel has no netem or prio qdisc, so the delay is in
// user space: in each region a relay (tests/lab/relay.ts) listens on [::1]:1910<k> for peer k and
// forwards to that peer's node, holding every chunk half the REFERENCE.md round trip each way with
// ±5% jitter. Each node's PEERS names its peers by those relay addresses, so every node-to-node
// byte crosses a delay line; a client in a region talks to its own node without one.
//
// Phases (each bounded): writes at each leader region; steady-state term changes; leader kill →
// next committed write from every surviving region; then, with latency-aware placement on, the
// leader moving to the best region from a bad start, and back after a leader loss.
// Everything (processes, namespaces, data dirs) is torn down on exit, on error and on Ctrl-C.
//
// Options: --writes N (default 200), --steady-s S (default 30), --skip-placement, --only-placement,
// --keep-logs; --only-failover [--trials N]: leader kills with the election ranking off
// (LEADER_PLACEMENT=off: today's randomized timeouts) and on (latency), N trials each, counting
// split votes (more than one candidate, or more than one term) and candidacies;
// --only-rejoin [--trials N] [--cut-s S] [--steady-s S]: a follower region and the leader's region
// cut off for S seconds (every relay route into and out of it blocked) and healed, time from the
// heal to the next committed write from that region; then steady-state term changes.
import { mkdtempSync, readFileSync, rmSync, openSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";
import { waitFor } from "../integration/harness.ts";
import type { AgentRequest, PeerSamples, WriteSample } from "./agent.ts";
import type { RelayRoute } from "./relay.ts";
import { REGION_RTT_MS, REGIONS, type Region } from "../regions.ts";

const ROOT = join(import.meta.dir, "..", "..");
const BUN = process.execPath;

export { REGIONS, type Region } from "../regions.ts";

/** tests/regions.ts's round trips (ms, P95), with 0 from a region to itself. */
export const RTT_MS = Object.fromEntries(REGIONS.map((a) => [a, Object.fromEntries(REGIONS.map((b) => [b, a === b ? 0 : REGION_RTT_MS[a][b]!]))])) as Record<Region, Record<Region, number>>;
const JITTER = 0.05;
const NODE_PORT = 9000;
const RELAY_BASE_PORT = 19100;
const HUB = "pxgeo-hub";
const ns = (r: Region) => `pxgeo-${r}`;
const ip = (r: Region) => `fd00:6e0::${REGIONS.indexOf(r) + 1}`;
const nodeAddr = (r: Region) => `[${ip(r)}]:${NODE_PORT}`;
const debugUrl = (r: Region) => `http://[${ip(r)}]:9100/debug/raft`;
const metricsUrl = (r: Region) => `http://[${ip(r)}]:9100/metrics`;

/** Candidacies (role → candidate) the survivors started so far: > 1 per leader loss means contention. */
async function candidacies(regions: readonly Region[]): Promise<number> {
  const counts = await Promise.all(regions.map((r) => agents.get(r)!.call<number | null>({ op: "metric", url: metricsUrl(r), name: "phalanx_raft_elections_started_total" })));
  return counts.reduce<number>((a, b) => a + (b ?? 0), 0);
}
const relayAddr = (peer: Region) => `[::1]:${RELAY_BASE_PORT + REGIONS.indexOf(peer)}`;

/** Commit floor with `leader` leading 5 voters: its second-fastest follower's round trip. */
export function floorMs(leader: Region): number {
  const rtts = REGIONS.filter((r) => r !== leader).map((r) => RTT_MS[leader][r]).sort((a, b) => a - b);
  return rtts[1]!;
}

function flyTiming(): { tickMs: string; electionTicks: string } {
  const text = readFileSync(join(ROOT, "fly.toml"), "utf8");
  const get = (name: string) => {
    const m = new RegExp(`^\\s*${name}\\s*=\\s*"(\\d+)"`, "m").exec(text);
    if (m === null) throw new Error(`fly.toml has no ${name}`);
    return m[1]!;
  };
  return { tickMs: get("TICK_MS"), electionTicks: get("ELECTION_TICKS") };
}

function sh(...cmd: string[]): string {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

function labNamespaces(): string[] {
  const r = Bun.spawnSync(["ip", "netns", "list"], { stdout: "pipe", stderr: "pipe" });
  return r.stdout
    .toString()
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith("pxgeo-"));
}

function deleteNamespaces(): void {
  for (const n of labNamespaces()) Bun.spawnSync(["ip", "netns", "del", n]);
}

function buildNetwork(): void {
  deleteNamespaces(); // left over from a run that was killed with -9
  sh("ip", "netns", "add", HUB);
  sh("ip", "-n", HUB, "link", "add", "br0", "type", "bridge");
  sh("ip", "-n", HUB, "link", "set", "br0", "up");
  for (const r of REGIONS) {
    sh("ip", "netns", "add", ns(r));
    sh("ip", "link", "add", `v-${r}`, "netns", HUB, "type", "veth", "peer", "name", "eth0", "netns", ns(r));
    sh("ip", "-n", HUB, "link", "set", `v-${r}`, "master", "br0");
    sh("ip", "-n", HUB, "link", "set", `v-${r}`, "up");
    sh("ip", "-n", ns(r), "addr", "add", `${ip(r)}/64`, "dev", "eth0", "nodad");
    sh("ip", "-n", ns(r), "link", "set", "eth0", "up");
    sh("ip", "-n", ns(r), "link", "set", "lo", "up");
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

const children = new Set<Subprocess>();

function spawnIn(r: Region, cmd: string[], env: Record<string, string>, logFile: string | null): Subprocess<"pipe", "pipe", "pipe"> {
  const out = logFile === null ? "pipe" : openSync(logFile, "a");
  const p = Bun.spawn(["ip", "netns", "exec", ns(r), ...cmd], {
    env: { PATH: process.env.PATH ?? "/usr/bin:/bin", ...env },
    stdin: "pipe",
    stdout: out as "pipe",
    stderr: out as "pipe",
    cwd: ROOT,
  }) as Subprocess<"pipe", "pipe", "pipe">;
  children.add(p);
  void p.exited.then(() => children.delete(p));
  return p;
}

async function startRelay(r: Region): Promise<void> {
  const routes: RelayRoute[] = REGIONS.filter((p) => p !== r).map((p) => ({
    listen: relayAddr(p),
    to: nodeAddr(p),
    oneWayMs: RTT_MS[r][p] / 2,
    jitter: JITTER,
  }));
  const p = spawnIn(r, [BUN, join(ROOT, "tests/lab/relay.ts"), JSON.stringify(routes)], {}, null);
  const reader = p.stdout.getReader();
  const { value } = await reader.read();
  reader.releaseLock();
  if (!new TextDecoder().decode(value).includes("ready")) throw new Error(`relay in ${r} did not start: ${await new Response(p.stderr).text()}`);
  relays.set(r, p);
}

const relays = new Map<Region, Subprocess<"pipe", "pipe", "pipe">>();

/** Cuts region `r` off (or heals it): every relay route into and out of it blocks (relay.ts). */
function partition(r: Region, verb: "block" | "unblock"): void {
  const say = (where: Region, listen: string) => {
    const p = relays.get(where)!;
    p.stdin.write(`${verb} ${listen}\n`);
    p.stdin.flush();
  };
  for (const p of REGIONS) {
    if (p === r) continue;
    say(r, relayAddr(p)); // r's links out
    say(p, relayAddr(r)); // everyone's link into r
  }
}

interface LabNode {
  region: Region;
  proc: Subprocess | null;
  dataDir: string;
  log: string;
}

const nodes = new Map<Region, LabNode>();
let clusterKey = "";
let placement: "latency" | "off" = "off";

function startNode(r: Region): void {
  const n = nodes.get(r)!;
  const { tickMs, electionTicks } = flyTiming();
  const peers = REGIONS.map((p) => `${p}=${p === r ? nodeAddr(r) : relayAddr(p)}`).join(",");
  n.proc = spawnIn(
    r,
    [BUN, join(ROOT, "main.ts"), "serve"],
    {
      NODE_ID: r,
      REGION: r,
      RPC_ADDR: nodeAddr(r),
      DATA_DIR: n.dataDir,
      PEERS: peers,
      CLUSTER_KEY: clusterKey,
      TICK_MS: tickMs,
      ELECTION_TICKS: electionTicks,
      LEADER_PLACEMENT: placement,
      DEBUG_ADDR: `[${ip(r)}]:9100`,
      // The lab's addresses exist only inside its namespaces, and its clients carry no token: once
      // client auth refuses open non-loopback listeners (issue 9 §5), this says "on purpose".
      INSECURE_CLIENTS: "1",
      LOG_LEVEL: "info",
    },
    n.log,
  );
}

async function stopNode(r: Region, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  const n = nodes.get(r)!;
  if (n.proc === null) return;
  n.proc.kill(signal);
  await n.proc.exited;
  n.proc = null;
}

// ---------------------------------------------------------------------------------------------
// Agents: one client per region, inside the region's namespace

class Agent {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly proc: Subprocess<"pipe", "pipe", "pipe">;
  readonly ready: Promise<unknown>;

  constructor(readonly region: Region) {
    this.proc = spawnIn(region, [BUN, join(ROOT, "tests/lab/agent.ts")], {}, null);
    this.ready = new Promise((resolve, reject) => this.waiting.set(0, { resolve, reject }));
    void this.readLines();
  }

  private async readLines(): Promise<void> {
    let buf = "";
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stdout) {
      buf += decoder.decode(chunk);
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const msg = JSON.parse(line) as { id: number; result?: unknown; error?: string };
        const w = this.waiting.get(msg.id);
        this.waiting.delete(msg.id);
        if (msg.error !== undefined) w?.reject(new Error(`agent ${this.region}: ${msg.error}`));
        else w?.resolve(msg.result);
      }
    }
    for (const w of this.waiting.values()) w.reject(new Error(`agent ${this.region} exited`));
  }

  call<T>(cmd: AgentRequest): Promise<T> {
    const id = this.next++;
    const p = new Promise<T>((resolve, reject) => this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject }));
    this.proc.stdin.write(`${JSON.stringify({ ...cmd, id })}\n`);
    this.proc.stdin.flush();
    return p;
  }
}

const agents = new Map<Region, Agent>();

interface StatusReply {
  id: string;
  role: string;
  term: number;
  leader: string | null;
  placement?: { decisions?: { at: string; decision: string; reason: string }[] } & Record<string, unknown>;
}

async function status(r: Region): Promise<StatusReply | null> {
  try {
    return await agents.get(r)!.call<StatusReply | null>({ op: "status", addr: nodeAddr(r) });
  } catch {
    return null;
  }
}

const live = () => REGIONS.filter((r) => nodes.get(r)?.proc !== null);

/** The leader every live node agrees on. */
async function agreedLeader(): Promise<{ leader: Region; term: number } | undefined> {
  const views = await Promise.all(live().map((r) => status(r)));
  const first = views[0];
  if (first == null || first.leader === null) return undefined;
  if (!views.every((v) => v !== null && v.leader === first.leader && v.term === first.term)) return undefined;
  return { leader: first.leader as Region, term: first.term };
}

async function transferTo(r: Region): Promise<number> {
  await waitFor(`leadership in ${r}`, async () => {
    const now = await agreedLeader();
    if (now?.leader === r) return true;
    await agents.get(r)!.call({ op: "transfer", addr: nodeAddr(r), to: r });
    return false;
  }, 30_000, 200);
  return (await agreedLeader())!.term;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

const pct = (n: number, of: number) => `${of === 0 ? "-" : Math.round((100 * n) / of)}%`;
const fmt = (ms: number) => (Number.isFinite(ms) ? ms.toFixed(0) : "-");

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(" | ")} |`;
  return [line(rows[0]!), line(widths.map((w) => "-".repeat(w))), ...rows.slice(1).map(line)].join("\n");
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      writes: { type: "string", default: "200" },
      "steady-s": { type: "string", default: "30" },
      "skip-placement": { type: "boolean", default: false },
      "only-placement": { type: "boolean", default: false },
      leaders: { type: "string", default: "lhr,fra,ord,jnb,sin" },
      diagnose: { type: "boolean", default: false },
      "keep-logs": { type: "boolean", default: false },
      "only-failover": { type: "boolean", default: false },
      trials: { type: "string", default: "5" },
      "only-rejoin": { type: "boolean", default: false },
      "cut-s": { type: "string", default: "20" },
    },
  });
  const writes = Number(values.writes);
  const steadyMs = Number(values["steady-s"]) * 1000;
  if (process.getuid?.() !== 0) throw new Error("the lab creates network namespaces: run it as root");
  const dir = mkdtempSync(join(tmpdir(), "pxgeo-"));
  cleanupDir = values["keep-logs"] ? null : dir;
  clusterKey = randomBytes(24).toString("hex");
  const { tickMs, electionTicks } = flyTiming();
  console.log(`lab: namespaces pxgeo-{${REGIONS.join(",")}} + ${HUB}, IPv6 fd00:6e0::/64, user-space delay relays (±${JITTER * 100}% jitter)`);
  console.log(`lab: TICK_MS=${tickMs} ELECTION_TICKS=${electionTicks} (fly.toml), logs in ${dir}`);
  buildNetwork();
  await Promise.all(REGIONS.map((r) => startRelay(r)));
  for (const r of REGIONS) {
    nodes.set(r, { region: r, proc: null, dataDir: join(dir, `data-${r}`), log: join(dir, `${r}.log`) });
    agents.set(r, new Agent(r));
  }
  await Promise.all([...agents.values()].map((a) => a.ready));

  if (values["only-placement"]) return placementPhase();
  if (values["only-rejoin"]) return rejoinPhase(Number(values.trials), Number(values["cut-s"]) * 1000, steadyMs);
  if (values["only-failover"]) {
    const off = await failoverTrials("off", Number(values.trials));
    for (const r of REGIONS) await stopNode(r, "SIGTERM");
    const on = await failoverTrials("latency", Number(values.trials));
    console.log(`\nsummary (${values.trials} leader kills each, leader lhr killed with -9):`);
    console.log(table([["election ranking", "split votes (terms > 1 or > 1 candidate)", "terms used", "candidates", "kill → new leader ms (median, max)", "kill → write from every region ms (median, max)"], off, on]));
    return;
  }
  // Phase 1: placement off, every region leads in turn.
  placement = "off";
  const t0 = performance.now();
  for (const r of REGIONS) startNode(r);
  const first = await waitFor("a first leader", () => agreedLeader(), 60_000, 100);
  console.log(`first leader: ${first.leader} (term ${first.term}) ${((performance.now() - t0) / 1000).toFixed(1)} s after start`);

  const rows = [["leader", "floor ms", "p50 ms", "p99 ms", "p50/floor", "p99/floor", "failed", "term changes"]];
  let unplanned = 0;
  const diagnosis: string[] = [];
  for (const r of values.leaders.split(",") as Region[]) {
    if (!REGIONS.includes(r)) throw new Error(`--leaders: unknown region ${r}`);
    const before = await transferTo(r);
    const sampling = values.diagnose
      ? agents.get(r)!.call<Record<string, PeerSamples>>({ op: "samplePeers", debugUrl: debugUrl(r), everyMs: 20, endAt: Date.now() + (writes * floorMs(r) * 1.1) })
      : null;
    const res = await agents.get(r)!.call<{ ms: number[]; failed: number }>({ op: "writes", addr: nodeAddr(r), count: writes, prefix: `w-${r}` });
    if (sampling !== null) {
      const peers = await sampling;
      for (const [id, p] of Object.entries(peers).sort((a, b) => RTT_MS[r][a[0] as Region] - RTT_MS[r][b[0] as Region])) {
        diagnosis.push(`  leader ${r} → ${id}: link ${RTT_MS[r][id as Region]} ms, request RTT ${p.rttMs?.toFixed(0) ?? "-"} ms, ` +
          `≥ 4 requests in flight in ${pct(p.fourOrMore, p.samples)} of samples, messages queued in ${pct(p.queued, p.samples)}, max in flight ${p.maxInflight}`);
      }
    }
    const after = (await agreedLeader())?.term ?? NaN;
    const changes = after - before;
    unplanned += changes;
    const sorted = [...res.ms].sort((a, b) => a - b);
    const f = floorMs(r);
    const p50 = percentile(sorted, 0.5);
    const p99 = percentile(sorted, 0.99);
    rows.push([r, String(f), fmt(p50), fmt(p99), (p50 / f).toFixed(2), (p99 / f).toFixed(2), String(res.failed), String(changes)]);
    console.log(`  ${r}: p50 ${fmt(p50)} ms, p99 ${fmt(p99)} ms (floor ${f} ms), ${res.failed} failed, ${changes} term changes`);
  }
  console.log(`\n${writes} sequential writes from a client in the leader's region to the leader:\n${table(rows)}\n`);
  if (diagnosis.length > 0) console.log(`the leader's peer transport during the writes (sampled every 20 ms):\n${diagnosis.join("\n")}\n`);

  // Phase 2: steady state.
  const steadyBefore = await waitFor("a leader", () => agreedLeader(), 10_000, 100);
  await Bun.sleep(steadyMs);
  const steadyAfter = await waitFor("a leader", () => agreedLeader(), 10_000, 100);
  console.log(`steady state: ${steadyAfter.term - steadyBefore.term} term changes in ${steadyMs / 1000} s idle (plus ${unplanned} during the write runs)`);

  // Phase 3: leader kill → next committed write from every surviving region.
  await transferTo("lhr");
  const killed: Region = "lhr";
  const survivors = REGIONS.filter((r) => r !== killed);
  const endAt = Date.now() + 25_000;
  const runs = survivors.map((r) => agents.get(r)!.call<{ samples: WriteSample[] }>({ op: "untilWrite", addr: nodeAddr(r), prefix: `f-${r}`, endAt }));
  await Bun.sleep(2000);
  const killAt = Date.now();
  await stopNode(killed, "SIGKILL");
  const results = await Promise.all(runs);
  // An answer to a write the old leader committed may still be on its way for one one-way delay.
  const inFlightMs = Math.max(...survivors.map((r) => RTT_MS[killed][r])) / 2 + 10;
  const fo = [["client region", "kill → next committed write (ms)"]];
  for (const [i, r] of survivors.entries()) {
    const next = results[i]!.samples.find((s) => s.ok && s.end > killAt + inFlightMs);
    fo.push([r, next === undefined ? "none in 25 s" : String(next.end - killAt)]);
  }
  const newLeader = await waitFor("a new leader", () => agreedLeader(), 10_000, 100);
  console.log(`\nleader ${killed} killed (-9); new leader ${newLeader.leader}:\n${table(fo)}\n`);
  startNode(killed);
  await waitFor(`${killed} back`, async () => (await status(killed))?.leader != null, 30_000, 200);

  if (values["skip-placement"]) return;
  console.log("restarting every node with latency-aware leader placement on (the default)");
  for (const r of REGIONS) await stopNode(r, "SIGTERM");
  await placementPhase();
}

/**
 * Rejoin after a partition, with the default configuration (placement on): a follower region cut
 * off for `cutMs` then healed (time from the heal until a write from that region commits), and
 * the leader's region cut off and healed (the same for the old leader's region). Then steady
 * state: term changes in `steadyMs` with nothing happening.
 */
async function rejoinPhase(trials: number, cutMs: number, steadyMs: number): Promise<void> {
  placement = "latency";
  const t0 = performance.now();
  for (const r of REGIONS) startNode(r);
  const first = await waitFor("a first leader", () => agreedLeader(), 60_000, 100);
  console.log(`first leader: ${first.leader} (term ${first.term}) ${((performance.now() - t0) / 1000).toFixed(1)} s after start`);
  const rows = [["cut off", "role", "heal → next committed write from that region (ms)", "terms during cut + rejoin", "writes refused/failed in that region after the heal"]];
  for (let t = 1; t <= trials; t++) {
    for (const kind of ["follower", "leader"] as const) {
      await transferTo("lhr");
      const cut: Region = kind === "leader" ? "lhr" : "jnb";
      const before = (await agreedLeader())!;
      const endAt = Date.now() + cutMs + 30_000;
      const run = agents.get(cut)!.call<{ samples: WriteSample[] }>({ op: "untilWrite", addr: nodeAddr(cut), prefix: `p${t}${kind}-${cut}`, endAt });
      await Bun.sleep(1000);
      partition(cut, "block");
      await Bun.sleep(cutMs);
      partition(cut, "unblock");
      const healAt = Date.now();
      const samples = (await run).samples;
      const next = samples.find((x) => x.ok && x.start >= healAt - 3000 && x.end > healAt);
      const failedAfter = samples.filter((x) => !x.ok && x.end > healAt && (next === undefined || x.end <= next.end)).length;
      const after = await waitFor("one leader again", () => agreedLeader(), 30_000, 200);
      rows.push([cut, kind, next === undefined ? "none in 30 s" : String(next.end - healAt), String(after.term - before.term), String(failedAfter)]);
      console.log(`  trial ${t}: ${kind} ${cut} cut ${cutMs / 1000} s: next committed write ${next === undefined ? "none" : next.end - healAt} ms after the heal; leader now ${after.leader}, terms +${after.term - before.term}`);
    }
  }
  console.log(`\n${table(rows)}\n`);
  await transferTo("lhr");
  const steadyBefore = (await agreedLeader())!;
  await Bun.sleep(steadyMs);
  const steadyAfter = await waitFor("a leader", () => agreedLeader(), 10_000, 100);
  console.log(`steady state (placement on, leader ${steadyBefore.leader}): ${steadyAfter.term - steadyBefore.term} term changes in ${steadyMs / 1000} s, leader ${steadyAfter.leader}`);
}

/** Bytes in each node's log now, to count what it logs after. */
function logSizes(): Map<Region, number> {
  return new Map(REGIONS.map((r) => [r, statSync(nodes.get(r)!.log, { throwIfNoEntry: false })?.size ?? 0]));
}

function logSince(r: Region, from: number): string {
  return readFileSync(nodes.get(r)!.log).subarray(from).toString();
}

/** Failover trials: kill the leader (lhr) N times; split votes, timeouts fired, time to the next write. */
async function failoverTrials(mode: "latency" | "off", trials: number): Promise<string[]> {
  placement = mode;
  const t0 = performance.now();
  for (const r of REGIONS) if (nodes.get(r)!.proc === null) startNode(r);
  const first = await waitFor("a first leader", () => agreedLeader(), 60_000, 100);
  console.log(`\n[ranking ${mode}] first leader ${first.leader} (term ${first.term}) ${((performance.now() - t0) / 1000).toFixed(1)} s after start`);
  const killed: Region = "lhr";
  const survivors = REGIONS.filter((r) => r !== killed);
  let splits = 0;
  let timeouts = 0;
  let terms = 0;
  let candidatesAll = 0;
  const leaderMs: number[] = [];
  const allMs: number[] = [];
  for (let t = 1; t <= trials; t++) {
    await transferTo(killed);
    if (mode === "latency") {
      // Two report rounds: every survivor holds the leader's ranking and has set its window.
      await waitFor("every survivor's election window", async () => {
        const views = await Promise.all(survivors.map((r) => status(r)));
        return views.every((v) => v?.placement?.electionWindowTicks != null && v.placement.electionRankingFrom === killed) && (await agreedLeader())?.leader === killed;
      }, 60_000, 500);
    } else {
      await Bun.sleep(3000);
    }
    const before = (await agreedLeader())!;
    const endAt = Date.now() + 15_000;
    const runs = survivors.map((r) => agents.get(r)!.call<{ samples: WriteSample[] }>({ op: "untilWrite", addr: nodeAddr(r), prefix: `k${mode}${t}-${r}`, endAt }));
    await Bun.sleep(1000);
    const sizes = logSizes();
    const candidatesBefore = await candidacies(survivors);
    const killAt = Date.now();
    const killPerf = performance.now();
    await stopNode(killed, "SIGKILL");
    const next = await waitFor("a new leader", async () => {
      const views = await Promise.all(survivors.map((r) => status(r)));
      const l = views[0]?.leader;
      return l != null && l !== killed && views.every((v) => v?.leader === l) ? { leader: l, term: views[0]!.term } : undefined;
    }, 30_000, 50);
    const electedMs = performance.now() - killPerf;
    const candidates = (await candidacies(survivors)) - candidatesBefore;
    const results = await Promise.all(runs);
    const inFlightMs = Math.max(...survivors.map((r) => RTT_MS[killed][r])) / 2 + 10;
    const perRegion = survivors.map((r, i) => results[i]!.samples.find((x) => x.ok && x.end > killAt + inFlightMs)?.end ?? Infinity).map((end) => end - killAt);
    const fired = survivors.reduce((n, r) => n + (logSince(r, sizes.get(r)!).match(/starting an election: election timeout/g)?.length ?? 0), 0);
    const used = next.term - before.term;
    if (used > 1 || candidates > 1) splits++;
    terms += used;
    candidatesAll += candidates;
    timeouts += fired;
    leaderMs.push(electedMs);
    allMs.push(Math.max(...perRegion));
    console.log(`  trial ${t}: new leader ${next.leader} after ${electedMs.toFixed(0)} ms, terms used ${used}, candidates ${candidates}, election timeouts logged ${fired}, ` +
      `next committed write: ${survivors.map((r, i) => `${r} ${fmt(perRegion[i]!)}`).join(", ")} ms`);
    startNode(killed);
    await waitFor(`${killed} back`, async () => (await status(killed))?.leader != null, 30_000, 200);
  }
  const med = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);
  return [mode === "off" ? "off (today)" : "on (rank)", `${splits} of ${trials}`, String(terms), String(candidatesAll), `${fmt(med(leaderMs))}, ${fmt(Math.max(...leaderMs))}`, `${fmt(med(allMs))}, ${fmt(Math.max(...allMs))}`];
}

/** Phase 4: latency-aware placement on, from a bad start, and back after losing the best leader. */
async function placementPhase(): Promise<void> {
  placement = "latency";
  for (const r of REGIONS) startNode(r);
  await waitFor("a leader", () => agreedLeader(), 60_000, 100);
  await transferTo("sin");
  const moveStart = performance.now();
  console.log("bad start: leader forced to sin (floor 183 ms)");
  const moved = await waitFor("placement to move the leader to lhr", async () => {
    const l = await agreedLeader();
    return l?.leader === "lhr" ? l : undefined;
  }, 120_000, 500);
  console.log(`  placement moved the leader sin → lhr after ${((performance.now() - moveStart) / 1000).toFixed(1)} s (term ${moved.term})`);
  await stopNode("lhr", "SIGKILL");
  const lossAt = performance.now();
  const interim = await waitFor("a leader after losing lhr", async () => {
    const l = await agreedLeader();
    return l !== undefined && l.leader !== "lhr" ? l : undefined;
  }, 30_000, 100);
  console.log(`  lhr killed: ${interim.leader} elected after ${((performance.now() - lossAt) / 1000).toFixed(1)} s`);
  const second = await waitFor("placement to settle without lhr (fra is best)", async () => {
    const l = await agreedLeader();
    return l?.leader === "fra" ? l : undefined;
  }, 120_000, 500);
  console.log(`  without lhr the leader is ${second.leader} after ${((performance.now() - lossAt) / 1000).toFixed(1)} s`);
  startNode("lhr");
  const back = performance.now();
  await waitFor("placement to return the leader to lhr", async () => {
    const l = await agreedLeader();
    return l?.leader === "lhr" ? l : undefined;
  }, 150_000, 500);
  console.log(`  lhr restarted: leader back in lhr after ${((performance.now() - back) / 1000).toFixed(1)} s`);
  // Every node's decision log (each leader keeps its own), in time order.
  await Bun.sleep(7000); // one report round, so the new leader's view is complete
  const log: { at: string; node: string; decision: string; reason: string; outcome: string }[] = [];
  for (const r of REGIONS) {
    const st = await status(r);
    for (const d of (st?.placement?.decisions ?? []) as { at: string; decision: string; reason: string; outcome: string }[]) log.push({ node: r, ...d });
    if (r === "lhr") console.log(`\nplacement state at lhr (the leader):\n${JSON.stringify(st?.placement ?? null, null, 2)}`);
  }
  log.sort((a, b) => (a.at < b.at ? -1 : 1));
  console.log("\nplacement decisions, all nodes:");
  for (const d of log) console.log(`  ${d.at} ${d.node}: ${d.decision}: ${d.reason} (${d.outcome})`);
}

let cleanupDir: string | null = null;
let tornDown = false;
async function teardown(): Promise<void> {
  if (tornDown) return;
  tornDown = true;
  for (const p of [...children]) p.kill("SIGKILL");
  await Promise.all([...children].map((p) => p.exited));
  deleteNamespaces();
  if (cleanupDir !== null) rmSync(cleanupDir, { recursive: true, force: true });
}

for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    console.error(`\n${sig}: tearing the lab down`);
    void teardown().then(() => process.exit(130));
  });
}

let code = 0;
try {
  await main();
} catch (err) {
  console.error(`lab failed: ${err instanceof Error ? err.message : String(err)}`);
  if (cleanupDir !== null) console.error(`logs kept in ${cleanupDir}`);
  cleanupDir = null;
  code = 1;
} finally {
  await teardown();
}
process.exit(code);
