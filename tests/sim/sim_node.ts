// The parts a simulated node runs on: the node's own event loop (PhalanxNode, src/node/node.ts)
// and state machine (KvStore) are the production code; only the disk, the network and the clock
// are the simulator's. The disk is the Raft log in memory and the state machine's real SQLite
// database in memory; a crash (dropping the node object) keeps exactly what was written, which
// is what kill -9 keeps (crashes fall between events, never inside a Ready's transaction), and a
// power cut also loses the log entries written since the last fsync (SimDisk.powerCut).
import { constants, Database } from "bun:sqlite";
import { randomUUID } from "node:crypto";
import { decode } from "@msgpack/msgpack";
import type { Proposal } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import type { NodeConfig } from "../../src/node/config.ts";
import type { Logger } from "../../src/node/log.ts";
import type { NodeStorage, NodeTransport } from "../../src/node/node.ts";
import type { Scheduler } from "../../src/node/scheduler.ts";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import type { WritableLogStorage } from "../../src/raft/storage.ts";
import type { Entry, HardState, Message, NodeId, Snapshot } from "../../src/raft/types.ts";
import { DataDir } from "../../src/storage/data_dir.ts";
import { initSchema } from "../../src/storage/schema.ts";
import type { Prng } from "./prng.ts";
import { OPEN_CLIENT_AUTH } from "../../src/api/client_auth.ts";

/** One tick is TICK time units (simulated milliseconds). */
export const TICK = 10;
/** Sessions idle this long (log time) expire; longer than any run, as in production. */
export const SESSION_TTL = 50_000;

/** What the simulator watches while the real code runs: the global safety checks. */
export interface Observer {
  /** A node is about to persist `entries` after an entry of term `prevTerm` (-1: unknown, compacted). */
  persisting(node: NodeId, entries: Entry[], prevTerm: number): void;
  /** A node is about to apply `entry`. */
  applying(node: NodeId, entry: Entry): void;
  /** Applying `entry` executed a client's write (it changed the state), not a cached retry. */
  executed(node: NodeId, entry: Entry, client: number, seq: number): void;
}

/** An observer that checks nothing, for runs that judge the nodes by their answers and messages. */
export const UNCHECKED: Observer = { persisting: () => undefined, applying: () => undefined, executed: () => undefined };

/** A node's durable state: one in-memory SQLite database that outlives the node's incarnations. */
export class SimDisk {
  readonly file: string;
  readonly db: Database;
  /**
   * The Raft log in memory (tests/storage/conformance.test.ts holds the SQLite log store to the
   * same behaviour): several times faster than SQLite's, and the simulator's budget is seeds.
   */
  private readonly log: MemoryStorage;
  /** Every log entry up to here is fsynced; a power cut loses the ones after it. */
  private synced = 0;

  constructor(bootstrap: { voters: NodeId[]; learners: NodeId[] }) {
    this.log = new MemoryStorage(bootstrap);
    // A named shared-cache memory database: the state machine's snapshot reads it on a second
    // connection, as it reads the data file in production.
    // Unique per process and module copy (each mutant imports its own): SQLite frees a closed
    // database only once its statements are finalized, so an old name may still be taken.
    this.file = `file:phalanx-sim-${randomUUID()}?mode=memory&cache=shared`;
    this.db = new Database(this.file, constants.SQLITE_OPEN_READWRITE | constants.SQLITE_OPEN_CREATE | constants.SQLITE_OPEN_URI);
    initSchema(this.db, bootstrap, {});
  }

  /**
   * What one incarnation of the node opens: the log (watched) and the state machine on this disk.
   * Its background fsyncs take the time `clock` gives them (SimClock.backgroundFsync).
   */
  open(id: NodeId, observer: Observer, clock: SimClock): { storage: NodeStorage; kv: KvStore } {
    // Opening a data dir fsyncs what a killed incarnation left written but unsynced (data_dir.ts).
    this.synced = this.log.lastIndex();
    const dd = DataDir.inMemory(`(sim ${id})`, this.file, this.db);
    const log = new WatchedLog(id, this.log, observer);
    const storage: NodeStorage = {
      log,
      transaction: (fn, opts) => {
        const before = this.log.hardState();
        const result = dd.transaction(fn, opts);
        const after = this.log.hardState();
        // The core's rule (Ready.fsyncInBackground): a new term or vote is never left unsynced.
        if (!opts.sync && (after.term !== before.term || after.vote !== before.vote)) {
          throw new Error(`${id} wrote term ${after.term} vote ${after.vote} without an fsync`);
        }
        if (opts.sync) this.synced = this.log.lastIndex();
        return result;
      },
      syncInBackground: (done) => {
        const index = this.log.lastIndex();
        const term = this.log.term(index);
        clock.backgroundFsync(() => {
          // Unless the entry was replaced since (a synced write then covered more).
          if (index > this.synced && index <= this.log.lastIndex() && this.log.term(index) === term) this.synced = index;
          done(null);
        });
      },
      close: () => undefined,
    };
    return { storage, kv: new WatchedKv(id, dd, observer) };
  }

  /** The term and last index on disk now: what a crash keeps. */
  durable(): { term: number; lastIndex: number } {
    return { term: this.log.hardState().term, lastIndex: this.log.lastIndex() };
  }

  /**
   * A power cut: the log entries written since the last fsync are gone. The state machine is
   * never ahead of the fsynced log (raft/log.ts applies only durable entries), so it stays.
   */
  powerCut(applied: number): { lost: number } {
    if (applied > this.synced) throw new Error(`the state machine applied ${applied}, beyond the fsynced log (${this.synced})`);
    const lost = this.log.lastIndex() - this.synced;
    this.log.dropAfter(this.synced);
    return { lost };
  }

  destroy(): void {
    this.db.close();
  }
}

/** The production log store, with the simulator's log-matching check on every save. */
class WatchedLog implements WritableLogStorage {
  constructor(
    private readonly id: NodeId,
    private readonly inner: WritableLogStorage,
    private readonly observer: Observer,
  ) {}

  hardState(): HardState {
    return this.inner.hardState();
  }
  snapshotMeta(): Snapshot["meta"] {
    return this.inner.snapshotMeta();
  }
  snapshot(): Snapshot {
    return this.inner.snapshot();
  }
  firstIndex(): number {
    return this.inner.firstIndex();
  }
  lastIndex(): number {
    return this.inner.lastIndex();
  }
  term(index: number): number {
    return this.inner.term(index);
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    return this.inner.entries(lo, hi, maxBytes);
  }
  confEntries(lo: number, hi: number): Entry[] {
    return this.inner.confEntries(lo, hi);
  }
  createSnapshot(snap: Snapshot, compactTo: number): void {
    this.inner.createSnapshot(snap, compactTo);
  }

  save(snapshot: Snapshot | null, entries: Entry[], hardState: HardState | null): void {
    if (entries.length > 0) {
      const first = entries[0]!.index;
      let prevTerm: number;
      if (snapshot !== null && first === snapshot.meta.index + 1) prevTerm = snapshot.meta.term;
      else if (first === 1) prevTerm = 0;
      else prevTerm = this.termOr(first - 1);
      this.observer.persisting(this.id, entries, prevTerm);
    }
    this.inner.save(snapshot, entries, hardState);
  }

  private termOr(index: number): number {
    try {
      return this.inner.term(index);
    } catch {
      return -1; // compacted: that entry was checked when it was first persisted
    }
  }
}

/** The production state machine, watched for state machine safety and exactly-once. */
class WatchedKv extends KvStore {
  constructor(
    private readonly id: NodeId,
    dd: DataDir,
    private readonly observer: Observer,
  ) {
    super(dd, { sessionTtlMs: SESSION_TTL });
  }

  override apply(entry: Entry) {
    this.observer.applying(this.id, entry);
    const result = super.apply(entry);
    // The revision is the index of the last mutation: it moved here only if the write executed.
    if (entry.type === "normal" && this.revision() === entry.index) {
      // The raw msgpack, not decodeProposal(): the store just validated it, and zod is slow.
      const p = decode(entry.data) as Pick<Proposal, "session">;
      if (p.session !== null) this.observer.executed(this.id, entry, p.session.client, p.session.seq);
    }
    return result;
  }
}

/**
 * One incarnation's clock and turns on the simulator's event queue. Its local time runs at
 * `rate` (clock drift); everything it schedules dies with the incarnation (a crash).
 */
export class SimClock implements Scheduler {
  dead = false;
  /** What soon() queued during the event running now; the host runs it right after (runSoon). */
  private readonly soonQueue: (() => void)[] = [];

  constructor(
    private readonly host: ClockHost,
    private readonly rate: number,
    private readonly prng: Prng,
  ) {}

  now(): number {
    return this.host.now() * this.rate;
  }

  /** Whole milliseconds, as Date.now() gives. */
  wallClock(): number {
    return Math.floor(this.now());
  }

  nextTurn(fn: () => void): void {
    this.host.at(this, this.host.now(), fn);
  }

  afterSend(fn: () => void): void {
    this.host.writeAfterSend(this, fn);
  }

  /** When a background fsync of this incarnation's disk ends (never, if it dies first). */
  backgroundFsync(fn: () => void): void {
    this.host.backgroundFsync(this, fn);
  }

  /** As a microtask: after the event that calls it, before anything else reaches this node. */
  soon(fn: () => void): void {
    this.soonQueue.push(fn);
  }

  /** The host calls this after each event it ran on this clock: what soon() queued, in order. */
  runSoon(): void {
    while (this.soonQueue.length > 0 && !this.dead) this.soonQueue.shift()!();
  }

  after(ms: number, fn: () => void): () => void {
    let cancelled = false;
    this.host.at(this, this.host.now() + Math.max(0, ms) / this.rate, () => {
      if (!cancelled) fn();
    });
    return () => {
      cancelled = true;
    };
  }

  random(): number {
    return this.prng.next();
  }
}

/** What a SimClock needs from the simulator. */
export interface ClockHost {
  now(): number;
  /** Runs `fn` at global `time` for the incarnation that owns `clock` (never once it died). */
  at(clock: SimClock, time: number, fn: () => void): void;
  /** The write after an early send: comes a while later, and now and then the node dies first. */
  writeAfterSend(clock: SimClock, fn: () => void): void;
  /** A background fsync: takes a while, and now and then the power fails before it ends. */
  backgroundFsync(clock: SimClock, fn: () => void): void;
}

/** The simulated network behind the node's transport interface. */
export function simTransport(send: (m: Message) => void): NodeTransport {
  return {
    send,
    flushNow: () => undefined,
    holdReplies: () => Promise.resolve([]),
    releaseReplies: () => undefined,
    forward: () => Promise.resolve({ kind: "unprocessed", reason: "the simulator runs no client API" }),
    setPeers: () => [],
    stats: () => [],
    heardFrom: () => undefined,
    close: () => Promise.resolve(),
  };
}

export function simConfig(id: NodeId, ids: NodeId[], opts: { snapshotEvery: number; requestTimeoutMs: number }): NodeConfig {
  return {
    id,
    dataDir: `(sim ${id})`,
    rpcAddr: "",
    advertiseAddr: "",
    region: "sim",
    staticPeers: true,
    discovery: null,
    debugAddr: null,
    peers: new Map(ids.map((i) => [i, ""])),
    joinAddresses: new Map(),
    clusterKey: "sim",
    tls: null,
    tickMs: TICK,
    electionTicks: 10,
    heartbeatTicks: 1,
    requestTimeoutMs: opts.requestTimeoutMs,
    snapshotEvery: opts.snapshotEvery,
    catchupEntries: 3,
    logLevel: "error",
    logFormat: "text",
    clientAuth: OPEN_CLIENT_AUTH,
    placement: { enabled: false, prefer: [], never: [] },
  };
}

export function simLogger(trace: ((line: string) => void) | null): Logger {
  const emit = (msg: string, fields?: Record<string, unknown>) => trace?.(`${msg}${fields === undefined ? "" : ` ${JSON.stringify(fields)}`}`);
  // A verbose run also shows the core's decisions (its trace hook is on at debug).
  if (trace !== null) return { minLevel: "debug", debug: emit, info: emit, warn: emit, error: emit };
  return { debug: () => undefined, info: emit, warn: emit, error: emit };
}
