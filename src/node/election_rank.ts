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
//   rank k (the lost leader not counted) fires in  E + guard + k*(election + jitter)  ... + jitter
//
// - election covers one election by the earlier rank: its pre-vote round and its vote round
//   (each a quorum round trip, at most the worst commit floor), its first heartbeat reaching the
//   next rank (half the worst round trip), and a tick of rounding on each side.
// - jitter (half of election, at least 2 ticks) is each rank's own random spread: two voters that
//   briefly hold different rankings (one missed the leader's latest) rarely fire together.
// - guard is half the worst round trip plus a tick: followers heard the dead leader's last
//   heartbeat up to one one-way delay apart, and a pre-vote is refused while the voter still
//   hears a leader (stickiness). Rank 0 fires after everyone's lease ran out, so it is not
//   refused and pushed behind rank 1.
// - Liveness: a dead rank-0 voter costs the next one election and a window (about a second on
//   the Fly mesh); offsets are capped so that no timeout reaches 3E (today's worst is 2E): at
//   most one election timeout more, never unbounded. Only a third rank in a row (two dead
//   voters besides the leader: no quorum among five anyway) comes near the cap.
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
  /** Milliseconds one election by an earlier rank takes, until the next rank hears the winner. */
  electionMs: number;
  /** Milliseconds every rank waits beyond the election timeout (before its tick). */
  guardMs: number;
}

/** A voter's window and its rank (0: runs first) among the voters other than the lost leader. */
export type RankedWindow = ElectionWindow & { rank: number };

/** A ranking is used this long after it arrived; the leader sends a fresh one every few seconds. */
export const RANKING_TTL_MS = 60_000;

/**
 * The leader's ranking of the voters in `view`, or null when fewer than two could be ranked.
 * `previous` (the last ranking this leader sent) makes it sticky: a voter moves ahead of one that
 * ranked before it only when its floor is lower by placement's margins (≥ minGainMs and ≥
 * minGainFraction). Why: fra and ord commit within a few ms of each other, and measurement noise
 * would swap them every round; a voter that missed one round would then share a rank with
 * another, and the two would campaign together, the split vote this ranking exists to prevent.
 */
export function rankVoters(
  view: PlacementView,
  cfg: Pick<PlacementConfig, "prefer" | "never" | "minGainMs" | "minGainFraction">,
  previous: readonly NodeId[] | null = null,
): ElectionRanking | null {
  const ranked = view.voters
    .map((id) => {
      const region = view.regions[id];
      // The operator's choice first: preferred regions run first, never-regions last.
      const tier = region !== undefined && cfg.never.includes(region) ? 2 : region !== undefined && cfg.prefer.includes(region) ? 0 : 1;
      return { id, tier, floor: commitFloorMs(view, id) };
    })
    .filter((c) => Number.isFinite(c.floor))
    .sort((a, b) => a.tier - b.tier || a.floor - b.floor || (a.id < b.id ? -1 : 1));
  if (previous !== null) {
    // Start from the previous order (newly ranked voters where the sort put them), then let a
    // voter pass the one ahead only when it is clearly better: a strict order, so this ends.
    const before = (id: NodeId) => {
      const i = previous.indexOf(id);
      return i < 0 ? Infinity : i;
    };
    const pos = new Map(ranked.map((c, i) => [c.id, i]));
    ranked.sort((a, b) => before(a.id) - before(b.id) || pos.get(a.id)! - pos.get(b.id)!);
    const clearlyBetter = (b: (typeof ranked)[number], a: (typeof ranked)[number]) =>
      b.tier < a.tier || (b.tier === a.tier && a.floor - b.floor >= cfg.minGainMs && a.floor - b.floor >= cfg.minGainFraction * a.floor);
    for (let pass = 0; pass < ranked.length; pass++) {
      let swapped = false;
      for (let i = 0; i + 1 < ranked.length; i++) {
        if (clearlyBetter(ranked[i + 1]!, ranked[i]!)) {
          [ranked[i], ranked[i + 1]] = [ranked[i + 1]!, ranked[i]!];
          swapped = true;
        }
      }
      if (!swapped) break;
    }
  }
  if (ranked.length < 2) return null;
  let worstRtt = 0;
  for (const a of view.voters) for (const b of view.voters) {
    const ms = a === b ? undefined : (view.rtt[a]?.[b] ?? view.rtt[b]?.[a]);
    if (ms !== undefined) worstRtt = Math.max(worstRtt, ms);
  }
  const worstFloor = Math.max(...ranked.map((c) => c.floor));
  return { order: ranked.map((c) => c.id), electionMs: Math.ceil(2 * worstFloor + worstRtt / 2), guardMs: Math.ceil(worstRtt / 2) };
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
}): RankedWindow | null {
  const { ranking, tickMs, electionTicks: e } = opts;
  if (ranking === null) return null;
  const ranks = ranking.order.filter((id) => id !== opts.leader);
  const k = ranks.includes(opts.self) ? ranks.indexOf(opts.self) : ranks.length;
  const election = Math.ceil(ranking.electionMs / tickMs) + 2;
  const jitter = Math.max(2, Math.ceil(election / 2));
  const guard = Math.ceil(ranking.guardMs / tickMs) + 1;
  const width = Math.min(jitter, e);
  return { offsetTicks: Math.min(guard + k * (election + jitter), 2 * e - width), widthTicks: width, rank: k };
}

/** A voter's copy of the leader's latest ranking, and the leader it follows or last followed. */
export class ElectionRank {
  private ranking: { value: ElectionRanking; at: number; from: NodeId } | null = null;
  private lastLeader: NodeId | null = null;

  /** A ranking from `from`, accepted only from the leader this node follows now. */
  received(now: number, from: NodeId, leader: NodeId | null, ranking: ElectionRanking): boolean {
    if (from !== leader) return false;
    this.ranking = { value: ranking, at: now, from };
    return true;
  }

  /** The ranking in use and who sent it (null: none, or expired). */
  current(): { ranking: ElectionRanking; from: NodeId } | null {
    return this.ranking === null ? null : { ranking: this.ranking.value, from: this.ranking.from };
  }

  /** The window for now; `leader` is the node's current leader (null while there is none). */
  window(now: number, opts: { self: NodeId; leader: NodeId | null; tickMs: number; electionTicks: number }): RankedWindow | null {
    if (opts.leader !== null) this.lastLeader = opts.leader;
    if (this.ranking !== null && now - this.ranking.at > RANKING_TTL_MS) this.ranking = null;
    return electionWindow({ ...opts, leader: this.lastLeader, ranking: this.ranking?.value ?? null });
  }

  forget(): void {
    this.ranking = null;
  }
}
