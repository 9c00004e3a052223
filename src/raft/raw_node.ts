// The boundary between the pure core and the node (etcd-io/raft's RawNode). The node calls
// tick/step/propose, then takes a Ready and must, in this order:
//   1. persist `snapshot`, `entries` and `hardState` durably (one transaction),
//   2. send `messages` (they may depend on what was just persisted),
//   3. install `snapshot` into the state machine, then apply `committed` in order,
//   4. serve `readStates` once the state machine has applied their index; fail `readFailures`,
//   5. if `snapshotRequest` is set, snapshot the state machine (now at exactly that index),
//   6. call advance().
// A Ready with `fsyncInBackground` may instead be sent first and written without an fsync in step
// 1; the node then calls advanceBeforeSync() in step 6, starts an fsync of everything written so
// far, and reports it with synced(mark) once it is done. Until then the core counts none of those
// entries as held here: not toward a commit, not for applying.
import { assert } from "./assert.ts";
import type { RaftConfig } from "./config.ts";
import { Raft, type ElectionWindow, type FirstElectionDecision, type FollowerRegression, type ProposeResult, type RoleChange } from "./raft.ts";
import type { ConfChange, ConfState, Entry, HardState, Message, NodeId, ReadFailure, ReadState, Role, Snapshot } from "./types.ts";

export type { ElectionWindow, FirstElectionDecision, FollowerRegression, ProposeResult, RoleChange } from "./raft.ts";

export interface Ready {
  /**
   * Whether persisting this Ready must be durable before anything else happens (entries, a
   * snapshot, or a new term or vote). When false, only the commit index moved: it and the applied
   * state can be rebuilt from the log after a crash, so the write may skip the fsync.
   */
  mustSync: boolean;
  /**
   * The only things to make durable are this leader's own new entries (and the commit index):
   * its term and vote are durable already and there is no snapshot. The node may then send
   * first, write without an fsync, and fsync in the background (advanceBeforeSync, synced).
   * `committed` never holds an entry that is not durable yet, so applying it needs no wait.
   */
  fsyncInBackground: boolean;
  hardState: HardState | null;
  entries: Entry[];
  snapshot: Snapshot | null;
  messages: Message[];
  committed: Entry[];
  readStates: ReadState[];
  readFailures: ReadFailure[];
  snapshotRequest: { index: number; conf: ConfState } | null;
  /** Messages refused as protocol violations (a peer speaking nonsense): log and count them. */
  warnings: string[];
  /** Followers that lost acknowledged entries, found by this leader: log and count them. */
  followerRegressions: FollowerRegression[];
  /** Elections this node started and leaderships it gave up, with why: log them. */
  roleChanges: RoleChange[];
}

export interface ProgressStatus {
  match: number;
  next: number;
  state: string;
  /** It answered within the last election timeout (Raft.answeredRecently). */
  answeredRecently: boolean;
  /** Times this leader found the follower holding fewer entries than it had acknowledged. */
  regressions: number;
  /** The match it had before its last loss while it has not caught up again, else 0. */
  regressedFrom: number;
}

export interface Status {
  id: NodeId;
  role: Role;
  term: number;
  vote: NodeId | null;
  leader: NodeId | null;
  commit: number;
  applied: number;
  lastIndex: number;
  firstIndex: number;
  conf: ConfState;
  leaseValid: boolean;
  transferee: NodeId | null;
  /** Followers' replication state, on the leader only. */
  progress: Record<NodeId, ProgressStatus>;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}

/** What a background fsync covers: the log up to `index`, which held `term` when it started. */
export interface SyncMark {
  index: number;
  term: number;
}

export class RawNode {
  readonly raft: Raft;
  private persisted: HardState;
  private inFlight: { hardState: HardState; appliedTo: number; mustSync: boolean; fsyncInBackground: boolean } | null = null;
  private lastSnapshotRequest = 0;

  constructor(config: RaftConfig) {
    this.raft = new Raft(config);
    this.persisted = this.raft.hardState();
    this.lastSnapshotRequest = config.storage.snapshotMeta().index;
  }

  private checkIdle(what: string): void {
    assert(this.inFlight === null, "called between ready() and advance():", what);
  }

  tick(): void {
    this.checkIdle("tick");
    this.raft.tick();
  }

  step(m: Message): void {
    this.checkIdle("step");
    this.raft.step(m);
  }

  /** Starts an election now (tests, single-node bootstrap). */
  campaign(): void {
    this.checkIdle("campaign");
    this.raft.campaign("preVote", false, { reason: "requested" });
  }

  /**
   * A brand-new cluster's first election, at once instead of after an election timeout; a no-op
   * (with the reason) unless this node is pristine and the first voter by id (raft.ts).
   */
  campaignFirstElection(): FirstElectionDecision {
    this.checkIdle("campaignFirstElection");
    return this.raft.campaignFirstElection();
  }

  propose(data: Uint8Array): ProposeResult {
    this.checkIdle("propose");
    return this.raft.propose([{ type: "normal", data }]);
  }

  /** Proposes many commands as one batch: they get consecutive indexes, the last is returned. */
  proposeBatch(datas: Uint8Array[]): ProposeResult {
    this.checkIdle("propose");
    return this.raft.propose(datas.map((data) => ({ type: "normal" as const, data })));
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    this.checkIdle("proposeConfChange");
    return this.raft.proposeConfChange(cc);
  }

  /** Asks for a linearizable read; the answer comes as a ReadState or ReadFailure with this ctx. */
  readIndex(ctx: string): void {
    this.checkIdle("readIndex");
    this.raft.readIndex(ctx);
  }

  transferLeadership(to: NodeId): { ok: true } | { ok: false; reason: string } {
    this.checkIdle("transferLeadership");
    return this.raft.transferLeadership(to);
  }

  /** Where this node's election timeout falls (Raft.setElectionWindow); null: the whole window. */
  setElectionWindow(w: ElectionWindow | null): void {
    this.raft.setElectionWindow(w);
  }

  reportUnreachable(id: NodeId): void {
    this.raft.reportUnreachable(id);
  }

  hasReady(): boolean {
    const r = this.raft;
    return (
      r.msgs.length > 0 ||
      r.log.hasUnstable() ||
      r.log.hasNextCommitted() ||
      r.readStates.length > 0 ||
      r.readFailures.length > 0 ||
      r.warnings.length > 0 ||
      r.regressions.length > 0 ||
      r.roleChanges.length > 0 ||
      !sameHardState(r.hardState(), this.persisted) ||
      r.needsFlush()
    );
  }

  ready(): Ready {
    this.checkIdle("ready");
    const r = this.raft;
    r.flush();
    const hs = r.hardState();
    const committed = r.log.nextCommitted(r.cfg.maxApplyBytes);
    const appliedTo = committed.length > 0 ? committed[committed.length - 1]!.index : r.log.applied;
    const entries = r.log.unstableEntries();
    const termOrVote = hs.term !== this.persisted.term || hs.vote !== this.persisted.vote;
    const rd: Ready = {
      mustSync: entries.length > 0 || r.log.pendingSnapshot !== null || termOrVote,
      fsyncInBackground: entries.length > 0 && r.log.pendingSnapshot === null && !termOrVote && r.role === "leader",
      hardState: sameHardState(hs, this.persisted) ? null : hs,
      entries,
      snapshot: r.log.pendingSnapshot,
      messages: r.msgs,
      committed,
      readStates: r.readStates,
      readFailures: r.readFailures,
      snapshotRequest: null,
      warnings: r.warnings,
      followerRegressions: r.regressions,
      roleChanges: r.roleChanges,
    };
    r.msgs = [];
    r.readStates = [];
    r.readFailures = [];
    r.warnings = [];
    r.regressions = [];
    r.roleChanges = [];
    const every = r.cfg.snapshotEvery;
    const afterApply = Math.max(appliedTo, rd.snapshot?.meta.index ?? 0);
    if (every > 0 && afterApply - this.lastSnapshotRequest >= every) {
      rd.snapshotRequest = { index: afterApply, conf: r.confs.at(afterApply) };
      this.lastSnapshotRequest = afterApply;
    }
    this.inFlight = { hardState: hs, appliedTo, mustSync: rd.mustSync, fsyncInBackground: rd.fsyncInBackground };
    return rd;
  }

  /** The node finished handling the last Ready, its writes durable (fsynced when mustSync). */
  advance(): void {
    const f = this.finish();
    // An fsync covers every earlier write too, a background one's included.
    if (f.mustSync) this.raft.localDurable(this.raft.log.lastIndex(), this.raft.log.lastTerm());
  }

  /**
   * The node finished handling a Ready with `fsyncInBackground`, written but not fsynced. It must
   * now start an fsync of all it wrote and call synced() with the returned mark when it is done.
   */
  advanceBeforeSync(): SyncMark {
    assert(this.inFlight?.fsyncInBackground === true, "advanceBeforeSync() for a Ready that must be durable first");
    this.finish();
    return { index: this.raft.log.lastIndex(), term: this.raft.log.lastTerm() };
  }

  /** The background fsync that advanceBeforeSync() asked for is done: its entries are durable. */
  synced(mark: SyncMark): void {
    this.checkIdle("synced");
    this.raft.localDurable(mark.index, mark.term);
  }

  private finish(): NonNullable<RawNode["inFlight"]> {
    const f = this.inFlight;
    assert(f !== null, "advance() without ready()");
    this.inFlight = null;
    const r = this.raft;
    r.log.stabilize();
    r.log.appliedTo(f.appliedTo);
    this.persisted = f.hardState;
    const snapIndex = r.log.storage.snapshotMeta().index;
    if (snapIndex > this.lastSnapshotRequest) this.lastSnapshotRequest = snapIndex;
    r.compacted(snapIndex);
    return f;
  }

  status(): Status {
    const r = this.raft;
    const progress: Record<NodeId, ProgressStatus> = {};
    for (const [id, pr] of r.prs) progress[id] = {
      match: pr.match,
      next: pr.next,
      state: pr.state,
      answeredRecently: r.answeredRecently(pr),
      regressions: pr.regressions,
      regressedFrom: pr.regressedFrom,
    };
    return {
      id: r.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      leader: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      firstIndex: r.log.firstIndex(),
      conf: { voters: [...r.conf().voters], learners: [...r.conf().learners] },
      leaseValid: r.leaseValid(),
      transferee: r.transferTarget(),
      progress,
    };
  }
}
