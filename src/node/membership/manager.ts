// Runs membership from gossip on a live node: keeps our gossip metadata in step with our Raft role,
// hands gossip's addresses to the transport, and on the leader asks the autopilot for the next
// change, proposes it and logs why. Decisions are kept for `phalanx members`.
import type { GossipAgent } from "../../gossip/agent.ts";
import type { Member } from "../../gossip/member.ts";
import type { Logger } from "../log.ts";
import type { PhalanxNode } from "../node.ts";
import { Autopilot, type AutopilotConfig, type GossipServer } from "./autopilot.ts";

const STEP_MS = 1000;
const KEEP_DECISIONS = 20;

export interface DecisionRecord {
  at: string;
  change: string;
  reason: string;
  outcome: string;
}

export class MembershipManager {
  private readonly autopilot: Autopilot;
  private timer: ReturnType<typeof setInterval> | undefined;
  private readonly decisions: DecisionRecord[] = [];
  private lastRefusal = "";

  constructor(
    private readonly node: PhalanxNode,
    private readonly agent: GossipAgent,
    cfg: AutopilotConfig,
    private readonly clusterId: string,
    private readonly log: Logger,
  ) {
    this.autopilot = new Autopilot(cfg);
  }

  start(): void {
    this.node.membershipInfo = () => this.info();
    this.node.gossipCounters = () => this.agent.counters();
    this.step();
    this.timer = setInterval(() => this.step(), STEP_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.node.membershipInfo = null;
    this.node.gossipCounters = null;
  }

  private step(): void {
    if (this.node.isStopped) return;
    const members = this.agent.members();
    const alive = members.filter((m) => m.id !== this.node.id && m.state === "alive");
    this.node.setAddressHints(new Map(alive.map((m) => [m.id, m.meta.rpcAddr])));
    const s = this.node.status();
    const role = s.conf.voters.includes(this.node.id) ? "voter" : s.conf.learners.includes(this.node.id) ? "learner" : "candidate";
    const self = this.agent.self().meta;
    if (self.role !== role || self.cluster !== this.clusterId) this.agent.setMeta({ role, cluster: this.clusterId });
    if (this.node.isLeader()) this.lead(members);
  }

  private lead(members: Member[]): void {
    const s = this.node.status();
    const servers: GossipServer[] = members.map((m) => ({
      id: m.id,
      rpcAddr: m.meta.rpcAddr,
      region: m.meta.region,
      role: m.meta.role,
      cluster: m.meta.cluster,
      state: m.state,
      since: m.since,
    }));
    const view = { selfId: this.node.id, lastIndex: s.lastIndex, conf: s.conf, progress: s.progress, cluster: this.clusterId };
    const d = this.autopilot.next(performance.now(), view, servers);
    if (d === null) return;
    const change = `${d.change.op} ${d.change.node}`;
    const r = this.node.proposeConfChange(d.change);
    if (!r.ok) {
      // Usually "another change is in progress": say it once, not every second.
      const refusal = `${change}: ${r.reason}`;
      if (refusal !== this.lastRefusal) this.log.info("autopilot: change waits", { change, reason: d.reason, refused: r.reason });
      this.lastRefusal = refusal;
      return;
    }
    this.lastRefusal = "";
    this.log.info("autopilot: membership change", { change, reason: d.reason, index: r.index });
    this.decisions.push({ at: new Date().toISOString(), change, reason: d.reason, outcome: `proposed at index ${r.index}` });
    if (this.decisions.length > KEEP_DECISIONS) this.decisions.shift();
  }

  private info(): unknown {
    return {
      cluster: this.clusterId,
      gossip: this.agent.members().map((m) => ({ id: m.id, state: m.state, rpcAddr: m.meta.rpcAddr, region: m.meta.region, role: m.meta.role })),
      decisions: this.decisions,
    };
  }
}
