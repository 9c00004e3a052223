// Leader placement on real processes: every node measures its links, the leader collects them
// and shows its judgement in /v1/status. On loopback every voter commits within a millisecond or
// so, below the 10 ms margin: the leader stays where it is.
import { afterAll, expect, test } from "bun:test";
import { TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster | null = null;

afterAll(async () => {
  await cluster?.stopAll();
});

interface PlacementStatus {
  rttMs: Record<string, number>;
  commitFloorMs?: Record<string, number | null>;
  decision: { kind: string; reason: string } | null;
  decisions: unknown[];
  electionWindowTicks?: { offsetTicks: number; widthTicks: number } | null;
  electionRankingFrom?: string | null;
}

test("the leader knows every voter's commit floor, stays on loopback, and says why", async () => {
  cluster = await TestCluster.create(3, { env: { REGION: "local" } });
  cluster.startAll();
  const leader = await cluster.waitForLeader(["n1", "n2", "n3"]);
  const placement = await waitFor("the leader's placement view of all three voters", async () => {
    const res = await cluster!.request(leader, "GET", "/v1/status", { timeoutMs: 1000 });
    const p = res.json?.placement as PlacementStatus | null;
    const floors = Object.values(p?.commitFloorMs ?? {});
    const judged = p?.decision?.reason.includes("commits in") === true;
    return floors.length === 3 && floors.every((f) => typeof f === "number") && judged ? p! : undefined;
  }, 20_000, 200);
  expect(placement.decision?.kind).toBe("stay");
  expect(placement.decision?.reason).toContain(`${leader} commits in`);
  expect(placement.decisions).toEqual([]);
  // A follower measures its own links too (the leader needs them), and does not decide.
  const follower = ["n1", "n2", "n3"].find((id) => id !== leader)!;
  const others = ["n1", "n2", "n3"].filter((id) => id !== follower);
  const f = await waitFor(`${follower}'s measurements of both peers`, async () => {
    const p = (await cluster!.request(follower, "GET", "/v1/status", { timeoutMs: 1000 })).json?.placement as PlacementStatus | null;
    return p !== null && p !== undefined && Object.keys(p.rttMs).length === others.length ? p : undefined;
  }, 20_000, 200);
  expect(Object.keys(f.rttMs).sort()).toEqual(others);
  expect(f.decision).toBeNull();
}, 40_000);

test("every follower gets the leader's election ranking: disjoint timeout windows in rank order", async () => {
  const c = cluster!;
  const leader = await c.waitForLeader(["n1", "n2", "n3"]);
  const followers = ["n1", "n2", "n3"].filter((id) => id !== leader);
  const windows = await waitFor("both followers' election windows from the leader's ranking", async () => {
    const ps = await Promise.all(followers.map(async (id) => (await c.request(id, "GET", "/v1/status", { timeoutMs: 1000 })).json?.placement as PlacementStatus | null));
    const ok = ps.every((p) => p?.electionRankingFrom === leader && p.electionWindowTicks != null);
    return ok ? ps.map((p) => p!.electionWindowTicks!) : undefined;
  }, 30_000, 200);
  const [a, b] = [...windows].sort((x, y) => x.offsetTicks - y.offsetTicks);
  // Disjoint and ordered: the second-ranked follower's window opens after the first's closes.
  expect(b!.offsetTicks).toBeGreaterThanOrEqual(a!.offsetTicks + a!.widthTicks);
}, 40_000);
