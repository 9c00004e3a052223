// Log lines for changes of the cluster's state as this node sees it: a peer going unreachable and
// coming back, the leader losing and regaining its quorum, a follower falling far behind and
// catching up, a snapshot sent and finished. Each is logged once per change, not per message:
// the node feeds in what it already knows (the core's status, the transport's per-peer state) at
// every tick, and this compares with what it saw last. All times come from the node's scheduler,
// so the simulator's runs stay deterministic.
import type { RoleChange, Status } from "../raft/raw_node.ts";
import type { NodeId } from "../raft/types.ts";
import type { PeerStats } from "../transport/peers.ts";
import type { Logger } from "./log.ts";

/** A follower this many entries behind the leader's last index counts as far behind... */
export const FAR_BEHIND_ENTRIES = 1000;
/** ...once it stays so for this long (a burst of writes is not a lagging follower). */
export const FAR_BEHIND_MS = 5000;

export class StateLog {
  /** Since when each peer has been unreachable (scheduler ms). */
  private readonly downSince = new Map<NodeId, number>();
  /** Since when this node, as leader, lost its quorum; null while it has (or never lost) it. */
  private quorumLostAt: number | null = null;
  /** Followers behind by more than FAR_BEHIND_ENTRIES: since when, and whether it was logged. */
  private readonly behind = new Map<NodeId, { since: number; logged: boolean }>();
  /** Snapshots this leader is sending: to whom, since when. */
  private readonly snapshots = new Map<NodeId, { index: number; bytes: number; since: number }>();

  constructor(
    private readonly id: NodeId,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {}

  /** Once per tick: compares the transport's and the core's state with the last tick's. */
  observe(status: Status, peers: PeerStats[]): void {
    const t = this.now();
    this.observePeers(t, peers);
    this.observeQuorum(t, status);
    this.observeFollowers(t, status);
  }

  private observePeers(t: number, peers: PeerStats[]): void {
    const known = new Set<NodeId>();
    for (const p of peers) {
      known.add(p.id);
      const since = this.downSince.get(p.id);
      if (!p.reachable && since === undefined) {
        this.downSince.set(p.id, t);
        this.log.warn("peer unreachable", { peer: p.id, address: p.address, error: p.lastError ?? "" });
      } else if (p.reachable && since !== undefined) {
        this.downSince.delete(p.id);
        this.log.info("peer reachable again", { peer: p.id, downMs: Math.round(t - since) });
      }
    }
    // A removed member is neither: forget it without a line.
    for (const id of this.downSince.keys()) if (!known.has(id)) this.downSince.delete(id);
  }

  /**
   * Quorum is judged from the transport (the core's recentActive is cleared every election
   * timeout, so it would flap): the voters this node cannot reach, and whether with itself the
   * rest is still a majority. Lost is noticed on the leader (where it stops commits); regained is
   * logged whatever the role by then, since check-quorum makes the leader step down meanwhile.
   */
  private observeQuorum(t: number, status: Status): void {
    const voters = status.conf.voters;
    const unreachable = voters.filter((id) => id !== this.id && this.downSince.has(id));
    const reachable = voters.length - unreachable.length;
    const hasQuorum = reachable > voters.length / 2;
    if (!hasQuorum && this.quorumLostAt === null && status.role === "leader") {
      this.quorumLostAt = t;
      this.log.warn("quorum lost: writes and linearizable reads stall", {
        unreachable: unreachable.join(","),
        voters: voters.join(","),
        term: status.term,
      });
    } else if (hasQuorum && this.quorumLostAt !== null) {
      this.log.info("quorum regained", { downMs: Math.round(t - this.quorumLostAt), voters: voters.join(","), role: status.role });
      this.quorumLostAt = null;
    }
  }

  private observeFollowers(t: number, status: Status): void {
    if (status.role !== "leader") {
      this.behind.clear();
      this.snapshots.clear();
      return;
    }
    for (const [id, pr] of Object.entries(status.progress)) {
      const lag = status.lastIndex - pr.match;
      const b = this.behind.get(id);
      if (lag > FAR_BEHIND_ENTRIES) {
        if (b === undefined) this.behind.set(id, { since: t, logged: false });
        else if (!b.logged && t - b.since >= FAR_BEHIND_MS) {
          b.logged = true;
          this.log.warn("follower far behind", { peer: id, match: pr.match, lastIndex: status.lastIndex, behind: lag, forMs: Math.round(t - b.since) });
        }
      } else if (b !== undefined && lag <= FAR_BEHIND_ENTRIES / 10) {
        // Hysteresis: "caught up" only well inside the threshold, so a follower at the edge does not flap.
        if (b.logged) this.log.info("follower caught up", { peer: id, match: pr.match, behindMs: Math.round(t - b.since) });
        this.behind.delete(id);
      }
      const s = this.snapshots.get(id);
      if (s !== undefined && pr.state !== "snapshot") {
        this.snapshots.delete(id);
        this.log.info("follower finished the snapshot", { peer: id, index: s.index, bytes: s.bytes, ms: Math.round(t - s.since), match: pr.match });
      }
    }
  }

  /** The leader put the first chunk of a snapshot for `to` on the wire. */
  snapshotSending(to: NodeId, index: number, bytes: number): void {
    this.snapshots.set(to, { index, bytes, since: this.now() });
    this.log.info("sending a snapshot", { peer: to, index, bytes });
  }
}

/** The log line for a role change the core reported, with its reason as fields. */
export function logRoleChange(log: Logger, timeouts: Logger, r: RoleChange): void {
  if (r.kind === "campaign") {
    if (r.reason === "transfer") {
      log.info("starting an election: leadership transferred to us", { reason: "transfer", from: r.leader ?? "none", term: r.term });
    } else if (r.reason === "requested") {
      log.info("starting an election: the only voter elects itself", { reason: "requested", term: r.term });
    } else if (r.reason === "firstElection") {
      log.info("starting an election: the first of a brand-new cluster, at once", { reason: "firstElection", term: r.term });
    } else {
      // A node cut off from the cluster times out again and again with the same story: rate-limited.
      const why = r.leader === null ? `no leader known for ${r.ticks} ticks` : `no heartbeat from leader ${r.leader} for ${r.ticks} ticks`;
      timeouts.info("starting an election: election timeout", { reason: "timeout", why, lastLeader: r.leader ?? "none", ticks: r.ticks, term: r.term, preVote: r.vote === "preVote" });
    }
    return;
  }
  if (r.reason === "checkQuorum") {
    log.warn("stepped down: a majority did not answer within an election timeout (check-quorum)", { reason: "checkQuorum", inactive: r.inactive.join(","), term: r.term });
  } else if (r.reason === "higherTerm") {
    log.info("stepped down: saw a higher term", { reason: "higherTerm", from: r.from, message: r.message, term: r.term, newTerm: r.newTerm });
  } else {
    log.info("stepped down: removed from the voters", { reason: "removed", term: r.term });
  }
}

/** A short "why" for the election a new leader won, for its "became leader" line. */
export function electionWhy(r: RoleChange | null): Record<string, unknown> {
  if (r === null || r.kind !== "campaign") return {};
  if (r.reason === "transfer") return { reason: "transfer", from: r.leader ?? "none" };
  if (r.reason === "requested") return { reason: "requested" };
  if (r.reason === "firstElection") return { reason: "firstElection", why: "brand-new cluster, every voter granted" };
  return { reason: "timeout", why: r.leader === null ? `no leader known for ${r.ticks} ticks` : `no heartbeat from leader ${r.leader} for ${r.ticks} ticks` };
}
