// A leader that did not run for longer than a lease's TTL (SIGSTOP: a long GC pause, a frozen
// VM) must not expire the lease the moment it wakes: nobody could keep it alive meanwhile. A
// single node stays leader across the stall, so only the stall rule (lease_timer.ts) saves it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.create(1);
  cluster.startAll();
  await cluster.waitForLeader(["n1"]);
});

afterAll(async () => {
  await cluster.stopAll();
});

test("a leader stalled past a lease's TTL does not expire it on waking; the lease still expires when not kept alive", async () => {
  try {
    const grant = await cluster.request("n1", "POST", "/v1/lease", { json: { ttl: 2 } });
    const id = grant.json.id as number;
    expect((await cluster.request("n1", "PUT", `/v1/kv/stall?lease=${id}`, { json: { value: "v" } })).status).toBe(200);
    expect((await cluster.request("n1", "POST", `/v1/lease/${id}/keepalive`)).status).toBe(200);
    cluster.signal("n1", "SIGSTOP");
    await Bun.sleep(3000);
    cluster.signal("n1", "SIGCONT");
    const kept = await cluster.request("n1", "POST", `/v1/lease/${id}/keepalive`, { timeoutMs: 5000 });
    expect(kept.status).toBe(200);
    expect((await cluster.request("n1", "GET", "/v1/kv/stall")).status).toBe(200);
    // Not kept alive any more: gone after the TTL.
    await waitFor("the lease to expire", async () => (await cluster.request("n1", "GET", "/v1/kv/stall")).status === 404, 10_000);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  } finally {
    cluster.signal("n1", "SIGCONT");
  }
}, 30_000);
