// Runs membership from gossip on a live node: keeps our gossip metadata in step with our Raft role,
// hands gossip's addresses to the transport, and on the leader asks the autopilot for the next
// change, proposes it and logs why. Decisions are kept for `phalanx members`.
//
// Gossip alone never changes the configuration (issue 9): before proposing addLearner (or
// addVoter, whose address also comes from gossip) the leader asks the advertised rpc address to
// prove, over a signed peer call (identity_route.ts), that it holds the cluster credential, is
// the node id gossip named and is in our cluster; before proposing a removal it asks the server
// too, and a server that answers is not removed however dead gossip says it is. A failed proof
// keeps that server out of the autopilot's picks for REFUSED_BACKOFF_MS, so a fake member cannot
// hold up real ones.
import type { GossipAgent } from "../../gossip/agent.ts";
import type { GossipPeer } from "../../gossip/peer.ts";
import type { NodeId } from "../../raft/types.ts";
import type { IdentityVerdict } from "../../transport/identity_route.ts";
import type { Logger } from "../log.ts";
import type { PhalanxNode } from "../node.ts";
import { decodeMemberContext } from "../../kv/member.ts";
import { Autopilot, type AutopilotConfig } from "./autopilot.ts";
import { serverHealth } from "./server_view.ts";

const STEP_MS = 1000;
const KEEP_DECISIONS = 20;
/** A proof holds this long for the address it was made at. */
const VERIFIED_TTL_MS = 60_000;
/** After a failed proof (or a server that proved it is alive), ask again no sooner than this. */
const REFUSED_BACKOFF_MS = 5_000;

/** Asks the server at `rpcAddr` to prove it is `node` of our cluster (verifyIdentity, bound). */
export type IdentityCheck = (node: NodeId, rpcAddr: string) => Promise<IdentityVerdict>;

interface Proof {
  rpcAddr: string;
  state: "checking" | "verified" | "refused";
  reason: string;
  /** Verified: valid until; refused: skipped until. */
  until: number;
}

/** /v1/members → automatic: gossip's view and the autopilot's decisions. */
export interface MembershipInfo {
  cluster: string;
  /** VOTER_REGIONS and, while leading, what keeps the voters from matching it (null when not leading). */
  voterRegions: { regions: readonly string[]; notes: string[] | null };
  identity: { id: string; rpcAddr: string; state: string; reason: string }[];
  gossip: { id: string; state: string; rpcAddr: string; region: string }[];
  decisions: DecisionRecord[];
}

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
  private readonly proofs = new Map<NodeId, Proof>();
  /** What keeps the voters from matching VOTER_REGIONS, as last judged while leading; null when not leading. */
  private notes: string[] | null = null;
  private readonly voterRegions: readonly string[];

  constructor(
    private readonly node: PhalanxNode,
    private readonly agent: GossipAgent,
    cfg: AutopilotConfig,
    private readonly clusterId: string,
    private readonly log: Logger,
    private readonly checkIdentity: IdentityCheck,
  ) {
    this.autopilot = new Autopilot(cfg);
    this.voterRegions = cfg.voterRegions;
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
    else this.notes = null;
  }

  private lead(peers: GossipPeer[]): void {
    const s = this.node.status();
    const servers = peers.map(serverHealth);
    const members = this.node.members();
    // A member's region as it advertises it goes into the log where the log has none yet (a
    // founder's bootstrap row) or another (it was restarted with a new REGION): from then on
    // every decider reads the replicated one.
    const live = new Map(servers.filter((x) => x.state === "alive").map((x) => [x.id, x]));
    for (const m of members) {
      const g = live.get(m.id);
      if (g !== undefined && g.region !== "" && g.region !== m.region) this.node.recordRegion(m.id, g.region);
    }
    const view = { selfId: this.node.id, lastIndex: s.lastIndex, conf: s.conf, members, progress: s.progress, cluster: this.clusterId };
    const notes = this.autopilot.regionNotes(view, servers);
    const before = this.notes ?? [];
    for (const note of notes) if (!before.includes(note)) this.log.warn("autopilot: voter placement", { note });
    if (notes.length === 0 && before.length > 0) this.log.info("autopilot: voters match VOTER_REGIONS");
    this.notes = notes;
    const now = performance.now();
    for (const [id, p] of this.proofs) if (p.state !== "checking" && now >= p.until) this.proofs.delete(id);
    const unverified = new Set([...this.proofs].filter(([, p]) => p.state === "refused").map(([id]) => id));
    const d = this.autopilot.next(now, view, servers, unverified);
    if (d === null) return;
    const change = `${d.change.op} ${d.change.node}`;
    // addVoter too: its context (the address Raft will store) comes from gossip as well.
    if ((d.change.op === "addLearner" || d.change.op === "addVoter") && !this.proven(now, d.change.node, decodeMemberContext(d.change.context).address, "must prove")) return;
    // A cleanup acts on gossip's claim of a death, which must not stand against a live server; a
    // demotion removes a live voter on purpose (the log's region), and gossip brings it back.
    if (d.kind === "cleanup") {
      const addr = this.node.members().find((m) => m.id === d.change.node)?.address || servers.find((x) => x.id === d.change.node)?.rpcAddr || "";
      // Here a proof is the reason NOT to act: a server that answers is alive, whatever gossip says.
      if (addr !== "" && !this.proven(now, d.change.node, addr, "must be silent")) return;
    }
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

  /**
   * For addLearner ("must prove"): true once `id` proved itself at `rpcAddr`. For a removal
   * ("must be silent"): true once a check found nobody proving to be `id` there. Starts the check
   * when none is under way; false meanwhile.
   */
  private proven(now: number, id: NodeId, rpcAddr: string, want: "must prove" | "must be silent"): boolean {
    const p = this.proofs.get(id);
    if (p !== undefined && p.rpcAddr === rpcAddr) {
      if (p.state === "checking") return false;
      if (want === "must prove") return p.state === "verified";
      return p.state === "refused";
    }
    this.proofs.set(id, { rpcAddr, state: "checking", reason: "", until: 0 });
    void this.checkIdentity(id, rpcAddr).then(
      (v) => this.settleProof(id, rpcAddr, v, want),
      (err: unknown) => this.settleProof(id, rpcAddr, { ok: false, reason: String(err) }, want),
    );
    return false;
  }

  private settleProof(id: NodeId, rpcAddr: string, v: IdentityVerdict, want: "must prove" | "must be silent"): void {
    if (this.proofs.get(id)?.rpcAddr !== rpcAddr) return;
    const now = performance.now();
    if (v.ok) {
      this.proofs.set(id, { rpcAddr, state: "verified", reason: "proved its identity", until: now + (want === "must prove" ? VERIFIED_TTL_MS : REFUSED_BACKOFF_MS) });
      if (want === "must be silent") this.log.warn("autopilot: not removing a server that proves it is alive", { node: id, rpcAddr });
      else this.log.info("autopilot: server proved its identity", { node: id, rpcAddr });
      return;
    }
    this.proofs.set(id, { rpcAddr, state: "refused", reason: v.reason, until: now + REFUSED_BACKOFF_MS });
    if (want === "must prove") this.log.warn("autopilot: not adding a server gossip found: it did not prove its identity", { node: id, rpcAddr, reason: v.reason });
  }

  private info(): MembershipInfo {
    return {
      cluster: this.clusterId,
      voterRegions: { regions: this.voterRegions, notes: this.notes },
      identity: [...this.proofs].map(([id, p]) => ({ id, rpcAddr: p.rpcAddr, state: p.state, reason: p.reason })),
      // Liveness of every server gossip knows, members or not; roles and regions of members are the log's.
      gossip: this.agent.members().map((m) => ({ id: m.id, state: m.state, rpcAddr: m.meta.rpcAddr, region: m.meta.region })),
      decisions: this.decisions,
    };
  }
}
