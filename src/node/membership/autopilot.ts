// Gossip → Raft membership on the leader (Consul's autopilot): servers gossip finds join as
// learners, are promoted to voters once caught up and stable for a while (up to a target voter
// count; the rest stay learners), and servers gossip has held dead or left for longer than the
// cleanup window are removed, a voter only while the voters left keep a quorum. It proposes one
// change at a time and says why, so every decision can be logged and shown by `phalanx members`.
//
// Gossip alone never changes the configuration (issue 9): a "dead" or "left" may come from a
// third party or a replay, so both wait out the cleanup window, and a server Raft itself still
// hears from is never removed; an addition is only a proposal that the manager (manager.ts)
// carries out after the server proved its identity over a signed peer call. Servers whose proof
// failed recently are passed in as `unverified` and skipped, so a fake one cannot block the rest.
//
// VOTER_REGIONS (voterRegions, empty: any region) places voters by region, by the regions the
// log records for members (Member.region), never by gossip's word alone:
// - a learner is promoted only when its recorded region is in the list; one outside stays a
//   learner for good (it serves local stale reads and never campaigns: the core lets only voters
//   campaign or take a transfer). A learner whose region is not recorded yet is not promoted.
// - a voter region with no healthy server is reported (regionNotes), never filled from a far
//   region: a far voter would put its round trip into every commit, which is what the list is
//   there to prevent. Promoting outside the list is the operator's call (change VOTER_REGIONS).
// - a voter outside the list (a founder from before the list, or a region dropped from it) is
//   removed once the healthy voters inside the list form a quorum of the voters left without it,
//   so the commit quorum never comes to depend on a far region; gossip then adds it back as a
//   learner. Never below three voters (or TARGET_VOTERS if smaller): with lhr, fra and jnb voting
//   and no server in ord yet, lhr and fra already commit without jnb, and jnb is what lets the
//   cluster survive losing one of them; it leaves once ord has a voter. The leader never removes
//   itself (leadership moves first: LEADER_PREFER defaults to VOTER_REGIONS).
import { MAX_TRAILING_LOGS, notCaughtUp, quorumLostByRemoving } from "./safety.ts";
import { encodeMemberContext, invalidRegion, type Member } from "../../kv/member.ts";
import type { ConfChange, ConfState, NodeId } from "../../raft/types.ts";
import type { ServerHealth } from "./server_view.ts";

export interface AutopilotConfig {
  targetVoters: number;
  /** A learner must stay healthy this long before promotion (Consul: 10 s). */
  stabilizationMs: number;
  /** Healthy means within this many entries of the leader's log (Consul: 250). */
  maxTrailingLogs: number;
  /** How long gossip must hold a server dead (or left) before it is removed. */
  cleanupDeadMs: number;
  /** VOTER_REGIONS: the regions voters run in; empty: any. */
  voterRegions: readonly string[];
}

export const DEFAULT_AUTOPILOT: AutopilotConfig = {
  targetVoters: 5,
  stabilizationMs: 10_000,
  maxTrailingLogs: MAX_TRAILING_LOGS,
  cleanupDeadMs: 5 * 60_000,
  voterRegions: [],
};

export interface LeaderView {
  selfId: string;
  lastIndex: number;
  conf: ConfState;
  /** The replicated members (the one model): their recorded regions and addresses. */
  members: readonly Member[];
  progress: Record<string, { match: number; answeredRecently: boolean }>;
  /** "c:<digest>" of our cluster, or "" when it was bootstrapped from a static peer list. */
  cluster: string;
}

/**
 * Why the change: `join` (addLearner of a server gossip found), `promote`, `cleanup` (removal of a
 * server gossip holds dead or left: the manager removes it only if it cannot prove it is alive),
 * `demote` (removal of a live voter outside VOTER_REGIONS, decided on the log's regions and
 * Raft's own evidence of who answers; it rejoins as a learner).
 */
export type DecisionKind = "join" | "promote" | "cleanup" | "demote";

export interface Decision {
  kind: DecisionKind;
  change: ConfChange;
  reason: string;
}

export class Autopilot {
  private readonly healthySince = new Map<string, number>();

  constructor(private readonly cfg: AutopilotConfig) {}

  /** The next change to propose, or null when the membership is as it should be. */
  next(now: number, leader: LeaderView, servers: readonly ServerHealth[], unverified: ReadonlySet<string> = new Set()): Decision | null {
    const byId = new Map(servers.map((s) => [s.id, s]));
    this.trackHealth(now, leader, byId);
    return this.removal(now, leader, byId) ?? this.addition(leader, servers, unverified) ?? this.promotion(now, leader, byId) ?? this.demotion(leader, byId);
  }

  private trackHealth(now: number, leader: LeaderView, byId: Map<string, ServerHealth>): void {
    for (const id of [...this.healthySince.keys()]) if (!leader.conf.learners.includes(id)) this.healthySince.delete(id);
    for (const id of leader.conf.learners) {
      const pr = leader.progress[id];
      const healthy = byId.get(id)?.state === "alive" && pr !== undefined && notCaughtUp(leader, id, this.cfg.maxTrailingLogs) === null;
      if (!healthy) this.healthySince.delete(id);
      else if (!this.healthySince.has(id)) this.healthySince.set(id, now);
    }
  }

  private removal(now: number, leader: LeaderView, byId: Map<string, ServerHealth>): Decision | null {
    const { voters, learners } = leader.conf;
    const gone = (id: string): ServerHealth | null => {
      const s = byId.get(id);
      if (s === undefined || id === leader.selfId) return null; // never seen by gossip: not ours to judge
      // Raft's own evidence beats gossip's: the leader heard from it within the last election timeout.
      if (leader.progress[id]?.answeredRecently === true) return null;
      // A "left" is no proof either: anyone holding the gossip key can claim it for another server.
      if ((s.state === "dead" || s.state === "left") && now - s.since >= this.cfg.cleanupDeadMs) return s;
      return null;
    };
    const isAlive = (id: string) => id === leader.selfId || byId.get(id)?.state === "alive";
    const healthyVoters = voters.filter(isAlive).length;
    for (const id of [...voters].sort()) {
      const s = gone(id);
      if (s === null) continue;
      const remaining = voters.length - 1;
      if (quorumLostByRemoving(voters, id, isAlive) !== null) {
        continue; // removing it would leave a configuration whose quorum the live voters cannot reach
      }
      return { kind: "cleanup", change: { op: "remove", node: id, context: "" }, reason: `voter ${id} is ${this.describe(now, s)}; ${healthyVoters} of ${remaining} remaining voters are alive` };
    }
    for (const id of [...learners].sort()) {
      const s = gone(id);
      if (s !== null) return { kind: "cleanup", change: { op: "remove", node: id, context: "" }, reason: `learner ${id} is ${this.describe(now, s)}` };
    }
    return null;
  }

  private addition(leader: LeaderView, servers: readonly ServerHealth[], unverified: ReadonlySet<string>): Decision | null {
    const members = new Set([...leader.conf.voters, ...leader.conf.learners]);
    const ours = (c: string): boolean => c === "" || (leader.cluster !== "" && c === leader.cluster);
    const fresh = servers
      // Any role: a server removed earlier still believes it is a voter, and may rejoin as a learner.
      .filter((s) => s.state === "alive" && !members.has(s.id) && ours(s.cluster) && !unverified.has(s.id))
      .sort((a, b) => (a.id < b.id ? -1 : 1))[0];
    if (fresh === undefined) return null;
    // Its region as it advertises it: the server proves its identity at that address before the
    // change is proposed, and a server can only ever speak for its own region anyway.
    const stays = this.cfg.voterRegions.length > 0 && !this.mayVote(fresh.region) ? `; ${fresh.region} is not in VOTER_REGIONS: it stays a learner` : "";
    return {
      kind: "join",
      change: { op: "addLearner", node: fresh.id, context: encodeMemberContext({ address: fresh.rpcAddr, region: validOr(fresh.region) }) },
      reason: `gossip found server ${fresh.id} at ${fresh.rpcAddr} (${fresh.region})${stays}`,
    };
  }

  private promotion(now: number, leader: LeaderView, byId: Map<string, ServerHealth>): Decision | null {
    if (leader.conf.voters.length >= this.cfg.targetVoters) return null;
    const region = regionsOf(leader);
    const ready = leader.conf.learners.filter((id) => {
      const since = this.healthySince.get(id);
      return since !== undefined && now - since >= this.cfg.stabilizationMs && this.mayVote(region(id));
    });
    if (ready.length === 0) return null;
    // Spread voters over regions: one region down should cost as few votes as possible.
    const votersIn = new Map<string, number>();
    for (const v of leader.conf.voters) votersIn.set(region(v), (votersIn.get(region(v)) ?? 0) + 1);
    const rank = (id: string): number => votersIn.get(region(id)) ?? 0;
    ready.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
    const pick = ready[0]!;
    const secs = Math.round((now - this.healthySince.get(pick)!) / 1000);
    const inList = this.cfg.voterRegions.length > 0 ? `, ${region(pick)} is in VOTER_REGIONS` : "";
    return {
      kind: "promote",
      // The address Raft will store comes from gossip, so the manager has it proven first.
      change: { op: "addVoter", node: pick, context: encodeMemberContext({ address: byId.get(pick)?.rpcAddr ?? "", region: region(pick) }) },
      reason: `learner ${pick} (${region(pick) || "region unknown"}) caught up and healthy for ${secs} s${inList}; voters ${leader.conf.voters.length} < target ${this.cfg.targetVoters}`,
    };
  }

  /**
   * A voter outside VOTER_REGIONS leaves the voters (and comes back as a learner through
   * addition) once the healthy voters inside the list are a quorum of the voters left without it.
   */
  private demotion(leader: LeaderView, byId: Map<string, ServerHealth>): Decision | null {
    if (this.cfg.voterRegions.length === 0) return null;
    const region = regionsOf(leader);
    // Both gossip and Raft must see a voter alive to count it: a forged `alive` cannot make the
    // leader shed a far voter the quorum still needs.
    const isAlive = (id: string) => id === leader.selfId || (byId.get(id)?.state === "alive" && leader.progress[id]?.answeredRecently === true);
    for (const id of [...leader.conf.voters].sort()) {
      // Unknown region: not judged until it is recorded. The leader: leadership moves first.
      if (id === leader.selfId || region(id) === "" || this.mayVote(region(id))) continue;
      const remaining = leader.conf.voters.filter((v) => v !== id);
      const inside = remaining.filter((v) => this.mayVote(region(v)) && isAlive(v)).length;
      const quorum = Math.floor(remaining.length / 2) + 1;
      if (remaining.length < Math.min(3, this.cfg.targetVoters)) continue;
      if (inside < quorum || quorumLostByRemoving(leader.conf.voters, id, isAlive) !== null) continue;
      return {
        kind: "demote",
        change: { op: "remove", node: id, context: "" },
        reason: `voter ${id} runs in ${region(id)}, outside VOTER_REGIONS (${this.cfg.voterRegions.join(",")}); ${inside} healthy voters inside are a quorum of the ${remaining.length} left; it rejoins as a learner`,
      };
    }
    return null;
  }

  /**
   * What keeps the voters from matching VOTER_REGIONS, for status and logs (empty: they match, or
   * there is no list): a voter region without a healthy server, a voter outside the list that
   * cannot leave yet, a member whose region is not recorded.
   */
  regionNotes(leader: LeaderView, servers: readonly ServerHealth[]): string[] {
    if (this.cfg.voterRegions.length === 0) return [];
    const byId = new Map(servers.map((s) => [s.id, s]));
    const region = regionsOf(leader);
    const healthy = (id: string) => id === leader.selfId || byId.get(id)?.state === "alive";
    const notes: string[] = [];
    for (const r of this.cfg.voterRegions) {
      const voters = leader.conf.voters.filter((v) => region(v) === r && healthy(v));
      if (voters.length > 0) continue;
      const learners = leader.conf.learners.filter((l) => region(l) === r && healthy(l));
      notes.push(
        learners.length > 0
          ? `voter region ${r} has no healthy voter yet; learner ${learners.join(",")} is promoted once caught up and stable`
          : `voter region ${r} has no healthy server: no voter there, and none is promoted from another region (add a server in ${r}, or change VOTER_REGIONS)`,
      );
    }
    for (const v of leader.conf.voters) {
      if (region(v) !== "" && !this.mayVote(region(v))) {
        notes.push(`voter ${v} runs in ${region(v)}, outside VOTER_REGIONS: it leaves the voters once the healthy voters inside are a quorum without it and ${Math.min(3, this.cfg.targetVoters)} voters remain${v === leader.selfId ? ", and leadership has moved" : ""}`);
      }
    }
    for (const m of leader.members) if (m.region === "") notes.push(`member ${m.id} has no recorded region yet`);
    return notes;
  }

  private mayVote(region: string): boolean {
    if (this.cfg.voterRegions.length === 0) return true;
    return region !== "" && this.cfg.voterRegions.includes(region);
  }

  private describe(now: number, s: ServerHealth): string {
    return `${s.state === "left" ? "gone (left)" : "dead"} for ${Math.round((now - s.since) / 1000)} s and silent to Raft`;
  }
}

/** The region the log records for each member ("" when not recorded). */
function regionsOf(leader: LeaderView): (id: NodeId) => string {
  const byId = new Map(leader.members.map((m) => [m.id, m.region]));
  return (id) => byId.get(id) ?? "";
}

/** A region a server advertises that is no region name is not recorded (""), never trusted to the log. */
function validOr(region: string): string {
  return invalidRegion(region, "must be known") === null ? region : "";
}
