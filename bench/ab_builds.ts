// Two (or more) phalanx builds side by side on one load: alternated pairs on fresh 3-node
// clusters, so a machine that swings between neighbouring runs (this one does, by up to half)
// moves both builds alike. Each run starts a cluster of one build, drives one load of
// bench/loadgen against it (a warm round, then one measured phase), and stops it; the order of the
// builds alternates pair by pair. Prints each run and the medians per build.
//
// A fresh cluster's JIT compiles the load's hot code for about half a minute (see
// bench/vs_etcd_native.ts): the warm round lasts 25 s by default, so a build is measured as a
// long-running server runs. Each run prints what its JIT threads still spent ("JIT", µs per op).
// With a 2 s warm round two builds compared inside the JIT's busiest time and the verdict could
// flip: the state record's fdatasync moved off the node's thread lost 4 of 5 pairs that way (-6 %)
// and was even in steady state (BENCHMARKS.md, stop 21).
//
// Usage: bun bench/ab_builds.ts --only "<load name>" [--pairs 4] [--duration 4] [--warm-round 25] <binary> <binary> ...
//   (the load names are bench/loadgen's, as `bun bench/vs_etcd_native.ts` prints them; build the
//   generator with that script once, and the binaries with ./compile.sh)
import { parseArgs } from "node:util";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { median, REPO, startPhalanx, stopChildren, track } from "./cluster.ts";

const { values: args, positionals: binaries } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    only: { type: "string" },
    pairs: { type: "string", default: "4" },
    duration: { type: "string", default: "4" },
    "warm-round": { type: "string", default: "25" },
  },
  allowPositionals: true,
  strict: true,
});
if (args.only === undefined || binaries.length < 2) throw new Error('usage: bun bench/ab_builds.ts --only "<load>" [--pairs 4] [--duration 4] <binary> <binary> ...');
const LOADGEN = join(REPO, "bench", ".build", "loadgen");
if (!(await Bun.file(LOADGEN).exists())) throw new Error(`${LOADGEN} is missing: run bun bench/vs_etcd_native.ts once to build it`);

interface Run {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  serverCpuUsPerOp: number;
  /** Of serverCpuUsPerOp, the JIT compiler threads' (bench/loadgen). */
  serverJitCpuUsPerOp: number;
  errors: number;
}

async function once(binary: string): Promise<Run> {
  const root = mkdtempSync(join(tmpdir(), "phalanx-ab-"));
  const c = await startPhalanx(root, { binary });
  try {
    // prettier-ignore
    const gen = track(Bun.spawn([
      LOADGEN, "--phalanx", c.addrs.join(","), "--phalanx-pids", c.procs.map((p) => p.pid).join(","),
      "--only", args.only!, "--rounds", "1", "--warm-round", args["warm-round"], "--duration", args.duration, "--warmup", "1",
    ], { stdout: "pipe", stderr: "inherit" }));
    const out = await new Response(gen.stdout).text();
    if ((await gen.exited) !== 0) throw new Error(`load generator failed; logs in ${root}`);
    const phases = out.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as Run & { test: string });
    if (phases.length !== 1) throw new Error(`--only "${args.only}" ran ${phases.length} loads: name one`);
    return phases[0]!;
  } finally {
    await stopChildren(c.procs);
    rmSync(root, { recursive: true, force: true });
  }
}

const runs = new Map<string, Run[]>(binaries.map((b) => [b, []]));
const pairs = Number(args.pairs);
for (let pair = 1; pair <= pairs; pair++) {
  const order = pair % 2 === 1 ? binaries : [...binaries].reverse();
  for (const b of order) {
    const r = await once(b);
    runs.get(b)!.push(r);
    console.log(`pair ${pair} ${b}: ${Math.round(r.opsPerSec)} ops/s, p50 ${r.p50Ms.toFixed(2)} ms, p99 ${r.p99Ms.toFixed(1)} ms, server CPU ${Math.round(r.serverCpuUsPerOp)} µs/op (JIT ${Math.round(r.serverJitCpuUsPerOp)})${r.errors > 0 ? `, ${r.errors} errors` : ""}`);
  }
}
console.log(`\n${args.only}, ${pairs} alternated pairs of ${args.duration} s (medians):`);
for (const [b, rs] of runs) {
  const m = (f: (r: Run) => number) => median(rs.map(f));
  console.log(`${b}: ${Math.round(m((r) => r.opsPerSec))} ops/s [${rs.map((r) => Math.round(r.opsPerSec)).join(" · ")}], p50 ${m((r) => r.p50Ms).toFixed(2)} ms, server CPU ${Math.round(m((r) => r.serverCpuUsPerOp))} µs/op (JIT ${Math.round(m((r) => r.serverJitCpuUsPerOp))})`);
}
