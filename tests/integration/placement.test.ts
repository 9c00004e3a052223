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
