// Writes and linearizable reads, phalanx beside etcd, in one run on this machine: 3 etcd members on
// loopback, then a 3-node phalanx cluster, each driven by the same closed-loop load as
// `phalanx bench` (src/cli/load.ts: one request in flight per client, 128-byte values over 1,000
// keys) against its leader. Only one system runs at a time; every child is killed on the way out.
//
// Usage: node_modules/.bin/bun bench/vs_etcd.ts [--duration 5] [--binary ./phalanx]
//   --binary runs the compiled binary; by default the nodes run `bun main.ts serve` from this checkout.
// etcd comes from Debian's etcd-server (installed with apt-get when missing; needs root).
//
// etcd is driven through its HTTP/1.1 JSON gateway (POST /v3/kv/put, /v3/kv/range), which costs
// it JSON/base64 translation and a loopback gRPC hop per request on top of its gRPC API; phalanx
// through its own HTTP/2 JSON API, as `phalanx bench` does. REFERENCE.md's Go-client figures for
// etcd are printed beside them for that reason.

import { type Subprocess, spawnSync } from "bun";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { ApiClient } from "../src/cli/client.ts";
import { type LoadOp, type LoadResult, runLoad } from "../src/cli/load.ts";

const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: { duration: { type: "string" }, binary: { type: "string" } },
  strict: true,
});
const DURATION_S = Number(args.duration ?? 5);
if (!(DURATION_S > 0 && DURATION_S <= 600)) throw new Error("--duration must be in (0, 600] seconds");
const REPO = join(import.meta.dir, "..");
const KEYS = 1000;
const VALUE = "x".repeat(128);
const WARMUP_S = 3;
const START_TIMEOUT_MS = 30_000;

interface Load {
  name: string;
  concurrency: number;
  reads: number;
  /** etcd 3.4.23 with its Go client, same machine type (REFERENCE.md). */
  reference: string;
}
const LOADS: Load[] = [
  { name: "writes, 1 client", concurrency: 1, reads: 0, reference: "1,380/s (p50 0.70 ms)" },
  { name: "writes, 16 clients", concurrency: 16, reads: 0, reference: "4,970/s" },
  { name: "writes, 64 clients", concurrency: 64, reads: 0, reference: "8,900/s" },
  { name: "linearizable reads, 64 clients", concurrency: 64, reads: 1, reference: "10,500/s" },
];

interface Measured {
  load: LoadResult;
  /** CPU time of the three server processes per successful request (µs); null off Linux. */
  serverCpuUsPerOp: number | null;
}

// ---- children: tracked from spawn to exit, killed on any way out ----------------------------------

const children = new Set<Subprocess>();
const root = mkdtempSync(join(tmpdir(), "phalanx-vs-etcd-"));
/** Set on failure: the servers' logs stay for a look. */
let keepLogs = false;

function spawnChild(cmd: string[], env: Record<string, string>, logFile: string): Subprocess {
  const child = Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: Bun.file(logFile), stderr: Bun.file(`${logFile}.err`) });
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

async function stopChildren(): Promise<void> {
  const running = [...children];
  for (const c of running) c.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.all(running.map((c) => c.exited)), new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  for (const c of children) c.kill("SIGKILL");
  await Promise.all(running.map((c) => c.exited));
}

process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
  if (!keepLogs) rmSync(root, { recursive: true, force: true });
});
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: stopping the servers\n`);
    void stopChildren().finally(() => process.exit(130));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `probe` until it yields a value, up to START_TIMEOUT_MS. */
async function waitFor<T>(what: string, probe: () => Promise<T | null>): Promise<T> {
  const deadline = performance.now() + START_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const v = await probe().catch(() => null);
    if (v !== null) return v;
    await sleep(200);
  }
  throw new Error(`timed out after ${START_TIMEOUT_MS / 1000} s waiting for ${what}`);
}

// ---- measuring ---------------------------------------------------------------------------------------

const CLK_TCK = Number(spawnSync(["getconf", "CLK_TCK"]).stdout.toString().trim()) || 100;

function cpuSeconds(pids: number[]): number | null {
  try {
    let ticks = 0;
    for (const pid of pids) {
      // Fields after the command name (which may hold spaces): utime and stime are 14th and 15th.
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    }
    return ticks / CLK_TCK;
  } catch {
    return null;
  }
}

async function measure(system: string, op: LoadOp, pids: number[]): Promise<Measured[]> {
  process.stderr.write(`${system}: warming up (${WARMUP_S} s of writes, 16 clients)\n`);
  await runLoad({ concurrency: 16, durationS: WARMUP_S, keys: KEYS, reads: 0, op });
  const out: Measured[] = [];
  for (const l of LOADS) {
    const cpu0 = cpuSeconds(pids);
    const load = await runLoad({ concurrency: l.concurrency, durationS: DURATION_S, keys: KEYS, reads: l.reads, op });
    const cpu1 = cpuSeconds(pids);
    const serverCpuUsPerOp = cpu0 === null || cpu1 === null || load.ops === 0 ? null : Math.round(((cpu1 - cpu0) * 1e6) / load.ops);
    process.stderr.write(
      `${system}: ${l.name}: ${load.opsPerSec} ops/s, p50 ${load.latencyMs.p50} ms, p99 ${load.latencyMs.p99} ms, ${load.errors} errors` +
        `${load.lastError === "" ? "" : ` (last: ${load.lastError})`}\n`,
    );
    out.push({ load, serverCpuUsPerOp });
  }
  return out;
}

// ---- etcd ----------------------------------------------------------------------------------------------

function ensureEtcd(): string {
  const found = Bun.which("etcd") ?? (existsSync("/usr/bin/etcd") ? "/usr/bin/etcd" : null);
  if (found !== null) return found;
  process.stderr.write("etcd not found: installing Debian's etcd-server (apt-get update, install)\n");
  for (const cmd of [["apt-get", "update"], ["apt-get", "install", "-y", "etcd-server"]]) {
    const r = spawnSync(cmd, { stdout: "inherit", stderr: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (exit ${r.exitCode}); install etcd-server by hand`);
  }
  const installed = Bun.which("etcd") ?? "/usr/bin/etcd";
  if (!existsSync(installed)) throw new Error("etcd-server installed but no etcd binary found");
  return installed;
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

async function etcdPost(base: string, path: string, body: unknown): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(5000),
  });
}

async function runEtcd(): Promise<Measured[]> {
  const etcd = ensureEtcd();
  const names = ["e1", "e2", "e3"];
  const client = (i: number) => `http://127.0.0.1:${23790 + i}`;
  const peer = (i: number) => `http://127.0.0.1:${23800 + i}`;
  const cluster = names.map((n, i) => `${n}=${peer(i)}`).join(",");
  const procs = names.map((name, i) => {
    const dir = join(root, "etcd", name);
    mkdirSync(dir, { recursive: true });
    return spawnChild(
      [
        etcd,
        "--name", name,
        "--data-dir", dir,
        "--listen-client-urls", client(i),
        "--advertise-client-urls", client(i),
        "--listen-peer-urls", peer(i),
        "--initial-advertise-peer-urls", peer(i),
        "--initial-cluster", cluster,
        "--initial-cluster-state", "new",
        "--initial-cluster-token", "phalanx-vs-etcd",
      ],
      {},
      join(root, `${name}.log`),
    );
  });
  // The leader is the member whose status names itself.
  const leader = await waitFor("an etcd leader", async () => {
    for (let i = 0; i < names.length; i++) {
      const res = await etcdPost(client(i), "/v3/maintenance/status", {});
      if (!res.ok) continue;
      const s = (await res.json()) as { header?: { member_id?: string }; leader?: string };
      if (s.leader !== undefined && s.leader === s.header?.member_id) return client(i);
    }
    return null;
  });
  process.stderr.write(`etcd: 3 members up, leader ${leader}\n`);
  const value = b64(VALUE);
  const op: LoadOp = async ({ key, read }) => {
    const res = read
      ? await etcdPost(leader, "/v3/kv/range", { key: b64(key) })
      : await etcdPost(leader, "/v3/kv/put", { key: b64(key), value });
    await res.arrayBuffer();
    return res.ok ? { ok: true } : { ok: false, error: `HTTP ${res.status}` };
  };
  try {
    return await measure("etcd", op, procs.map((p) => p.pid));
  } finally {
    await stopChildren();
  }
}

// ---- phalanx -------------------------------------------------------------------------------------------

async function runPhalanx(): Promise<Measured[]> {
  const ids = ["n1", "n2", "n3"];
  const rpc = (i: number) => `127.0.0.1:${23810 + i}`;
  const peers = ids.map((id, i) => `${id}=${rpc(i)}`).join(",");
  const key = randomBytes(24).toString("hex");
  const cmd = args.binary !== undefined ? [args.binary, "serve"] : [process.execPath, join(REPO, "main.ts"), "serve"];
  const procs = ids.map((id, i) =>
    spawnChild(
      cmd,
      {
        NODE_ID: id,
        DATA_DIR: join(root, "phalanx", id),
        RPC_ADDR: rpc(i),
        DEBUG_ADDR: `127.0.0.1:${23820 + i}`,
        PEERS: peers,
        CLUSTER_KEY: key,
      },
      join(root, `${id}.log`),
    ),
  );
  const probes = ids.map((_, i) => new ApiClient({ addrs: [rpc(i)], timeoutMs: 500 }));
  const leader = await waitFor("a phalanx leader", async () => {
    for (let i = 0; i < ids.length; i++) {
      const res = await probes[i]!.request("GET", "/v1/status").catch(() => null);
      if (res?.json?.role === "leader") return rpc(i);
    }
    return null;
  }).finally(() => Promise.all(probes.map((p) => p.close())));
  process.stderr.write(`phalanx: 3 nodes up, leader ${leader}\n`);
  const client = new ApiClient({ addrs: [leader], timeoutMs: 5000 });
  const op: LoadOp = async ({ key, read }) => {
    const path = `/v1/kv/${encodeURIComponent(key)}`;
    const res = read ? await client.request("GET", `${path}?consistency=linearizable`) : await client.request("PUT", path, { json: { value: VALUE } });
    return res.status === 200 || (read && res.status === 404) ? { ok: true } : { ok: false, error: `HTTP ${res.status}` };
  };
  try {
    return await measure("phalanx", op, procs.map((p) => p.pid));
  } finally {
    await client.close();
    await stopChildren();
  }
}

// ---- report ----------------------------------------------------------------------------------------------

function cell(m: Measured): string {
  return `${m.load.opsPerSec.toLocaleString("en-US")}/s (p50 ${m.load.latencyMs.p50} ms)`;
}

function report(etcd: Measured[], phalanx: Measured[]): string {
  const lines = [
    `3 nodes on loopback, fsync on, ${DURATION_S} s per load, one request in flight per client, 128-byte values over ${KEYS} keys.`,
    "etcd is driven through its HTTP/1.1 JSON gateway (extra JSON/base64 and a gRPC hop per request vs its Go client);",
    "the last column is REFERENCE.md's etcd figure with the Go client on this machine type, for context.",
    "",
    "| load | etcd 3.4 (JSON gateway) | phalanx | phalanx / etcd | server CPU µs/op (etcd · phalanx) | etcd Go client (REFERENCE.md) |",
    "|---|---|---|---|---|---|",
  ];
  LOADS.forEach((l, i) => {
    const e = etcd[i]!;
    const p = phalanx[i]!;
    const ratio = e.load.opsPerSec > 0 ? (p.load.opsPerSec / e.load.opsPerSec).toFixed(2) : "n/a";
    const cpu = `${e.serverCpuUsPerOp ?? "n/a"} · ${p.serverCpuUsPerOp ?? "n/a"}`;
    lines.push(`| ${l.name} | ${cell(e)} | ${cell(p)} | ${ratio}× | ${cpu} | ${l.reference} |`);
  });
  const errors = [...etcd, ...phalanx].reduce((n, m) => n + m.load.errors, 0);
  if (errors > 0) lines.push("", `${errors} failed requests in total (not counted above).`);
  return lines.join("\n");
}

try {
  const etcd = await runEtcd();
  const phalanx = await runPhalanx();
  process.stdout.write(`${report(etcd, phalanx)}\n`);
} catch (err) {
  keepLogs = true;
  process.stderr.write(`vs_etcd: ${err instanceof Error ? err.message : String(err)} (server logs kept in ${root})\n`);
  await stopChildren();
  process.exitCode = 1;
}
