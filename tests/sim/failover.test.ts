// The failover profile (failover.ts): the leader in lhr killed on the simulated 5-region mesh, 50
// seeds with the election ranking off (today's randomized timeouts) and on. Deterministic seeds:
// the counts below are the same on every run.
import { expect, test } from "bun:test";
import { failoverSeeds, runFailover } from "./failover.ts";

const SEEDS = 50;
/** fly.toml: ELECTION_TICKS=30 at TICK_MS=100. */
const ELECTION_MS = 3000;

test("after a leader kill the best-placed voter runs first: no split votes, where today's timeouts split some", () => {
  const off = failoverSeeds(1, SEEDS, { ranking: false, killBestToo: false });
  const on = failoverSeeds(1, SEEDS, { ranking: true, killBestToo: false });
  console.log(`failover sim (${SEEDS} seeds): ranking off ${off.splits} split votes, median ${off.medianMs.toFixed(0)} ms, max ${off.maxMs.toFixed(0)} ms; ` +
    `on ${on.splits} split votes, median ${on.medianMs.toFixed(0)} ms, max ${on.maxMs.toFixed(0)} ms`);
  expect(off.splits).toBeGreaterThan(0); // the failure exists without the ranking
  expect(on.splits).toBe(0);
  expect(on.results.every((r) => r.termsUsed === 1 && r.candidates === 1)).toBe(true);
  // fra commits fastest without lhr: it is the one that runs.
  expect(on.results.every((r) => r.newLeader === "fra")).toBe(true);
  expect(on.maxMs).toBeLessThan(off.maxMs);
  expect(on.medianMs).toBeLessThanOrEqual(off.medianMs);
});

test("liveness: with the best-ranked survivor dead too, the next one runs within about one election timeout more than today's worst", () => {
  const both = failoverSeeds(1, SEEDS, { ranking: true, killBestToo: true });
  expect(both.results.every((r) => r.newLeader !== null && r.newLeader !== "fra")).toBe(true);
  expect(both.splits).toBe(0);
  // Today's worst timeout is 2 election timeouts; the ranked next one stays below 3.
  expect(both.maxMs).toBeLessThan(3 * ELECTION_MS);
});

test("a failover seed replays identically", () => {
  expect(runFailover(7, { ranking: true, killBestToo: false })).toEqual(runFailover(7, { ranking: true, killBestToo: false }));
  expect(runFailover(7, { ranking: false, killBestToo: false })).toEqual(runFailover(7, { ranking: false, killBestToo: false }));
});
