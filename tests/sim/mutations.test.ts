// The simulator must catch classic Raft bugs: each mutant (a broken temp copy of the source)
// has to produce a violation within a bounded number of seeds, on a seed the real code passes.
import { expect, test } from "bun:test";
import { MUTATIONS, type MutantResult } from "./mutations.ts";
import { runWorker } from "./parallel.ts";

const MAX_SEEDS = 3000;

// Every hunt starts now, one worker process per core: each test below waits for its own.
const hunts = MUTATIONS.map((_, i) => runWorker<MutantResult>(["hunt", String(i), String(MAX_SEEDS)]));
for (const h of hunts) h.catch(() => undefined); // reported by its test

const started = performance.now();
for (const [i, m] of MUTATIONS.entries()) {
  test(`the simulator catches: ${m.name}`, async () => {
    const r = await hunts[i]!;
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    console.log(`mutant "${m.name}": caught at seed ${r.caughtAtSeed} (hunts done ${secs} s after they started): ${(r.violation ?? "").split("\n")[0]!.slice(0, 160)}`);
    expect(r.caughtAtSeed).not.toBeNull();
    expect(r.realCodeViolation).toBeNull();
  }, 600_000);
}
