// Who runs first after a leader loss: the leader ranks the voters by where they would commit
// (placement.ts's commit floor, the operator's LEADER_PREFER / LEADER_NEVER first) and tells each
// voter the ranking with its placement report request (placement_report.ts); each voter turns its
// own rank into an election-timeout window for the core (Raft.setElectionWindow). Pure: the caller
// passes the clock and the measurements.
//
// The failure this prevents: with every follower's timeout drawn from the same [E, 2E), two far
// followers regularly time out within one WAN vote round of each other, both campaign, neither
// gets a majority, and the cluster waits out another timeout (split votes cost 3-4 s in 2 of 5
// lab trials). Disjoint windows in rank order make the best-placed survivor run first, and win
// before the next one's window opens:
//
//   rank k (the lost leader not counted) fires in  E + guard + k*spread  ...  + spread
//
// - spread covers one election by the earlier rank: its pre-vote round and its vote round (each
//   a quorum round trip, at most the worst commit floor), its first heartbeat reaching the next
//   rank (half the worst round trip), and a tick of rounding on each side.
// - guard is half the worst round trip plus a tick: followers heard the dead leader's last
//   heartbeat up to one one-way delay apart, and a pre-vote is refused while the voter still
//   hears a leader (stickiness). Rank 0 fires after everyone's lease ran out, so it is not
//   refused and pushed behind rank 1.
// - Liveness: a dead rank-0 voter costs only its window; every offset is capped at E, so no
//   timeout exceeds 3E (today's worst is 2E): at most one election timeout more, never unbounded.
// - Without a ranking (fresh cluster, no round trips measured yet, placement off, the ranking
//   older than RANKING_TTL_MS) the window is null: today's [E, 2E). A voter the ranking leaves
//   out (the leader could not measure it) goes after the ranked ones.
// Safety does not depend on any of this: only when a voter campaigns changes, never how it votes.
import type { NodeId } from "../raft/types.ts";
import type { ElectionWindow } from "../raft/raw_node.ts";
import { commitFloorMs, type PlacementConfig, type PlacementView } from "./placement.ts";

/** What the leader sends each voter. */
export interface ElectionRanking {
  /** Voters best first; voters with too few measured round trips are left out (they go last). */
  order: NodeId[];
  /** Milliseconds from one rank's window to the next (before the tick of rounding each side). */
  spreadMs: number;
  /** Milliseconds every rank waits beyond the election timeout (before its tick). */
  guardMs: number;
}

/** A ranking is used this long after it arrived; the leader sends a fresh one every few seconds. */
export const RANKING_TTL_MS = 60_000;

/** The leader's ranking of the voters in `view`, or null when fewer than two could be ranked. */
export function rankVoters(view: PlacementView, cfg: Pick<PlacementConfig, "prefer" | "never">): ElectionRanking | null {
  const ranked = view.voters
    .map((id) => {
      const region = view.regions[id];
      // The operator's choice first: preferred regions run first, never-regions last.
      const tier = region !== undefined && cfg.never.includes(region) ? 2 : region !== undefined && cfg.prefer.includes(region) ? 0 : 1;
      return { id, tier, floor: commitFloorMs(view, id) };
    })
    .filter((c) => Number.isFinite(c.floor))
    .sort((a, b) => a.tier - b.tier || a.floor - b.floor || (a.id < b.id ? -1 : 1));
  if (ranked.length < 2) return null;
  let worstRtt = 0;
  for (const a of view.voters) for (const b of view.voters) {
    const ms = a === b ? undefined : (view.rtt[a]?.[b] ?? view.rtt[b]?.[a]);
    if (ms !== undefined) worstRtt = Math.max(worstRtt, ms);
  }
  const worstFloor = Math.max(...ranked.map((c) => c.floor));
  return { order: ranked.map((c) => c.id), spreadMs: Math.ceil(2 * worstFloor + worstRtt / 2), guardMs: Math.ceil(worstRtt / 2) };
}

/**
 * This voter's election window from `ranking` (see the top of the file), or null for today's
 * randomized timeout. `leader` is the leader this node follows or last followed: it does not
 * count in the ranks (when it is gone, the best of the others should run first).
 */
export function electionWindow(opts: {
  self: NodeId;
  leader: NodeId | null;
  ranking: ElectionRanking | null;
  tickMs: number;
  electionTicks: number;
}): ElectionWindow | null {
  const { ranking, tickMs, electionTicks: e } = opts;
  if (ranking === null) return null;
  const ranks = ranking.order.filter((id) => id !== opts.leader);
  const k = ranks.includes(opts.self) ? ranks.indexOf(opts.self) : ranks.length;
  const spread = Math.ceil(ranking.spreadMs / tickMs) + 2;
  const guard = Math.ceil(ranking.guardMs / tickMs) + 1;
  return { offsetTicks: Math.min(guard + k * spread, e), widthTicks: Math.min(spread, e) };
}

/** A voter's copy of the leader's latest ranking, and the leader it follows or last followed. */
export class ElectionRank {
  private ranking: { value: ElectionRanking; at: number } | null = null;
  private lastLeader: NodeId | null = null;

  /** A ranking from `from`, accepted only from the leader this node follows now. */
  received(now: number, from: NodeId, leader: NodeId | null, ranking: ElectionRanking): boolean {
    if (from !== leader) return false;
    this.ranking = { value: ranking, at: now };
    return true;
  }

  /** The window for now; `leader` is the node's current leader (null while there is none). */
  window(now: number, opts: { self: NodeId; leader: NodeId | null; tickMs: number; electionTicks: number }): ElectionWindow | null {
    if (opts.leader !== null) this.lastLeader = opts.leader;
    if (this.ranking !== null && now - this.ranking.at > RANKING_TTL_MS) this.ranking = null;
    return electionWindow({ ...opts, leader: this.lastLeader, ranking: this.ranking?.value ?? null });
  }

  forget(): void {
    this.ranking = null;
  }
}
