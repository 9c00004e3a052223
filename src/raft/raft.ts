// The Raft state machine: roles, elections, replication, reads, membership and transfer, driven
// only by tick(), step() and the local requests. Pure: output is queued messages and state that
// RawNode hands out as a Ready. Section numbers refer to the Raft paper and Ongaro's dissertation.
import { assert } from "./assert.ts";
import { encodeConfEntry } from "./conf_change.ts";
import { applyConfChange, ConfHistory } from "./conf_history.ts";
import { resolveConfig, type RaftConfig, type ResolvedConfig } from "./config.ts";
import { RaftLog, UNKNOWN_TERM } from "./log.ts";
import { Progress } from "./progress.ts";
import { everyVoterResult, quorumValue, voteResult } from "./quorum.ts";
import { CompactedError, entrySize } from "./storage.ts";
import { protocolError } from "./validate.ts";
import type {
  AppendMsg,
  AppendRespMsg,
  ConfChange,
  ConfState,
  Entry,
  EntryType,
  HardState,
  HeartbeatMsg,
  HeartbeatRespMsg,
  Message,
  NodeId,
  ReadFailure,
  ReadState,
  Role,
  Snapshot,
  SnapshotMsg,
  SnapshotRespMsg,
  VoteMsg,
  VoteRespMsg,
} from "./types.ts";

/** A follower whose own answer showed fewer entries than it had acknowledged to this leader. */
export interface FollowerRegression {
  id: NodeId;
  term: number;
  /** The match it had acknowledged. */
  acknowledged: number;
  /** The last index it said it holds (its reject's hint). */
  holds: number;
}

/**
 * Why this node started an election or stopped leading, for the node's log. Recorded once per
 * change, when it happens (the node cannot tell a timeout from a transfer by looking at roles).
 */
export type RoleChange =
  | { kind: "campaign"; term: number; vote: "preVote"; reason: "timeout"; leader: NodeId | null; ticks: number }
  | { kind: "campaign"; term: number; vote: "vote"; reason: "transfer"; leader: NodeId | null }
  | { kind: "campaign"; term: number; vote: "preVote"; reason: "requested"; leader: NodeId | null }
  | { kind: "campaign"; term: number; vote: "preVote"; reason: "firstElection"; leader: null }
  | { kind: "stepDown"; term: number; reason: "checkQuorum"; inactive: NodeId[] }
  | { kind: "stepDown"; term: number; reason: "higherTerm"; from: NodeId; newTerm: number; message: Message["type"] }
  | { kind: "stepDown"; term: number; reason: "removed" };

/** Why campaign() runs; null for the real vote that follows a won pre-vote (the same election). */
export type ElectionCause = { reason: "timeout"; ticks: number } | { reason: "transfer" } | { reason: "requested" } | { reason: "firstElection" } | null;

/** What campaignFirstElection() did, and why not when it did not. */
export type FirstElectionDecision = { campaigned: true } | { campaigned: false; why: string };

/**
 * Where this node's election timeout falls, in ticks after electionTicks: [electionTicks + offset,
 * electionTicks + offset + width). Set by the node (RawNode.setElectionWindow); null is the whole
 * [electionTicks, 2 * electionTicks).
 */
export interface ElectionWindow {
  offsetTicks: number;
  widthTicks: number;
}

export type ProposeResult = { ok: true; index: number; term: number } | { ok: false; reason: string; leader: NodeId | null };

/** A read waiting for a heartbeat round to confirm leadership (ReadIndex, dissertation §6.4). */
interface PendingRead {
  ctx: string;
  from: NodeId;
  index: number;
  seq: number;
}

/** A snapshot being received in chunks. */
interface IncomingSnapshot {
  meta: Snapshot["meta"];
  total: number;
  parts: Uint8Array[];
  received: number;
}

/** Ticks at which recent heartbeat rounds were sent; older rounds no longer matter for the lease. */
const SEQ_RING = 1024;

const EMPTY = new Uint8Array(0);

export class Raft {
  readonly id: NodeId;
  readonly cfg: ResolvedConfig;
  readonly log: RaftLog;
  readonly confs: ConfHistory;

  term = 0;
  vote: NodeId | null = null;
  lead: NodeId | null = null;
  role: Role = "follower";

  msgs: Message[] = [];
  readStates: ReadState[] = [];
  readFailures: ReadFailure[] = [];
  /** Messages refused as protocol violations, for the node to log and count. */
  warnings: string[] = [];
  /** Followers found holding fewer entries than they had acknowledged (leader only). */
  regressions: FollowerRegression[] = [];
  /** Elections started and leaderships ended since the last Ready, with their reasons. */
  roleChanges: RoleChange[] = [];
  /** The leader this node last heard from, kept across role changes to name it in a timeout. */
  private lastLeader: NodeId | null = null;
  private readonly trace: ((event: string, fields: Record<string, unknown>) => void) | null;

  /** Ticks since this node started: the leader's clock for its lease. */
  private now = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  private electionWindow: ElectionWindow | null = null;
  /** After a restart we may have acked a leader we no longer remember: refuse votes for a timeout. */
  private bootSticky = true;
  private votes = new Map<NodeId, boolean>();
  /** The election under way is a brand-new cluster's first (campaignFirstElection): every voter must grant. */
  private firstElection = false;

  // Leader state.
  readonly prs = new Map<NodeId, Progress>();
  private committedInTerm = false;
  private transferee: NodeId | null = null;
  /** Once a transfer started, a TimeoutNow may let another node win early: no more leases this term. */
  private leaseDisabled = false;
  private hbSeq = 0;
  private readonly seqTicks = new Float64Array(SEQ_RING * 2);
  private pendingReads: PendingRead[] = [];
  private readsBeforeCommit: { ctx: string; from: NodeId }[] = [];
  private needReadRound = false;
  private needBroadcast = false;
  /** Bytes proposed and committed in this term, for the uncommitted-bytes cap. */
  private proposedBytes = 0;
  private committedBytes = 0;
  private byteMarks: { index: number; total: number }[] = [];
  private outgoingSnapshots = new Map<number, Snapshot>();

  // Follower state.
  private incoming: IncomingSnapshot | null = null;

  constructor(config: RaftConfig) {
    this.cfg = resolveConfig(config);
    this.id = config.id;
    this.trace = config.trace ?? null;
    const storage = config.storage;
    const meta = storage.snapshotMeta();
    this.log = new RaftLog(storage, this.cfg.applied);
    this.confs = new ConfHistory({ index: meta.index, conf: meta.conf });
    this.confs.appended(storage.confEntries(meta.index + 1, storage.lastIndex() + 1));
    const hs = storage.hardState();
    this.term = hs.term;
    this.vote = hs.vote;
    this.becomeFollower(hs.term, null);
  }

  // ---------------------------------------------------------------- accessors

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  conf(): ConfState {
    return this.confs.current();
  }

  isVoter(id: NodeId): boolean {
    return this.confs.current().voters.includes(id);
  }

  /** A read can be served now from the lease: a majority acked us within the lease window. */
  leaseValid(): boolean {
    if (this.role !== "leader" || !this.cfg.leaseReads || !this.committedInTerm) return false;
    if (this.transferee !== null || this.leaseDisabled) return false;
    return this.now < this.leaseStart() + this.cfg.electionTicks - this.cfg.maxClockDriftTicks;
  }

  /** Leader tick of the latest heartbeat round a majority of voters acknowledged. */
  private leaseStart(): number {
    return quorumValue(this.confs.current().voters, (id) =>
      id === this.id ? this.now : (this.prs.get(id)?.ackedTick ?? Number.NEGATIVE_INFINITY),
    );
  }

  transferTarget(): NodeId | null {
    return this.transferee;
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  // ---------------------------------------------------------------- role changes

  private reset(term: number): void {
    if (term !== this.term) {
      assert(term > this.term, "the term went back: from, to", this.term, term);
      this.term = term;
      this.vote = null;
    }
    this.failPendingReads("leadership changed");
    this.lead = null;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizeElectionTimeout();
    this.votes.clear();
    this.prs.clear();
    this.committedInTerm = false;
    this.transferee = null;
    this.leaseDisabled = false;
    this.hbSeq = 0;
    this.needReadRound = false;
    this.needBroadcast = false;
    this.proposedBytes = 0;
    this.committedBytes = 0;
    this.byteMarks = [];
    this.outgoingSnapshots.clear();
  }

  private randomizeElectionTimeout(): void {
    const w = this.electionWindow;
    this.randomizedElectionTimeout = this.cfg.electionTicks + (w?.offsetTicks ?? 0) + Math.floor(this.cfg.random() * (w?.widthTicks ?? this.cfg.electionTicks));
  }

  /**
   * Narrows this node's election timeout to a window of its own (null: the whole randomized
   * [electionTicks, 2 * electionTicks) again). Why: after a leader dies, every follower times out
   * somewhere in the same window; on a WAN a vote round takes hundreds of ms, so two far
   * followers that fire within one round of each other split the vote and the cluster waits out
   * another timeout (3-4 s in the 5-region lab). The node gives each voter a disjoint window by
   * its placement rank, so the best-placed one runs first and has won before the next one's
   * window opens; a dead best voter delays the next by about one election. Timing only: votes,
   * pre-vote, check-quorum and stickiness are untouched, so safety does not depend on it.
   * Bounded: the timeout stays below 3 * electionTicks.
   */
  setElectionWindow(w: ElectionWindow | null): void {
    if (w !== null) {
      assert(Number.isInteger(w.offsetTicks) && w.offsetTicks >= 0, "election window offset", w.offsetTicks);
      assert(Number.isInteger(w.widthTicks) && w.widthTicks >= 1, "election window width", w.widthTicks);
      assert(w.offsetTicks + w.widthTicks <= 2 * this.cfg.electionTicks, "an election window beyond 3 election timeouts: offset, width", w.offsetTicks, w.widthTicks);
    }
    const now = this.electionWindow;
    if (now?.offsetTicks === w?.offsetTicks && now?.widthTicks === w?.widthTicks) return;
    this.electionWindow = w;
    // A follower's timeout is drawn once per term: draw again so the new window holds now.
    if (this.role !== "leader") this.randomizeElectionTimeout();
  }

  private becomeFollower(term: number, lead: NodeId | null): void {
    this.reset(term);
    this.firstElection = false;
    this.role = "follower";
    this.lead = lead;
    if (lead !== null) this.lastLeader = lead;
  }

  private becomePreCandidate(): void {
    // Pre-vote changes nothing durable: same term, no vote cast (dissertation §9.6).
    this.failPendingReads("leadership changed");
    this.role = "preCandidate";
    this.lead = null;
    this.votes.clear();
    this.randomizeElectionTimeout(); // so two failed pre-candidates do not retry in lockstep
  }

  private becomeCandidate(): void {
    this.reset(this.term + 1);
    this.role = "candidate";
    this.vote = this.id;
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "becomeLeader from", this.role);
    this.reset(this.term);
    this.firstElection = false;
    this.role = "leader";
    this.lead = this.id;
    const last = this.log.lastIndex();
    const conf = this.confs.current();
    for (const id of [...conf.voters, ...conf.learners]) {
      if (id !== this.id) this.prs.set(id, new Progress(last + 1, this.cfg.maxInflight));
    }
    // §8: an entry of the new term, so the leader learns what is committed and can serve reads.
    this.appendEntries([{ type: "noop", data: EMPTY }]);
    this.broadcastAppend();
  }

  // ---------------------------------------------------------------- ticks

  tick(): void {
    this.now++;
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  private tickElection(): void {
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) this.bootSticky = false;
    if (this.electionElapsed >= this.randomizedElectionTimeout && this.isVoter(this.id)) {
      const ticks = this.electionElapsed;
      this.electionElapsed = 0;
      this.campaign("preVote", false, { reason: "timeout", ticks });
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.cfg.electionTicks) {
      this.electionElapsed = 0;
      // Check-quorum: a leader that cannot hear a majority steps down instead of lingering.
      if (!this.quorumActive()) {
        const inactive = [...this.prs].filter(([id, pr]) => !pr.recentActive && this.isVoter(id)).map(([id]) => id);
        this.roleChanges.push({ kind: "stepDown", term: this.term, reason: "checkQuorum", inactive });
        this.becomeFollower(this.term, null);
        return;
      }
      for (const pr of this.prs.values()) pr.recentActive = false;
      this.transferee = null; // a transfer that did not finish within a timeout is abandoned
    }
    for (const [id, pr] of this.prs) {
      if (pr.state === "snapshot" && ++pr.snapshotStall >= this.cfg.electionTicks / 2) this.sendSnapshotChunk(id, pr);
    }
    if (this.heartbeatElapsed >= this.cfg.heartbeatTicks) {
      this.heartbeatElapsed = 0;
      this.broadcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    const voters = this.confs.current().voters;
    return (
      quorumValue(voters, (id) => (id === this.id || this.prs.get(id)?.recentActive === true ? 1 : 0)) === 1
    );
  }

  // ---------------------------------------------------------------- elections

  campaign(kind: "preVote" | "vote", transfer: boolean, cause: ElectionCause): void {
    if (!this.isVoter(this.id) || this.log.pendingSnapshot !== null) return;
    // Any other election ends a first election; its own vote round (cause null) continues it.
    if (cause !== null && cause.reason !== "firstElection") this.firstElection = false;
    const leader = this.lastLeader;
    const term = this.term + 1;
    if (cause?.reason === "timeout") this.roleChanges.push({ kind: "campaign", term, vote: "preVote", reason: "timeout", leader, ticks: cause.ticks });
    else if (cause?.reason === "transfer") this.roleChanges.push({ kind: "campaign", term, vote: "vote", reason: "transfer", leader });
    else if (cause?.reason === "requested") this.roleChanges.push({ kind: "campaign", term, vote: "preVote", reason: "requested", leader });
    else if (cause?.reason === "firstElection") this.roleChanges.push({ kind: "campaign", term, vote: "preVote", reason: "firstElection", leader: null });
    let voteTerm: number;
    if (kind === "preVote") {
      this.becomePreCandidate();
      voteTerm = this.term + 1;
    } else {
      this.becomeCandidate();
      voteTerm = this.term;
    }
    const voters = this.confs.current().voters;
    this.votes.set(this.id, true);
    if (voteResult(voters, this.votes) === "won") {
      if (kind === "preVote") this.campaign("vote", transfer, null);
      else this.becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const to of voters) {
      if (to === this.id) continue;
      this.send({ type: kind, from: this.id, to, term: voteTerm, lastIndex, lastTerm, transfer, ...(this.firstElection ? { firstElection: true as const } : {}) });
    }
  }

  private handleVote(m: VoteMsg): void {
    const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
    const canVote =
      this.vote === m.from ||
      (this.vote === null && this.lead === null) ||
      (m.type === "preVote" && m.term > this.term);
    const logOk = this.log.candidateLogOk(m.lastIndex, m.lastTerm);
    if (this.trace !== null) {
      const why = !canVote
        ? this.vote !== null ? `already voted for ${this.vote} in term ${this.term}` : `leader ${this.lead} is known in term ${this.term}`
        : !logOk ? "candidate's log is behind ours" : "ok";
      this.trace(why === "ok" ? `${m.type} granted` : `${m.type} refused`, {
        candidate: m.from, term: m.term, why, candidateLast: `${m.lastIndex}@${m.lastTerm}`, ourLast: `${this.log.lastIndex()}@${this.log.lastTerm()}`,
      });
    }
    if (canVote && logOk) {
      // A granted pre-vote answers in the term the candidate would use, so it does not look stale.
      this.send({ type: respType, from: this.id, to: m.from, term: m.term, reject: false });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, from: this.id, to: m.from, term: this.term, reject: true });
    }
  }

  private handleVoteResp(m: VoteRespMsg): void {
    const expected = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
    if (m.type !== expected) return;
    this.votes.set(m.from, !m.reject);
    const voters = this.confs.current().voters;
    const result = this.firstElection ? everyVoterResult(voters, this.votes) : voteResult(voters, this.votes);
    this.trace?.(`${m.type} received`, { from: m.from, granted: !m.reject, term: m.term, result, ...(this.firstElection ? { firstElection: true } : {}) });
    if (result === "won") {
      if (this.role === "preCandidate") this.campaign("vote", false, null);
      else this.becomeLeader();
    } else if (result === "lost") {
      this.becomeFollower(this.term, null);
    }
  }

  // ---------------------------------------------------------------- first election of a brand-new cluster
  //
  // A node that starts waits a randomized election timeout before it campaigns, and refuses votes
  // for as long (boot stickiness): it may have acknowledged a leader it no longer remembers, whose
  // lease still runs, and nodes that all time out together split their votes. In a brand-new
  // cluster that is a second or more of nothing: no node holds a term, a vote or an entry, so
  // there is no leader to wait for and no lease to protect. The first election skips the wait,
  // under four rules:
  //
  // 1. Only a pristine node (term 0, no vote, an empty log: pristine()) campaigns early, and
  //    only the first voter of the configuration by id, so two first elections never split the
  //    vote. A restarted node that holds anything waits the ordinary timeout.
  // 2. It needs every voter's grant, in the pre-vote and in the vote (everyVoterResult), not a
  //    majority's. A node whose data dir was deleted also looks pristine (and data_dir.ts tells
  //    operators to restart a damaged node on an empty one): with a majority, that node and the
  //    first voter, two of three, could elect a second leader in the term of a leader still
  //    serving, deposing its lease and overwriting what it committed with that node's help.
  //    The voters that matter refuse a candidate with an empty log at term 1: a live leader holds
  //    the no-op it appended first, a node of a later term refuses a stale one, a node that voted
  //    for another in term 1 keeps its vote. So when every voter granted, no node of the
  //    configuration leads, holds a lease or holds an entry to lose.
  // 3. A pristine voter answers the first election's requests inside its boot stickiness. Boot
  //    stickiness protects leases the node acknowledged before a restart; an acknowledgement is
  //    sent only once the term it is in is durable, so a node at term 0 never acknowledged one
  //    (a node that lost its data is covered by rule 2). The vote rules themselves are unchanged:
  //    a voter still votes once per term, so a term still has at most one leader.
  // 4. A first election that is not granted falls back to the ordinary election. Unanswered (a
  //    voter down or still starting), it runs into the timeout that has been running since the
  //    start, with the draw it had: the cluster elects exactly when it would have. Refused, it
  //    ends as any lost election (a refusal from a later term moves this node to that term).

  /**
   * Campaigns at once when this is a brand-new cluster's first election (see the rules above);
   * otherwise does nothing and says why. The node calls it once, when it starts.
   */
  campaignFirstElection(): FirstElectionDecision {
    const voters = this.confs.current().voters;
    if (!this.isVoter(this.id)) return { campaigned: false, why: "not a voter" };
    if (voters.length < 2) return { campaigned: false, why: "a single voter elects itself" };
    if (!this.pristine()) return { campaigned: false, why: `not a brand-new node (term ${this.term}, last index ${this.log.lastIndex()})` };
    const first = firstVoter(voters);
    if (first !== this.id) return { campaigned: false, why: `${first} runs the first election` };
    if (this.role !== "follower" || this.lead !== null) return { campaigned: false, why: `already ${this.role}` };
    this.firstElection = true;
    // The ordinary timeout keeps its draw (becomePreCandidate makes a new one): if this election
    // gets no answer, the cluster elects when it would have without it (rule 4).
    const timeout = this.randomizedElectionTimeout;
    this.campaign("preVote", false, { reason: "firstElection" });
    this.randomizedElectionTimeout = timeout;
    // (Read back through Role: the compiler does not see campaign() change the role.)
    assert((this.role as Role) === "preCandidate" && this.firstElection, "a first election starts with a pre-vote");
    return { campaigned: true };
  }

  /** Nothing durable yet: never in a term, never voted, not one entry (the configuration came with the data dir). */
  private pristine(): boolean {
    return this.term === 0 && this.vote === null && this.log.lastIndex() === 0 && this.log.committed === 0;
  }

  /** Whether `m` is a request of a first election that this node may answer inside its boot stickiness. */
  private joinsFirstElection(m: VoteMsg): boolean {
    return (
      m.firstElection === true &&
      this.pristine() &&
      m.term === 1 &&
      m.lastIndex === 0 &&
      m.lastTerm === 0 &&
      m.from === firstVoter(this.confs.current().voters)
    );
  }

  // ---------------------------------------------------------------- step

  step(m: Message): void {
    if (m.to !== this.id) return;
    const bad = protocolError(m);
    if (bad !== null) {
      this.warn(m, bad);
      return;
    }
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        // Leader stickiness (§9.6 with check-quorum): while we hear from a leader, or just after a
        // restart, refuse to help depose it. This is also what makes the leader lease safe.
        // A pristine voter answers a brand-new cluster's first election inside its boot stickiness
        // ("first election of a brand-new cluster", above, says why that is safe).
        const inLease = (this.lead !== null || (this.bootSticky && !this.joinsFirstElection(m))) && this.electionElapsed < this.cfg.electionTicks;
        if (inLease && !m.transfer) {
          this.trace?.("vote ignored: we hear from a leader (stickiness)", { candidate: m.from, type: m.type, term: m.term, leader: this.lead ?? "none (just restarted)", ticks: this.electionElapsed });
          return;
        }
      }
      const movesTerm = !(m.type === "preVote" || (m.type === "preVoteResp" && !m.reject));
      if (movesTerm && this.role === "leader") {
        this.roleChanges.push({ kind: "stepDown", term: this.term, reason: "higherTerm", from: m.from, newTerm: m.term, message: m.type });
      }
      if (!movesTerm) {
        // Pre-vote traffic never moves terms.
      } else if (m.type === "append" || m.type === "heartbeat" || m.type === "snapshot") {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, null);
      }
    } else if (m.term < this.term) {
      if (m.type === "append" || m.type === "heartbeat") {
        // A deposed leader: tell it the new term so it steps down (it ignores our votes otherwise).
        this.send(this.appendResp(m.from, 0, false));
      } else if (m.type === "preVote") {
        this.trace?.("pre-vote refused: stale term", { candidate: m.from, term: m.term, ourTerm: this.term });
        this.send({ type: "preVoteResp", from: this.id, to: m.from, term: this.term, reject: true });
      }
      return;
    }

    switch (m.type) {
      case "vote":
      case "preVote":
        this.handleVote(m);
        return;
      case "voteResp":
      case "preVoteResp":
        if (this.role === "candidate" || this.role === "preCandidate") this.handleVoteResp(m);
        return;
      case "readIndex":
        if (this.role === "leader") this.handleReadRequest(m.ctx, m.from);
        else this.send({ type: "readIndexResp", from: this.id, to: m.from, term: this.term, ctx: m.ctx, index: 0, reject: true });
        return;
      case "readIndexResp":
        if (m.reject) this.readFailures.push({ ctx: m.ctx, reason: `leader ${m.from} could not serve the read` });
        else this.readStates.push({ ctx: m.ctx, index: m.index, lease: false });
        return;
    }

    if (this.role === "leader") this.stepLeader(m);
    else this.stepFollower(m);
  }

  private warn(m: Message, why: string): void {
    this.warnings.push(`refused ${m.type} from ${m.from} (term ${m.term}): ${why}`);
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "append":
      case "heartbeat":
      case "snapshot":
        // A term has at most one leader (election safety), so once we know it, replication from
        // anyone else in that term is a lie. Taking it let a CLUSTER_KEY holder posing as a node
        // plant an entry the cluster never committed on a follower (issue 9 §4): refuse, and keep
        // following the leader we know. (A higher term already made m.from our leader above.)
        if (this.lead !== null && this.lead !== m.from) {
          this.warn(m, `${m.from} is not the leader of term ${this.term} (${this.lead} is)`);
          return;
        }
        if (this.role !== "follower") this.becomeFollower(m.term, m.from);
        this.lead = m.from;
        this.lastLeader = m.from;
        this.electionElapsed = 0;
        if (m.type === "append") this.handleAppend(m);
        else if (m.type === "heartbeat") this.handleHeartbeat(m);
        else this.handleSnapshot(m);
        return;
      case "timeoutNow":
        // Dissertation §3.10: start an election now, without pre-vote or stickiness checks. Only
        // the leader transfers leadership: from anyone else it would depose a healthy leader.
        if (this.lead !== m.from) {
          this.warn(m, `${m.from} is not the leader of term ${this.term} (${this.lead ?? "none known"} is)`);
          return;
        }
        if (this.isVoter(this.id)) this.campaign("vote", true, { reason: "transfer" });
        return;
    }
  }

  private stepLeader(m: Message): void {
    if (m.type === "append" || m.type === "heartbeat" || m.type === "snapshot") {
      // Only we lead this term: a correct peer never sends this.
      this.warn(m, `another leader in our own term ${this.term}`);
      return;
    }
    const pr = this.prs.get(m.from);
    if (pr === undefined) return; // not (or no longer) a member
    switch (m.type) {
      case "appendResp":
        this.heard(pr);
        this.handleAppendResp(m, pr);
        return;
      case "heartbeatResp":
        this.heard(pr);
        this.handleHeartbeatResp(m, pr);
        return;
      case "snapshotResp":
        this.heard(pr);
        this.handleSnapshotResp(m, pr);
        return;
    }
  }

  private heard(pr: Progress): void {
    pr.recentActive = true;
    pr.lastHeardTick = this.now;
  }

  /**
   * Whether the follower answered within the last election timeout, counted in ticks. Not
   * recentActive: check-quorum clears that at the start of each of its rounds, so for a heartbeat
   * or so after every round even a healthy follower reads as silent. Membership decisions asked
   * at that moment ("is the rest alive if I remove this voter?", "has this learner caught up?")
   * were refused for a false reason; an integration test removing a voter right after promoting
   * another failed that way.
   */
  answeredRecently(pr: Progress): boolean {
    return this.now - pr.lastHeardTick < this.cfg.electionTicks;
  }

  // ---------------------------------------------------------------- replication: follower side

  private appendResp(to: NodeId, index: number, reject: boolean, hintIndex = 0, hintTerm = 0): AppendRespMsg {
    return { type: "appendResp", from: this.id, to, term: this.term, index, reject, hintIndex, hintTerm };
  }

  private handleAppend(m: AppendMsg): void {
    if (m.prevIndex < this.log.committed) {
      // Everything up to our commit index matches the leader already (leader completeness).
      this.send(this.appendResp(m.from, this.log.committed, false));
      return;
    }
    if (!this.log.matchTerm(m.prevIndex, m.prevTerm)) {
      const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm);
      this.trace?.("append rejected: log does not match at prevIndex", {
        leader: m.from, prevIndex: m.prevIndex, prevTerm: m.prevTerm, ourLast: this.log.lastIndex(),
        why: m.prevIndex > this.log.lastIndex() ? "we do not hold prevIndex" : "term at prevIndex differs", hint: `${hint.index}@${hint.term}`,
      });
      this.send(this.appendResp(m.from, m.prevIndex, true, hint.index, hint.term));
      return;
    }
    // prevIndex >= commit here, so a conflict is always past the commit index.
    const conflict = this.log.findConflict(m.entries);
    if (conflict !== 0) {
      this.log.appendFromLeader(m.entries, conflict);
      this.confs.truncatedFrom(conflict);
      this.confs.appended(conflict === m.entries[0]!.index ? m.entries : m.entries.slice(conflict - m.entries[0]!.index));
    }
    const lastNew = m.prevIndex + m.entries.length;
    this.log.commitTo(Math.min(m.commit, lastNew));
    this.send(this.appendResp(m.from, lastNew, false));
  }

  private handleHeartbeat(m: HeartbeatMsg): void {
    // The leader sends min(match, commit), so this never commits past what we hold.
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    const resp: HeartbeatRespMsg = { type: "heartbeatResp", from: this.id, to: m.from, term: this.term, seq: m.seq };
    this.send(resp);
  }

  private handleSnapshot(m: SnapshotMsg): void {
    const idx = m.meta.index;
    if (idx <= this.log.committed) {
      this.incoming = null;
      this.send(this.appendResp(m.from, this.log.committed, false));
      return;
    }
    let inc = this.incoming;
    if (inc === null || inc.meta.index !== idx || inc.meta.term !== m.meta.term) {
      if (m.offset !== 0) {
        this.send(this.snapshotResp(m.from, idx, 0));
        return;
      }
      inc = { meta: m.meta, total: m.total, parts: [], received: 0 };
      this.incoming = inc;
    }
    if (m.offset !== inc.received || m.total !== inc.total) {
      this.send(this.snapshotResp(m.from, idx, inc.received));
      return;
    }
    if (m.chunk.byteLength > 0) inc.parts.push(m.chunk);
    inc.received += m.chunk.byteLength;
    if (inc.received < inc.total) {
      this.send(this.snapshotResp(m.from, idx, inc.received));
      return;
    }
    this.incoming = null;
    const data = new Uint8Array(inc.total);
    let off = 0;
    for (const p of inc.parts) {
      data.set(p, off);
      off += p.byteLength;
    }
    this.restore({ meta: inc.meta, data });
    this.send(this.appendResp(m.from, this.log.committed, false));
  }

  private snapshotResp(to: NodeId, index: number, received: number): SnapshotRespMsg {
    return { type: "snapshotResp", from: this.id, to, term: this.term, index, received, reject: false };
  }

  private restore(snap: Snapshot): void {
    if (this.log.matchTerm(snap.meta.index, snap.meta.term)) {
      // We already hold the snapshot's last entry, so everything before it matches too.
      this.log.commitTo(snap.meta.index);
      return;
    }
    this.log.restore(snap);
    this.confs.reset({ index: snap.meta.index, conf: snap.meta.conf });
  }

  // ---------------------------------------------------------------- replication: leader side

  /** Appends new entries of this term to the leader's log; sending waits for flush(). */
  private appendEntries(items: { type: EntryType; data: Uint8Array }[]): Entry[] {
    let index = this.log.lastIndex();
    const entries: Entry[] = new Array(items.length);
    let bytes = 0;
    for (let i = 0; i < items.length; i++) {
      const it = items[i]!;
      const e: Entry = { term: this.term, index: ++index, type: it.type, data: it.data };
      bytes += entrySize(e);
      entries[i] = e;
    }
    this.log.append(entries);
    this.proposedBytes += bytes;
    this.byteMarks.push({ index, total: this.proposedBytes });
    if (this.confs.appended(entries)) this.applyConf();
    this.needBroadcast = true;
    this.maybeCommit();
    return entries;
  }

  private uncommittedBytes(): number {
    return this.proposedBytes - this.committedBytes;
  }

  propose(items: { type: EntryType; data: Uint8Array }[]): ProposeResult {
    if (this.role !== "leader") return { ok: false, reason: "not the leader", leader: this.lead };
    if (this.transferee !== null) {
      return { ok: false, reason: `leadership transfer to ${this.transferee} in progress`, leader: this.lead };
    }
    if (this.uncommittedBytes() > 0) {
      let bytes = 0;
      for (const it of items) bytes += it.data.byteLength + 24;
      if (this.uncommittedBytes() + bytes > this.cfg.maxUncommittedBytes) {
        return { ok: false, reason: "too many uncommitted bytes: the cluster is overloaded", leader: this.lead };
      }
    }
    const entries = this.appendEntries(items);
    const last = entries[entries.length - 1]!;
    return { ok: true, index: last.index, term: last.term };
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    const refuse = (reason: string): ProposeResult => ({ ok: false, reason, leader: this.lead });
    if (this.role !== "leader") return refuse("not the leader");
    if (this.transferee !== null) return refuse(`leadership transfer to ${this.transferee} in progress`);
    // Dissertation §4.1 (and its 2015 erratum): one change at a time, and only once the leader has
    // committed an entry of its own term.
    if (!this.committedInTerm) return refuse("the leader has not committed an entry of its term yet");
    if (this.confs.currentIndex() > this.log.committed) return refuse("another configuration change is in progress");
    const conf = this.confs.current();
    const isVoter = conf.voters.includes(cc.node);
    const isLearner = conf.learners.includes(cc.node);
    if (cc.op === "addLearner" && (isVoter || isLearner)) return refuse(`${cc.node} is already a member`);
    if (cc.op === "addVoter" && isVoter) return refuse(`${cc.node} is already a voter`);
    if (cc.op === "remove" && !isVoter && !isLearner) return refuse(`${cc.node} is not a member`);
    if (cc.op === "remove" && isVoter && conf.voters.length === 1) return refuse("cannot remove the last voter");
    return this.propose([{ type: "conf", data: encodeConfEntry({ change: cc, conf: applyConfChange(conf, cc) }) }]);
  }

  /** The configuration changed (appended, truncated or restored): follow it. */
  private applyConf(): void {
    if (this.role !== "leader") return;
    const conf = this.confs.current();
    const members = new Set([...conf.voters, ...conf.learners]);
    for (const id of members) {
      if (id !== this.id && !this.prs.has(id)) this.prs.set(id, new Progress(this.log.lastIndex() + 1, this.cfg.maxInflight));
    }
    for (const id of this.prs.keys()) if (!members.has(id)) this.prs.delete(id);
    if (this.transferee !== null && !conf.voters.includes(this.transferee)) this.transferee = null;
    // A smaller quorum may already agree on more.
    this.maybeCommit();
    this.confirmReads();
  }

  needsFlush(): boolean {
    return this.role === "leader" && (this.needBroadcast || this.needReadRound);
  }

  /** Sends what the pending proposals and reads need: one append per follower per batch. */
  flush(): void {
    if (this.role !== "leader") return;
    if (this.needBroadcast) this.broadcastAppend();
    if (this.needReadRound) this.broadcastHeartbeat();
  }

  private broadcastAppend(): void {
    this.needBroadcast = false;
    for (const [id, pr] of this.prs) {
      if (this.sendAppend(id, pr, true)) while (pr.state === "replicate" && this.sendAppend(id, pr, false));
    }
  }

  /** Returns whether a message went out. Empty appends only carry the commit index or probe. */
  private sendAppend(to: NodeId, pr: Progress, sendIfEmpty: boolean): boolean {
    if (pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === UNKNOWN_TERM) return this.startSnapshot(to, pr);
    let entries: Entry[];
    try {
      entries = this.log.slice(pr.next, this.log.lastIndex() + 1, this.cfg.maxMsgBytes);
    } catch (e) {
      if (e instanceof CompactedError) return this.startSnapshot(to, pr);
      throw e;
    }
    if (entries.length === 0 && !sendIfEmpty) return false;
    const commit = this.log.committed;
    this.send({ type: "append", from: this.id, to, term: this.term, prevIndex, prevTerm, entries, commit });
    pr.sentEntries(prevIndex + entries.length, entries.length);
    if (commit > pr.sentCommit) pr.sentCommit = commit;
    return true;
  }

  private startSnapshot(to: NodeId, pr: Progress): boolean {
    const meta = this.log.storage.snapshotMeta();
    let snap = this.outgoingSnapshots.get(meta.index);
    if (snap === undefined) {
      snap = this.log.storage.snapshot();
      this.outgoingSnapshots.set(snap.meta.index, snap);
    }
    pr.becomeSnapshot(snap.meta.index);
    this.sendSnapshotChunk(to, pr);
    return true;
  }

  private sendSnapshotChunk(to: NodeId, pr: Progress): void {
    const snap = this.outgoingSnapshots.get(pr.snapshotIndex);
    if (snap === undefined) {
      pr.becomeProbe(); // a newer snapshot replaced it; start over with that one
      return;
    }
    const total = snap.data.byteLength;
    const offset = pr.snapshotAcked;
    const chunk = snap.data.subarray(offset, Math.min(total, offset + this.cfg.snapshotChunkBytes));
    this.send({ type: "snapshot", from: this.id, to, term: this.term, meta: snap.meta, offset, total, chunk });
    pr.snapshotStall = 0;
  }

  private handleSnapshotResp(m: SnapshotRespMsg, pr: Progress): void {
    if (pr.state !== "snapshot" || m.index !== pr.snapshotIndex) return;
    if (m.reject) {
      pr.becomeProbe();
      return;
    }
    pr.snapshotAcked = m.received;
    const total = this.outgoingSnapshots.get(pr.snapshotIndex)?.data.byteLength ?? 0;
    if (m.received < total) this.sendSnapshotChunk(m.from, pr); // else the install ack follows
  }

  private handleAppendResp(m: AppendRespMsg, pr: Progress): void {
    if (m.reject) {
      let hint = m.hintIndex;
      if (m.hintTerm > 0) hint = this.log.findConflictByTerm(m.hintIndex, m.hintTerm).index;
      // Only a reject of an append sent at or after match (prevIndex >= match) can speak of the
      // follower's log now; one of an older append is stale and handled as before.
      if (m.index >= pr.match && hint < pr.match && pr.state !== "snapshot" && this.followerLostEntries(m, pr, hint)) return;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from, pr, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (pr.state === "replicate") pr.inflights.freeTo(m.index);
    if (pr.maybeUpdate(m.index) || (pr.state === "probe" && m.index === pr.match)) {
      if (pr.state === "probe") pr.becomeReplicate();
      else if (pr.state === "snapshot" && pr.match >= pr.snapshotIndex) {
        pr.becomeProbe();
        pr.becomeReplicate();
        this.pruneOutgoingSnapshots();
      }
      if (this.maybeCommit()) this.broadcastAppend();
    }
    if (wasPaused || pr.state === "replicate") {
      const commitLags = pr.sentCommit < this.log.committed;
      if (this.sendAppend(m.from, pr, commitLags)) while (pr.state === "replicate" && this.sendAppend(m.from, pr, false));
    }
    if (m.from === this.transferee && pr.match === this.log.lastIndex()) this.sendTimeoutNow(m.from);
  }

  /**
   * A follower that still holds what it acknowledged never hints below match: its log up to match
   * equals ours, so the conflict search ends at or above match. Such a reject is either a reply
   * from before the follower caught up (reordered or duplicated; replies of older terms never get
   * here), or a follower that lost acknowledged entries (WAL deleted or damaged, a backup
   * restored). Left alone the second sits silent forever: rejects at or below match look stale,
   * and the leader has nothing new for it. A second such reject, of a different append or of a
   * probe sent after the first, is the follower's current log speaking: its progress restarts from what it really holds (true:
   * handled). The first only marks the suspicion and is handled as any reject (false), so stale
   * replies change nothing; the leader's next append (new entries, or the empty one a heartbeat
   * answer triggers while the follower lags) brings the second.
   */
  private followerLostEntries(m: AppendRespMsg, pr: Progress, hint: number): boolean {
    if (pr.suspectReject === null) {
      pr.suspect(m.index);
      return false;
    }
    // The same append rejected again counts only as the answer to a probe sent since (a probe
    // at match is re-sent at the same index); otherwise it is a duplicate of the first reject.
    const answersNewProbe = pr.state === "probe" && pr.probedSinceSuspect && m.index === pr.next - 1;
    if (pr.suspectReject === m.index && !answersNewProbe) return false;
    const acknowledged = pr.match;
    pr.lostEntries(hint);
    assert(pr.match < acknowledged, "a regressed follower's match went down");
    this.regressions.push({ id: m.from, term: this.term, acknowledged, holds: m.hintIndex });
    this.sendAppend(m.from, pr, true);
    return true;
  }

  private pruneOutgoingSnapshots(): void {
    for (const index of this.outgoingSnapshots.keys()) {
      let used = false;
      for (const p of this.prs.values()) if (p.state === "snapshot" && p.snapshotIndex === index) used = true;
      if (!used) this.outgoingSnapshots.delete(index);
    }
  }

  /**
   * The node reports that the log up to `index` (holding `term` there) is fsynced on this node's
   * disk. On a leader that may commit: its own copy counts only from here (maybeCommit).
   */
  localDurable(index: number, term: number): void {
    if (!this.log.durableTo(index, term)) return;
    if (this.maybeCommit()) this.broadcastAppend();
  }

  /**
   * §5.4.2: commit by counting replicas only for an entry of the current term.
   *
   * The leader's own copy counts only once it is durable (log.durable), as a follower's counts only
   * once it answers, which it does after its fsync. A leader writes its entries and sends them
   * first, then fsyncs in the background (node.ts), so for a while it holds entries only in the
   * page cache. Counted then, an entry could commit on the leader and one follower while only
   * the follower has it on disk; a power cut on the leader loses its copy, the leader and the
   * other follower (which never got it) elect a leader without it, and that leader overwrites an
   * entry a client was told was applied.
   */
  private maybeCommit(): boolean {
    if (this.role !== "leader") return false;
    const own = this.log.durable;
    const mci = quorumValue(this.confs.current().voters, (id) => (id === this.id ? own : (this.prs.get(id)?.match ?? 0)));
    if (mci <= this.log.committed || this.log.term(mci) !== this.term) return false;
    this.log.commitTo(mci);
    this.onCommitAdvanced();
    return true;
  }

  private onCommitAdvanced(): void {
    const committed = this.log.committed;
    while (this.byteMarks.length > 0 && this.byteMarks[0]!.index <= committed) this.committedBytes = this.byteMarks.shift()!.total;
    if (!this.committedInTerm) {
      this.committedInTerm = true;
      const waiting = this.readsBeforeCommit;
      this.readsBeforeCommit = [];
      for (const r of waiting) this.handleReadRequest(r.ctx, r.from);
    }
    // A leader that removed itself leads until the change commits, then steps aside (§4.2.2).
    if (!this.isVoter(this.id) && committed >= this.confs.currentIndex()) {
      const successor = this.mostUpToDateVoter();
      if (successor !== null) this.sendTimeoutNow(successor);
      this.roleChanges.push({ kind: "stepDown", term: this.term, reason: "removed" });
      this.becomeFollower(this.term, null);
    }
  }

  private mostUpToDateVoter(): NodeId | null {
    let best: NodeId | null = null;
    let bestMatch = -1;
    for (const id of this.confs.current().voters) {
      const pr = this.prs.get(id);
      if (pr !== undefined && pr.match > bestMatch) {
        best = id;
        bestMatch = pr.match;
      }
    }
    return bestMatch === this.log.lastIndex() ? best : null;
  }

  // ---------------------------------------------------------------- heartbeats and reads

  private broadcastHeartbeat(): void {
    this.needReadRound = false;
    const seq = ++this.hbSeq;
    const slot = (seq % SEQ_RING) * 2;
    this.seqTicks[slot] = seq;
    this.seqTicks[slot + 1] = this.now;
    for (const [to, pr] of this.prs) {
      const commit = Math.min(pr.match, this.log.committed);
      this.send({ type: "heartbeat", from: this.id, to, term: this.term, commit, seq });
    }
    this.confirmReads(); // a single-voter cluster confirms at once
  }

  private tickOfSeq(seq: number): number {
    const slot = (seq % SEQ_RING) * 2;
    return this.seqTicks[slot] === seq ? this.seqTicks[slot + 1]! : Number.NEGATIVE_INFINITY;
  }

  private handleHeartbeatResp(m: HeartbeatRespMsg, pr: Progress): void {
    pr.probeSent = false;
    // The follower is alive but our window is full: the appends in it may all have been lost.
    // Free one slot so the next append goes out; a gap makes the follower reject and we probe.
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
    if (m.seq > pr.ackedSeq && m.seq <= this.hbSeq) {
      pr.ackedSeq = m.seq;
      pr.ackedTick = this.tickOfSeq(m.seq);
    }
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, pr, true);
    this.confirmReads();
  }

  readIndex(ctx: string): void {
    if (this.role === "leader") this.handleReadRequest(ctx, this.id);
    else if (this.lead !== null) this.send({ type: "readIndex", from: this.id, to: this.lead, term: this.term, ctx });
    else this.readFailures.push({ ctx, reason: "no leader" });
  }

  private handleReadRequest(ctx: string, from: NodeId): void {
    if (!this.committedInTerm) {
      // Until an entry of this term commits, our commit index may lag what earlier leaders committed.
      this.trace?.("read waits for an entry of this term to commit", { ctx, from, term: this.term });
      this.readsBeforeCommit.push({ ctx, from });
      return;
    }
    if (this.leaseValid()) {
      this.trace?.("read served from the lease", { ctx, from, index: this.log.committed });
      this.answerRead(ctx, from, this.log.committed, true);
      return;
    }
    this.trace?.("read needs a heartbeat round (ReadIndex)", {
      ctx, from, index: this.log.committed,
      why: !this.cfg.leaseReads ? "lease reads off" : this.transferee !== null || this.leaseDisabled ? "leadership transfer in this term" : "lease expired",
    });
    this.pendingReads.push({ ctx, from, index: this.log.committed, seq: this.hbSeq + 1 });
    this.needReadRound = true;
  }

  private confirmReads(): void {
    if (this.pendingReads.length === 0) return;
    const confirmed = quorumValue(this.confs.current().voters, (id) =>
      id === this.id ? this.hbSeq : (this.prs.get(id)?.ackedSeq ?? 0),
    );
    let n = 0;
    while (n < this.pendingReads.length && this.pendingReads[n]!.seq <= confirmed) {
      const r = this.pendingReads[n]!;
      this.answerRead(r.ctx, r.from, r.index, false);
      n++;
    }
    if (n > 0) this.pendingReads = this.pendingReads.slice(n);
  }

  private answerRead(ctx: string, from: NodeId, index: number, lease: boolean): void {
    if (from === this.id) this.readStates.push({ ctx, index, lease });
    else this.send({ type: "readIndexResp", from: this.id, to: from, term: this.term, ctx, index, reject: false });
  }

  private failPendingReads(reason: string): void {
    const all = [...this.pendingReads, ...this.readsBeforeCommit];
    this.pendingReads = [];
    this.readsBeforeCommit = [];
    for (const r of all) {
      if (r.from === this.id) this.readFailures.push({ ctx: r.ctx, reason });
      else this.send({ type: "readIndexResp", from: this.id, to: r.from, term: this.term, ctx: r.ctx, index: 0, reject: true });
    }
  }

  // ---------------------------------------------------------------- leadership transfer

  transferLeadership(to: NodeId): { ok: true } | { ok: false; reason: string } {
    if (this.role !== "leader") return { ok: false, reason: "not the leader" };
    if (to === this.id) return { ok: false, reason: `${to} is already the leader` };
    if (!this.isVoter(to)) return { ok: false, reason: `${to} is not a voter` };
    if (this.transferee === to) return { ok: true };
    this.transferee = to;
    this.leaseDisabled = true;
    this.electionElapsed = 0; // the transfer is abandoned after one election timeout
    const pr = this.prs.get(to)!;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, pr, true);
    return { ok: true };
  }

  private sendTimeoutNow(to: NodeId): void {
    this.leaseDisabled = true;
    this.send({ type: "timeoutNow", from: this.id, to, term: this.term });
  }

  /** The transport could not reach a follower: stop pipelining to it and probe instead. */
  reportUnreachable(id: NodeId): void {
    const pr = this.prs.get(id);
    if (this.role === "leader" && pr !== undefined && pr.state === "replicate") pr.becomeProbe();
  }

  /** The node persisted a snapshot it took: forget configurations it covers. */
  compacted(index: number): void {
    this.confs.compactTo(index);
  }
}

/** The voter that runs a brand-new cluster's first election: the first by id, the same on every node. */
function firstVoter(voters: readonly NodeId[]): NodeId | undefined {
  let first: NodeId | undefined;
  for (const id of voters) if (first === undefined || id < first) first = id;
  return first;
}
