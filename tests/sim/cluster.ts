// Deterministic cluster simulator: real cores (RawNode + MemoryStorage as the disk) on a simulated
// network and clock, with faults, membership changes, transfers and retrying clients. Every
// event is drawn from one seeded PRNG, so a seed replays exactly. After every event it checks
// Raft's safety properties; at the end, linearizability of what the clients saw.
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { RawNode, type Ready } from "../../src/raft/raw_node.ts";
import type { ConfChange, Entry, Message } from "../../src/raft/types.ts";
import { checkLinearizable, kvModel, type KvInput, type KvOutput, type Operation } from "./linearizability.ts";
import { encodeCommand, ModelKv, type SimCommand, type SimResult } from "./model_kv.ts";
import { Prng } from "./prng.ts";

/** One tick is TICK time units; message delays and drift are in time units. */
const TICK = 10;

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
  /** Mean time between fault actions (crash, restart, partition, heal, conf change, transfer). */
  faultEvery: number;
  snapshotEvery: number;
  snapshotChunkBytes: number;
  /** Small values split appends into one entry per message (Figure 8 needs that). */
  maxMsgBytes: number;
  maxInflight: number;
  leaseReads: boolean;
  /**
   * Model the node's optimization (Raft thesis §10.2.1): a leader whose term and vote are durable
   * sends its appends first and persists later; anything that calls into the core settles first,
   * and a crash in between loses what was not yet persisted.
   */
  earlySend: boolean;
  /** Record every message in the trace (for replaying one seed). */
  verbose: boolean;
}

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
    snapshotEvery: r.pick([0, 8, 25, 200]),
    snapshotChunkBytes: r.pick([64, 512, 1 << 16]),
    maxMsgBytes: r.pick([1, 4096]),
    maxInflight: r.pick([1, 8]),
    leaseReads: r.chance(0.8),
    earlySend: r.chance(0.5),
    verbose: false,
  };
}

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
    leaseReads: number;
    snapshotsSent: number;
    crashes: number;
    confChanges: number;
    transfers: number;
  };
}

class Violation extends Error {}

interface PendingWrite {
  term: number;
  opId: number;
  client: number;
}

interface SimNode {
  id: string;
  storage: MemoryStorage;
  raw: RawNode | null;
  sm: ModelKv;
  period: number;
  /** Bumped on crash so the dead incarnation's timers and replies are ignored. */
  epoch: number;
  pendingWrites: Map<number, PendingWrite>;
  pendingReads: Map<string, { opId: number; client: number; key: string; lease: boolean }>;
  waitingReads: { index: number; ctx: string }[];
  readSeq: number;
  wasLeader: boolean;
  /** A leader's Ready whose messages went out before it was persisted (earlySend). */
  deferred: Ready | null;
  /** Term and vote as persisted, to know when sending early is allowed. */
  durable: { term: number; vote: string | null };
}

type Request =
  | { kind: "write"; cmd: SimCommand; opId: number }
  | { kind: "read"; key: string; opId: number };

type Reply = { kind: "done"; opId: number; result: SimResult | { value: number | null } } | { kind: "retry"; opId: number; leader: string | null };

interface ClientOp {
  id: number;
  input: KvInput | { op: "register" };
  call: number;
  seq: number;
  deadline: number;
}

interface Client {
  id: number;
  session: number | null;
  seq: number;
  op: ClientOp | null;
  leaderGuess: string | null;
  opsDone: number;
}

class EventQueue {
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b) return true;
  if (a.byteLength !== b.byteLength) return false;
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class Simulation {
  private readonly rng: Prng;
  private readonly net: Prng;
  private readonly faults: Prng;
  private readonly work: Prng;
  private readonly q = new EventQueue();
  private now = 0;
  private readonly nodes: SimNode[] = [];
  private readonly byId = new Map<string, SimNode>();
  private readonly clients: Client[] = [];
  /** Directed links that drop everything: "a>b". */
  private readonly cut = new Set<string>();
  private healed = false;
  private readonly traceRing: string[] = [];
  private nextOpId = 1;
  private nextValue = 1;
  private readonly history: Operation<KvInput, KvOutput>[] = [];
  private readonly openOps = new Map<number, { client: number; input: KvInput; call: number }>();

  // Global knowledge for the checks.
  private readonly leaders = new Map<number, string>();
  private readonly logEntries = new Map<number, Map<number, { entry: Entry; prevTerm: number }>>();
  private readonly applied: Entry[] = [];
  private stats: SimReport["stats"] = {
    time: 0,
    events: 0,
    messages: 0,
    elections: 0,
    committed: 0,
    opsOk: 0,
    opsUnknown: 0,
    leaseReads: 0,
    snapshotsSent: 0,
    crashes: 0,
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
        storage: new MemoryStorage({ voters: ids, learners: [] }),
        raw: null,
        sm: new ModelKv(),
        // Near the bound's extremes, fast and slow: where lease bugs show.
        period: TICK * (1 + (this.rng.chance(0.5) ? 1 : -1) * opts.drift * this.rng.range(0.7, 1)),
        epoch: 0,
        pendingWrites: new Map(),
        pendingReads: new Map(),
        waitingReads: [],
        readSeq: 0,
        wasLeader: false,
        deferred: null,
        durable: { term: 0, vote: null },
      };
      this.nodes.push(node);
      this.byId.set(id, node);
    }
    for (let i = 0; i < opts.clients; i++) {
      this.clients.push({ id: i, session: null, seq: 0, op: null, leaderGuess: null, opsDone: 0 });
    }
  }

  private trace(line: string): void {
    this.traceRing.push(`${this.now.toFixed(1).padStart(8)} ${line}`);
    if (this.traceRing.length > (this.opts.verbose ? 1_000_000 : 400)) this.traceRing.shift();
  }

  private fail(why: string): never {
    throw new Violation(why);
  }

  // ------------------------------------------------------------------ nodes

  private start(node: SimNode): void {
    const snap = node.storage.snapshot();
    const hs = node.storage.hardState();
    node.durable = { term: hs.term, vote: hs.vote };
    node.sm = ModelKv.restore(snap.data);
    const random = this.rng.fork();
    node.raw = new RawNode({
      id: node.id,
      storage: node.storage,
      random: () => random.next(),
      applied: node.sm.applied,
      electionTicks: 10,
      heartbeatTicks: 1,
      maxClockDriftTicks: 3,
      leaseReads: this.opts.leaseReads,
      maxInflight: this.opts.maxInflight,
      maxMsgBytes: this.opts.maxMsgBytes,
      snapshotEvery: this.opts.snapshotEvery,
      snapshotChunkBytes: this.opts.snapshotChunkBytes,
    });
    node.wasLeader = false;
    const epoch = node.epoch;
    const tick = (): void => {
      if (node.epoch !== epoch || node.raw === null) return;
      this.settle(node);
      node.raw.tick();
      this.drive(node);
      this.q.push(this.now + node.period, tick);
    };
    this.q.push(this.now + this.rng.range(0, node.period), tick);
  }

  private crash(node: SimNode): void {
    if (node.deferred !== null) this.trace(`${node.id} loses ${node.deferred.entries.length} entries it sent but never persisted`);
    node.deferred = null;
    node.raw = null;
    node.epoch++;
    node.pendingWrites.clear();
    node.pendingReads.clear();
    node.waitingReads = [];
    this.stats.crashes++;
    this.trace(`CRASH ${node.id}`);
  }

  /** Handles every Ready the node has, in the order RawNode documents. */
  private drive(node: SimNode): void {
    const raw = node.raw;
    if (raw === null) return;
    this.settle(node);
    for (let guard = 0; raw.hasReady(); guard++) {
      if (guard > 1000) this.fail(`${node.id}: hasReady() never settles`);
      const rd = raw.ready();
      const hs = rd.hardState;
      const early =
        this.opts.earlySend &&
        rd.mustSync &&
        rd.messages.length > 0 &&
        rd.snapshot === null &&
        raw.raft.role === "leader" &&
        (hs === null || (hs.term === node.durable.term && hs.vote === node.durable.vote));
      if (early) {
        for (const m of rd.messages) this.sendMessage(m);
        node.deferred = rd;
        const epoch = node.epoch;
        // The fsync takes a while: followers may persist these entries before the leader does.
        const fsync = this.net.range(0.05, 2);
        this.q.push(this.now + fsync, () => {
          if (node.epoch === epoch) this.drive(node);
        });
        // Now and then the leader dies in exactly that window, after sending, before persisting.
        if (!this.healed && this.faults.chance(0.01)) {
          this.q.push(this.now + fsync / 2, () => {
            if (node.epoch === epoch && node.deferred !== null) this.crash(node);
          });
        }
        break;
      }
      this.finish(node, rd, true);
    }
    this.checkRoles(node);
  }

  /** Completes a deferred Ready: nothing may call into the core before this. */
  private settle(node: SimNode): void {
    const rd = node.deferred;
    if (rd === null) return;
    node.deferred = null;
    this.finish(node, rd, false);
  }

  private finish(node: SimNode, rd: Ready, send: boolean): void {
    const raw = node.raw!;
    this.persist(node, rd);
    if (rd.hardState !== null) node.durable = { term: rd.hardState.term, vote: rd.hardState.vote };
    if (send) for (const m of rd.messages) this.sendMessage(m);
    if (rd.snapshot !== null) {
      node.sm = ModelKv.restore(rd.snapshot.data);
      if (node.sm.applied !== rd.snapshot.meta.index) this.fail(`${node.id}: snapshot data does not match its index`);
      this.trace(`${node.id} installed snapshot at ${rd.snapshot.meta.index}`);
    }
    for (const e of rd.committed) this.apply(node, e);
    for (const rs of rd.readStates) {
      const p = node.pendingReads.get(rs.ctx);
      if (p !== undefined) p.lease = rs.lease;
      node.waitingReads.push({ index: rs.index, ctx: rs.ctx });
    }
    for (const rf of rd.readFailures) this.answerRead(node, rf.ctx, null);
    this.serveReads(node);
    if (rd.snapshotRequest !== null) {
      const { index, conf } = rd.snapshotRequest;
      if (node.sm.applied !== index) this.fail(`${node.id}: snapshot requested at ${index} but applied ${node.sm.applied}`);
      node.storage.createSnapshot({ meta: { index, term: node.storage.term(index), conf }, data: node.sm.serialize() }, index - 3);
    }
    raw.advance();
  }

  private persist(node: SimNode, rd: Ready): void {
    if (rd.entries.length > 0) {
      const first = rd.entries[0]!.index;
      let prevTerm: number;
      if (rd.snapshot !== null && first === rd.snapshot.meta.index + 1) prevTerm = rd.snapshot.meta.term;
      else prevTerm = first - 1 === 0 ? 0 : this.termOf(node, first - 1);
      for (const e of rd.entries) {
        this.checkLogMatching(node, e, prevTerm);
        prevTerm = e.term;
      }
    }
    node.storage.save(rd.snapshot, rd.entries, rd.hardState);
  }

  private termOf(node: SimNode, index: number): number {
    try {
      return node.storage.term(index);
    } catch {
      return -1; // compacted: the entry was checked when it was first persisted
    }
  }

  /** Log matching: one (index, term) names one entry, and its predecessor has one term. */
  private checkLogMatching(node: SimNode, e: Entry, prevTerm: number): void {
    let byTerm = this.logEntries.get(e.index);
    if (byTerm === undefined) {
      byTerm = new Map();
      this.logEntries.set(e.index, byTerm);
    }
    const seen = byTerm.get(e.term);
    if (seen === undefined) {
      byTerm.set(e.term, { entry: e, prevTerm });
      return;
    }
    if (seen.entry.type !== e.type || !sameBytes(seen.entry.data, e.data)) {
      this.fail(`log matching: ${node.id} holds a different entry at index ${e.index} term ${e.term}`);
    }
    if (prevTerm !== -1 && seen.prevTerm !== -1 && seen.prevTerm !== prevTerm) {
      this.fail(`log matching: entry ${e.index}/${e.term} follows term ${prevTerm} on ${node.id} but ${seen.prevTerm} elsewhere`);
    }
  }

  private apply(node: SimNode, e: Entry): void {
    const known = this.applied[e.index];
    if (known === undefined) {
      this.applied[e.index] = e;
      this.stats.committed = Math.max(this.stats.committed, e.index);
    } else if (known.term !== e.term || !sameBytes(known.data, e.data)) {
      this.fail(`state machine safety: ${node.id} applied ${e.index}/${e.term}, another node applied ${e.index}/${known.term}`);
    }
    const { result, duplicateApply } = node.sm.apply(e);
    if (duplicateApply !== null) this.fail(`exactly-once: ${node.id} applied client write ${duplicateApply} twice`);
    const pending = node.pendingWrites.get(e.index);
    if (pending === undefined) return;
    node.pendingWrites.delete(e.index);
    if (pending.term === e.term && result !== null) this.reply(pending.client, { kind: "done", opId: pending.opId, result });
    else this.reply(pending.client, { kind: "retry", opId: pending.opId, leader: null });
  }

  private serveReads(node: SimNode): void {
    if (node.waitingReads.length === 0) return;
    const still: { index: number; ctx: string }[] = [];
    for (const w of node.waitingReads) {
      if (node.sm.applied >= w.index) this.answerRead(node, w.ctx, w.index);
      else still.push(w);
    }
    node.waitingReads = still;
  }

  private answerRead(node: SimNode, ctx: string, index: number | null): void {
    const p = node.pendingReads.get(ctx);
    if (p === undefined) return;
    node.pendingReads.delete(ctx);
    if (index === null) {
      this.reply(p.client, { kind: "retry", opId: p.opId, leader: node.raw?.status().leader ?? null });
      return;
    }
    if (p.lease) this.stats.leaseReads++;
    this.reply(p.client, { kind: "done", opId: p.opId, result: { value: node.sm.get(p.key) } });
  }

  private checkRoles(node: SimNode): void {
    const raft = node.raw!.raft;
    const isLeader = raft.role === "leader";
    if (isLeader && !node.wasLeader) {
      this.stats.elections++;
      this.trace(`LEADER ${node.id} term ${raft.term}`);
      const other = this.leaders.get(raft.term);
      if (other !== undefined && other !== node.id) this.fail(`election safety: ${other} and ${node.id} both lead term ${raft.term}`);
      this.leaders.set(raft.term, node.id);
      // Leader completeness: every entry applied anywhere is in the new leader's log.
      const first = raft.log.firstIndex();
      for (let i = Math.max(first, 1); i < this.applied.length; i++) {
        const e = this.applied[i];
        if (e !== undefined && raft.log.term(i) !== e.term) {
          this.fail(`leader completeness: leader ${node.id} of term ${raft.term} lacks committed entry ${i}/${e.term}`);
        }
      }
    }
    node.wasLeader = isLeader;
  }

  /** No two nodes may believe they hold a lease at the same instant (global time). */
  private checkLeases(): void {
    let holder: SimNode | null = null;
    for (const n of this.nodes) {
      if (n.raw === null || !n.raw.raft.leaseValid()) continue;
      if (holder !== null) {
        this.fail(`lease overlap: ${holder.id} (term ${holder.raw!.raft.term}) and ${n.id} (term ${n.raw.raft.term}) both hold a lease`);
      }
      holder = n;
    }
  }

  // ------------------------------------------------------------------ network

  private sendMessage(m: Message): void {
    this.stats.messages++;
    if (m.type === "snapshot" && m.offset === 0) this.stats.snapshotsSent++;
    if (this.opts.verbose) this.trace(`send ${describe(m)}`);
    if (this.cut.has(`${m.from}>${m.to}`)) return;
    if (!this.healed && this.net.chance(this.opts.loss)) return;
    const copies = !this.healed && this.net.chance(this.opts.duplicate) ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const delay = this.net.range(this.opts.minDelay, this.opts.maxDelay);
      this.q.push(this.now + delay, () => {
        const to = this.byId.get(m.to);
        if (to === undefined || to.raw === null || this.cut.has(`${m.from}>${m.to}`)) return;
        if (this.opts.verbose) this.trace(`recv ${describe(m)}`);
        this.settle(to);
        to.raw.step(m);
        this.drive(to);
      });
    }
  }

  // ------------------------------------------------------------------ clients

  private reply(clientId: number, r: Reply): void {
    const delay = this.net.range(this.opts.minDelay, this.opts.maxDelay);
    this.q.push(this.now + delay, () => this.onReply(this.clients[clientId]!, r));
  }

  private clientSend(c: Client, op: ClientOp): void {
    const alive = this.nodes.filter((n) => n.raw !== null);
    const pool = alive.length > 0 ? alive : this.nodes;
    let target = this.work.pick(pool);
    if (c.leaderGuess !== null && this.work.chance(0.8)) target = this.byId.get(c.leaderGuess) ?? target;
    const req: Request =
      op.input.op === "get"
        ? { kind: "read", key: op.input.key, opId: op.id }
        : { kind: "write", cmd: this.commandFor(c, op), opId: op.id };
    const delay = this.net.range(this.opts.minDelay, this.opts.maxDelay);
    this.q.push(this.now + delay, () => this.onRequest(target, c.id, req));
    const deadline = this.now + 40 * TICK;
    op.deadline = deadline;
    this.q.push(deadline, () => {
      if (c.op === op && op.deadline === deadline) {
        c.leaderGuess = null;
        this.clientSend(c, op);
      }
    });
  }

  private commandFor(c: Client, op: ClientOp): SimCommand {
    const input = op.input;
    if (input.op === "register") return { op: "register", time: this.now };
    if (input.op === "put") return { op: "put", client: c.session!, seq: op.seq, time: this.now, key: input.key, value: input.value };
    if (input.op === "cas") {
      return { op: "cas", client: c.session!, seq: op.seq, time: this.now, key: input.key, expect: input.expect, value: input.value };
    }
    throw new Error("reads are not commands");
  }

  private onRequest(node: SimNode, client: number, req: Request): void {
    const raw = node.raw;
    if (raw === null) return; // lost with the node; the client times out
    this.settle(node);
    if (req.kind === "write") {
      const res = raw.propose(encodeCommand(req.cmd));
      if (!res.ok) this.reply(client, { kind: "retry", opId: req.opId, leader: res.leader });
      else node.pendingWrites.set(res.index, { term: res.term, opId: req.opId, client });
    } else {
      const ctx = `${node.id}/${node.epoch}/${++node.readSeq}`;
      node.pendingReads.set(ctx, { opId: req.opId, client, key: req.key, lease: false });
      raw.readIndex(ctx);
    }
    this.drive(node);
  }

  private onReply(c: Client, r: Reply): void {
    const op = c.op;
    if (op === null || op.id !== r.opId) return; // an answer to an op already finished
    if (r.kind === "retry") {
      c.leaderGuess = r.leader;
      const backoff = this.work.range(1, 3) * TICK;
      op.deadline = -1; // cancels the pending timeout; a new one is set on resend
      this.q.push(this.now + backoff, () => {
        if (c.op === op) this.clientSend(c, op);
      });
      return;
    }
    const result = r.result;
    if (op.input.op === "register") {
      if ("ok" in result && result.ok && result.clientId !== undefined) c.session = result.clientId;
      this.finishOp(c);
      return;
    }
    let output: KvOutput;
    if ("value" in result) output = { value: result.value };
    else if (!result.ok) {
      if (result.error !== "session_expired") this.fail(`client ${c.id}: unexpected session error ${result.error}`);
      // The session was evicted: whether an earlier attempt applied is unknown. Start a new session.
      this.trace(`client ${c.id} session expired during op ${op.id}`);
      c.session = null;
      this.openOps.delete(op.id);
      this.history.push({ client: c.id, input: op.input, call: op.call, ret: Infinity, output: null });
      this.stats.opsUnknown++;
      this.finishOp(c);
      return;
    } else if (op.input.op === "cas") output = { succeeded: result.succeeded === true };
    else output = {};
    this.openOps.delete(op.id);
    this.history.push({ client: c.id, input: op.input, call: op.call, ret: this.now, output });
    this.stats.opsOk++;
    this.trace(`client ${c.id} op ${op.id} ${JSON.stringify(op.input)} -> ${JSON.stringify(output)}`);
    this.finishOp(c);
  }

  private finishOp(c: Client): void {
    if (c.op !== null && c.op.input.op !== "get" && c.op.input.op !== "register") c.seq = c.op.seq;
    c.op = null;
    c.opsDone++;
    this.q.push(this.now + this.work.range(0, 2) * TICK, () => this.startOp(c));
  }

  private startOp(c: Client): void {
    if (c.op !== null || this.now > this.opts.duration + 600 * TICK) return;
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
    const op: ClientOp = { id: this.nextOpId++, input, call: this.now, seq: c.seq + 1, deadline: 0 };
    c.op = op;
    if (input.op !== "register") this.openOps.set(op.id, { client: c.id, input, call: this.now });
    this.clientSend(c, op);
  }

  // ------------------------------------------------------------------ faults

  private leader(): SimNode | null {
    let best: SimNode | null = null;
    for (const n of this.nodes) {
      if (n.raw !== null && n.raw.raft.role === "leader" && (best === null || n.raw.raft.term > best.raw!.raft.term)) best = n;
    }
    return best;
  }

  private fault(): void {
    const f = this.faults;
    const roll = f.next();
    const alive = this.nodes.filter((n) => n.raw !== null);
    const dead = this.nodes.filter((n) => n.raw === null);
    const leader = this.leader();
    const ids = this.nodes.map((n) => n.id);
    if (roll < 0.1 && alive.length > 0) {
      this.crash(f.pick(alive));
    } else if (roll < 0.2 && leader !== null) {
      this.crash(leader);
    } else if (roll < 0.35 && dead.length > 0) {
      const n = f.pick(dead);
      this.trace(`RESTART ${n.id}`);
      this.start(n);
    } else if (roll < 0.45) {
      const side = new Set(ids.filter(() => f.chance(0.5)));
      this.partition(side);
    } else if (roll < 0.52 && leader !== null) {
      this.partition(new Set([leader.id]));
    } else if (roll < 0.6) {
      // One-way: the leader (or anyone) stops reaching one node, which still reaches everyone.
      const a = leader !== null && f.chance(0.7) ? leader.id : f.pick(ids);
      const b = f.pick(ids.filter((id) => id !== a));
      this.cut.add(`${a}>${b}`);
      this.trace(`CUT one-way ${a} -> ${b}`);
    } else if (roll < 0.72) {
      this.cut.clear();
      this.trace("HEAL network");
    } else if (roll < 0.86) {
      this.changeMembership();
    } else if (leader !== null) {
      this.settle(leader);
      const target = f.pick(leader.raw!.raft.conf().voters);
      const res = leader.raw!.transferLeadership(target);
      this.trace(`TRANSFER ${leader.id} -> ${target}: ${res.ok ? "started" : res.reason}`);
      if (res.ok) this.stats.transfers++;
      this.drive(leader);
    }
  }

  private partition(side: Set<string>): void {
    const ids = this.nodes.map((n) => n.id);
    for (const a of ids) for (const b of ids) if (side.has(a) !== side.has(b)) this.cut.add(`${a}>${b}`);
    this.trace(`PARTITION {${[...side].join(",")}} | rest`);
  }

  private changeMembership(): void {
    const l = this.leader();
    if (l === null) return;
    this.settle(l);
    const conf = l.raw!.raft.conf();
    const f = this.faults;
    const members = new Set([...conf.voters, ...conf.learners]);
    const outsiders = this.nodes.map((n) => n.id).filter((id) => !members.has(id));
    const minVoters = this.opts.nodes === 5 ? 3 : 2;
    let cc: ConfChange | null = null;
    if (conf.learners.length > 0 && f.chance(0.7)) cc = { op: "addVoter", node: f.pick(conf.learners), context: "" };
    else if (outsiders.length > 0 && f.chance(0.6)) cc = { op: "addLearner", node: f.pick(outsiders), context: "" };
    else if (conf.voters.length > minVoters) cc = { op: "remove", node: f.pick(conf.voters), context: "" };
    if (cc === null) return;
    const res = l.raw!.proposeConfChange(cc);
    this.trace(`CONF ${l.id}: ${cc.op} ${cc.node}: ${res.ok ? `index ${res.index}` : res.reason}`);
    if (res.ok) this.stats.confChanges++;
    this.drive(l);
  }

  private scheduleFaults(): void {
    const next = this.now + this.faults.range(0.2, 1.8) * this.opts.faultEvery;
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
    for (const n of this.nodes) if (n.raw === null) this.start(n);
    this.trace("HEAL ALL: network healed, every node restarted");
  }

  // ------------------------------------------------------------------ run

  run(): SimReport {
    let violation: string | null = null;
    try {
      for (const n of this.nodes) this.start(n);
      for (const c of this.clients) this.q.push(this.work.range(0, 5) * TICK, () => this.startOp(c));
      this.scheduleFaults();
      this.q.push(this.opts.duration, () => this.heal());
      const end = this.opts.duration + 800 * TICK;
      let opsAtHeal = -1;
      for (;;) {
        const ev = this.q.pop();
        if (ev === undefined || ev.time > end) break;
        this.now = ev.time;
        ev.fn();
        this.stats.events++;
        this.checkLeases();
        if (this.healed && opsAtHeal < 0) opsAtHeal = this.stats.opsOk;
      }
      this.stats.time = this.now;
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
      else violation = `core threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
      this.trace(`VIOLATION ${violation}`);
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
