// `bun run sim` — runs simulator seeds. `--seed N` replays one seed with its full trace;
// `--seeds N` (default 1000) runs seeds 1..N (`--from K` to start elsewhere) and reports failures.
import { parseArgs } from "node:util";
import { runSim } from "./cluster.ts";

const { values } = parseArgs({
  options: {
    seed: { type: "string" },
    seeds: { type: "string", default: "1000" },
    from: { type: "string", default: "1" },
    verbose: { type: "boolean", default: false },
  },
});

if (values.seed !== undefined) {
  const seed = Number(values.seed);
  const r = runSim(seed, { verbose: values.verbose });
  for (const line of r.trace) console.log(line);
  console.log(JSON.stringify(r.stats));
  console.log(r.ok ? `seed ${seed}: ok` : `seed ${seed}: VIOLATION ${r.violation}`);
  process.exit(r.ok ? 0 : 1);
}

const from = Number(values.from);
const count = Number(values.seeds);
const started = performance.now();
let failures = 0;
const totals = { events: 0, elections: 0, committed: 0, opsOk: 0, opsNotApplied: 0, snapshotCovered: 0, leaseReads: 0, boundedReads: 0, snapshotsSent: 0, crashes: 0, stalls: 0, confChanges: 0, transfers: 0 };
for (let seed = from; seed < from + count; seed++) {
  const r = runSim(seed);
  for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r.stats[k];
  if (!r.ok) {
    failures++;
    console.log(`seed ${seed}: VIOLATION ${r.violation?.split("\n")[0]}  (replay: bun run sim --seed ${seed})`);
  }
  if ((seed - from + 1) % 1000 === 0) console.error(`… ${seed - from + 1} seeds, ${failures} violations`);
}
const secs = (performance.now() - started) / 1000;
console.log(`${count} seeds in ${secs.toFixed(1)} s: ${failures} violations; totals ${JSON.stringify(totals)}`);
process.exit(failures === 0 ? 0 : 1);
