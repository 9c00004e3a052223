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
import { MAX_TRAILING_LOGS, notCaughtUp, quorumLostByRemoving } from "./safety.ts";
import type { ConfChange, ConfState } from "../../raft/types.ts";

export interface AutopilotConfig {
  targetVoters: number;
  /** A learner must stay healthy this long before promotion (Consul: 10 s). */
  stabilizationMs: number;
  /** Healthy means within this many entries of the leader's log (Consul: 250). */
  maxTrailingLogs: number;
  /** How long gossip must hold a server dead (or left) before it is removed. */
  cleanupDeadMs: number;
}

export const DEFAULT_AUTOPILOT: AutopilotConfig = {
  targetVoters: 5,
  stabilizationMs: 10_000,
  maxTrailingLogs: MAX_TRAILING_LOGS,
  cleanupDeadMs: 5 * 60_000,
};

/** A server as gossip sees it; `since` is when it entered `state`, on the caller's clock. */
export interface GossipServer {
  id: string;
  rpcAddr: string;
  region: string;
  role: "voter" | "learner" | "candidate";
  cluster: string;
  state: "alive" | "suspect" | "dead" | "left";
  since: number;
}

export interface LeaderView {
  selfId: string;
  lastIndex: number;
  conf: ConfState;
  progress: Record<string, { match: number; recentActive: boolean }>;
  /** "c:<digest>" of our cluster, or "" when it was bootstrapped from a static peer list. */
  cluster: string;
}

export interface Decision {
  change: ConfChange;
  reason: string;
}

export class Autopilot {
  private readonly healthySince = new Map<string, number>();

  constructor(private readonly cfg: AutopilotConfig) {}

  /** The next change to propose, or null when the membership is as it should be. */
  next(now: number, leader: LeaderView, servers: readonly GossipServer[], unverified: ReadonlySet<string> = new Set()): Decision | null {
    const byId = new Map(servers.map((s) => [s.id, s]));
    this.trackHealth(now, leader, byId);
    return this.removal(now, leader, byId) ?? this.addition(leader, servers, unverified) ?? this.promotion(now, leader, byId);
  }

  private trackHealth(now: number, leader: LeaderView, byId: Map<string, GossipServer>): void {
    for (const id of [...this.healthySince.keys()]) if (!leader.conf.learners.includes(id)) this.healthySince.delete(id);
    for (const id of leader.conf.learners) {
      const pr = leader.progress[id];
      const healthy = byId.get(id)?.state === "alive" && pr !== undefined && notCaughtUp(leader, id, this.cfg.maxTrailingLogs) === null;
      if (!healthy) this.healthySince.delete(id);
      else if (!this.healthySince.has(id)) this.healthySince.set(id, now);
    }
  }

  private removal(now: number, leader: LeaderView, byId: Map<string, GossipServer>): Decision | null {
    const { voters, learners } = leader.conf;
    const gone = (id: string): GossipServer | null => {
      const s = byId.get(id);
      if (s === undefined || id === leader.selfId) return null; // never seen by gossip: not ours to judge
      // Raft's own evidence beats gossip's: the leader heard from it within the last election timeout.
      if (leader.progress[id]?.recentActive === true) return null;
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
      return { change: { op: "remove", node: id, context: "" }, reason: `voter ${id} is ${this.describe(now, s)}; ${healthyVoters} of ${remaining} remaining voters are alive` };
    }
    for (const id of [...learners].sort()) {
      const s = gone(id);
      if (s !== null) return { change: { op: "remove", node: id, context: "" }, reason: `learner ${id} is ${this.describe(now, s)}` };
    }
    return null;
  }

  private addition(leader: LeaderView, servers: readonly GossipServer[], unverified: ReadonlySet<string>): Decision | null {
    const members = new Set([...leader.conf.voters, ...leader.conf.learners]);
    const ours = (c: string): boolean => c === "" || (leader.cluster !== "" && c === leader.cluster);
    const fresh = servers
      // Any role: a server removed earlier still believes it is a voter, and may rejoin as a learner.
      .filter((s) => s.state === "alive" && !members.has(s.id) && ours(s.cluster) && !unverified.has(s.id))
      .sort((a, b) => (a.id < b.id ? -1 : 1))[0];
    if (fresh === undefined) return null;
    return { change: { op: "addLearner", node: fresh.id, context: fresh.rpcAddr }, reason: `gossip found server ${fresh.id} at ${fresh.rpcAddr} (${fresh.region})` };
  }

  private promotion(now: number, leader: LeaderView, byId: Map<string, GossipServer>): Decision | null {
    if (leader.conf.voters.length >= this.cfg.targetVoters) return null;
    const ready = leader.conf.learners.filter((id) => {
      const since = this.healthySince.get(id);
      return since !== undefined && now - since >= this.cfg.stabilizationMs;
    });
    if (ready.length === 0) return null;
    // Spread voters over regions: one region down should cost as few votes as possible.
    const votersIn = new Map<string, number>();
    for (const v of leader.conf.voters) {
      const r = byId.get(v)?.region ?? "";
      votersIn.set(r, (votersIn.get(r) ?? 0) + 1);
    }
    const rank = (id: string): number => votersIn.get(byId.get(id)?.region ?? "") ?? 0;
    ready.sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
    const pick = ready[0]!;
    const secs = Math.round((now - this.healthySince.get(pick)!) / 1000);
    return {
      change: { op: "addVoter", node: pick, context: byId.get(pick)?.rpcAddr ?? "" },
      reason: `learner ${pick} caught up and healthy for ${secs} s; voters ${leader.conf.voters.length} < target ${this.cfg.targetVoters}`,
    };
  }

  private describe(now: number, s: GossipServer): string {
    return `${s.state === "left" ? "gone (left)" : "dead"} for ${Math.round((now - s.since) / 1000)} s and silent to Raft`;
  }
}
