// The election-timeout window the node may set (Raft.setElectionWindow): the timeout falls in it,
// it never reaches 3 election timeouts, and without one the draws are exactly today's.
import { expect, test } from "bun:test";
import { TestCluster } from "./harness.ts";

/** Ticks until the lone voter "a" campaigns (becomes leader: it needs only its own vote). */
function ticksToCampaign(c: TestCluster): number {
  let t = 0;
  while (c.node("a").raw.raft.role !== "leader" && t < 1000) {
    c.tick();
    t++;
  }
  return t;
}

test("with a window the timeout falls inside it: [election + offset, election + offset + width)", () => {
  const draws = new Set<number>();
  for (let seed = 1; seed <= 30; seed++) {
    const c = new TestCluster(["a"], {}, seed);
    c.node("a").raw.setElectionWindow({ offsetTicks: 6, widthTicks: 3 });
    const t = ticksToCampaign(c);
    expect(t).toBeGreaterThanOrEqual(16);
    expect(t).toBeLessThan(19);
    draws.add(t);
  }
  expect(draws.size).toBe(3); // still randomized inside the window
});

test("a window set while waiting holds for the current wait (the timeout is drawn again)", () => {
  const c = new TestCluster(["a"], {}, 7);
  c.tick();
  c.node("a").raw.setElectionWindow({ offsetTicks: 10, widthTicks: 1 });
  expect(ticksToCampaign(c) + 1).toBe(20);
});

test("no window (or clearing it) is exactly today's randomized timeout, draw for draw", () => {
  for (let seed = 1; seed <= 20; seed++) {
    const plain = ticksToCampaign(new TestCluster(["a"], {}, seed));
    const cleared = new TestCluster(["a"], {}, seed);
    cleared.node("a").raw.setElectionWindow(null); // unchanged: nothing drawn
    expect(ticksToCampaign(cleared)).toBe(plain);
    expect(plain).toBeGreaterThanOrEqual(10);
    expect(plain).toBeLessThan(20);
  }
});

test("a window reaching 3 election timeouts, or empty, is our bug: refused loudly", () => {
  const raw = new TestCluster(["a"]).node("a").raw;
  expect(() => raw.setElectionWindow({ offsetTicks: 15, widthTicks: 6 })).toThrow(/beyond 3 election timeouts/);
  expect(() => raw.setElectionWindow({ offsetTicks: 0, widthTicks: 0 })).toThrow(/width/);
  expect(() => raw.setElectionWindow({ offsetTicks: -1, widthTicks: 2 })).toThrow(/offset/);
  raw.setElectionWindow({ offsetTicks: 10, widthTicks: 10 }); // the widest allowed
});
