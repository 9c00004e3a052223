// The simulator in the suite: 1,000 seeds of varied length, size and fault mix, zero violations,
// run on the real node loop and state machine (cluster.ts).
// `bun run sim --seeds 100000` is the long soak; `bun run sim --seed N` replays one with a trace.
import { expect, test } from "bun:test";
import { runSim, STALLED_LEADER_PROFILE } from "./cluster.ts";

const SEEDS = 1000;
const STALLED_SEEDS = 60;

test(`${SEEDS} simulated runs keep every safety property and stay linearizable`, () => {
  const started = performance.now();
  const failures: string[] = [];
  let ops = 0;
  let elections = 0;
  let snapshots = 0;
  let leaseReads = 0;
  let notApplied = 0;
  let snapshotCovered = 0;
  let stalls = 0;
  for (let seed = 1; seed <= SEEDS; seed++) {
    const r = runSim(seed);
    ops += r.stats.opsOk;
    elections += r.stats.elections;
    snapshots += r.stats.snapshotsSent;
    leaseReads += r.stats.leaseReads;
    notApplied += r.stats.opsNotApplied;
    snapshotCovered += r.stats.snapshotCovered;
    stalls += r.stats.stalls;
    if (!r.ok) failures.push(`seed ${seed}: ${r.violation?.split("\n")[0]} (replay: bun run sim --seed ${seed})`);
  }
  const secs = ((performance.now() - started) / 1000).toFixed(1);
  console.log(
    `sim: ${SEEDS} seeds in ${secs} s, ${ops} client ops, ${notApplied} told "not applied", ${elections} elections, ${snapshots} snapshots sent, ` +
      `${snapshotCovered} writes covered by a snapshot while pending, ${stalls} stalls, ${leaseReads} lease reads`,
  );
  expect(failures).toEqual([]);
  // The runs must actually exercise the interesting paths.
  expect(elections).toBeGreaterThan(SEEDS);
  expect(snapshots).toBeGreaterThan(100);
  expect(leaseReads).toBeGreaterThan(1000);
  // Definite failures are checked as "never took effect", so there must be some to check.
  expect(notApplied).toBeGreaterThan(1000);
  expect(stalls).toBeGreaterThan(100);
  // The path of issue 8 §1: a leader resumes behind the compacted log with writes pending.
  expect(snapshotCovered).toBeGreaterThan(0);
}, 300_000);

test("a stalled leader resumes behind the compacted log: its pending writes are never reported not applied", () => {
  // Issue 8 §1: the snapshot it installs may hold those writes, so their outcome is unknown.
  const failures: string[] = [];
  let covered = 0;
  // Rare even here (4 of the first 60 seeds cover a pending write): enough seeds that a change in
  // the trajectories still leaves some.
  for (let seed = 1; seed <= STALLED_SEEDS; seed++) {
    const r = runSim(seed, STALLED_LEADER_PROFILE);
    covered += r.stats.snapshotCovered;
    if (!r.ok) failures.push(`seed ${seed}: ${r.violation?.split("\n")[0]}`);
  }
  console.log(`stalled-leader profile: ${STALLED_SEEDS} seeds, ${covered} pending writes covered by a snapshot`);
  expect(failures).toEqual([]);
  expect(covered).toBeGreaterThan(0);
}, 300_000);

test("a seed replays identically", () => {
  const a = runSim(4242, { verbose: true });
  const b = runSim(4242, { verbose: true });
  expect(a.trace).toEqual(b.trace);
  expect(a.stats).toEqual(b.stats);
});
