// `bun bench/stale_reads.ts`: what bounded-staleness reads cost and save on a 3-node loopback
// cluster (production tick, 100 ms). Bounded: a fixed number of requests and two fixed windows.
//   1. Background probe cost: peer messages per second and CPU of every process over a window
//      with no reads (idle), then over a window in which one bounded read per second keeps the
//      follower's freshness probe running.
//   2. Read latency on a follower: sequential linearizable reads (one round trip to the leader)
//      against sequential `max_staleness=5s` reads (answered from the follower's own state).
// Loopback only, so the round trip saved is a loopback one; on a WAN it is the RTT to the leader.
import { processCpuMicros } from "./proc_cpu.ts";
import { freePort, TestCluster, waitFor } from "../tests/integration/harness.ts";

const WINDOW_MS = 10_000;
const READS = 400;
const ids = ["n1", "n2", "n3"];


const cluster = await TestCluster.create(3, { env: { TICK_MS: "100" } });
const debug = new Map<string, number>();
for (const id of ids) debug.set(id, await freePort());
try {
  for (const id of ids) cluster.start(id, { DEBUG_ADDR: `127.0.0.1:${debug.get(id)}` });
  const leader = await cluster.waitForLeader(ids);
  const follower = ids.find((id) => id !== leader)!;
  const base = `http://${cluster.node(follower).addr}`;
  expect200(await fetch(`http://${cluster.node(leader).addr}/v1/kv/bench`, { method: "PUT", body: "x", headers: { "content-type": "application/octet-stream" } }));
  await waitFor("the follower to apply", async () => (await fetch(`${base}/v1/kv/bench?consistency=stale`)).status === 200);

  const sentTotal = async () => {
    let n = 0;
    for (const id of ids) {
      const text = await (await fetch(`http://127.0.0.1:${debug.get(id)}/metrics`)).text();
      for (const m of text.matchAll(/^phalanx_peer_sent_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
    }
    return n;
  };
  const cpuAll = () => ids.reduce((s, id) => s + processCpuMicros(cluster.procs.get(id)!.pid) / 1000, 0);
  const window = async (label: string, during: () => Promise<void>) => {
    const [m0, c0, t0] = [await sentTotal(), cpuAll(), performance.now()];
    await during();
    const secs = (performance.now() - t0) / 1000;
    const [m1, c1] = [await sentTotal(), cpuAll()];
    console.log(`${label}: ${((m1 - m0) / secs).toFixed(1)} peer messages/s (cluster), CPU ${((c1 - c0) / secs / 10).toFixed(2)} % of a core (3 processes)`);
  };
  const until = (ms: number) => performance.now() + ms;
  await window("idle (no reads)          ", async () => {
    const end = until(WINDOW_MS);
    await waitFor("the idle window", () => performance.now() >= end, WINDOW_MS + 1000, 200);
  });
  await window("probing (1 bounded read/s)", async () => {
    const end = until(WINDOW_MS);
    let next = 0;
    await waitFor("the probing window", async () => {
      if (performance.now() >= next) {
        expect200(await fetch(`${base}/v1/kv/bench?max_staleness=5s`));
        next = performance.now() + 1000;
      }
      return performance.now() >= end;
    }, WINDOW_MS + 5000, 50);
  });

  const latency = async (query: string) => {
    const ms: number[] = [];
    for (let i = 0; i < READS; i++) {
      const t = performance.now();
      const res = await fetch(`${base}/v1/kv/bench?${query}`);
      expect200(res);
      await res.arrayBuffer();
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    const q = (p: number) => ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(2);
    return `p50 ${q(0.5)} ms, p90 ${q(0.9)} ms, p99 ${q(0.99)} ms`;
  };
  // Warm the connection and the probe first.
  await latency("max_staleness=5s");
  console.log(`follower ${follower}, ${READS} sequential reads over HTTP/1.1 keep-alive:`);
  console.log(`  linearizable      ${await latency("consistency=linearizable")}`);
  console.log(`  max_staleness=5s  ${await latency("max_staleness=5s")}`);
  console.log(`  consistency=stale ${await latency("consistency=stale")}`);
} finally {
  await cluster.stopAll();
}

function expect200(res: Response): void {
  if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
}
