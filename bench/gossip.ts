// Gossip numbers for the report: real UDP on 127.0.0.1 with 5 and 20 agent processes (convergence
// after the last start, detection of a kill -9, steady-state bytes/s per node), then false deaths
// under 10% loss in the simulator. Usage: bun bench/gossip.ts [preset=local]

import { detectionBoundMs, gossipConfig, type PresetName } from "../src/gossip/config.ts";
import { type AgentProc, converged, startCluster, views } from "../tests/gossip/cluster.ts";
import { waitFor } from "../tests/integration/harness.ts";
import { Sim } from "../tests/gossip/sim.ts";

const preset = (process.argv[2] ?? "local") as PresetName;
const cfg = gossipConfig(preset);
const KEY = Buffer.alloc(32, 7).toString("base64");
const STEADY_MS = 10_000;

async function realRun(n: number): Promise<void> {
  const procs = await startCluster(n, "127.0.0.1", KEY, 30_000, preset);
  try {
    let t = performance.now();
    await waitFor(() => `${n} agents to converge: ${views(procs)}`, () => converged(procs), 60_000);
    const convergeMs = performance.now() - t;
    // Let join traffic settle, then measure what steady state costs.
    await Bun.sleep(2 * cfg.probeIntervalMs);
    const bytesOut = () => procs.reduce((s, p) => s + (p.status?.counters.bytesOut ?? 0), 0);
    const b0 = bytesOut();
    t = performance.now();
    await Bun.sleep(STEADY_MS);
    const perNode = (bytesOut() - b0) / ((performance.now() - t) / 1000) / n;
    const victim = procs[1] as AgentProc;
    const rest = procs.filter((p) => p !== victim);
    victim.kill(9);
    await victim.exited;
    t = performance.now();
    const bound = detectionBoundMs(cfg, n);
    const detected = await waitFor("the kill to be seen", () => rest.every((p) => p.stateOf(victim.id) === "dead"), bound + 10_000).then(
      () => true,
      () => false,
    );
    const detectMs = performance.now() - t;
    console.log(
      `real UDP, ${preset}, ${n} processes: converged ${Math.round(convergeMs)} ms after the last start; ` +
        `steady state ${Math.round(perNode)} B/s sent per node (UDP payload, encrypted); ` +
        `kill -9 ${detected ? `seen dead by all in ${Math.round(detectMs)} ms` : "NOT detected"} (bound ${Math.round(bound)} ms)`,
    );
  } finally {
    for (const p of procs) p.kill(9);
  }
}

function simFalseDeaths(): void {
  let deaths = 0;
  let suspects = 0;
  const seeds = 10;
  for (let seed = 1; seed <= seeds; seed++) {
    const sim = new Sim({ seed, loss: 0.1 });
    const ids = sim.addMany(20);
    sim.runUntil(() => sim.converged(ids), 60_000);
    sim.setSlow("n5", 900);
    sim.run(300_000);
    for (const id of ids) {
      for (const e of sim.events(id)) {
        if (e.event.type === "dead") deaths++;
        if (e.event.type === "suspect") suspects++;
      }
    }
  }
  console.log(`simulator, lan, 20 members × 300 s × ${seeds} seeds, 10% loss, one slow member: ${suspects} suspect events, ${deaths} false deaths`);
}

await realRun(5);
await realRun(20);
simFalseDeaths();
