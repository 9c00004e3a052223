// The event loop of one node: it owns the core (RawNode), its storage (log + KV), its transport
// and its clock, and is the only code that calls into the core. Everything is synchronous between
// ready() and advance(), so no message, tick or proposal can slip into the middle of a Ready.
// Work is driven from one turn at a time: proposals and messages that arrive in the same turn
// share one Ready, one transaction, one fsync (group commit). A peer's batch that finds no turn
// coming is handled at once instead (receive()).
//
// Storage, transport, scheduler and state machine are parameters (TigerBeetle's
// ReplicaType(StateMachine, MessageBus, Storage)): open() wires SQLite, the HTTP/2 peer transport
// and the process's timers; the simulator (tests/sim/cluster.ts) builds this same loop on an
// in-memory database, its simulated network and its virtual clock.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { encodeProposal, type Command, type Proposal } from "../kv/command.ts";
import type { GossipCounters } from "../gossip/agent.ts";
import { decodeMemberContext, encodeMemberContext, invalidRegion } from "../kv/member.ts";
import { KvStore, type Member } from "../kv/store.ts";
import type { RaftConfig } from "../raft/config.ts";
import { assert } from "../raft/assert.ts";
import { RawNode, type ElectionWindow, type ProposeResult, type Ready, type RoleChange, type Status, type SyncMark } from "../raft/raw_node.ts";
import type { WritableLogStorage } from "../raft/storage.ts";
import type { ConfChange, Message, NodeId } from "../raft/types.ts";
import { DB_FILE, openDataDir, type DataDir } from "../storage/data_dir.ts";
import { DiskFullError } from "../storage/errors.ts";
import type { PeerAuth } from "../transport/auth.ts";
import { H2Client } from "../transport/h2_client.ts";
import { type ForwardOutcome, PeerTransport, type PeerStats } from "../transport/peers.ts";
import type { ForwardAnswer, ForwardRequest } from "../transport/forward_frame.ts";
import type { NodeConfig } from "./config.ts";
import type { PlacementHooks } from "./placement_report.ts";
import type { MembershipInfo } from "./membership/manager.ts";
import { rateLimited, type Logger } from "./log.ts";
import { electionWhy, logRoleChange, StateLog } from "./state_log.ts";
import { NodeMetrics } from "./metrics.ts";
import { notApplied, unknownOutcome, type ProposeOutcome } from "./outcome.ts";
import { realScheduler, type Scheduler } from "./scheduler.ts";
import type { StartupTimeline } from "./startup_timeline.ts";
import { Ticker } from "./ticker.ts";
import { ProposalWaiters, ReadWaiters, type ReadOutcome } from "./waiters.ts";
import { Freshness } from "./freshness.ts";

/** Readies handled per turn before yielding to I/O, so a long catch-up cannot starve the server. */
const MAX_READIES_PER_TURN = 64;

/** A Ready whose fsync, or whose applying, takes longer than this is logged (rate-limited). */
const SLOW_PERSIST_MS = 100;
const SLOW_APPLY_MS = 100;

/**
 * How long after the last bounded-staleness read a node keeps probing the leader in the
 * background (one ReadIndex round per heartbeat interval), so the next bounded read answers
 * locally. A node nobody reads bounded from sends no probes.
 */
const PROBE_IDLE_MS = 30_000;

const DISK_FULL_MIN_BACKOFF_MS = 500;
const DISK_FULL_MAX_BACKOFF_MS = 10_000;

export type { ProposeOutcome } from "./outcome.ts";

/** The node's disk: the Raft log, and one transaction that makes a whole Ready durable at once. */
export interface NodeStorage {
  readonly log: WritableLogStorage;
  /** Runs `fn` atomically; durably (fsync) unless `sync` is false. Throws DiskFullError when full. */
  transaction<T>(fn: () => T, opts: { sync: boolean }): T;
  /**
   * Makes every transaction run so far durable without blocking this thread, then calls `done`
   * (with the error if the fsync failed).
   */
  syncInBackground(done: (err: Error | null) => void): void;
  close(): void;
}

/** How the node reaches its peers (PeerTransport in production). */
export interface NodeTransport {
  send(msg: Message): void;
  /** Puts what send() queued on the wire now instead of at the end of the turn. */
  flushNow(): void;
  holdReplies(from: NodeId): Promise<Message[]>;
  releaseReplies(): void;
  /** Sends a client request to peer `to`, to be run there (PeerTransport.forward). */
  forward(to: NodeId, req: ForwardRequest): Promise<ForwardOutcome>;
  /** Returns the ids whose addresses cannot be used. */
  setPeers(peers: ReadonlyMap<NodeId, string>): NodeId[];
  stats(): PeerStats[];
  /** A verified batch from `id` arrived (it reaches us: reachable again). */
  heardFrom(id: NodeId): void;
  close(): Promise<void>;
}

/** What a transport tells the node. */
export interface TransportEvents {
  deliver: (msgs: Message[]) => void;
  reportUnreachable: (id: NodeId) => void;
  /** A frame to `id` was answered after `seconds` (for the peer RTT histogram). */
  onRoundTrip: (id: NodeId, seconds: number) => void;
}

/** Core settings NodeConfig does not carry; production keeps the core's defaults, the simulator varies them. */
export type CoreTuning = Pick<RaftConfig, "maxClockDriftTicks" | "leaseReads" | "maxInflight" | "maxMsgBytes" | "snapshotChunkBytes">;

/** Everything the loop runs on. */
export interface NodeParts<S extends NodeStorage> {
  storage: S;
  /** The state machine, on `storage` (it joins the Ready's transaction). */
  kv: KvStore;
  transport: (peers: { client: H2Client; auth: PeerAuth; events: TransportEvents; random: () => number }) => NodeTransport;
  scheduler: Scheduler;
  log: Logger;
  core?: CoreTuning;
  /** Marks this node's first tick, election, leader and applies (production only: real time). */
  timeline?: StartupTimeline;
}

/** A bounded-staleness read: may it be answered from this node's state now? */
export type BoundedReadOutcome =
  | { kind: "ready" }
  /** Not within the bound, even after one ReadIndex round; null: the node has no proof at all. */
  | { kind: "unproven"; provableStalenessMs: number | null; why: string }
  | { kind: "closed" };

export interface LeaderInfo {
  id: NodeId;
  /** Its RPC (and client API) address, "" when not known yet. */
  address: string;
}

export class PhalanxNode<S extends NodeStorage = DataDir> {
  readonly id: NodeId;
  readonly metrics = new NodeMetrics();
  /** Shared by peer traffic and request forwarding: one HTTP/2 session per server. */
  readonly client: H2Client;
  readonly auth: PeerAuth;
  readonly dd: S;
  readonly kv: KvStore;
  private readonly log: Logger;
  private readonly clock: Scheduler;
  private readonly core: CoreTuning;
  /** Until the first client write is applied (then reported and dropped). */
  private timeline: StartupTimeline | null;
  private raw: RawNode;
  private readonly transport: NodeTransport;
  private readonly ticker: Ticker;
  private readonly proposals: ProposalWaiters;
  private readonly reads: ReadWaiters;
  private readonly freshness: Freshness;
  private memberList: Member[];
  /** A drive is queued for the next turn (schedule) / for right after the running code (scheduleSoon). */
  private readonly drivePending = { turn: false, soon: false };
  private stopped = false;
  /** Runs forwarded client requests through the node's app (serveForwards); null until the app is built. */
  private forwardHandler: ((req: ForwardRequest, from: NodeId) => Promise<ForwardAnswer>) | null = null;
  /** The rest of a leader's Ready whose messages went out before its write; see handleReady(). */
  private deferred: (() => void) | null = null;
  /** Term and vote as last persisted: checked against the core's leave to write before an fsync. */
  private durable: { term: number; vote: NodeId | null };
  /** A background fsync is running (one at a time; see syncInBackground()). */
  private syncRunning = false;
  private lastRole: string;
  private lastLeader: NodeId | null = null;
  private hints = new Map<NodeId, string>();
  /** Members whose region recordRegion() has proposed and not seen answered yet. */
  private readonly regionProposals = new Set<NodeId>();
  private readonly violationLog: Logger;
  private readonly diskFullLog: Logger;
  private readonly slowLog: Logger;
  private readonly electionTimeoutLog: Logger;
  private readonly stateLog: StateLog;
  /** The last election this node started, for the "became leader" line. */
  private lastCampaign: RoleChange | null = null;
  /** The snapshot installed by the Ready being handled: its size and how long the restore took. */
  private installed: { bytes: number; ms: number } | null = null;
  /** When the first chunk of the snapshot being received arrived (scheduler ms), for its transfer time. */
  private snapshotArriving: { index: number; since: number } | null = null;
  /** Called once when the node cannot go on safely (disk full, corrupt data); the runner exits. */
  onFatal: (err: unknown) => void = () => undefined;

  constructor(
    readonly config: NodeConfig,
    parts: NodeParts<S>,
  ) {
    this.id = config.id;
    this.dd = parts.storage;
    this.kv = parts.kv;
    this.log = parts.log;
    this.clock = parts.scheduler;
    this.core = parts.core ?? {};
    this.timeline = parts.timeline ?? null;
    this.proposals = new ProposalWaiters(this.clock);
    this.reads = new ReadWaiters(this.clock);
    this.freshness = new Freshness({ probeEveryMs: config.heartbeatTicks * config.tickMs, probeIdleMs: PROBE_IDLE_MS });
    this.violationLog = rateLimited(this.log, 1000, () => this.clock.now());
    this.diskFullLog = rateLimited(this.log, 5000, () => this.clock.now());
    this.slowLog = rateLimited(this.log, 5000, () => this.clock.now());
    this.electionTimeoutLog = rateLimited(this.log, 10_000, () => this.clock.now());
    this.stateLog = new StateLog(config.id, this.log, () => this.clock.now());
    this.auth = config.clusterKey !== null ? { mode: "hmac", key: config.clusterKey } : { mode: "mtls" };
    const tls = config.tls;
    this.client = new H2Client(tls === null ? {} : { tls: { cert: tls.cert, key: tls.key, ...(tls.ca === null ? {} : { ca: tls.ca }) } });
    this.raw = this.newCore();
    this.lastRole = this.raw.raft.role;
    this.transport = parts.transport({
      client: this.client,
      auth: this.auth,
      random: () => this.clock.random(),
      events: {
        reportUnreachable: (id) => {
          this.finishDeferredReady();
          if (!this.stopped) this.raw.reportUnreachable(id);
        },
        deliver: (msgs) => {
          if (!this.stopped) this.receive(msgs);
        },
        onRoundTrip: (id, seconds) => this.metrics.observePeerRtt(id, seconds),
      },
    });
    this.memberList = this.kv.members();
    this.updatePeers();
    this.ticker = new Ticker(
      config.tickMs,
      () => {
        this.finishDeferredReady();
        this.timeline?.mark("firstTick");
        // While the disk is full the core stays still: an election would only fail to persist.
        if (!this.diskFull()) this.raw.tick();
        if (!this.stopped) this.stateLog.observe(this.raw.status(), this.transport.stats());
        // A leader records its own REGION while the log lacks it; retried every tick until it
        // lands (a proposal may be refused during a transfer). Outside the tick: a proposal must
        // not run inside the core's call.
        if (this.isLeader() && !this.regionProposals.has(this.id) && this.memberList.some((m) => m.id === this.id && m.region !== this.config.region)) {
          this.clock.nextTurn(() => this.recordRegion(this.id, this.config.region));
        }
      },
      this.clock,
    );
    this.durable = { term: this.raw.raft.term, vote: this.raw.raft.vote };
  }

  /** Opens (or bootstraps, on a brand-new data dir) without starting: see run(). SQLite, HTTP/2 peers, real time. */
  static open(config: NodeConfig, log: Logger, opts: { timeline?: StartupTimeline } = {}): PhalanxNode {
    const fresh = !existsSync(join(config.dataDir, DB_FILE));
    const dd = openDataDir(config.dataDir, {
      bootstrap: { voters: [...config.peers.keys()].sort(), learners: [] },
      addresses: Object.fromEntries(config.peers),
    });
    if (dd.migrated !== null) {
      log.warn("migrated the data file to a new format version (older builds cannot open it now)", { file: dd.file, ...dd.migrated });
    }
    let node: PhalanxNode;
    try {
      const kv = new KvStore(dd);
      node = new PhalanxNode(config, {
        storage: dd,
        kv,
        log,
        scheduler: realScheduler,
        ...(opts.timeline === undefined ? {} : { timeline: opts.timeline }),
        // A peer answers every frame and a leader heartbeats every tick: silence for an election
        // timeout and a half means the stream is dead (or blackholed), not slow. A peer still
        // starting is retried within ms for as long as the first election may wait for it: until
        // the candidate's randomized election timeout, at most twice the base.
        transport: ({ client, auth, events }) =>
          new PeerTransport({
            self: config.id,
            client,
            auth,
            ...events,
            silenceTimeoutMs: Math.max(1000, 1.5 * config.tickMs * config.electionTicks),
            startupWindowMs: 2 * config.electionTicks * config.tickMs,
          }),
      });
    } catch (err) {
      dd.close();
      throw err;
    }
    const members = node.memberList.map((m) => `${m.id}=${m.address}`).join(",");
    log.info(fresh ? "bootstrapped a new data dir" : "restarted from the data dir (PEERS ignored)", {
      dir: config.dataDir,
      members,
      applied: node.kv.appliedIndex(),
      term: node.raw.raft.term,
    });
    return node;
  }

  /** Starts the clock; call once the server accepts peer messages, so no election runs deaf. */
  run(): void {
    if (this.stopped) return;
    // A lone voter has nobody to wait for: elect itself now instead of after a timeout.
    const conf = this.raw.status().conf;
    if (conf.voters.length === 1 && conf.voters[0] === this.id) this.raw.campaign();
    else {
      // A brand-new cluster need not wait out an election timeout: the core decides (raft.ts,
      // "first election of a brand-new cluster"); the peers' transport retries a peer that is
      // still starting, so the requests find it listening.
      const first = this.raw.campaignFirstElection();
      if (!first.campaigned) this.log.debug("first election: waiting for the election timeout", { why: first.why });
    }
    this.ticker.run(() => this.schedule());
    this.schedule();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** A validated batch from a peer (raft routes). Throws only when shutting down (the peer gets a 500). */
  receive(msgs: Message[]): void {
    this.finishDeferredReady();
    if (this.stopped) throw new Error("node is shutting down");
    if (this.diskFull()) throw new Error("disk full: not taking peer messages until there is room again");
    this.ticker.catchUp();
    for (const m of msgs) {
      if (m.type === "snapshot" && m.offset === 0) this.snapshotArriving = { index: m.meta.index, since: this.clock.now() };
      this.raw.step(m);
    }
    // A batch has one authenticated sender (raft_routes.ts checks every message's `from`).
    if (msgs[0] !== undefined) this.transport.heardFrom(msgs[0].from);
    // An idle node handles a peer's batch as soon as the batch is read, not a turn later: every
    // write crosses this twice (a follower persisting the leader's append; the leader stepping
    // the first answer, to commit, apply and answer the client), and each turn waited 35-65 µs of
    // a lone write's 1.3 ms. A busy node keeps the turn: when proposals or reads already wait for
    // one, the batch joins them, or a follower's answer arriving between two client requests of
    // the same turn would cut the turn's proposals into two fsyncs, and its reads into two
    // ReadIndex rounds (BENCHMARKS.md, "A correction and two more levers").
    if (!this.drivePending.turn) this.scheduleSoon();
  }

  /**
   * Call right after receive() for a batch from `from`: resolves, at the end of the turn that
   * handles the batch, with the messages for `from` it produced (its answer on the peer stream).
   */
  awaitReplies(from: NodeId): Promise<Message[]> {
    return this.transport.holdReplies(from);
  }

  /**
   * Has a client request run by `to` (the leader): over the peer stream, or by this node's own
   * app when `to` is this node (it became leader while a forward waited to be sent again).
   */
  forwardTo(to: NodeId, req: ForwardRequest): Promise<ForwardOutcome> {
    if (to !== this.id) return this.transport.forward(to, req);
    return this.runForwarded(req, this.id).then(
      (answer): ForwardOutcome => ({ kind: "answered", answer }),
      (err: unknown): ForwardOutcome => ({ kind: "unknown", reason: `running it here failed: ${err instanceof Error ? err.message : String(err)}` }),
    );
  }

  /** The app that runs forwarded requests (api/app.ts sets it once it is built). */
  serveForwards(handler: (req: ForwardRequest, from: NodeId) => Promise<ForwardAnswer>): void {
    this.forwardHandler = handler;
  }

  /** Runs a client request `from` forwarded to this node (raft_stream.ts). Rejects when there is no app yet. */
  runForwarded(req: ForwardRequest, from: NodeId): Promise<ForwardAnswer> {
    if (this.forwardHandler === null) return Promise.reject(new Error("this node serves no client API yet"));
    return this.forwardHandler(req, from);
  }

  /** Proposes one command; resolves when applied, definitely not applied, refused or unknown (outcome.ts). */
  propose(cmd: Command, session: Proposal["session"], timeoutMs: number): Promise<ProposeOutcome> {
    return new Promise((resolve) => this.submit(cmd, session, timeoutMs, resolve));
  }

  /** propose() with a callback: `done` is called exactly once, synchronously with the event that settles it. */
  submit(cmd: Command, session: Proposal["session"], timeoutMs: number, done: (o: ProposeOutcome) => void): void {
    this.finishDeferredReady();
    if (this.stopped) {
      done(notApplied("not_started", "the node is shutting down; the write was not applied"));
      return;
    }
    const data = encodeProposal({ time: this.clock.wallClock(), session, cmd });
    this.metrics.proposals++;
    const r = this.raw.propose(data);
    if (!r.ok) {
      this.metrics.proposalsFailed++;
      done({ kind: "rejected", reason: r.reason, leader: r.leader });
      return;
    }
    const started = this.clock.now();
    this.proposals.wait(r.index, r.term, timeoutMs, (o) => {
      if (o.kind === "applied") this.metrics.commitLatency.observe((this.clock.now() - started) / 1000);
      else this.metrics.proposalsFailed++;
      done(o);
    });
    this.schedule();
  }

  /**
   * Waits until a linearizable read may be served from the local state machine: the core confirms
   * leadership (lease or heartbeat round) and the state machine has applied the read index.
   */
  readBarrier(timeoutMs: number): Promise<ReadOutcome> {
    return new Promise((resolve) => this.awaitReadBarrier(timeoutMs, resolve));
  }

  /** readBarrier() with a callback, called exactly once. */
  awaitReadBarrier(timeoutMs: number, done: (o: ReadOutcome) => void): void {
    if (!this.readyForReads()) {
      done({ kind: "closed" });
      return;
    }
    this.readIndexRound(timeoutMs, (o) => {
      if (o.kind === "ready") this.metrics.readsLinearizable++;
      else this.metrics.readsFailed++;
      done(o);
    });
  }

  /**
   * Waits until this node may answer a read that is at most `maxStalenessMs` stale (the rule:
   * freshness.ts). From the proof it holds, at once; otherwise after one ReadIndex round within
   * `timeoutMs`; otherwise "unproven": the caller refuses rather than serve older data.
   */
  boundedRead(maxStalenessMs: number, timeoutMs: number): Promise<BoundedReadOutcome> {
    return new Promise((resolve) => this.awaitBoundedRead(maxStalenessMs, timeoutMs, resolve));
  }

  /** boundedRead() with a callback, called exactly once (synchronously when the proof at hand suffices). */
  awaitBoundedRead(maxStalenessMs: number, timeoutMs: number, done: (o: BoundedReadOutcome) => void): void {
    if (!this.readyForReads()) {
      done({ kind: "closed" });
      return;
    }
    this.freshness.boundedReadAt(this.clock.now());
    if (this.freshness.judge(this.clock.now(), maxStalenessMs).kind === "within") {
      this.metrics.readsBoundedLocal++;
      done({ kind: "ready" });
      return;
    }
    this.readIndexRound(timeoutMs, (o) => {
      // Judged again now, whatever the round did: a background probe may have proved enough
      // meanwhile, and a round that took longer than the bound does not prove the bound.
      const j = this.freshness.judge(this.clock.now(), maxStalenessMs);
      if (j.kind === "within") {
        this.metrics.readsBoundedRound++;
        done({ kind: "ready" });
        return;
      }
      this.metrics.readsBoundedRefused++;
      const why =
        o.kind === "ready" ? "the ReadIndex round (a round trip to the leader) took longer than the bound"
        : o.kind === "failed" ? `no leader confirmed a read: ${o.reason}`
        : o.kind === "timeout" ? "no leader confirmed a read before the deadline"
        : "the node is shutting down";
      done({ kind: "unproven", provableStalenessMs: j.provableStalenessMs, why });
    });
  }

  /** The staleness bound (ms) this node can prove for an answer given now (freshness.ts); null: none. */
  provableStalenessMs(): number | null {
    return this.freshness.stalenessAt(this.clock.now());
  }

  /** The checks before a read: the core is idle, the node runs, and the lease sees real elapsed time. */
  private readyForReads(): boolean {
    this.finishDeferredReady();
    if (this.stopped) return false;
    // Replay ticks missed by a stalled loop first: the lease must be judged on real elapsed time.
    this.ticker.catchUp();
    return true;
  }

  /**
   * One ReadIndex round (lease or heartbeat round on the leader, a round trip to it from a
   * follower). Once its index is applied, it proves this node fresh as of the moment it started
   * (freshness.ts): the start time is taken before the request leaves, so the proof errs old.
   */
  private readIndexRound(timeoutMs: number, done: (o: ReadOutcome) => void): void {
    const started = this.clock.now();
    this.reads.wait(timeoutMs, (o) => {
      if (o.kind === "ready") this.freshness.proved(started);
      done(o);
    });
    // The round itself is asked in the next turn, together with every read that arrives before
    // it (drive(), ReadWaiters.issue()).
    this.schedule();
  }

  /**
   * The reads that arrived since the last turn share one ReadIndex round, asked now, after the
   * last of them arrived (waiters.ts says why not when the first one did). A read may have been
   * registered before the loop stalled: the ticks the stall missed are replayed first, so the
   * leader's lease is judged on real elapsed time when the round is asked (a leader deposed
   * during the stall would otherwise still find its lease valid and serve a stale index).
   */
  private issueReads(): void {
    if (this.reads.unasked === 0) return;
    this.ticker.catchUp();
    if (this.stopped) return;
    this.reads.issue((ctx) => this.raw.readIndex(ctx));
  }

  /**
   * Each turn: while bounded reads are being served, one background ReadIndex round per
   * heartbeat interval keeps the proof fresh, so those reads answer locally without a round trip.
   * At most one is in flight; it gives up after an election timeout (the leader is likely gone).
   *
   * Never from inside a tick: while the ticker replays ticks a stalled loop missed, the core
   * believes less time has passed than really has, so a leader that was stopped (SIGSTOP, a long
   * GC) would still find its lease valid halfway through the replay and "prove" its old state
   * fresh as of now. Like every read, the probe replays all missed ticks first (the simulator
   * caught this: a resumed old leader answered a bounded read without the writes of its successor).
   */
  private probeFreshness(): void {
    if (this.diskFull() || !this.freshness.shouldProbe(this.clock.now())) return;
    this.ticker.catchUp();
    if (this.stopped) return;
    const now = this.clock.now();
    this.freshness.probeStarted(now);
    this.metrics.freshnessProbes++;
    this.readIndexRound(this.config.electionTicks * this.config.tickMs, () => this.freshness.probeEnded());
  }

  /**
   * A single-server membership change (the core refuses while another is in progress). The
   * context the caller gives is the changed member's record (kv/member.ts); the records of all
   * the other members, as this leader's table holds them, go along (MemberContext.others).
   */
  proposeConfChange(cc: ConfChange): ProposeResult {
    this.finishDeferredReady();
    if (this.stopped) return { ok: false, reason: "node is shutting down", leader: null };
    // A region record still on its way would miss the others' records, and a replica that joins
    // with this entry would never learn it: one kind of membership write at a time.
    if (this.regionProposals.size > 0) return { ok: false, reason: `a member's region is being recorded (${[...this.regionProposals].join(",")})`, leader: this.raw.raft.lead };
    const others = Object.fromEntries(this.memberList.filter((m) => m.id !== cc.node).map((m) => [m.id, { address: m.address, region: m.region }]));
    const own = decodeMemberContext(cc.context);
    const r = this.raw.proposeConfChange({ ...cc, context: encodeMemberContext({ address: own.address, region: own.region, others }) });
    this.schedule();
    return r;
  }

  transferLeadership(to: NodeId): { ok: true } | { ok: false; reason: string } {
    this.finishDeferredReady();
    if (this.stopped) return { ok: false, reason: "node is shutting down" };
    const r = this.raw.transferLeadership(to);
    this.schedule();
    return r;
  }

  /** Narrows this node's election timeout (src/node/election_rank.ts decides it); null: today's window. */
  setElectionWindow(w: ElectionWindow | null): void {
    if (!this.stopped) this.raw.setElectionWindow(w);
  }

  isLeader(): boolean {
    return this.raw.raft.role === "leader";
  }

  /** Whether this node may serve lease reads now, judged on elapsed time (missed ticks replayed first). */
  holdsLease(): boolean {
    if (this.stopped || !this.isLeader()) return false;
    // Replaying ticks calls into the core, which must not happen while a Ready is deferred; and
    // asking must not cut the deferred Ready's fsync short (the simulator asks at every instant).
    if (this.deferred === null && this.ticker.catchUp() > 0) this.schedule();
    return this.raw.raft.leaseValid();
  }

  status(): Status {
    return this.raw.status();
  }

  /**
   * The Raft configuration is the truth for who is a member and in which role (it takes effect
   * when appended, before the table has applied it); address and region come from the replicated
   * members table, the address else from gossip (a founder's row a later joiner never replayed).
   */
  members(): Member[] {
    const conf = this.raw.raft.conf();
    const region = (id: NodeId) => this.memberList.find((m) => m.id === id)?.region ?? "";
    return [
      ...conf.voters.map((id) => ({ id, address: this.addressOf(id), region: region(id), role: "voter" as const })),
      ...conf.learners.map((id) => ({ id, address: this.addressOf(id), region: region(id), role: "learner" as const })),
    ];
  }

  /** Whether `id` is a voter or learner now (members() without building the list: asked per request). */
  isMember(id: NodeId): boolean {
    const conf = this.raw.raft.conf();
    return conf.voters.includes(id) || conf.learners.includes(id);
  }

  private addressOf(id: NodeId): string {
    const stored = this.memberList.find((m) => m.id === id)?.address ?? "";
    return stored !== "" ? stored : (this.hints.get(id) ?? "");
  }

  leader(): LeaderInfo | null {
    const id = this.raw.raft.lead;
    if (id === null) return null;
    return { id, address: this.addressOf(id) };
  }

  peerStats(): PeerStats[] {
    return this.transport.stats();
  }

  /**
   * Before a planned stop, a leader hands over to its most up-to-date reachable voter, so clients
   * see one quick transfer instead of waiting out an election timeout. Bounded by `timeoutMs`;
   * resolves with the new leader, or null when there was nothing to hand over or it did not happen.
   */
  async handOffLeadership(timeoutMs: number): Promise<NodeId | null> {
    if (this.stopped || !this.isLeader()) return null;
    const s = this.raw.status();
    const candidates = s.conf.voters.filter((id) => id !== this.id && s.progress[id]?.answeredRecently === true);
    candidates.sort((a, b) => (s.progress[b]?.match ?? 0) - (s.progress[a]?.match ?? 0));
    const to = candidates[0];
    if (to === undefined || !this.transferLeadership(to).ok) return null;
    this.log.info("handing leadership over before stopping", { to });
    const deadline = this.clock.now() + timeoutMs;
    // Bounded wait: a few polls per tick until the deadline.
    while (this.clock.now() < deadline && !this.stopped) {
      if (!this.isLeader() && this.raw.raft.lead === to) return to;
      await new Promise<void>((r) => this.clock.after(Math.max(5, this.config.tickMs / 4), r));
    }
    return null;
  }

  /** Hands out pending work; the rest of the shutdown (transport, data dir) follows. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    // The last batch: whatever reached the core is persisted and applied before closing.
    this.drive();
    this.finishDeferredReady();
    this.stopped = true;
    this.ticker.stop();
    this.proposals.closeAll(unknownOutcome("shutdown", "the node stopped before the write committed; it may still commit"));
    this.reads.closeAll();
    await this.transport.close();
    await this.client.close();
    this.dd.close();
    this.log.info("stopped", { applied: this.kv.appliedIndex() });
  }

  /** Drives once the code running now is done (a peer's batch: receive()). */
  private scheduleSoon(): void {
    this.driveOnce("soon");
  }

  /** Drives in a later turn, after the I/O already queued. */
  private schedule(): void {
    this.driveOnce("turn");
  }

  /**
   * Queues one drive in `slot`, however often asked before it runs; none once stopped. Called on
   * every proposal and peer batch, so nothing is allocated unless a drive is actually queued.
   */
  private driveOnce(slot: "turn" | "soon"): void {
    if (this.drivePending[slot] || this.stopped) return;
    this.drivePending[slot] = true;
    const run = (): void => {
      this.drivePending[slot] = false;
      this.drive();
    };
    if (slot === "soon") this.clock.soon(run);
    else this.clock.nextTurn(run);
  }

  private drive(): void {
    this.finishDeferredReady();
    if (this.stopped) return;
    try {
      this.probeFreshness();
      this.issueReads();
      for (let i = 0; i < MAX_READIES_PER_TURN && this.raw.hasReady() && !this.writeWaitsForFsync(); i++) {
        if (this.handleReady()) {
          this.transport.releaseReplies();
          return;
        }
      }
    } catch (err) {
      this.fail(err);
    }
    this.afterReadies();
  }

  /** Reports role changes, releases peer replies held for this turn, and comes back for more. */
  private afterReadies(): void {
    // After a fatal failure there is nothing to report; a full disk rebuilt the core and goes on.
    if (this.stopped) return;
    this.observeRole();
    this.transport.releaseReplies();
    // A write held for the running fsync is taken when it ends (syncInBackground()).
    if (this.raw.hasReady() && !this.writeWaitsForFsync()) this.schedule();
  }

  /**
   * New entries wait while a background fsync runs: they go out and are written in one Ready when
   * it ends, with everything that arrived meanwhile. One write and one fsync in flight is group
   * commit as the blocking fsync had it (16 entries per fsync at 64 clients), with the thread free
   * to read and parse requests during the fsync; a Ready per turn instead wrote a few entries each,
   * and spent more CPU per write on the transactions than the free thread gained.
   */
  private writeWaitsForFsync(): boolean {
    return this.syncRunning && this.raw.raft.log.hasUnstable();
  }

  /**
   * Finishes a deferred Ready now. Everything that calls into the core calls this first, so the
   * core never sees a step between ready() and advance(), and no follower's answer is counted
   * before the leader's own entries are durable.
   */
  private finishDeferredReady(): void {
    const finish = this.deferred;
    if (finish === null) return;
    this.deferred = null;
    try {
      finish();
    } catch (err) {
      this.fail(err);
    }
    this.afterReadies();
  }

  /**
   * One Ready. A leader whose only new durable state is its own entries (Ready.fsyncInBackground:
   * its term and vote are durable already) sends them first, writes them right after, once the
   * requests are on the wire, and fsyncs them in the background, so followers write in parallel
   * with it (Raft thesis §10.2.1; etcd does the same) and its thread is not held by its fsync.
   * Safe because the core counts the leader's own copy toward a commit, and applies an entry,
   * only once synced() reports it durable; and every entry into the core finishes the deferred
   * write first. (tests/sim runs this code, with crashes and power cuts between the send, the
   * write and the fsync.) Returns true when the Ready was deferred.
   */
  private handleReady(): boolean {
    const rd = this.raw.ready();
    this.metrics.readies++;
    if (!rd.fsyncInBackground) {
      this.finishReady(rd, "persist_then_send");
      return false;
    }
    const hs = rd.hardState;
    assert(hs === null || (hs.term === this.durable.term && hs.vote === this.durable.vote), "a background fsync for a new term or vote", hs, this.durable);
    if (rd.messages.length === 0) {
      this.finishReady(rd, "write_then_fsync_in_background"); // a single voter: nobody to send to first
      return false;
    }
    this.send(rd);
    this.transport.flushNow();
    this.deferred = () => this.finishReady(rd, "write_then_fsync_in_background");
    this.clock.afterSend(() => this.finishDeferredReady());
    return true;
  }

  /** The Ready in the order raw_node.ts prescribes. */
  private finishReady(rd: Ready, path: "persist_then_send" | "write_then_fsync_in_background"): void {
    const background = path === "write_then_fsync_in_background";
    const results = this.persist(rd, background ? "fsync_later" : "fsync_now");
    if (!background) this.send(rd);
    this.resolveWaiters(rd, results);
    const membershipChanged = this.housekeeping(rd);
    if (background) this.syncInBackground(this.raw.advanceBeforeSync());
    else this.raw.advance();
    if (this.kv.takeMembersChanged() || membershipChanged) {
      this.memberList = this.kv.members();
      this.updatePeers();
    }
  }

  /**
   * Starts a background fsync of everything written so far, up to `mark`. One runs at a time:
   * while it runs a leader takes no new write (writeWaitsForFsync).
   */
  private syncInBackground(mark: SyncMark): void {
    assert(!this.syncRunning, "a write while a background fsync runs", mark);
    this.syncRunning = true;
    const t0 = this.clock.now();
    this.dd.syncInBackground((err) => {
      this.syncRunning = false;
      if (this.stopped) return;
      if (err !== null) {
        this.fail(err);
        return;
      }
      const ms = this.clock.now() - t0;
      this.metrics.persistLatency.observe(ms / 1000);
      if (ms > SLOW_PERSIST_MS) this.slowLog.warn("slow fsync", { ms: Math.round(ms), thresholdMs: SLOW_PERSIST_MS });
      // The core takes nothing between a Ready and its advance: a deferred write finishes first.
      this.finishDeferredReady();
      if (this.stopped) return;
      this.raw.synced(mark);
      // What the fsync let commit or apply, and the write it held, with what this turn reads.
      this.schedule();
    });
  }

  /**
   * Step 1 (and 3): the log writes, the snapshot install and the applying of committed entries,
   * in one transaction. Committed entries are already durable on a majority, so applying them
   * before the messages go out only saves an fsync. Returns the results of `rd.committed`.
   */
  private persist(rd: Ready, fsync: "fsync_now" | "fsync_later"): (ReturnType<KvStore["apply"]>)[] {
    // Most Readies of a busy cluster only carry messages (heartbeats, acks): nothing to write.
    if (rd.snapshot === null && rd.entries.length === 0 && rd.hardState === null && rd.committed.length === 0) return [];
    const sync = rd.mustSync && fsync === "fsync_now";
    const t0 = this.clock.now();
    let restoreMs = 0;
    let applyMs = 0;
    const results = this.dd.transaction(
      () => {
        this.dd.log.save(rd.snapshot, rd.entries, rd.hardState);
        if (rd.snapshot !== null) {
          const r0 = this.clock.now();
          this.metrics.snapshotInstallDuration.time(() => this.kv.restore(rd.snapshot!.data, rd.snapshot!.meta));
          restoreMs = this.clock.now() - r0;
          this.installed = { bytes: rd.snapshot.data.byteLength, ms: restoreMs };
        }
        if (rd.committed.length === 0) return [];
        const a0 = this.clock.now();
        const applied = this.metrics.applyDuration.time(() => rd.committed.map((entry) => this.kv.apply(entry)));
        applyMs = this.clock.now() - a0;
        return applied;
      },
      { sync },
    );
    const totalMs = this.clock.now() - t0;
    if (rd.mustSync) this.diskHasRoomAgain();
    if (sync) {
      this.metrics.persistLatency.observe(totalMs / 1000);
      // What is left of the transaction once applying and restoring are taken out: the log write and its fsync.
      const writeMs = totalMs - applyMs - restoreMs;
      if (writeMs > SLOW_PERSIST_MS) this.slowLog.warn("slow fsync", { ms: Math.round(writeMs), entries: rd.entries.length, thresholdMs: SLOW_PERSIST_MS });
    }
    if (applyMs > SLOW_APPLY_MS) this.slowLog.warn("slow apply", { ms: Math.round(applyMs), entries: rd.committed.length, thresholdMs: SLOW_APPLY_MS });
    if (rd.hardState !== null) this.durable = { term: rd.hardState.term, vote: rd.hardState.vote };
    return results;
  }

  /** Step 2: the messages (they may depend on what was just persisted). */
  private send(rd: Ready): void {
    for (const m of rd.messages) {
      if (m.type === "snapshot" && m.offset === 0) this.stateLog.snapshotSending(m.to, m.meta.index, m.total);
      this.transport.send(m);
    }
  }

  /** Step 4: answer the writes and reads this Ready decided. */
  private resolveWaiters(rd: Ready, results: (ReturnType<KvStore["apply"]>)[]): void {
    if (rd.snapshot !== null) this.proposals.coveredBySnapshot(rd.snapshot.meta.index);
    rd.committed.forEach((entry, i) => this.proposals.applied(entry.index, entry.term, results[i] ?? null));
    const applied = this.kv.appliedIndex();
    for (const rs of rd.readStates) {
      if (rs.lease) this.metrics.readsLease++;
      this.reads.answered(rs.ctx, rs.index, applied);
    }
    this.reads.served(applied);
    for (const rf of rd.readFailures) this.reads.failed(rf.ctx, rf.reason);
  }

  /** Step 5, with the counters and logs that follow from the Ready; returns whether membership changed. */
  private housekeeping(rd: Ready): boolean {
    let membershipChanged = false;
    if (rd.snapshot !== null) {
      this.metrics.snapshotsInstalled++;
      membershipChanged = true;
      const { bytes, ms } = this.installed ?? { bytes: rd.snapshot.data.byteLength, ms: 0 };
      this.installed = null;
      const arriving = this.snapshotArriving;
      this.snapshotArriving = null;
      const transferMs = arriving !== null && arriving.index === rd.snapshot.meta.index ? Math.round(this.clock.now() - arriving.since) : null;
      this.log.info("installed a snapshot from the leader", {
        index: rd.snapshot.meta.index,
        term: rd.snapshot.meta.term,
        bytes,
        ...(transferMs === null ? {} : { transferMs }),
        ms: Math.round(ms),
      });
    }
    for (const r of rd.roleChanges) {
      if (r.kind === "campaign") {
        this.lastCampaign = r;
        this.timeline?.mark("campaign");
      }
      logRoleChange(this.log, this.electionTimeoutLog, r);
    }
    if (rd.committed.some((entry) => entry.type === "conf")) membershipChanged = true;
    if (this.timeline !== null && rd.committed.length > 0) {
      this.timeline.mark("firstCommit");
      if (rd.committed.some((entry) => entry.type === "normal")) {
        this.timeline.mark("firstWrite");
        this.timeline.report(this.log);
        // Reported once: from here on the hot path does not look at it again.
        this.timeline = null;
      }
    }
    this.metrics.entriesApplied += rd.committed.length;
    for (const w of rd.warnings) {
      // Counted always, logged at most once a second: a confused peer must not flood the log.
      this.metrics.protocolViolations++;
      this.violationLog.warn("refused a peer message", { why: w });
    }
    for (const r of rd.followerRegressions) {
      // A follower's data dir went back (WAL lost, backup restored): the core re-sends what it lost.
      this.metrics.followerRegressions++;
      this.violationLog.warn("follower holds fewer entries than it acknowledged: its data went back; catching it up again", { ...r });
    }
    if (rd.snapshotRequest !== null) this.takeSnapshot(rd.snapshotRequest);
    return membershipChanged;
  }

  private takeSnapshot(req: { index: number; conf: Status["conf"] }): void {
    const snap = this.metrics.snapshotSaveDuration.time(() => this.kv.snapshot());
    if (snap.index !== req.index) throw new Error(`state machine snapshot at ${snap.index}, the core asked for ${req.index}`);
    const meta = { index: snap.index, term: this.dd.log.term(snap.index), conf: req.conf };
    this.dd.log.createSnapshot({ meta, data: snap.data }, snap.index - this.config.catchupEntries);
    this.metrics.snapshotsCreated++;
    this.log.info("took a snapshot", { index: snap.index, bytes: snap.data.byteLength });
  }

  /**
   * On the leader: records in the replicated members table where member `id` runs, when the table
   * does not say so yet or says otherwise (a founder's bootstrap row has no region), through the
   * log (the `member` command), so every replica and every later leader reads the same region.
   * Callers pass what they learned from the member itself: this node's REGION, gossip metadata
   * (sealed with the cluster's gossip key), a signed placement report. One proposal per member at
   * a time; a lost one is tried again at the next call.
   */
  recordRegion(id: NodeId, region: string): void {
    if (this.stopped || !this.isLeader() || this.regionProposals.has(id)) return;
    if (invalidRegion(region, "must be known") !== null) return;
    const m = this.memberList.find((x) => x.id === id);
    if (m === undefined || m.region === region) return;
    this.regionProposals.add(id);
    void this.propose({ op: "member", id, region }, null, this.config.requestTimeoutMs).then((o) => {
      this.regionProposals.delete(id);
      if (o.kind === "applied") this.log.info("recorded a member's region", { node: id, region, was: m.region === "" ? "unknown" : m.region });
    });
  }

  /**
   * Where to reach servers before the log says so (gossip's alive servers; PEERS with
   * INITIAL_CLUSTER_STATE=existing): a joiner must answer the leader before it has applied the
   * conf entry that gives it the members' records. Only a fallback for the transport and for an
   * address the members table lacks; never written to the table.
   */
  setAddressHints(hints: ReadonlyMap<NodeId, string>): void {
    const changed = hints.size !== this.hints.size || [...hints].some(([id, a]) => this.hints.get(id) !== a);
    if (!changed) return;
    this.hints = new Map(hints);
    this.updatePeers();
  }

  /** Gossip and autopilot state for /v1/members, when membership is automatic. */
  membershipInfo: (() => MembershipInfo) | null = null;
  /** The gossip agent's counters for /metrics, when gossip is on. */
  gossipCounters: (() => GossipCounters) | null = null;
  /** Leader placement's state for /v1/status and this node's round trips for the leader, when it runs. */
  placement: PlacementHooks | null = null;

  private updatePeers(): void {
    const peers = new Map(this.hints);
    for (const m of this.memberList) if (m.address !== "") peers.set(m.id, m.address);
    const invalid = this.transport.setPeers(peers);
    if (invalid.length > 0) this.log.warn("members with unusable addresses are not contacted", { ids: invalid.join(",") });
  }

  private observeRole(): void {
    const { role, lead, term } = this.raw.raft;
    if (role !== this.lastRole) {
      if (role === "candidate") this.metrics.electionsStarted++;
      if (role === "leader") {
        this.metrics.electionsWon++;
        this.log.info("became leader", { term, ...electionWhy(this.lastCampaign) });
      }
      this.lastRole = role;
    }
    if (lead !== this.lastLeader) {
      if (lead !== null) this.timeline?.mark("leader");
      this.metrics.observeLeader(lead, term);
      this.log.info(lead === null ? "lost the leader" : "leader is known", { leader: lead ?? "none", term });
      this.lastLeader = lead;
    }
  }

  /** The core, from what is durable: at start, and again after a write failed for lack of space. */
  private newCore(): RawNode {
    return new RawNode({
      id: this.config.id,
      storage: this.dd.log,
      random: () => this.clock.random(),
      applied: this.kv.appliedIndex(),
      electionTicks: this.config.electionTicks,
      heartbeatTicks: this.config.heartbeatTicks,
      snapshotEvery: this.config.snapshotEvery,
      // Debug logs show the core's decisions; otherwise no hook, so the core builds no fields.
      ...(this.log.minLevel === "debug" ? { trace: (event: string, fields: Record<string, unknown>) => this.log.debug(`raft: ${event}`, fields) } : {}),
      ...this.core,
    });
  }

  /** Until this time (scheduler time) the disk was full and the node waits before trying again. */
  private diskFullUntil = 0;
  private diskFullBackoffMs = 0;

  diskFull(): boolean {
    return this.clock.now() < this.diskFullUntil;
  }

  /**
   * A write found the disk full. Its transaction rolled back whole, so the data file is exactly
   * what it was: only the core ran ahead of it. Like a crash and restart, but in process: the core
   * is rebuilt from the durable state, pending writes are answered "outcome unknown", stale reads
   * go on from the state machine, and after a backoff the node tries again (recovering by itself
   * once there is room).
   */
  private onDiskFull(err: Error): void {
    this.diskFullBackoffMs = Math.min(Math.max(this.diskFullBackoffMs * 2, DISK_FULL_MIN_BACKOFF_MS), DISK_FULL_MAX_BACKOFF_MS);
    this.diskFullUntil = this.clock.now() + this.diskFullBackoffMs;
    this.metrics.diskFullErrors++;
    this.diskFullLog.error("disk full: writes refused, stale reads still served; retrying", { error: err.message, retryInMs: this.diskFullBackoffMs });
    this.deferred = null;
    const why = "the disk is full: the write was not persisted here, and may or may not commit elsewhere";
    this.proposals.closeAll(unknownOutcome("disk_full", why));
    this.reads.closeAll();
    this.raw = this.newCore();
    this.durable = { term: this.raw.raft.term, vote: this.raw.raft.vote };
  }

  /** A write persisted: if the disk had been full, it has room again. */
  private diskHasRoomAgain(): void {
    if (this.diskFullBackoffMs === 0) return;
    this.diskFullBackoffMs = 0;
    this.log.info("disk has room again: writes resume");
  }

  /** Storage failed mid-Ready: the core's view and the disk may disagree, so stop instead of guessing. */
  private fail(err: unknown): void {
    if (err instanceof DiskFullError) {
      this.onDiskFull(err);
      return;
    }
    this.log.error("cannot continue safely, stopping", { error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
    this.stopped = true;
    this.deferred = null;
    this.ticker.stop();
    this.proposals.closeAll(unknownOutcome("shutdown", "the node stopped on a storage failure; the write may still commit elsewhere"));
    this.reads.closeAll();
    void this.transport.close();
    try {
      // The failed transaction rolled back; closing keeps every earlier commit.
      this.dd.close();
    } catch (closeErr) {
      this.log.error("closing the data dir failed", { error: closeErr });
    }
    this.onFatal(err);
  }
}
