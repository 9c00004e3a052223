// Bounded-staleness reads (?max_staleness=) on three `phalanx serve` processes: a follower
// answers from its own state with the bound it proved, never misses a write acknowledged longer
// ago than the bound, and once cut off from the leader refuses as soon as its proof is older
// than the bound (the rule: src/node/freshness.ts). Steps depend on each other: one file, in order.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { freePort, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;
const ids = ["n1", "n2", "n3"];
let leader = "";
let follower = "";
const STALENESS = "x-phalanx-staleness-ms";
const debugPorts = new Map<string, number>();

beforeAll(async () => {
  cluster = await TestCluster.create(3);
  for (const id of ids) debugPorts.set(id, await freePort());
  for (const id of ids) cluster.start(id, { DEBUG_ADDR: `127.0.0.1:${debugPorts.get(id)}` });
  leader = await cluster.waitForLeader(ids);
  follower = ids.find((id) => id !== leader)!;
}, 30_000);

afterAll(async () => {
  await cluster.stopAll();
});

async function metric(id: string, line: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${debugPorts.get(id)}/metrics`)).text();
  const m = new RegExp(`^${line.replace(/[{}"]/g, (ch) => `\\${ch}`)} (\\d+)$`, "m").exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** Sequential writes of counter values to the leader; when each acknowledgement arrived (this process's clock). */
const acked: Array<{ value: number; at: number }> = [];
async function write(value: number): Promise<void> {
  const res = await cluster.request(leader, "PUT", "/v1/kv/counter", { json: { value: String(value) } });
  expect(res.status).toBe(200);
  acked.push({ value, at: performance.now() });
}

/** The newest value acknowledged before `t`: any answer bounded to `bound` ms, asked at `t + bound` or later, holds it or a newer one. */
function mustSee(t: number): number {
  let v = -1;
  for (const a of acked) if (a.at < t) v = a.value;
  return v;
}

test("a follower answers bounded reads from its own state, with the bound it proved, and misses no write older than the bound", async () => {
  try {
    await write(0);
    // Short enough that the loop below overlaps many bounds; long enough that on a loaded machine
    // the background probe keeps most answers local (a refusal is a correct answer, counted).
    const bound = 1000;
    const before = await metric(follower, 'phalanx_reads_total{kind="bounded_local"}');
    // Writes and bounded reads interleaved for a bounded number of rounds: every answer holds
    // every write acknowledged more than `bound` before the read was sent (so before it was answered).
    let v = 0;
    const deadline = performance.now() + 4000;
    let reads = 0;
    let refused = 0;
    while (performance.now() < deadline && reads < 200) {
      if (reads % 4 === 0) await write(++v);
      const sent = performance.now();
      const res = await cluster.request(follower, "GET", `/v1/kv/counter?max_staleness=${bound}ms`);
      reads++;
      if (res.status === 503) {
        expect(res.json.error).toBe("too_stale");
        expect(res.json.provable_staleness_ms === null || res.json.provable_staleness_ms > bound).toBe(true);
        refused++;
        continue;
      }
      expect(res.status).toBe(200);
      const s = Number(res.headers[STALENESS]);
      expect(Number.isSafeInteger(s) && s >= 0 && s <= bound).toBe(true);
      expect(Number(res.json.kv.value)).toBeGreaterThanOrEqual(mustSee(sent - bound));
    }
    expect(reads).toBeGreaterThan(20);
    expect(refused).toBeLessThan(reads / 2);
    // Most were answered from the proof the background probe keeps, without a round trip.
    const local = (await metric(follower, 'phalanx_reads_total{kind="bounded_local"}')) - before;
    console.log(`${reads} bounded reads on follower ${follower}: ${local} answered locally, ${refused} refused`);
    expect(local).toBeGreaterThan(reads / 2);
    // A write acknowledged longer ago than the bound is always there.
    await write(++v);
    const ackedAt = acked[acked.length - 1]!.at;
    await waitFor("the bound to pass since the write was acknowledged", () => performance.now() > ackedAt + bound, 5000, 10);
    const res = await waitFor("a bounded answer", async () => {
      const r = await cluster.request(follower, "GET", `/v1/kv/counter?max_staleness=${bound}ms`);
      return r.status === 200 ? r : undefined;
    });
    expect(res.json.kv.value).toBe(String(v));
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);

test("a follower cut off from the leader refuses once its proof is older than the bound, and never serves older data", async () => {
  try {
    const rest = ids.filter((id) => id !== follower);
    const bound = 1000;
    const last = acked[acked.length - 1]!;
    // Warm: the follower proves itself fresh in the background while bounded reads come in.
    expect((await cluster.request(follower, "GET", `/v1/kv/counter?max_staleness=${bound}ms`)).status).toBe(200);
    for (const id of rest) cluster.signal(id, "SIGSTOP");
    const cutAt = performance.now();
    let served = 0;
    const refusal = await waitFor(
      "the follower to refuse a bounded read",
      async () => {
        const sent = performance.now();
        const res = await cluster.request(follower, "GET", `/v1/kv/counter?max_staleness=${bound}ms`, { headers: { "x-phalanx-timeout-ms": "300" } });
        if (res.status === 200) {
          // Served within the bound: the proof predates the cut, and the value is the last one written.
          served++;
          expect(Number(res.headers[STALENESS])).toBeLessThanOrEqual(bound);
          // Its proof predates the cut, so it was answered within `bound` of the cut (slack for a loaded machine).
          expect(performance.now() - cutAt).toBeLessThan(bound + 3000);
          expect(Number(res.json.kv.value)).toBeGreaterThanOrEqual(mustSee(sent - bound));
          expect(res.json.kv.value).toBe(String(last.value));
          return undefined;
        }
        return res;
      },
      10_000,
      20,
    );
    expect(refusal.status).toBe(503);
    expect(refusal.json.error).toBe("too_stale");
    // It names the staleness it can prove: more than the bound, from a proof taken before the cut.
    const provable = refusal.json.provable_staleness_ms as number;
    expect(provable).toBeGreaterThan(bound);
    expect(provable).toBeLessThanOrEqual(performance.now() - cutAt + 2000);
    expect(refusal.headers["retry-after"]).toBeDefined();
    console.log(`cut off: ${served} bounded reads served within the bound, refused ${(performance.now() - cutAt).toFixed(0)} ms after the cut (provable ${provable} ms)`);
    // Still refused on every read route while cut off; stale reads still answer, with their staleness.
    const range = await cluster.request(follower, "GET", `/v1/kv?prefix=&max_staleness=${bound}ms`, { headers: { "x-phalanx-timeout-ms": "300" } });
    expect(range.status).toBe(503);
    expect(range.json.error).toBe("too_stale");
    const stale = await cluster.request(follower, "GET", "/v1/kv/counter?consistency=stale");
    expect(stale.status).toBe(200);
    expect(Number(stale.headers[STALENESS])).toBeGreaterThan(bound);
    // A bound longer than the cut has lasted is still provable: the refusal is about the bound, not the partition.
    const long = await cluster.request(follower, "GET", "/v1/kv/counter?max_staleness=1h");
    expect(long.status).toBe(200);
    expect(long.json.kv.value).toBe(String(last.value));
    // The others come back: the follower proves itself fresh again.
    for (const id of rest) cluster.signal(id, "SIGCONT");
    await waitFor("bounded reads to be served again", async () => {
      const res = await cluster.request(follower, "GET", `/v1/kv/counter?max_staleness=${bound}ms`, { headers: { "x-phalanx-timeout-ms": "500" } });
      return res.status === 200 && Number(res.headers[STALENESS]) <= bound;
    }, 20_000, 50);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 40_000);
