// Latency-aware leader placement, decided on the leader: which voter would commit fastest, and
// is it worth a leadership transfer? Pure: the caller passes the clock, the measured round trips
// and the membership; this class keeps only what it needs to judge "for a sustained period".
//
// A leader commits once a quorum has the entry: with itself counted, it waits for its
// (quorum − 1)-th fastest follower, so the commit floor of voter V is the (quorum − 1)-th smallest
// of V's round trips to the other voters (the second fastest of four in a five-voter cluster).
// With REFERENCE.md's matrix: lhr 101 ms, fra and ord 115 ms, jnb 173 ms, sin 183 ms.
//
// Why it cannot flap:
// - A latency transfer needs the target to be faster than this leader by BOTH a fraction and an
//   absolute margin, at the start and at the end of `sustainMs` and by at least half of it in
//   between (jitter and one slow probe cannot do it).
// - Every latency transfer lowers the floor by that margin on the same matrix, so a chain of them
//   strictly improves and ends: moving back would need the old leader to be faster by the margin,
//   which contradicts the move that was just made. The new leader judges afresh (its own period).
// - After this leader started a transfer it waits `minIntervalMs` before trying another, so a
//   target that fails to take over is not asked again every second.
// Operator overrides come first: a leader in a LEADER_NEVER region hands over to the best allowed
// voter, and one outside LEADER_PREFER to the best preferred voter when one is healthy, without a
// latency margin but after the same sustained period (a brief health blip moves nothing).
import type { NodeId } from "../raft/types.ts";

export interface PlacementConfig {
  /** Regions whose voters lead when one of them is healthy (LEADER_PREFER), best latency among them. */
  prefer: readonly string[];
  /** Regions that never lead (LEADER_NEVER). */
  never: readonly string[];
  /** A latency transfer needs the target to commit at least this fraction faster... */
  minGainFraction: number;
  /** ...and at least this many milliseconds faster. */
  minGainMs: number;
  /** ...continuously for this long. */
  sustainMs: number;
  /** After starting a transfer, this leader waits this long before starting another. */
  minIntervalMs: number;
}

export const DEFAULT_PLACEMENT: PlacementConfig = {
  prefer: [],
  never: [],
  // 10%: enough above ±5% jitter (and the runner smooths it), low enough that fra or ord (115 ms)
  // hand over to lhr (101 ms): 14 ms on every write is worth one transfer.
  minGainFraction: 0.1,
  minGainMs: 10,
  sustainMs: 30_000,
  minIntervalMs: 120_000,
};

export interface PlacementView {
  self: NodeId;
  voters: readonly NodeId[];
  /** Region of each voter, as it reports it; a voter missing here has not reported yet. */
  regions: Readonly<Record<NodeId, string>>;
  /** rtt[a][b]: a's current round trip to b in ms; missing when a has no fresh measurement. */
  rtt: Readonly<Record<NodeId, Readonly<Record<NodeId, number>>>>;
  /** Voters the leader hears from now (the leader itself counts as healthy). */
  healthy: readonly NodeId[];
}

export type PlacementDecision =
  | { kind: "stay"; reason: string }
  | { kind: "wait"; to: NodeId; reason: string }
  | { kind: "transfer"; to: NodeId; reason: string };

/** One voter's commit floor if it led, in ms; Infinity when too few of its round trips are known. */
export function commitFloorMs(view: PlacementView, candidate: NodeId): number {
  const quorum = Math.floor(view.voters.length / 2) + 1;
  const healthy = new Set(view.healthy);
  const rtts = view.voters
    .filter((v) => v !== candidate && healthy.has(v))
    .map((v) => rttBetween(view, candidate, v))
    .filter((ms): ms is number => ms !== undefined)
    .sort((a, b) => a - b);
  if (quorum === 1) return 0;
  return rtts[quorum - 2] ?? Infinity;
}

/** a's measurement of the link, else b's (round trips are near symmetric). */
function rttBetween(view: PlacementView, a: NodeId, b: NodeId): number | undefined {
  return view.rtt[a]?.[b] ?? view.rtt[b]?.[a];
}

const ms = (n: number) => (Number.isFinite(n) ? `${Math.round(n)} ms` : "unknown");

export class LeaderPlacement {
  /** Since when a transfer has been warranted without a break (any target: the best may alternate). */
  private warrantedSince: number | null = null;
  private lastTransferAt: number | null = null;

  constructor(readonly cfg: PlacementConfig) {
    const both = cfg.prefer.filter((r) => cfg.never.includes(r));
    if (both.length > 0) throw new Error(`region ${both.join(",")} is both preferred and never to lead`);
  }

  /** Call when this node is not the leader: a new term of leadership is judged afresh. */
  reset(): void {
    this.warrantedSince = null;
    this.lastTransferAt = null;
  }

  /** The decision for the leader `view.self` at `now` (ms, any monotonic clock). */
  decide(now: number, view: PlacementView): PlacementDecision {
    // Hysteresis on the clock as well as on the move: the full margin starts the sustained period,
    // half of it keeps it running. A gain near the margin (lhr vs fra: 14 ms, 12%, with a few ms of
    // measurement noise) would otherwise restart the period at every dip and never finish it.
    const wanted = this.target(view, this.warrantedSince === null ? "full" : "half");
    if (wanted === null) {
      this.warrantedSince = null;
      return { kind: "stay", reason: this.stayReason(view) };
    }
    this.warrantedSince ??= now;
    const held = now - this.warrantedSince;
    const sustain = `held ${Math.round(held / 1000)} s of ${Math.round(this.cfg.sustainMs / 1000)} s`;
    if (held < this.cfg.sustainMs) return { kind: "wait", to: wanted.to, reason: `${wanted.why}; ${sustain}` };
    // The move itself needs the full margin, now: every transfer lowers the floor by at least it.
    const firm = this.target(view, "full");
    if (firm === null) return { kind: "wait", to: wanted.to, reason: `${wanted.why}; ${sustain}, waiting for the full margin` };
    if (this.lastTransferAt !== null && now - this.lastTransferAt < this.cfg.minIntervalMs) {
      const left = Math.round((this.cfg.minIntervalMs - (now - this.lastTransferAt)) / 1000);
      return { kind: "wait", to: firm.to, reason: `${firm.why}; a transfer was started ${Math.round((now - this.lastTransferAt) / 1000)} s ago, next try in ${left} s` };
    }
    this.lastTransferAt = now;
    this.warrantedSince = null;
    return { kind: "transfer", to: firm.to, reason: `${firm.why}, for ${Math.round(held / 1000)} s` };
  }

  /** The voter leadership should move to now, or null when this leader is where it should be. */
  private target(view: PlacementView, margin: "full" | "half"): { to: NodeId; why: string } | null {
    const region = (id: NodeId): string | undefined => view.regions[id];
    const self = view.self;
    const selfFloor = commitFloorMs(view, self);
    const healthy = new Set(view.healthy);
    const allowed = (id: NodeId): boolean => {
      const r = region(id);
      // With a never-list an unreported region cannot be judged allowed.
      return r !== undefined ? !this.cfg.never.includes(r) : this.cfg.never.length === 0;
    };
    const preferred = (id: NodeId): boolean => this.cfg.prefer.includes(region(id) ?? "");
    const others = view.voters
      .filter((id) => id !== self && healthy.has(id) && allowed(id))
      .map((id) => ({ id, floor: commitFloorMs(view, id) }))
      .filter((c) => Number.isFinite(c.floor))
      .sort((a, b) => a.floor - b.floor || (a.id < b.id ? -1 : 1));
    const best = (list: typeof others) => list[0];
    const at = (id: NodeId) => `${id} (${region(id) ?? "region unknown"})`;

    if (!allowed(self)) {
      const pick = best(others.filter((c) => preferred(c.id))) ?? best(others);
      if (pick === undefined) return null;
      return { to: pick.id, why: `this leader's region ${region(self) ?? "unknown"} is in LEADER_NEVER; ${at(pick.id)} would commit in ${ms(pick.floor)}` };
    }
    if (this.cfg.prefer.length > 0 && !preferred(self)) {
      const pick = best(others.filter((c) => preferred(c.id)));
      if (pick !== undefined) {
        return { to: pick.id, why: `${at(pick.id)} is in LEADER_PREFER (${this.cfg.prefer.join(",")}) and healthy, would commit in ${ms(pick.floor)}` };
      }
    }
    if (!Number.isFinite(selfFloor)) return null; // too little measured to compare with anyone
    // A preferred leader only moves to another preferred region: the operator's choice stands.
    const candidates = this.cfg.prefer.length > 0 && preferred(self) ? others.filter((c) => preferred(c.id)) : others;
    const pick = best(candidates);
    if (pick === undefined) return null;
    const gain = selfFloor - pick.floor;
    const scale = margin === "full" ? 1 : 0.5;
    if (gain < scale * this.cfg.minGainMs || gain < scale * this.cfg.minGainFraction * selfFloor) return null;
    return {
      to: pick.id,
      why: `${at(pick.id)} would commit in ${ms(pick.floor)}, ${at(self)} in ${ms(selfFloor)} (${Math.round((100 * gain) / selfFloor)}% faster)`,
    };
  }

  private stayReason(view: PlacementView): string {
    const selfFloor = commitFloorMs(view, view.self);
    if (!Number.isFinite(selfFloor)) return "too few round trips measured yet to compare voters";
    const healthy = new Set(view.healthy);
    const rivals = view.voters
      .filter((id) => id !== view.self && healthy.has(id))
      .map((id) => ({ id, floor: commitFloorMs(view, id) }))
      .filter((c) => Number.isFinite(c.floor))
      .sort((a, b) => a.floor - b.floor);
    const next = rivals[0];
    const here = `${view.self} commits in ${ms(selfFloor)}`;
    if (next === undefined) return `${here}; no other voter to compare with`;
    const margin = `a move needs ≥ ${Math.round(this.cfg.minGainFraction * 100)}% and ≥ ${this.cfg.minGainMs} ms`;
    return `${here}; best other voter ${next.id} (${view.regions[next.id] ?? "region unknown"}) ${ms(next.floor)} (${margin}, within the operator's overrides)`;
  }
}
