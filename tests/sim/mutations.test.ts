// The simulator must catch classic Raft bugs: each mutant (a broken temp copy of the source)
// has to produce a violation within a bounded number of seeds.
import { expect, test } from "bun:test";
import { join } from "node:path";
import { hunt, MUTATIONS } from "./mutations.ts";

const repo = join(import.meta.dir, "..", "..");
const MAX_SEEDS = 3000;

for (const m of MUTATIONS) {
  test(`the simulator catches: ${m.name}`, async () => {
    const started = performance.now();
    const r = await hunt(repo, m, MAX_SEEDS);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`mutant "${m.name}": caught at seed ${r.caughtAtSeed} (${secs} s): ${(r.violation ?? "").split("\n")[0]!.slice(0, 160)}`);
    expect(r.caughtAtSeed).not.toBeNull();
  }, 600_000);
}
