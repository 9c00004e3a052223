// Deterministic cluster simulator: the real node loop (PhalanxNode from src/node/node.ts, with its
// Ready pipeline, waiters, early send, snapshot install) and the real state machine (KvStore) on
// an in-memory SQLite disk, a simulated network and a simulated clock (sim_node.ts), with faults,
// stalls, membership changes, transfers and retrying clients. Every event is drawn from one seeded
// PRNG, so a seed replays exactly. After every event it checks Raft's safety properties; at the
// end, linearizability of what the clients were told.
//
// Clients see what an HTTP client sees: the node's ProposeOutcome (src/node/outcome.ts). An
// "applied" answer completes the operation with its result; a definite "not applied" means the
// operation never took effect, so it leaves the history (a false one then shows as a read of a
// value nobody wrote); an unknown outcome keeps the operation open, to be retried with the same
// session sequence, and it may take effect at any time after its call.
import type { Command, Expect, Result } from "../../src/kv/command.ts";
import type { ProposeOutcome } from "../../src/node/outcome.ts";
import { PhalanxNode, type NodeStorage } from "../../src/node/node.ts";
import type { ConfChange, Entry, Message, NodeId } from "../../src/raft/types.ts";
import { checkLinearizable, kvModel, type KvInput, type KvOutput, type Operation } from "./linearizability.ts";
import { Prng } from "./prng.ts";
import { SimClock, SimDisk, simConfig, simLogger, simTransport, TICK, type ClockHost, type Observer } from "./sim_node.ts";

export interface SimOptions {
  nodes: number;
  /** Simulated time with faults and load; then faults heal and the cluster must recover. */
  duration: number;
  clients: number;
  keys: number;
  loss: number;
  duplicate: number;
  minDelay: number;
  maxDelay: number;
  /** Each node's tick period is TICK * (1 ± drift). */
  drift: number;
  /** Mean time between fault actions (crash, restart, stall, partition, heal, conf change, transfer). */
  faultEvery: number;
  /**
   * "all": every kind above, drawn at random. The others each aim one kind at the leader many
   * times a run instead of a few: "leaderIsolation" cuts it off from everyone, then heals, in
   * turn (a lease bug shows: the old leader keeps serving while the others elect);
   * "leaderTransfer" hands leadership on (a read bug shows: a new leader that does not yet know
   * what its predecessor committed); "leaderStall" stalls it (with stalls on: issue 8's path);
   * "leaderCrash" kills it right after it handles its next append acknowledgement, or restarts a
   * dead node, half and half (Figure 8: a leader dies having replicated an entry to some, perhaps
   * having counted them and committed, before its next append lands);
   * "leaderCut" cuts the link between it and one follower (both ways; the third node hears both),
   * then heals, in turn (a vote bug shows: the cut-off follower campaigns while the others still
   * hear the leader).
   */
  faultKinds: "all" | "leaderIsolation" | "leaderTransfer" | "leaderStall" | "leaderCrash" | "leaderCut";
  snapshotEvery: number;
  snapshotChunkBytes: number;
  /** Small values split appends into one entry per message (Figure 8 needs that). */
  maxMsgBytes: number;
  maxInflight: number;
  leaseReads: boolean;
  /**
   * Lets a leader's early send (Raft thesis §10.2.1) happen: its write, and then its background
   * fsync, take a while, so followers may persist first, and now and then the leader dies after
   * sending, before its write, or loses power before its fsync ends. Off: the write after an early
   * send, and its background fsync, end at once and are never interrupted.
   */
  earlySend: boolean;
  /** With earlySend: the chance that a node dies in each of those two windows. */
  fsyncCrash: number;
  /**
   * The share of crashes that are power cuts: the node also loses the log entries it wrote but
   * had not fsynced yet (a leader's own, fsynced in the background). The rest are kill -9.
   */
  powerCuts: number;
  /** How long a client waits for an answer before it retries (the node gets a little less). */
  clientTimeout: number;
  /** Stalls (SIGSTOP-like pauses) among the faults: a paused node handles nothing until it resumes. */
  stalls: boolean;
  /** A stall lasts between these many ticks. */
  stallTicks: [number, number];
  /**
   * The share of reads that are bounded-staleness reads (`?max_staleness=`), each with a bound
   * drawn from BOUNDS. The checker gives such a read a call time no later than the bound before
   * its answer (in simulated time, through the node's clock rate): it must reflect every write
   * that completed before then.
   */
  boundedReads: number;
  /** Record every message in the trace (for replaying one seed). */
  verbose: boolean;
}

/** Bounds of bounded-staleness reads, in the node's own milliseconds. */
const BOUNDS = [2 * TICK, 5 * TICK, 20 * TICK, 60 * TICK];

export function optionsForSeed(seed: number): SimOptions {
  const r = new Prng(seed ^ 0x5eed);
  return {
    nodes: r.chance(0.5) ? 3 : 5,
    duration: Math.round(r.range(150, 1200)) * TICK,
    clients: 2 + r.int(3),
    keys: 1 + r.int(3),
    loss: r.pick([0, 0.01, 0.05, 0.15]),
    duplicate: r.pick([0, 0.02, 0.1]),
    minDelay: 1,
    maxDelay: r.pick([3, 8, 20]),
    drift: r.pick([0, 0.05, 0.1, 0.1]),
    faultEvery: r.pick([5, 20, 60]) * TICK,
    faultKinds: "all",
    snapshotEvery: r.pick([0, 8, 25, 200]),
    // A state machine image is about 20 KB: 1 KB chunks still make a transfer of many chunks.
    snapshotChunkBytes: r.pick([1024, 4096, 1 << 16]),
    maxMsgBytes: r.pick([1, 4096]),
    maxInflight: r.pick([1, 8]),
    leaseReads: r.chance(0.8),
    earlySend: r.chance(0.5),
    fsyncCrash: 0.01,
    clientTimeout: r.pick([40, 150, 150]) * TICK,
    stalls: r.chance(0.5),
    stallTicks: [20, 100],
    boundedReads: r.pick([0, 0.3, 0.6]),
    powerCuts: r.pick([0, 0.5, 1]),
    verbose: false,
  };
}

/**
 * Issue 8's fault: a leader stalls (SIGSTOP) with writes pending; the others elect a new leader,
 * commit those writes and compact past them; the old leader resumes behind the compacted log and
 * installs a snapshot while its clients still wait (they wait longer than the stall).
 */
export const STALLED_LEADER_PROFILE: Partial<SimOptions> = {
  stalls: true,
  // Long enough for the others to elect, commit and compact past the stalled leader's pending
  // writes; shorter than the clients' and the node's deadline, so those writes still wait.
  stallTicks: [60, 140],
  snapshotEvery: 4,
  snapshotChunkBytes: 1 << 16,
  clients: 8,
  clientTimeout: 250 * TICK,
  faultEvery: 20 * TICK,
};

export interface SimReport {
  seed: number;
  ok: boolean;
  violation: string | null;
  trace: string[];
  stats: {
    time: number;
    events: number;
    messages: number;
    elections: number;
    committed: number;
    opsOk: number;
    opsUnknown: number;
    /** Operations told "not applied" (they left the history). */
    opsNotApplied: number;
    /** Writes whose outcome became unknown because a snapshot covered them on their node. */
    snapshotCovered: number;
    leaseReads: number;
    /** Bounded-staleness reads answered (and checked). */
    boundedReads: number;
    snapshotsSent: number;
    crashes: number;
    stalls: number;
    confChanges: number;
    transfers: number;
  };
}

class Violation extends Error {}

/** Far above any healthy run (about 40,000 events on average). */
const MAX_EVENTS = 2_000_000;
/**
 * Far above any healthy run (at most 732 over 400 seeds, 2,231 over 40 seeds of each mutant's
 * profile on the real code): a message storm grows this exponentially, and stopping it here ends
 * the run in seconds, where the event count took minutes of ever slower events to reach.
 */
const MAX_QUEUED = 20_000;

interface SimNode {
  id: NodeId;
  disk: SimDisk;
  /** The running incarnation; null while crashed. */
  node: PhalanxNode<NodeStorage> | null;
  clock: SimClock | null;
  period: number;
  /** Until this time the node is stalled (SIGSTOP): its events wait. */
  pausedUntil: number;
  /**
   * What reached the stalled incarnation, in arrival order; run when it resumes. One queue, not
   * events re-pushed at the resume time: a stall shortened (heal, a new stall) would otherwise
   * let later inputs overtake earlier ones, e.g. a write before the overdue tick, so the node
   * would act on time it has not replayed (a false lease overlap at seed 633).
   */
  held: (() => void)[];
  wasLeader: boolean;
  /** Lease reads counted by earlier incarnations. */
  leaseReads: number;
  /** The last append this node acknowledged. */
  lastAck: { term: number; index: number } | null;
}

/** A read; `maxStaleness` (the node's ms): a bounded-staleness read, null: linearizable. */
type Request = { kind: "write"; cmd: Command; session: { client: number; seq: number } | null } | { kind: "read"; key: string; maxStaleness: number | null };

/** `since`: for a bounded read, the simulated time before which every completed write must show. */
type Reply = { kind: "write"; outcome: ProposeOutcome } | { kind: "read"; value: number | null; since: number | null } | { kind: "readFailed"; leader: NodeId | null };

interface ClientOp {
  id: number;
  input: KvInput | { op: "register" };
  call: number;
  seq: number;
  /** Bumped per attempt; answers to older attempts are ignored. */
  attempt: number;
  /** An attempt's outcome was unknown: the op may have taken effect, so it can never be dropped. */
  maybeApplied: boolean;
}

interface Client {
  id: number;
  session: number | null;
  seq: number;
  op: ClientOp | null;
  leaderGuess: NodeId | null;
  opsDone: number;
}

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

const valueBytes = (v: number): Uint8Array => utf8.encode(String(v));
const valueOf = (b: Uint8Array): number => Number(fromUtf8.decode(b));

export class EventQueue {
  private heap: { time: number; seq: number; fn: () => void }[] = [];
  private seq = 0;

  push(time: number, fn: () => void): void {
    const h = this.heap;
    h.push({ time, seq: this.seq++, fn });
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(h[p]!, h[i]!)) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  /** Events waiting: timers, turns and messages in flight. */
  get size(): number {
    return this.heap.length;
  }

  /** The time of the next event, without taking it. */
  peekTime(): number | undefined {
    return this.heap[0]?.time;
  }

  pop(): { time: number; fn: () => void } | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }

  private less(a: { time: number; seq: number }, b: { time: number; seq: number }): boolean {
    return a.time < b.time || (a.time === b.time && a.seq < b.seq);
  }
}


export class Simulation implements ClockHost, Observer {
  private readonly rng: Prng;
  private readonly net: Prng;
  private readonly faults: Prng;
  private readonly work: Prng;
  private readonly q = new EventQueue();
  private time = 0;
  private readonly nodes: SimNode[] = [];
  private readonly byId = new Map<NodeId, SimNode>();
  private readonly byClock = new Map<SimClock, SimNode>();
  private readonly clients: Client[] = [];
  /** Directed links that drop everything: "a>b". */
  private readonly cut = new Set<string>();
  private healed = false;
  /** "leaderCrash": this leader dies right after it handles its next append acknowledgement. */
  private crashOnAck: NodeId | null = null;
  private readonly traceRing: string[] = [];
  private nextOpId = 1;
  private nextValue = 1;
  private readonly history: Operation<KvInput, KvOutput>[] = [];
  private readonly openOps = new Map<number, { client: number; input: KvInput; call: number }>();

  // Global knowledge for the checks.
  private readonly leaders = new Map<number, NodeId>();
  private readonly logEntries = new Map<number, Map<number, { entry: Entry; prevTerm: number }>>();
  private readonly applied: Entry[] = [];
  /** "client:seq" -> the index at which that write executed (anywhere). */
  private readonly executedAt = new Map<string, number>();
  private stats: SimReport["stats"] = {
    time: 0,
    events: 0,
    messages: 0,
    elections: 0,
    committed: 0,
    opsOk: 0,
    opsUnknown: 0,
    opsNotApplied: 0,
    snapshotCovered: 0,
    leaseReads: 0,
    boundedReads: 0,
    snapshotsSent: 0,
    crashes: 0,
    stalls: 0,
    confChanges: 0,
    transfers: 0,
  };

  constructor(
    readonly seed: number,
    readonly opts: SimOptions,
  ) {
    this.rng = new Prng(seed);
    this.net = this.rng.fork();
    this.faults = this.rng.fork();
    this.work = this.rng.fork();
    const ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    for (const id of ids) {
      const node: SimNode = {
        id,
        disk: new SimDisk({ voters: ids, learners: [] }),
        node: null,
        clock: null,
        // Near the bound's extremes, fast and slow: where lease bugs show.
        period: TICK * (1 + (this.rng.chance(0.5) ? 1 : -1) * opts.drift * this.rng.range(0.7, 1)),
        pausedUntil: 0,
        held: [],
        wasLeader: false,
        leaseReads: 0,
        lastAck: null,
      };
      this.nodes.push(node);
      this.byId.set(id, node);
    }
    for (let i = 0; i < opts.clients; i++) {
      this.clients.push({ id: i, session: null, seq: 0, op: null, leaderGuess: null, opsDone: 0 });
    }
  }

  private trace(line: string): void {
    this.traceRing.push(`${this.time.toFixed(1).padStart(8)} ${line}`);
    if (this.traceRing.length > (this.opts.verbose ? 1_000_000 : 400)) this.traceRing.shift();
  }

  private fail(why: string): never {
    throw new Violation(why);
  }

  // ------------------------------------------------------------------ the nodes' clocks (ClockHost)

  now(): number {
    return this.time;
  }

  at(clock: SimClock, time: number, fn: () => void): void {
    this.q.push(time, () => this.runOn(clock, fn));
  }

  /** Runs `fn` on the incarnation that owns `clock`, unless it died; waits while it is stalled. */
  private runOn(clock: SimClock, fn: () => void): void {
    if (clock.dead) return;
    const n = this.byClock.get(clock)!;
    // A stalled process handles nothing; what arrived meanwhile waits, in order, until it resumes
    // (also what comes at the instant it resumes, until the earlier inputs ran).
    if (this.time < n.pausedUntil || n.held.length > 0) {
      n.held.push(fn);
      return;
    }
    fn();
    clock.runSoon();
    this.checkRoles(n);
  }

  /** Sets the end of `n`'s stall; at that time it handles what it was sent meanwhile, in order. */
  private pauseUntil(n: SimNode, time: number): void {
    n.pausedUntil = time;
    this.q.push(time, () => {
      // A later stall moved the end: that stall's own event resumes the node.
      if (this.time < n.pausedUntil || n.clock === null) return;
      const held = n.held;
      n.held = [];
      for (const fn of held) {
        if (n.clock === null) break; // it died while catching up (after an early send)
        fn();
        n.clock?.runSoon();
        this.checkRoles(n);
      }
    });
  }

  writeAfterSend(clock: SimClock, fn: () => void): void {
    if (!this.opts.earlySend) {
      this.at(clock, this.time, fn);
      return;
    }
    // The write comes a while after the send: followers may persist these entries before the leader writes them.
    const fsync = this.net.range(0.05, 2);
    this.at(clock, this.time + fsync, fn);
    // Now and then the leader dies in exactly that window, after sending, before persisting.
    if (!this.healed && this.faults.chance(this.opts.fsyncCrash)) {
      this.at(clock, this.time + fsync / 2, () => {
        const n = this.byClock.get(clock)!;
        this.trace(`${n.id} dies after an early send, before its write`);
        this.crash(n, "kill");
      });
    }
  }

  backgroundFsync(clock: SimClock, fn: () => void): void {
    if (!this.opts.earlySend) {
      this.at(clock, this.time, fn);
      return;
    }
    // Now and then a slow disk: followers answer, and more writes pile up, before it ends.
    const fsync = this.net.chance(0.2) ? this.net.range(2, 2 + this.opts.maxDelay) : this.net.range(0.05, 2);
    this.at(clock, this.time + fsync, fn);
    if (!this.healed && this.faults.chance(this.opts.fsyncCrash)) {
      this.at(clock, this.time + fsync / 2, () => {
        const n = this.byClock.get(clock)!;
        this.trace(`${n.id} loses power during a background fsync`);
        this.crash(n, "power_cut");
      });
    }
  }

  // ------------------------------------------------------------------ nodes

  private start(n: SimNode): void {
    const clock = new SimClock(this, TICK / n.period, this.rng.fork());
    const { storage, kv } = n.disk.open(n.id, this, clock);
    const config = simConfig(n.id, this.nodes.map((x) => x.id), {
      snapshotEvery: this.opts.snapshotEvery,
      requestTimeoutMs: this.opts.clientTimeout,
    });
    n.clock = clock;
    n.pausedUntil = 0;
    n.held = [];
    this.byClock.set(clock, n);
    const log = simLogger(this.opts.verbose ? (line) => this.trace(`${n.id}: ${line}`) : null);
    n.node = new PhalanxNode(config, {
      storage,
      kv,
      log,
      scheduler: clock,
      transport: () => simTransport((m) => this.sendMessage(m)),
      core: {
        maxClockDriftTicks: 3,
        leaseReads: this.opts.leaseReads,
        maxInflight: this.opts.maxInflight,
        maxMsgBytes: this.opts.maxMsgBytes,
        snapshotChunkBytes: this.opts.snapshotChunkBytes,
      },
    });
    n.node.onFatal = (err) => {
      // A check that failed inside the node's loop (an Observer callback) stops the node: report the check.
      if (err instanceof Violation) throw err;
      this.fail(`${n.id} stopped on a fatal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    };
    n.wasLeader = false;
    n.node.run();
  }

  /** kill -9 keeps what was written; a power cut loses what was not fsynced (SimOptions.powerCuts). */
  private crash(n: SimNode, how: "kill" | "power_cut" = this.faults.chance(this.opts.powerCuts) ? "power_cut" : "kill"): void {
    if (n.node === null) return;
    if (how === "power_cut") {
      const { lost } = n.disk.powerCut(n.node.status().applied);
      this.trace(`POWER CUT ${n.id}${lost > 0 ? `: ${lost} unsynced entries lost` : ""}`);
    }
    // Raft's persistence rule: an acknowledgement promises the entries are on disk. Within the
    // acknowledged term the log only grows, so a crash must keep what the last ack counted.
    const ack = n.lastAck;
    const disk = n.disk.durable();
    if (ack !== null && disk.term === ack.term && disk.lastIndex < ack.index) {
      this.fail(`persistence: ${n.id} acknowledged entries up to ${ack.index} in term ${ack.term}, but a crash keeps only ${disk.lastIndex}`);
    }
    n.leaseReads += n.node.metrics.readsLease;
    n.clock!.dead = true;
    this.byClock.delete(n.clock!);
    n.node = null;
    n.clock = null;
    n.pausedUntil = 0;
    n.held = [];
    this.stats.crashes++;
    this.trace(`CRASH ${n.id}`);
  }

  // ------------------------------------------------------------------ checks (Observer)

  /** Log matching: one (index, term) names one entry, and its predecessor has one term. */
  persisting(node: NodeId, entries: Entry[], prevTerm: number): void {
    for (const e of entries) {
      let byTerm = this.logEntries.get(e.index);
      if (byTerm === undefined) {
        byTerm = new Map();
        this.logEntries.set(e.index, byTerm);
      }
      const seen = byTerm.get(e.term);
      if (seen === undefined) byTerm.set(e.term, { entry: e, prevTerm });
      else {
        if (seen.entry.type !== e.type || !sameBytes(seen.entry.data, e.data)) {
          this.fail(`log matching: ${node} holds a different entry at index ${e.index} term ${e.term}`);
        }
        if (prevTerm !== -1 && seen.prevTerm !== -1 && seen.prevTerm !== prevTerm) {
          this.fail(`log matching: entry ${e.index}/${e.term} follows term ${prevTerm} on ${node} but ${seen.prevTerm} elsewhere`);
        }
      }
      prevTerm = e.term;
    }
  }

  /** State machine safety: every node applies the same entry at each index. */
  applying(node: NodeId, e: Entry): void {
    const known = this.applied[e.index];
    if (known === undefined) {
      this.applied[e.index] = e;
      this.stats.committed = Math.max(this.stats.committed, e.index);
    } else if (known.term !== e.term || !sameBytes(known.data, e.data)) {
      this.fail(`state machine safety: ${node} applied ${e.index}/${e.term}, another node applied ${e.index}/${known.term}`);
    }
  }

  /** Exactly once: a client's write executes at one index only, however often it is retried. */
  executed(node: NodeId, e: Entry, client: number, seq: number): void {
    const id = `${client}:${seq}`;
    const at = this.executedAt.get(id);
    if (at === undefined) this.executedAt.set(id, e.index);
    else if (at !== e.index) this.fail(`exactly-once: ${node} executed client write ${id} at ${e.index}, it already executed at ${at}`);
  }

  private checkRoles(n: SimNode): void {
    const node = n.node;
    if (node === null) return;
    const isLeader = node.isLeader();
    if (isLeader && !n.wasLeader) {
      const st = node.status();
      this.stats.elections++;
      this.trace(`LEADER ${n.id} term ${st.term}`);
      const other = this.leaders.get(st.term);
      if (other !== undefined && other !== n.id) this.fail(`election safety: ${other} and ${n.id} both lead term ${st.term}`);
      this.leaders.set(st.term, n.id);
      // Leader completeness: every entry applied anywhere is in the new leader's log.
      const log = node.dd.log;
      const last = Math.min(this.applied.length - 1, log.lastIndex());
      if (this.applied.length - 1 > st.lastIndex) {
        this.fail(`leader completeness: leader ${n.id} of term ${st.term} has ${st.lastIndex} entries, ${this.applied.length - 1} are committed`);
      }
      for (let i = Math.max(log.firstIndex(), 1); i <= last; i++) {
        const e = this.applied[i];
        if (e !== undefined && log.term(i) !== e.term) {
          this.fail(`leader completeness: leader ${n.id} of term ${st.term} lacks committed entry ${i}/${e.term}`);
        }
      }
    }
    n.wasLeader = isLeader;
  }

  /** No two nodes may hold a lease at the same instant (global time). */
  private checkLeases(): void {
    // Only a leader holds a lease: with one leader or none there is nothing to overlap, and asking
    // (a quorum sort per leader) at every instant was a twentieth of the simulator's time.
    let leaders = 0;
    for (const n of this.nodes) if (n.node !== null && n.node.isLeader()) leaders++;
    if (leaders < 2) return;
    let holder: SimNode | null = null;
    for (const n of this.nodes) {
      if (n.node === null || this.time < n.pausedUntil || !n.node.holdsLease()) continue;
      if (holder !== null) {
        this.fail(`lease overlap: ${holder.id} (term ${holder.node!.status().term}) and ${n.id} (term ${n.node.status().term}) both hold a lease`);
      }
      holder = n;
    }
  }

  // ------------------------------------------------------------------ network

  private sendMessage(m: Message): void {
    this.stats.messages++;
    if (m.type === "appendResp" && !m.reject) this.byId.get(m.from)!.lastAck = { term: m.term, index: m.index };
    if (m.type === "snapshot" && m.offset === 0) this.stats.snapshotsSent++;
    if (this.opts.verbose) this.trace(`send ${describe(m)}`);
    if (this.cut.has(`${m.from}>${m.to}`)) return;
    if (!this.healed && this.net.chance(this.opts.loss)) return;
    const copies = !this.healed && this.net.chance(this.opts.duplicate) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const delay = this.net.range(this.opts.minDelay, this.opts.maxDelay);
      this.deliverAt(this.time + delay, m.to, (node) => {
        if (this.cut.has(`${m.from}>${m.to}`)) return;
        if (this.opts.verbose) this.trace(`recv ${describe(m)}`);
        try {
          node.receive([m]);
        } catch {
          // Refused while shutting down or with a full disk: the peer sees a failed request.
        }
        if (this.crashOnAck === m.to && m.type === "appendResp" && !m.reject && !this.healed) {
          this.crashOnAck = null;
          // Half the least delay later: the leader has applied what the ack let it commit, and its
          // next append is still in flight.
          const n = this.byId.get(m.to)!;
          this.q.push(this.time + this.opts.minDelay / 2, () => this.crash(n));
        }
      });
    }
  }

  /** Runs `fn` on the incarnation of `to` that is up when the packet arrives (none: dropped). */
  private deliverAt(time: number, to: NodeId, fn: (node: PhalanxNode<NodeStorage>) => void): void {
    this.q.push(time, () => {
      const n = this.byId.get(to);
      if (n === undefined || n.clock === null) return;
      // As the incarnation's own input, so a stall holds it like any other.
      this.runOn(n.clock, () => fn(n.node!));
    });
  }

  // ------------------------------------------------------------------ clients

  private reply(c: Client, op: ClientOp, attempt: number, r: Reply): void {
    const delay = this.net.range(this.opts.minDelay, this.opts.maxDelay);
    this.q.push(this.time + delay, () => this.onReply(c, op, attempt, r));
  }

  private clientSend(c: Client, op: ClientOp): void {
    const alive = this.nodes.filter((n) => n.node !== null);
    const pool = alive.length > 0 ? alive : this.nodes;
    let target = this.work.pick(pool);
    if (c.leaderGuess !== null && this.work.chance(0.8)) target = this.byId.get(c.leaderGuess) ?? target;
    const attempt = ++op.attempt;
    const req = this.requestFor(c, op);
    const sent = this.time;
    // The node answers within its share of the deadline (the Deadline header's role): time for the reply is left.
    const nodeTimeout = this.opts.clientTimeout - 2 * this.opts.maxDelay;
    this.deliverAt(this.time + this.net.range(this.opts.minDelay, this.opts.maxDelay), target.id, (node) => {
      const remaining = nodeTimeout - (this.time - sent);
      if (req.kind === "write") {
        node.submit(req.cmd, req.session, remaining, (outcome) => this.reply(c, op, attempt, { kind: "write", outcome }));
        return;
      }
      const bound = req.maxStaleness;
      if (bound !== null) {
        node.awaitBoundedRead(bound, remaining, (o) => {
          if (o.kind !== "ready") return this.reply(c, op, attempt, { kind: "readFailed", leader: node.leader()?.id ?? null });
          const { kv } = node.kv.get(req.key);
          this.stats.boundedReads++;
          // `bound` is in the node's own milliseconds; its clock runs at TICK / period of simulated time.
          const since = this.time - bound / (TICK / target.period);
          this.trace(`client ${c.id} op ${op.id} bounded read (${bound} ms) of ${req.key} on ${target.id}: ${kv === null ? "null" : valueOf(kv.value)}, staleness ${node.provableStalenessMs()?.toFixed(1)}, since ${since.toFixed(1)}`);
          this.reply(c, op, attempt, { kind: "read", value: kv === null ? null : valueOf(kv.value), since });
        });
        return;
      }
      node.awaitReadBarrier(remaining, (o) => {
        if (o.kind !== "ready") return this.reply(c, op, attempt, { kind: "readFailed", leader: node.leader()?.id ?? null });
        const { kv } = node.kv.get(req.key);
        this.reply(c, op, attempt, { kind: "read", value: kv === null ? null : valueOf(kv.value), since: null });
      });
    });
    this.q.push(this.time + this.opts.clientTimeout, () => {
      if (c.op !== op || op.attempt !== attempt) return;
      // No answer (the node crashed or stalled, or a packet was lost): this attempt may have applied.
      op.maybeApplied = true;
      c.leaderGuess = null;
      this.clientSend(c, op);
    });
  }

  private requestFor(c: Client, op: ClientOp): Request {
    const input = op.input;
    if (input.op === "get") {
      const bounded = this.opts.boundedReads > 0 && this.work.chance(this.opts.boundedReads);
      return { kind: "read", key: input.key, maxStaleness: bounded ? this.work.pick(BOUNDS) : null };
    }
    if (input.op === "register") return { kind: "write", cmd: { op: "register" }, session: null };
    const session = { client: c.session!, seq: op.seq };
    if (input.op === "put") return { kind: "write", cmd: { op: "put", key: input.key, value: valueBytes(input.value) }, session };
    const expect: Expect = { value: input.expect === null ? null : valueBytes(input.expect) };
    return { kind: "write", cmd: { op: "cas", key: input.key, expect, value: valueBytes(input.value) }, session };
  }

  private onReply(c: Client, op: ClientOp, attempt: number, r: Reply): void {
    if (c.op !== op || op.attempt !== attempt) return; // an answer to an attempt already given up on
    // A bounded read may be as old as its bound: as if it had been called that long before its answer.
    if (r.kind === "read") return this.complete(c, op, { value: r.value }, r.since === null ? op.call : Math.min(op.call, r.since));
    if (r.kind === "readFailed") return this.retry(c, op, r.leader);
    const o = r.outcome;
    switch (o.kind) {
      case "applied":
        return this.onApplied(c, op, o.result);
      case "rejected":
      case "not_applied":
        if (o.kind === "not_applied") this.trace(`client ${c.id} op ${op.id} not applied (${o.reason})`);
        return this.notApplied(c, op, o.kind === "rejected" ? o.leader : null);
      case "unknown":
        if (o.reason === "snapshot") this.stats.snapshotCovered++;
        this.trace(`client ${c.id} op ${op.id} outcome unknown (${o.reason})`);
        op.maybeApplied = true;
        return this.retry(c, op, null);
    }
  }

  private onApplied(c: Client, op: ClientOp, result: Result): void {
    if ("error" in result) {
      if (result.error !== "session_expired") this.fail(`client ${c.id}: unexpected error ${result.error}: ${result.message}`);
      // The session was evicted: whether an earlier attempt applied is unknown. Start a new session.
      this.trace(`client ${c.id} session expired during op ${op.id}`);
      c.session = null;
      this.giveUp(c, op);
      return;
    }
    if (result.op === "register") {
      c.session = result.client;
      this.finishOp(c);
      return;
    }
    if (result.op === "cas") return this.complete(c, op, { succeeded: result.succeeded });
    this.complete(c, op, {});
  }

  private complete(c: Client, op: ClientOp, output: KvOutput, call = op.call): void {
    if (op.input.op === "register") return this.finishOp(c);
    this.openOps.delete(op.id);
    this.history.push({ client: c.id, input: op.input, call, ret: this.time, output });
    this.stats.opsOk++;
    this.trace(`client ${c.id} op ${op.id} ${JSON.stringify(op.input)} -> ${JSON.stringify(output)}`);
    this.finishOp(c);
  }

  /** The outcome stays unknown for good: the op may take effect at any time after its call. */
  private giveUp(c: Client, op: ClientOp): void {
    if (op.input.op !== "register" && op.input.op !== "get") {
      this.openOps.delete(op.id);
      this.history.push({ client: c.id, input: op.input, call: op.call, ret: Infinity, output: null });
      this.stats.opsUnknown++;
    }
    this.finishOp(c);
  }

  /**
   * A definite failure. If no earlier attempt can have applied, the op never took effect: it leaves
   * the history, and the client issues a new op in its place (a fresh value, the same session
   * sequence, which never applied). Should the answer be false, reads show a value nobody wrote.
   */
  private notApplied(c: Client, op: ClientOp, leader: NodeId | null): void {
    if (op.maybeApplied || op.input.op === "get" || op.input.op === "register") return this.retry(c, op, leader);
    this.stats.opsNotApplied++;
    this.openOps.delete(op.id);
    const input: KvInput = { ...op.input, value: this.nextValue++ };
    const fresh: ClientOp = { id: this.nextOpId++, input, call: this.time, seq: op.seq, attempt: 0, maybeApplied: false };
    this.openOps.set(fresh.id, { client: c.id, input, call: this.time });
    c.op = fresh;
    this.retry(c, fresh, leader);
  }

  private retry(c: Client, op: ClientOp, leader: NodeId | null): void {
    c.leaderGuess = leader;
    const backoff = this.work.range(1, 3) * TICK;
    op.attempt++; // no answer to the attempt just answered is expected any more
    this.q.push(this.time + backoff, () => {
      if (c.op === op) this.clientSend(c, op);
    });
  }

  private finishOp(c: Client): void {
    if (c.op !== null && c.op.input.op !== "get" && c.op.input.op !== "register") c.seq = c.op.seq;
    c.op = null;
    c.opsDone++;
    this.q.push(this.time + this.work.range(0, 2) * TICK, () => this.startOp(c));
  }

  private startOp(c: Client): void {
    if (c.op !== null || this.time > this.opts.duration + 300 * TICK) return;
    const key = `k${this.work.int(this.opts.keys)}`;
    let input: KvInput | { op: "register" };
    if (c.session === null) input = { op: "register" };
    else {
      const roll = this.work.next();
      if (roll < 0.45) input = { op: "get", key };
      else if (roll < 0.75) input = { op: "put", key, value: this.nextValue++ };
      else {
        const expect = this.work.chance(0.3) ? null : this.work.int(this.nextValue);
        input = { op: "cas", key, expect, value: this.nextValue++ };
      }
    }
    const op: ClientOp = { id: this.nextOpId++, input, call: this.time, seq: c.seq + 1, attempt: 0, maybeApplied: false };
    c.op = op;
    if (input.op !== "register") this.openOps.set(op.id, { client: c.id, input, call: this.time });
    this.clientSend(c, op);
  }

  // ------------------------------------------------------------------ faults

  private leader(): SimNode | null {
    let best: SimNode | null = null;
    let bestTerm = -1;
    for (const n of this.nodes) {
      if (n.node === null || !n.node.isLeader()) continue;
      const term = n.node.status().term;
      if (term > bestTerm) [best, bestTerm] = [n, term];
    }
    return best;
  }

  private fault(): void {
    if (this.opts.faultKinds !== "all") return this.leaderFault(this.opts.faultKinds);
    const f = this.faults;
    const roll = f.next();
    const alive = this.nodes.filter((n) => n.node !== null);
    const dead = this.nodes.filter((n) => n.node === null);
    const leader = this.leader();
    const ids = this.nodes.map((n) => n.id);
    if (roll < 0.1 && alive.length > 0) {
      this.crash(f.pick(alive));
    } else if (roll < 0.2 && leader !== null) {
      this.crash(leader);
    } else if (roll < 0.35 && dead.length > 0) {
      this.restart(f.pick(dead));
    } else if (roll < 0.45) {
      const side = new Set(ids.filter(() => f.chance(0.5)));
      this.partition(side);
    } else if (roll < 0.52 && leader !== null) {
      this.partition(new Set([leader.id]));
    } else if (roll < 0.6) {
      // One-way: the leader (or anyone) stops reaching one node, which still reaches everyone.
      const a = leader !== null && f.chance(0.7) ? leader.id : f.pick(ids);
      this.cutOneWay(a, f.pick(ids.filter((id) => id !== a)));
    } else if (roll < 0.72) {
      this.cut.clear();
      this.trace("HEAL network");
    } else if (roll < 0.86) {
      this.changeMembership();
    } else if (leader !== null && this.opts.stalls && f.chance(0.6)) {
      // A stalled leader is how issue 8's false "not applied" happened: it resumes behind the
      // compacted log with writes pending, and installs a snapshot that may hold them.
      this.stall(leader, f.range(this.opts.stallTicks[0], this.opts.stallTicks[1]) * TICK);
    } else if (leader !== null) {
      this.transfer(leader);
    }
  }

  private transfer(leader: SimNode): void {
    const target = this.faults.pick(leader.node!.status().conf.voters);
    const res = leader.node!.transferLeadership(target);
    this.trace(`TRANSFER ${leader.id} -> ${target}: ${res.ok ? "started" : res.reason}`);
    if (res.ok) this.stats.transfers++;
  }

  /** One fault of a profile aimed at the leader (SimOptions.faultKinds). */
  private leaderFault(kind: Exclude<SimOptions["faultKinds"], "all">): void {
    const f = this.faults;
    const leader = this.leader();
    const dead = this.nodes.filter((n) => n.node === null);
    if ((kind === "leaderIsolation" || kind === "leaderCut") && this.cut.size > 0) {
      this.cut.clear();
      this.trace("HEAL network");
    } else if (kind === "leaderCrash" && dead.length > 0 && (leader === null || f.chance(0.5))) {
      this.restart(f.pick(dead));
    } else if (leader === null) {
      // Nothing to aim at until the others elect.
    } else if (kind === "leaderIsolation") {
      this.partition(new Set([leader.id]));
    } else if (kind === "leaderCut") {
      const other = f.pick(this.nodes.map((n) => n.id).filter((id) => id !== leader.id));
      this.cutOneWay(leader.id, other);
      this.cutOneWay(other, leader.id);
    } else if (kind === "leaderTransfer") {
      this.transfer(leader);
    } else if (kind === "leaderCrash") {
      this.crashOnAck = leader.id;
    } else {
      this.stall(leader, f.range(this.opts.stallTicks[0], this.opts.stallTicks[1]) * TICK);
    }
  }

  private cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`);
    this.trace(`CUT one-way ${from} -> ${to}`);
  }

  private restart(n: SimNode): void {
    this.trace(`RESTART ${n.id}`);
    this.start(n);
  }

  /** SIGSTOP for `ms`: the process handles nothing, then catches up on its ticks and inputs. */
  private stall(n: SimNode, ms: number): void {
    this.pauseUntil(n, this.time + ms);
    this.stats.stalls++;
    this.trace(`STALL ${n.id} for ${ms.toFixed(0)}`);
  }

  private partition(side: Set<string>): void {
    const ids = this.nodes.map((n) => n.id);
    for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.cut.add(`${a}>${b}`);
    this.trace(`PARTITION {${[...side].join(",")}} | rest`);
  }

  private changeMembership(): void {
    const l = this.leader();
    if (l === null) return;
    const conf = l.node!.status().conf;
    const f = this.faults;
    const members = new Set([...conf.voters, ...conf.learners]);
    const outsiders = this.nodes.map((n) => n.id).filter((id) => !members.has(id));
    const minVoters = this.opts.nodes === 5 ? 3 : 2;
    let cc: ConfChange | null = null;
    if (conf.learners.length > 0 && f.chance(0.7)) cc = { op: "addVoter", node: f.pick(conf.learners), context: "" };
    else if (outsiders.length > 0 && f.chance(0.6)) cc = { op: "addLearner", node: f.pick(outsiders), context: "" };
    else if (conf.voters.length > minVoters) cc = { op: "remove", node: f.pick(conf.voters), context: "" };
    if (cc === null) return;
    const res = l.node!.proposeConfChange(cc);
    this.trace(`CONF ${l.id}: ${cc.op} ${cc.node}: ${res.ok ? `index ${res.index}` : res.reason}`);
    if (res.ok) this.stats.confChanges++;
  }

  private scheduleFaults(): void {
    const next = this.time + this.faults.range(0.2, 1.8) * this.opts.faultEvery;
    if (next >= this.opts.duration) return;
    this.q.push(next, () => {
      this.fault();
      this.scheduleFaults();
    });
  }

  /** End of the fault phase: heal everything so the cluster can show it recovers. */
  private heal(): void {
    this.healed = true;
    this.cut.clear();
    for (const n of this.nodes) {
      if (n.pausedUntil > this.time) this.pauseUntil(n, this.time);
      if (n.node === null) this.start(n);
    }
    this.trace("HEAL ALL: network healed, stalls ended, every node restarted");
  }

  // ------------------------------------------------------------------ run

  run(): SimReport {
    let violation: string | null = null;
    try {
      for (const n of this.nodes) this.start(n);
      for (const c of this.clients) this.q.push(this.work.range(0, 5) * TICK, () => this.startOp(c));
      this.scheduleFaults();
      this.q.push(this.opts.duration, () => this.heal());
      const end = this.opts.duration + 400 * TICK;
      let opsAtHeal = -1;
      for (;;) {
        const next = this.q.peekTime();
        if (next === undefined || next > end) break;
        // Leases are checked once per instant, after its last event: they overlap or not in time.
        // Asking a node replays its missed ticks, which may schedule a turn at this instant: that
        // turn runs before time moves on (taking the next event first made the clocks run back).
        if (next > this.time) this.checkLeases();
        const ev = this.q.pop()!;
        if (ev.time < this.time) this.fail(`simulated time went back from ${this.time} to ${ev.time}`);
        this.time = ev.time;
        ev.fn();
        // A node that schedules without end (a busy loop in the event loop) is a bug, not a long run.
        if (++this.stats.events > MAX_EVENTS) this.fail(`runaway: more than ${MAX_EVENTS} events`);
        if (this.q.size > MAX_QUEUED) this.fail(`runaway: more than ${MAX_QUEUED} events queued at once (a message storm)`);
        if (this.healed && opsAtHeal < 0) opsAtHeal = this.stats.opsOk;
      }
      this.stats.time = this.time;
      if (this.stats.opsOk <= opsAtHeal) this.fail("liveness: no client operation completed after every fault healed");
      for (const [, op] of this.openOps) {
        this.history.push({ client: op.client, input: op.input, call: op.call, ret: Infinity, output: null });
        this.stats.opsUnknown++;
      }
      const lin = checkLinearizable(kvModel, this.history);
      if (lin.ok === false) this.fail(`linearizability: ${lin.explanation}`);
      if (lin.ok === "unknown") this.fail(`linearizability check gave up: ${lin.reason}`);
    } catch (e) {
      if (e instanceof Violation) violation = e.message;
      else violation = `the node threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
      this.trace(`VIOLATION ${violation}`);
    } finally {
      for (const n of this.nodes) {
        if (n.node !== null) n.leaseReads += n.node.metrics.readsLease;
        this.stats.leaseReads += n.leaseReads;
        if (n.clock !== null) n.clock.dead = true;
        n.disk.destroy();
      }
    }
    return { seed: this.seed, ok: violation === null, violation, trace: this.traceRing.slice(), stats: this.stats };
  }
}

function describe(m: Message): string {
  const base = `${m.type} ${m.from}->${m.to} t${m.term}`;
  switch (m.type) {
    case "append":
      return `${base} prev ${m.prevIndex}/${m.prevTerm} n=${m.entries.length} commit ${m.commit}`;
    case "appendResp":
      return `${base} idx ${m.index}${m.reject ? ` REJECT hint ${m.hintIndex}/${m.hintTerm}` : ""}`;
    case "heartbeat":
      return `${base} commit ${m.commit} seq ${m.seq}`;
    case "snapshot":
      return `${base} snap ${m.meta.index}/${m.meta.term} @${m.offset}/${m.total}`;
    default:
      return base;
  }
}

export function runSim(seed: number, overrides: Partial<SimOptions> = {}): SimReport {
  return new Simulation(seed, { ...optionsForSeed(seed), ...overrides }).run();
}
