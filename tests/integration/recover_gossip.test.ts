// Losing a majority of a gossip-formed cluster, then growing back by the usual join: three
// servers form a cluster by gossip (BOOTSTRAP_EXPECT=3), two are killed for good, the survivor is
// recovered with --force-new-cluster and restarted, and two new servers with empty data dirs
// find it by gossip, join as learners and are promoted to voters, with every acknowledged write.
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, freePort, TestCluster, waitFor } from "./harness.ts";

const HOST = "::1";
let cluster: TestCluster | null = null;

afterAll(async () => {
  await cluster?.stopAll();
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([BUN, MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

test("recover the survivor of a gossip cluster, then new servers join it by gossip", async () => {
  const c = await TestCluster.create(5, {
    host: HOST,
    env: { PEERS: "", BOOTSTRAP_EXPECT: "3", GOSSIP_PRESET: "local", STABILIZATION_MS: "1000", CLEANUP_DEAD_MS: "2000" },
  });
  cluster = c;
  const gossip = new Map<string, string>();
  for (const n of c.nodes) gossip.set(n.id, `[${HOST}]:${await freePort(HOST)}`);
  const seed = gossip.get("n1")!;
  const startNode = (id: string) => c.start(id, { GOSSIP_ADDR: gossip.get(id)!, JOIN: seed, REGION: `r-${id}` });
  try {
    for (const id of ["n1", "n2", "n3"]) startNode(id);
    let leader = await c.waitForLeader(["n1", "n2", "n3"], 30_000);
    if (leader !== "n1") {
      expect((await c.request(leader, "POST", "/v1/leader/transfer?to=n1")).status).toBe(200);
      leader = await c.waitForLeader(["n1", "n2", "n3"]);
    }
    const oldCluster = readFileSync(join(c.node("n1").dataDir, "CLUSTER_ID"), "utf8").trim();
    for (let i = 0; i < 50; i++) expect((await c.request("n1", "PUT", `/v1/kv/g/${i}`, { json: { value: `v${i}` } })).status).toBe(200);

    await Promise.all([c.kill("n2"), c.kill("n3")]);
    await c.kill("n1");
    const r = await cli(["recover", "--data-dir", c.node("n1").dataDir, "--id", "n1", "--force-new-cluster", "--probe-timeout-ms", "500"]);
    expect(r.code).toBe(0);
    const newCluster = readFileSync(join(c.node("n1").dataDir, "CLUSTER_ID"), "utf8").trim();
    expect(newCluster).not.toBe(oldCluster);

    startNode("n1");
    await c.waitForLeader(["n1"], 20_000);
    startNode("n4");
    startNode("n5");
    const voters = await waitFor("n4 and n5 to be promoted to voters", async () => {
      const res = await c.request("n1", "GET", "/v1/members");
      const v = (res.json.members as Array<{ id: string; role: string }>).filter((m) => m.role === "voter").map((m) => m.id).sort();
      return v.length === 3 ? v : undefined;
    }, 40_000, 200);
    expect(voters).toEqual(["n1", "n4", "n5"]);
    // The new members have every acknowledged write, and the cluster of three takes writes.
    const list = await c.request("n4", "GET", "/v1/kv?prefix=g/&limit=100");
    expect(list.status).toBe(200);
    expect(list.json.kvs.length).toBe(50);
    expect((await c.request("n5", "PUT", "/v1/kv/after", { json: { value: "grown" } })).status).toBe(200);
    console.log(`gossip cluster recovered as ${newCluster} and grown back to voters ${voters.join(",")}`);
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }
}, 120_000);
