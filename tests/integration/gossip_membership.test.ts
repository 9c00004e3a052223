// Zero-conf clusters end to end, over ::1: servers with only a gossip seed and BOOTSTRAP_EXPECT=3
// form one Raft cluster and serve writes; a 4th and 5th are found by gossip and promoted to
// voters by the leader's autopilot; a voter killed with -9 is removed after the cleanup window
// and the cluster keeps serving. Gossip is sealed with the key derived from the harness's
// CLUSTER_KEY, and every addition passes the leader's identity check.
import { afterAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { freePort, TestCluster, waitFor } from "./harness.ts";

const HOST = "::1";
let cluster: TestCluster | null = null;

afterAll(async () => {
  await cluster?.stopAll();
});

interface Members {
  members: { id: string; role: string }[];
  automatic?: { decisions: { change: string }[] };
}

test("gossip forms one cluster, grows it to five voters and removes a dead voter", async () => {
  const c = await TestCluster.create(5, {
    host: HOST,
    env: { PEERS: "", BOOTSTRAP_EXPECT: "3", GOSSIP_PRESET: "local", STABILIZATION_MS: "1000", CLEANUP_DEAD_MS: "2000" },
  });
  cluster = c;
  const gossip = new Map<string, string>();
  for (const n of c.nodes) gossip.set(n.id, `[${HOST}]:${await freePort(HOST)}`);
  const seed = gossip.get("n1")!;
  const debugPort = await freePort(HOST);
  const startNode = (id: string) =>
    c.start(id, { GOSSIP_ADDR: gossip.get(id)!, JOIN: seed, REGION: `r-${id}`, ...(id === "n1" ? { DEBUG_ADDR: `[${HOST}]:${debugPort}` } : {}) });
  const started = performance.now();
  try {
    for (const id of ["n1", "n2", "n3"]) startNode(id);
    const leader = await c.waitForLeader(["n1", "n2", "n3"], 30_000);
    console.log(`gossip: 3 servers formed a cluster in ${Math.round(performance.now() - started)} ms, leader ${leader}`);
    const put = await c.request("n2", "PUT", "/v1/kv/zero-conf", { json: { value: "works" } });
    expect(put.status).toBe(200);

    // Garbage on the gossip port is dropped and counted in /metrics; nothing else changes. Gossip
    // is always sealed (the key is derived from CLUSTER_KEY), so garbage fails to decrypt.
    const sock = createSocket("udp6");
    const port = Number(seed.slice(seed.lastIndexOf(":") + 1));
    for (let i = 0; i < 20; i++) await new Promise<void>((done) => sock.send(randomBytes(1 + i * 50), port, HOST, () => done()));
    sock.close();
    const malformed = await waitFor("garbage counted in /metrics", async () => {
      const text = await (await fetch(`http://[${HOST}]:${debugPort}/metrics`)).text();
      const n = Number(/^phalanx_gossip_decrypt_failures_total (\d+)$/m.exec(text)?.[1] ?? 0);
      return n >= 20 ? n : undefined;
    }, 10_000, 100);
    expect(malformed).toBeGreaterThanOrEqual(20);
    expect((await c.status("n1")).leader).toBe(leader);

    startNode("n4");
    startNode("n5");
    const voters = await waitFor("five voters", async () => {
      const res = await c.request("n5", "GET", "/v1/members");
      const m = res.json as Members;
      const v = m.members.filter((x) => x.role === "voter").map((x) => x.id).sort();
      return v.length === 5 ? m : undefined;
    }, 40_000, 200);
    const changes = voters.automatic!.decisions.map((d) => d.change);
    expect([...changes].sort()).toEqual(["addLearner n4", "addLearner n5", "addVoter n4", "addVoter n5"]);
    // Learner first, then promotion: never straight to voter.
    for (const id of ["n4", "n5"]) expect(changes.indexOf(`addLearner ${id}`)).toBeLessThan(changes.indexOf(`addVoter ${id}`));
    const got = await c.request("n5", "GET", "/v1/kv/zero-conf");
    expect(got.json.kv.value).toBe("works");

    // A voter dies: gossip declares it dead, the autopilot removes it, writes go on.
    const current = await c.waitForLeader(["n1", "n2", "n3", "n4", "n5"], 15_000);
    const victim = ["n1", "n2", "n3", "n4", "n5"].find((id) => id !== current)!;
    await c.kill(victim);
    const alive = ["n1", "n2", "n3", "n4", "n5"].filter((id) => id !== victim);
    const after = await waitFor(`${victim} removed`, async () => {
      const res = await c.request(alive[0]!, "GET", "/v1/members");
      const m = res.json as Members;
      return m.members.some((x) => x.id === victim) ? undefined : m;
    }, 40_000, 200);
    expect(after.members.map((x) => x.id).sort()).toEqual(alive);
    expect(after.automatic!.decisions.at(-1)!.change).toBe(`remove ${victim}`);
    const put2 = await c.request(alive[1]!, "PUT", "/v1/kv/after-removal", { json: { value: "still" } });
    expect(put2.status).toBe(200);
    console.log(`gossip: grew to 5 voters and removed dead ${victim}; total ${Math.round(performance.now() - started)} ms`);
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }
}, 120_000);
