// Voters placed by region, with real servers on ::1: VOTER_REGIONS=lhr,fra,ord and five servers
// started at once in lhr, fra, ord, jnb and sin (REGION per server), BOOTSTRAP_EXPECT=3. The three
// in voter regions found the cluster (the far two do not count, so nobody has to guess), jnb and
// sin join and stay learners, every member's region is recorded in the replicated members table,
// a sixth server in lhr is promoted past the far learners that were stable longer, and a voter
// region that loses its server is reported on the leader instead of being filled from far away.
// Then a cluster founded before the list (lhr, fra, jnb) is restarted with it: once ord has a
// voter, jnb leaves the voters and rejoins as a learner.
import { afterAll, expect, test } from "bun:test";
import { BUN, freePort, MAIN, TestCluster, waitFor } from "./harness.ts";

const HOST = "::1";
const REGIONS: Record<string, string> = { n1: "lhr", n2: "fra", n3: "ord", n4: "jnb", n5: "sin", n6: "lhr" };
const clusters: TestCluster[] = [];

afterAll(async () => {
  for (const c of clusters) await c.stopAll();
});

interface Member {
  id: string;
  address: string;
  region: string;
  role: string;
}
interface Members {
  members: Member[];
  automatic: { decisions: { change: string; reason: string }[]; voterRegions: { regions: string[]; notes: string[] | null } };
}

const roles = (m: Members) => Object.fromEntries(m.members.map((x) => [x.id, `${x.role} ${x.region || "?"}`]));

test("VOTER_REGIONS: voters in lhr, fra, ord; jnb and sin join and stay learners", async () => {
  const c = await TestCluster.create(6, {
    host: HOST,
    env: { PEERS: "", BOOTSTRAP_EXPECT: "3", VOTER_REGIONS: "lhr,fra,ord", GOSSIP_PRESET: "local", STABILIZATION_MS: "1000" },
  });
  clusters.push(c);
  const gossip = new Map<string, string>();
  for (const n of c.nodes) gossip.set(n.id, `[${HOST}]:${await freePort(HOST)}`);
  const seed = gossip.get("n1")!;
  const startNode = (id: string) => c.start(id, { GOSSIP_ADDR: gossip.get(id)!, JOIN: seed, REGION: REGIONS[id]! });
  for (const id of ["n1", "n2", "n3", "n4", "n5"]) startNode(id);
  await c.waitForLeader(["n1", "n2", "n3"], 30_000);

  const members = async (id: string) => (await c.request(id, "GET", "/v1/members")).json as Members;
  const placed = await waitFor("3 voters, 2 learners, every region recorded", async () => {
    const m = await members("n1");
    const r = roles(m);
    return Object.keys(r).length === 5 && Object.values(r).every((x) => !x.endsWith("?")) && m.members.filter((x) => x.role === "voter").length === 3 ? m : undefined;
  }, 40_000, 200);
  expect(roles(placed)).toEqual({ n1: "voter lhr", n2: "voter fra", n3: "voter ord", n4: "learner jnb", n5: "learner sin" });
  const changes = placed.automatic.decisions.map((d) => d.change).sort();
  expect(changes).toEqual(["addLearner n4", "addLearner n5"]);
  for (const d of placed.automatic.decisions) expect(d.reason).toContain("is not in VOTER_REGIONS: it stays a learner");

  // A sixth server in lhr joins after jnb and sin, yet is the one promoted (voters 3 < target 5):
  // the far learners, healthy and caught up for longer, were passed over by the region rule.
  startNode("n6");
  const grown = await waitFor("n6 promoted", async () => {
    const m = await members("n4");
    return m.members.find((x) => x.id === "n6")?.role === "voter" ? m : undefined;
  }, 40_000, 200);
  expect(roles(grown)).toEqual({ n1: "voter lhr", n2: "voter fra", n3: "voter ord", n4: "learner jnb", n5: "learner sin", n6: "voter lhr" });
  expect(grown.automatic.decisions.map((d) => d.change).filter((x) => x.startsWith("addVoter"))).toEqual(["addVoter n6"]);

  // Every server reads the same replicated model, learners included.
  for (const id of ["n2", "n5"]) {
    const local = (await c.request(id, "GET", "/v1/members?local")).json as Members;
    expect(roles(local)).toEqual(roles(grown));
  }

  // `phalanx members` shows each member's region and role.
  const cli = Bun.spawnSync([BUN, MAIN, "members", "--addr", c.node("n1").addr], { env: { ...process.env } });
  const table = new TextDecoder().decode(cli.stdout);
  expect(table).toMatch(/REGION\s+ROLE/);
  expect(table).toMatch(/n4( \*)?\s+\S+\s+jnb\s+learner/);
  expect(table).toMatch(/n3( \*)?\s+\S+\s+ord\s+voter/);

  // ord loses its only server: the leader says so, and promotes nobody from jnb or sin instead.
  // n1 leads (so the victim is not the leader), then ord's only server dies.
  await waitFor("n1 leads", async () => (await c.request("n2", "POST", "/v1/leader/transfer?to=n1")).status === 200, 20_000, 200);
  const leader = "n1";
  await c.kill("n3");
  const note = await waitFor("the leader reports ord without a healthy server", async () => {
    const s = (await c.request(leader, "GET", "/v1/status")).json as { voterRegions: { notes: string[] | null } | null };
    return s.voterRegions?.notes?.find((n) => n.startsWith("voter region ord has no healthy server"));
  }, 20_000, 200);
  expect(note).toContain("none is promoted from another region");
  expect(c.logs.get(leader)).toContain("voter region ord has no healthy server");
  const after = await members(leader);
  expect(after.members.filter((x) => x.role === "learner").map((x) => x.id).sort()).toEqual(["n4", "n5"]);
  // Writes go on with the quorum in lhr and fra (3 of the 4 voters).
  expect((await c.request("n5", "PUT", "/v1/kv/placed", { json: { value: "by region" } })).status).toBe(200);
}, 150_000);

test("VOTER_REGIONS set on a running cluster: a founder outside the list becomes a learner once ord has a voter", async () => {
  const regions: Record<string, string> = { n1: "lhr", n2: "fra", n3: "jnb", n4: "ord" };
  const c = await TestCluster.create(4, { host: HOST, env: { PEERS: "", BOOTSTRAP_EXPECT: "3", GOSSIP_PRESET: "local", STABILIZATION_MS: "1000" } });
  clusters.push(c);
  const gossip = new Map<string, string>();
  for (const n of c.nodes) gossip.set(n.id, `[${HOST}]:${await freePort(HOST)}`);
  const join = [...gossip.values()].join(",");
  const startNode = (id: string, env: Record<string, string> = {}) => c.start(id, { GOSSIP_ADDR: gossip.get(id)!, JOIN: join, REGION: regions[id]!, ...env });
  const members = async (id: string) => (await c.request(id, "GET", "/v1/members")).json as Members;
  try {
    for (const id of ["n1", "n2", "n3"]) startNode(id);
    await c.waitForLeader(["n1", "n2", "n3"], 30_000);
    await waitFor("the founders' regions recorded", async () => {
      const r = roles(await members("n1"));
      return r.n1 === "voter lhr" && r.n2 === "voter fra" && r.n3 === "voter jnb";
    }, 20_000, 200);

    // The operator sets the list on every server (a rolling restart), and hands leadership to lhr.
    for (const id of ["n1", "n2", "n3"]) {
      await c.kill(id);
      startNode(id, { VOTER_REGIONS: "lhr,fra,ord" });
      await c.waitForLeader(["n1", "n2", "n3"], 30_000);
    }
    await waitFor("n1 leads", async () => (await c.request("n2", "POST", "/v1/leader/transfer?to=n1")).status === 200, 20_000, 200);
    // jnb is the third vote that survives losing lhr or fra: it stays a voter while ord has none.
    const ordEmpty = "voter region ord has no healthy server: no voter there, and none is promoted from another region (add a server in ord, or change VOTER_REGIONS)";
    const waiting = await waitFor("the leader judged the voters", async () => {
      const s = (await c.request("n1", "GET", "/v1/status")).json as { voterRegions: { notes: string[] | null } };
      return s.voterRegions.notes ?? undefined;
    }, 10_000, 100);
    expect(waiting).toContain(ordEmpty);
    expect(roles(await members("n1")).n3).toBe("voter jnb");

    startNode("n4", { VOTER_REGIONS: "lhr,fra,ord" });
    const placed = await waitFor("ord a voter, jnb a learner", async () => {
      const m = await members("n1");
      const r = roles(m);
      return r.n4 === "voter ord" && r.n3 === "learner jnb" ? m : undefined;
    }, 60_000, 200);
    expect(roles(placed)).toEqual({ n1: "voter lhr", n2: "voter fra", n3: "learner jnb", n4: "voter ord" });
    const changes = placed.automatic.decisions.map((d) => d.change);
    // Promotion of ord first, then jnb leaves the voters and gossip brings it back as a learner.
    expect(changes.indexOf("addVoter n4")).toBeLessThan(changes.indexOf("remove n3"));
    expect(changes.indexOf("remove n3")).toBeLessThan(changes.lastIndexOf("addLearner n3"));
    expect(placed.automatic.decisions.find((d) => d.change === "remove n3")?.reason).toContain("outside VOTER_REGIONS");
    // The learner in jnb has every write.
    expect((await c.request("n2", "PUT", "/v1/kv/after", { json: { value: "demoted" } })).status).toBe(200);
    await waitFor("jnb has the write", async () => (await c.request("n3", "GET", "/v1/kv/after?consistency=stale")).json?.kv?.value === "demoted", 10_000, 100);
    await waitFor("the leader finds the voters match the list", async () => {
      const s = (await c.request("n1", "GET", "/v1/status")).json as { voterRegions: { notes: string[] | null } };
      return s.voterRegions.notes?.length === 0;
    }, 10_000, 100);
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }
}, 180_000);
