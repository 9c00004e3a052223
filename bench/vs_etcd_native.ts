// phalanx beside etcd, each driven the way its users' programs drive it, by ONE Go load generator
// (bench/loadgen): etcd 3.4 through its own Go client (clientv3, gRPC), phalanx through an
// equivalent HTTP/2 client (h2c, raw values). 3 members each on loopback, both clusters up for the
// whole run, fsync on for both, the 9 loads of issue 10, the two systems alternated test by test
// (and which goes first alternated round by round), medians over the rounds, ratio = phalanx / etcd.
//
// Usage: bun bench/vs_etcd_native.ts [--duration 5] [--warmup 1] [--warm-round 15] [--rounds 3] [--only <text>]
//          [--conns 1] [--keys 10000] [--value-bytes 100] [--binary ./phalanx] [--token <t>]
//          [--phalanx-env KEY=VALUE ...] [--json results.jsonl] [--cpu-prof <dir>]
//   (npm run bench:etcd -- <flags>)
// --warm-round: seconds of every test on each system before round 1, not recorded. Bun's JIT
// compiles a new load's hot code for about half a minute on its own threads (JITWorker: 9-12 % of a
// core per node in the first 5 s of a write load, 4-6 % at 10-25 s, none after 30 s; measured
// 2026-12-02), CPU a long-running server no longer spends and that the nodes lose meanwhile; the
// member table prints what is left of it. After 15 s of each of the 9 tests (2¼ minutes of load
// per system) it was still 1-8 µs per read and 8-53 per write (the loads take turns, and each
// brings code of its own); 0 measures from cold.
// --cpu-prof profiles each phalanx node (Bun's sampling profiler, markdown, <dir>/<node id>/, written
// when the nodes stop at the end); narrow the run with --only to profile one load.
// Installs what is missing from Debian (golang-go, golang-etcd-server-dev, golang-golang-x-net-dev,
// etcd-server; needs root), builds the generator into bench/.build (GOPATH mode, offline).
import { spawnSync } from "bun";
import { cpSync, mkdirSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { type Cluster, ETCD_BIN, GO_BIN, GOCODE, REPO, ensureDebian, exited, median, parseEnvPairs, startEtcd, startPhalanx, stopChildren, track, workDir } from "./cluster.ts";

const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    duration: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    "warm-round": { type: "string", default: "15" },
    rounds: { type: "string", default: "3" },
    only: { type: "string", default: "" },
    conns: { type: "string", default: "1" },
    keys: { type: "string", default: "10000" },
    "value-bytes": { type: "string", default: "100" },
    binary: { type: "string" },
    token: { type: "string" },
    "phalanx-env": { type: "string", multiple: true, default: [] },
    json: { type: "string" },
    "cpu-prof": { type: "string" },
  },
  strict: true,
});

const BUILD = join(REPO, "bench", ".build");
const LOADGEN = join(BUILD, "loadgen");

/** The generator's source goes into a GOPATH of its own beside Debian's, and builds offline. */
function buildLoadgen(): void {
  ensureDebian([
    { pkg: "golang-go", file: GO_BIN },
    { pkg: "golang-etcd-server-dev", file: join(GOCODE, "src/go.etcd.io/etcd/clientv3/client.go") },
    { pkg: "golang-golang-x-net-dev", file: join(GOCODE, "src/golang.org/x/net/http2/transport.go") },
    { pkg: "etcd-server", file: ETCD_BIN },
  ]);
  const gopath = join(BUILD, "gopath");
  const pkgDir = join(gopath, "src", "phalanxbench", "loadgen");
  rmSync(pkgDir, { recursive: true, force: true });
  mkdirSync(pkgDir, { recursive: true });
  const src = join(REPO, "bench", "loadgen");
  for (const f of readdirSync(src)) if (f.endsWith(".go")) cpSync(join(src, f), join(pkgDir, f));
  const env = { ...process.env, GO111MODULE: "off", GOPATH: `${gopath}:${GOCODE}`, GOCACHE: join(BUILD, "gocache"), GOFLAGS: "" };
  process.stderr.write("building bench/loadgen (go build, GOPATH mode)\n");
  const r = spawnSync([GO_BIN, "build", "-o", LOADGEN, "."], { cwd: pkgDir, env, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode !== 0) throw new Error(`go build failed (exit ${r.exitCode})`);
}

// ---- results -----------------------------------------------------------------------------------------

/** One measured phase, as bench/loadgen prints it (result in load.go). */
interface Phase {
  round: number;
  test: string;
  system: "etcd" | "phalanx";
  clients: number;
  leader: string;
  leaderChanged: boolean;
  ops: number;
  seconds: number;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  lastError: string;
  genCpuUsPerOp: number;
  serverCpuUsPerOp: number;
  /** Per member, leader first, then in member order (leader+1 is the "→ follower" target). */
  memberCpuUsPerOp: number[] | null;
  /** Of serverCpuUsPerOp, the JIT compiler threads' (JavaScriptCore's JITWorker; 0 for etcd, absent from older generators). */
  serverJitCpuUsPerOp?: number;
}

const int = (n: number) => (Number.isFinite(n) ? Math.round(n).toLocaleString("en-US") : "n/a");
const ms = (n: number) => (Number.isFinite(n) ? (n < 10 ? n.toFixed(2) : n.toFixed(1)) : "n/a");
const ratio = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : "n/a");

function table(phases: Phase[]): string {
  const tests = [...new Set(phases.map((p) => p.test))];
  const rounds = new Set(phases.map((p) => p.round)).size;
  const lines = [
    `${rounds} round(s); each cell is the median over the rounds; ratio = phalanx / etcd of the median ops/s, then the ratio of each round.`,
    "CPU is µs of CPU time per completed request: servers = the 3 members of that system together; generator = the Go load generator.",
    "",
    "| test | etcd ops/s | phalanx ops/s | ratio | per round | p50 ms etcd · phalanx | p99 ms etcd · phalanx | server CPU µs/op etcd · phalanx | generator CPU µs/op etcd · phalanx |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  const notes: string[] = [];
  for (const t of tests) {
    const of = (s: Phase["system"]) => phases.filter((p) => p.test === t && p.system === s);
    const e = of("etcd");
    const p = of("phalanx");
    const med = (xs: Phase[], f: (x: Phase) => number) => median(xs.map(f));
    const perRound = e
      .map((x) => {
        const y = p.find((q) => q.round === x.round);
        return y === undefined || x.opsPerSec === 0 ? "n/a" : ratio(y.opsPerSec / x.opsPerSec);
      })
      .join(" · ");
    const pair = (f: (x: Phase) => number, fmt: (n: number) => string) => `${fmt(med(e, f))} · ${fmt(med(p, f))}`;
    lines.push(
      `| ${t} | ${int(med(e, (x) => x.opsPerSec))} | ${int(med(p, (x) => x.opsPerSec))} | ${ratio(med(p, (x) => x.opsPerSec) / med(e, (x) => x.opsPerSec))} | ${perRound} ` +
        `| ${pair((x) => x.p50Ms, ms)} | ${pair((x) => x.p99Ms, ms)} | ${pair((x) => x.serverCpuUsPerOp, int)} | ${pair((x) => x.genCpuUsPerOp, int)} |`,
    );
    for (const x of [...e, ...p]) {
      if (x.errors > 0) notes.push(`${x.system}, ${t}, round ${x.round}: ${x.errors} failed requests (not counted), last: ${x.lastError}`);
      if (x.leaderChanged) notes.push(`${x.system}, ${t}, round ${x.round}: the leader changed during the phase`);
    }
  }
  lines.push(
    "",
    "Server CPU split by member (µs per request, medians): the leader, then leader+1 (the follower that \"→ follower\" tests send to), then leader+2;",
    "and of phalanx's, what its JIT compiler threads spent (a runtime still compiling its hot code is not yet in a long-running server's steady state).",
    "",
    "| test | etcd leader · leader+1 · leader+2 | phalanx leader · leader+1 · leader+2 | phalanx JIT compiling |",
    "|---|---|---|---|",
  );
  for (const t of tests) {
    const split = (s: Phase["system"]) => {
      const xs = phases.filter((p) => p.test === t && p.system === s && p.memberCpuUsPerOp !== null);
      const n = Math.max(0, ...xs.map((x) => x.memberCpuUsPerOp!.length));
      return Array.from({ length: n }, (_, i) => int(median(xs.map((x) => x.memberCpuUsPerOp![i]!)))).join(" · ");
    };
    const jit = phases.filter((p) => p.test === t && p.system === "phalanx").map((x) => x.serverJitCpuUsPerOp ?? NaN);
    lines.push(`| ${t} | ${split("etcd")} | ${split("phalanx")} | ${int(median(jit))} |`);
  }
  if (notes.length > 0) lines.push("", ...notes.map((n) => `- ${n}`));
  return lines.join("\n");
}

// ---- run ---------------------------------------------------------------------------------------------

const { root, keep, interrupted } = workDir("phalanx-vs-etcd-native-");
let clusters: Cluster[] = [];
try {
  buildLoadgen();
  clusters = [
    await startEtcd(root),
    await startPhalanx(root, {
      ...(args.binary === undefined ? {} : { binary: args.binary }),
      ...(args["cpu-prof"] === undefined ? {} : { cpuProfDir: resolve(args["cpu-prof"]) }),
      env: parseEnvPairs(args["phalanx-env"]),
    }),
  ];
  const [etcd, phalanx] = clusters as [Cluster, Cluster];
  process.stderr.write(`phalanx nodes: ${phalanx.addrs.map((a, i) => `n${i + 1}=${a}`).join(" ")}\n`);
  const pids = (c: Cluster) => c.procs.map((p) => p.pid).join(",");
  // prettier-ignore
  const gen = track(Bun.spawn([
    LOADGEN,
    "--etcd", etcd.addrs.join(","), "--etcd-pids", pids(etcd),
    "--phalanx", phalanx.addrs.join(","), "--phalanx-pids", pids(phalanx),
    "--phalanx-token", args.token ?? "",
    "--duration", args.duration, "--warmup", args.warmup, "--warm-round", args["warm-round"], "--rounds", args.rounds, "--only", args.only,
    "--conns", args.conns, "--keys", args.keys, "--value-bytes", args["value-bytes"],
  ], { stdout: "pipe", stderr: "inherit" }));
  const out = await new Response(gen.stdout).text();
  const code = await gen.exited;
  const down = clusters.map(exited).filter((x) => x !== null);
  if (code !== 0) throw new Error(`load generator exited with ${code}${down.length > 0 ? `; ${down.join("; ")}` : ""}`);
  const phases = out
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Phase);
  if (args.json !== undefined) writeFileSync(args.json, out);
  const header =
    `3 members each on loopback, fsync on, ${args["value-bytes"]}-byte values over ${args.keys} keys (all written first), closed loop, ` +
    `a warm round of ${args["warm-round"]} s per test and system first (not recorded), ` +
    `${args.warmup} s warm-up + ${args.duration} s measured per phase, ${args.conns} HTTP/2 connection(s) per member per system. ` +
    `etcd ${spawnSync([ETCD_BIN, "--version"]).stdout.toString().split("\n")[0]!.replace("etcd Version: ", "")} via clientv3; ` +
    `phalanx ${args.binary ?? "bun main.ts"} via h2c, raw values.`;
  process.stdout.write(`${header}\n\n${table(phases)}\n`);
  await stopChildren();
  if (args["cpu-prof"] !== undefined) process.stderr.write(`CPU profiles of the phalanx nodes: ${resolve(args["cpu-prof"])}/<node id>/\n`);
} catch (err) {
  keep();
  // After Ctrl-C the children were killed under the run: that failure is ours, not news.
  if (!interrupted()) process.stderr.write(`vs_etcd_native: ${err instanceof Error ? err.message : String(err)} (logs kept in ${root})\n`);
  await stopChildren();
  process.exitCode = 1;
}
