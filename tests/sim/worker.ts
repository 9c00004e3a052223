// One simulator job in its own process, so the suite can run several at once on a multi-core
// machine (tests/sim/parallel.ts). Prints one JSON line as its last output.
//   bun tests/sim/worker.ts range <from> <count> [stalled]   seeds from..from+count-1 (the stalled-leader profile with "stalled")
//   bun tests/sim/worker.ts hunt <mutant index> <max seeds>  the mutant's hunt (mutations.ts)
import { join } from "node:path";
import { runSim, STALLED_LEADER_PROFILE, type SimReport } from "./cluster.ts";
import { hunt, MUTATIONS } from "./mutations.ts";

export interface RangeResult {
  failures: string[];
  stats: Record<keyof SimReport["stats"], number>;
}

const [mode, a, b, profile] = process.argv.slice(2);
if (mode === "range") {
  const from = Number(a);
  const count = Number(b);
  const failures: string[] = [];
  const stats: Record<string, number> = {};
  for (let seed = from; seed < from + count; seed++) {
    const r = runSim(seed, profile === "stalled" ? STALLED_LEADER_PROFILE : {});
    for (const [k, v] of Object.entries(r.stats)) stats[k] = (stats[k] ?? 0) + v;
    if (!r.ok) failures.push(`seed ${seed}: ${r.violation?.split("\n")[0]} (replay: bun run sim --seed ${seed})`);
  }
  console.log(JSON.stringify({ failures, stats } satisfies { failures: string[]; stats: Record<string, number> }));
} else if (mode === "hunt") {
  const m = MUTATIONS[Number(a)];
  if (m === undefined) throw new Error(`no mutant ${a}`);
  console.log(JSON.stringify(await hunt(join(import.meta.dir, "..", ".."), m, Number(b))));
} else {
  throw new Error("usage: worker.ts range <from> <count> [stalled] | hunt <index> <max seeds>");
}
