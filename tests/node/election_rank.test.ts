// Who runs first after a leader loss (src/node/election_rank.ts): the leader's ranking from the
// measured round trips, and the disjoint, bounded election windows each voter derives from it.
import { describe, expect, test } from "bun:test";
import { ElectionRank, electionWindow, RANKING_TTL_MS, rankVoters, type ElectionRanking } from "../../src/node/election_rank.ts";
import { DEFAULT_PLACEMENT, type PlacementView } from "../../src/node/placement.ts";
import { REGION_RTT_MS } from "../regions.ts";

// The five regions' round trips (tests/regions.ts). Node ids are the region names.
const REF = REGION_RTT_MS as Record<string, Record<string, number>>;
const VOTERS = ["fra", "jnb", "lhr", "ord", "sin"];
const view = (over: Partial<PlacementView> = {}): PlacementView => ({
  self: "lhr",
  voters: VOTERS,
  regions: Object.fromEntries(VOTERS.map((v) => [v, v])),
  rtt: REF,
  healthy: VOTERS,
  ...over,
});
const NO_OVERRIDES = DEFAULT_PLACEMENT;
// fly.toml's WAN timing.
const TICK_MS = 100;
const E = 30;
const win = (self: string, leader: string | null, ranking: ElectionRanking | null) => electionWindow({ self, leader, ranking, tickMs: TICK_MS, electionTicks: E });

describe("the leader's ranking", () => {
  test("best commit floor first; spread and guard from the worst floor and the worst round trip", () => {
    const r = rankVoters(view(), NO_OVERRIDES)!;
    // Floors: lhr 101, fra 115, ord 115 (tie by id), jnb 173, sin 183.
    expect(r.order).toEqual(["lhr", "fra", "ord", "jnb", "sin"]);
    expect(r.electionMs).toBe(Math.ceil(2 * 183 + 241 / 2));
    expect(r.guardMs).toBe(121);
  });

  test("the operator's overrides come first: LEADER_PREFER runs first, LEADER_NEVER last", () => {
    expect(rankVoters(view(), { ...DEFAULT_PLACEMENT, prefer: ["sin"], never: ["lhr"] })!.order).toEqual(["sin", "fra", "ord", "jnb", "lhr"]);
  });

  test("a fresh cluster (no round trips measured) has no ranking; an unmeasured voter is left out", () => {
    expect(rankVoters(view({ rtt: {} }), NO_OVERRIDES)).toBeNull();
    // jnb and sin reported nothing and nobody measured them: they are left out (they go last).
    const partial = rankVoters(view({ rtt: { lhr: { fra: 20, ord: 101 }, fra: { ord: 115 } } }), NO_OVERRIDES)!;
    expect(partial.order).toEqual(["lhr", "fra", "ord"]);
  });
});

test("the ranking is sticky: noise below placement's margins does not reorder it, a clear gain does", () => {
  const first = rankVoters(view(), NO_OVERRIDES)!;
  expect(first.order.slice(1, 3)).toEqual(["fra", "ord"]);
  // ord measures 8 ms faster than fra now: noise (below 10 ms): the order stands.
  const noisy = { ...REF, ord: { ...REF.ord!, fra: 107 } }; // ord's floor 107 ms, fra's 115 ms
  expect(rankVoters(view({ rtt: noisy }), NO_OVERRIDES)!.order.slice(1, 3)).toEqual(["ord", "fra"]); // fresh: by floor
  expect(rankVoters(view({ rtt: noisy }), NO_OVERRIDES, first.order)!.order.slice(1, 3)).toEqual(["fra", "ord"]); // sticky
  // sin becomes clearly the fastest voter: it moves to the front past everyone.
  const fastSin = { ...REF, sin: { lhr: 20, fra: 20, ord: 30, jnb: 40 } };
  expect(rankVoters(view({ rtt: fastSin }), NO_OVERRIDES, first.order)!.order[0]).toBe("sin");
});

describe("rank → election window", () => {
  const ranking = rankVoters(view(), NO_OVERRIDES)!;
  const survivors = ["fra", "ord", "jnb", "sin"]; // lhr, the leader, is lost

  test("the survivors' windows are disjoint, in rank order, each an election apart; the best starts after everyone's lease ran out", () => {
    const ws = survivors.map((id) => win(id, "lhr", ranking)!);
    const election = Math.ceil(ranking.electionMs / TICK_MS) + 2; // 7 ticks
    const guard = Math.ceil(ranking.guardMs / TICK_MS) + 1; // 3 ticks: > half the worst round trip
    expect(ws[0]!.offsetTicks).toBe(guard);
    for (let k = 1; k < ws.length; k++) {
      // The next window opens only after the earlier rank, firing as late as its window allows,
      // has had one election to win.
      expect(ws[k]!.offsetTicks).toBeGreaterThanOrEqual(ws[k - 1]!.offsetTicks + ws[k - 1]!.widthTicks + election);
    }
    // One election: pre-vote and vote rounds at the worst floor (≤ 183 ms each) plus the
    // winner's heartbeat reaching the next (≤ 121 ms) plus a tick each side.
    expect(election * TICK_MS).toBeGreaterThanOrEqual(2 * 183 + 121 + 2 * TICK_MS);
    expect(ws[0]!.widthTicks).toBeGreaterThanOrEqual(2); // still randomized within a rank
  });

  test("liveness: a dead best voter costs one window; no timeout reaches 3 election timeouts", () => {
    const best = win("fra", "lhr", ranking)!;
    const next = win("ord", "lhr", ranking)!;
    // If fra is dead too, ord runs one election (plus a window) later: about a second here.
    expect((next.offsetTicks + next.widthTicks - (best.offsetTicks + best.widthTicks)) * TICK_MS).toBeLessThanOrEqual(1200);
    // Even with many voters (ranks beyond the cap) the window stays within the core's bound.
    const many: ElectionRanking = { order: Array.from({ length: 20 }, (_, i) => `n${i}`), electionMs: 900, guardMs: 200 };
    for (const id of many.order) {
      const w = win(id, "n0", many)!;
      expect(w.offsetTicks + w.widthTicks).toBeLessThanOrEqual(2 * E); // the core's bound: below 3E in all
    }
    // The last survivor here (sin) still fires within today's worst (2E) plus one timeout.
    const last = win("sin", "lhr", ranking)!;
    expect(E + last.offsetTicks + last.widthTicks).toBeLessThanOrEqual(3 * E);
  });

  test("the lost leader does not count; a voter the ranking left out goes after the ranked ones", () => {
    expect(win("fra", "lhr", ranking)!.offsetTicks).toBe(win("lhr", "fra", ranking)!.offsetTicks);
    const short: ElectionRanking = { order: ["lhr", "fra"], electionMs: 500, guardMs: 100 };
    expect(win("sin", "lhr", short)!.offsetTicks).toBeGreaterThan(win("fra", "lhr", short)!.offsetTicks);
  });

  test("no ranking: null, today's randomized [E, 2E)", () => {
    expect(win("fra", "lhr", null)).toBeNull();
  });
});

describe("a voter's copy of the ranking", () => {
  const ranking: ElectionRanking = { order: ["lhr", "fra", "ord"], electionMs: 500, guardMs: 100 };
  const opts = { self: "ord", tickMs: TICK_MS, electionTicks: E };

  test("taken only from the leader it follows", () => {
    const r = new ElectionRank();
    expect(r.received(0, "fra", "lhr", ranking)).toBe(false);
    expect(r.window(0, { ...opts, leader: "lhr" })).toBeNull();
    expect(r.received(0, "lhr", "lhr", ranking)).toBe(true);
    expect(r.window(0, { ...opts, leader: "lhr" })).not.toBeNull();
  });

  test("once the leader is lost (leader null) the ranks still leave it out", () => {
    const r = new ElectionRank();
    r.received(0, "lhr", "lhr", ranking);
    const following = r.window(0, { ...opts, leader: "lhr" });
    expect(r.window(1000, { ...opts, leader: null })).toEqual(following!);
  });

  test("a ranking older than its lifetime is dropped: back to today's window", () => {
    const r = new ElectionRank();
    r.received(0, "lhr", "lhr", ranking);
    expect(r.window(RANKING_TTL_MS, { ...opts, leader: "lhr" })).not.toBeNull();
    expect(r.window(RANKING_TTL_MS + 1, { ...opts, leader: "lhr" })).toBeNull();
  });
});
