// The simulator in the suite: 1,000 seeds of varied length, size and fault mix, zero violations,
// run on the real node loop and state machine (cluster.ts).
// `bun run sim --seeds 100000` is the long soak; `bun run sim --seed N` replays one with a trace.
import { expect, test } from "bun:test";
import { runSim } from "./cluster.ts";
import { runWorker } from "./parallel.ts";
import type { RangeResult } from "./worker.ts";

const SEEDS = 1000;
const STALLED_SEEDS = 60;

/** Seeds from..from+count-1 in worker processes, `parts` at a time (one per core). */
async function seeds(from: number, count: number, profile: "default" | "stalled", parts: number): Promise<RangeResult> {
  const size = Math.ceil(count / parts);
  const jobs = Array.from({ length: parts }, (_, i) => {
    const start = from + i * size;
    const n = Math.min(size, from + count - start);
    return runWorker<RangeResult>(["range", String(start), String(n), ...(profile === "stalled" ? ["stalled"] : [])]);
  });
  const results = await Promise.all(jobs);
  const stats = {} as RangeResult["stats"];
  for (const r of results) for (const [k, v] of Object.entries(r.stats)) stats[k as keyof RangeResult["stats"]] = (stats[k as keyof RangeResult["stats"]] ?? 0) + v;
  return { failures: results.flatMap((r) => r.failures), stats };
}

// Both runs start now and share the worker slots (parallel.ts): the stalled-leader seeds take a
// core as soon as one of the 1,000 seeds' parts ends, instead of after the last one.
const started = performance.now();
const mainRun = seeds(1, SEEDS, "default", 4);
const stalledRun = seeds(1, STALLED_SEEDS, "stalled", 2);
for (const r of [mainRun, stalledRun]) r.catch(() => undefined); // reported by its test

test(`${SEEDS} simulated runs keep every safety property and stay linearizable`, async () => {
  const { failures, stats } = await mainRun;
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `sim: ${SEEDS} seeds in ${secs} s, ${stats.opsOk} client ops, ${stats.opsNotApplied} told "not applied", ${stats.elections} elections, ${stats.snapshotsSent} snapshots sent, ` +
      `${stats.snapshotCovered} writes covered by a snapshot while pending, ${stats.stalls} stalls, ${stats.leaseReads} lease reads, ${stats.boundedReads} bounded reads`,
  );
  expect(failures).toEqual([]);
  // The runs must actually exercise the interesting paths.
  expect(stats.elections).toBeGreaterThan(SEEDS);
  expect(stats.snapshotsSent).toBeGreaterThan(100);
  expect(stats.leaseReads).toBeGreaterThan(1000);
  // Bounded-staleness reads, checked with their call moved back by the bound (cluster.ts).
  expect(stats.boundedReads).toBeGreaterThan(10_000);
  // Definite failures are checked as "never took effect", so there must be some to check.
  expect(stats.opsNotApplied).toBeGreaterThan(1000);
  expect(stats.stalls).toBeGreaterThan(100);
  // The path of issue 8 §1 (a leader resumes behind the compacted log with writes pending) is
  // rare in the default mix (0-5 per 1,000 seeds, depending on the trajectories): the
  // stalled-leader profile below is the test that must reach it.
  // A guard against a hang, not a budget: about a minute on two idle cores, several on a loaded one.
}, 900_000);

test("a stalled leader resumes behind the compacted log: its pending writes are never reported not applied", async () => {
  // Issue 8 §1: the snapshot it installs may hold those writes, so their outcome is unknown.
  // Rare even here (4 of the first 60 seeds cover a pending write): enough seeds that a change in
  // the trajectories still leaves some.
  const { failures, stats } = await stalledRun;
  console.log(`stalled-leader profile: ${STALLED_SEEDS} seeds, ${stats.snapshotCovered} pending writes covered by a snapshot`);
  expect(failures).toEqual([]);
  expect(stats.snapshotCovered).toBeGreaterThan(0);
}, 900_000);

test("a seed replays identically", () => {
  const a = runSim(4242, { verbose: true });
  const b = runSim(4242, { verbose: true });
  expect(a.trace).toEqual(b.trace);
  expect(a.stats).toEqual(b.stats);
}, 60_000); // two verbose runs: over 5 s on a loaded machine
