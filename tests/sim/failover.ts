// The simulator's failover profile: the five Fly regions at WAN delays (REFERENCE.md's round
// trips, scaled to the simulator's tick as fly.toml's TICK_MS=100 / ELECTION_TICKS=30 scale to
// the real ones), the leader in lhr killed, and what the survivors do until the next leader: how
// many terms and candidates it took, and how long. The real node loop (PhalanxNode) on the
// simulator's clock and network (sim_node.ts); the election ranking comes from the same code the
// placement runner uses (src/node/election_rank.ts), fed the true round trips instead of PINGs.
// Every event is drawn from the seed: a seed replays exactly.
import { PhalanxNode, type NodeStorage } from "../../src/node/node.ts";
import { DEFAULT_PLACEMENT, type PlacementView } from "../../src/node/placement.ts";
import { ElectionRank, rankVoters } from "../../src/node/election_rank.ts";
import type { Entry, Message, NodeId } from "../../src/raft/types.ts";
import { EventQueue } from "./cluster.ts";
import { Prng } from "./prng.ts";
import { REGION_RTT_MS } from "../regions.ts";
import { SimClock, SimDisk, simConfig, simLogger, simTransport, TICK, UNCHECKED, type ClockHost } from "./sim_node.ts";

const REGIONS = ["lhr", "fra", "ord", "jnb", "sin"] as const;
/** The five regions' round trips (ms, tests/regions.ts). */
const RTT_MS = REGION_RTT_MS as Record<string, Record<string, number>>;
/** Real milliseconds per simulated one: fly.toml's 100 ms tick is the simulator's TICK. */
const SCALE = TICK / 100;
const ELECTION_TICKS = 30;
const JITTER = 0.05;

export interface FailoverOptions {
  /** Hand every survivor its election window from the leader's ranking before the kill. */
  ranking: boolean;
  /** Also kill the best-ranked survivor (fra) with the leader: the next one must take over. */
  killBestToo: boolean;
}

export interface FailoverResult {
  seed: number;
  newLeader: NodeId | null;
  /** Terms from the old leader's to the new leader's (1: one clean election). */
  termsUsed: number;
  /** Candidacies (role → candidate) among the survivors until the new leader. */
  candidates: number;
  /** Some term had more than one candidate, or the election needed more than one term. */
  split: boolean;
  /** Kill → every survivor follows the new leader, in real milliseconds. */
  ms: number;
}

class Failover implements ClockHost {
  private readonly q = new EventQueue();
  private time = 0;
  private readonly net: Prng;
  private readonly rng: Prng;
  private readonly disks = new Map<NodeId, SimDisk>();
  private readonly clocks = new Map<NodeId, SimClock>();
  readonly nodes = new Map<NodeId, PhalanxNode<NodeStorage>>();

  constructor(readonly seed: number) {
    this.rng = new Prng(seed);
    this.net = this.rng.fork();
    for (const id of REGIONS) this.disks.set(id, new SimDisk({ voters: [...REGIONS], learners: [] }));
  }

  now(): number {
    return this.time;
  }

  at(clock: SimClock, time: number, fn: () => void): void {
    this.q.push(time, () => {
      if (clock.dead) return;
      fn();
      clock.runSoon();
    });
  }

  writeAfterSend(clock: SimClock, fn: () => void): void {
    this.at(clock, this.time, fn);
  }

  backgroundFsync(clock: SimClock, fn: () => void): void {
    this.at(clock, this.time, fn);
  }

  private start(id: NodeId): void {
    // Clocks drift a little (±2%) and start at different phases: ticks never line up by accident.
    const clock = new SimClock(this, 1 + this.rng.range(-0.02, 0.02), this.rng.fork());
    const { storage, kv } = this.disks.get(id)!.open(id, UNCHECKED, clock);
    const config = { ...simConfig(id, [...REGIONS], { snapshotEvery: 0, requestTimeoutMs: 5000 }), electionTicks: ELECTION_TICKS };
    const node = new PhalanxNode(config, {
      storage,
      kv,
      log: simLogger(null),
      scheduler: clock,
      transport: () => simTransport((m) => this.send(m)),
      core: { maxClockDriftTicks: 3 },
    });
    this.clocks.set(id, clock);
    this.nodes.set(id, node);
    node.run();
  }

  kill(id: NodeId): void {
    this.clocks.get(id)!.dead = true;
    this.nodes.delete(id);
  }

  private send(m: Message): void {
    const oneWay = (RTT_MS[m.from]![m.to]! / 2) * SCALE * (1 + (this.net.next() * 2 - 1) * JITTER);
    this.q.push(this.time + oneWay, () => {
      const node = this.nodes.get(m.to);
      const clock = this.clocks.get(m.to);
      if (node === undefined || clock === undefined || clock.dead) return;
      try {
        node.receive([m]);
        clock.runSoon();
      } catch {
        // a node shutting down refuses input, as a failed request
      }
    });
  }

  /** Runs events until `done` holds after one (checked after every event) or `limit` passes. */
  runUntil(limit: number, done: () => boolean, onEvent: () => void = () => undefined): boolean {
    for (;;) {
      const ev = this.q.pop();
      if (ev === undefined) return false;
      if (ev.time > limit) {
        this.q.push(ev.time, ev.fn); // not due yet: it stays for the next run
        return false;
      }
      this.time = ev.time;
      ev.fn();
      onEvent();
      if (done()) return true;
    }
  }

  leader(): PhalanxNode<NodeStorage> | null {
    let best: PhalanxNode<NodeStorage> | null = null;
    for (const n of this.nodes.values()) if (n.isLeader() && (best === null || n.status().term > best.status().term)) best = n;
    return best;
  }

  run(opts: FailoverOptions): FailoverResult {
    for (const id of REGIONS) this.start(id);
    const tick = TICK;
    if (!this.runUntil(200 * ELECTION_TICKS * tick, () => this.leader() !== null)) throw new Error(`seed ${this.seed}: no first leader`);
    // The leader moves to lhr (placement would put it there) and settles.
    const settled = () => this.leader()?.id === "lhr" && [...this.nodes.values()].every((n) => n.status().leader === "lhr");
    this.runUntil(this.time + 100 * ELECTION_TICKS * tick, () => {
      const l = this.leader();
      if (l !== null && l.id !== "lhr" && l.status().transferee === null) l.transferLeadership("lhr");
      return settled();
    });
    if (!settled()) throw new Error(`seed ${this.seed}: lhr never led`);
    if (opts.ranking) {
      // What the placement runner does on every node: the leader ranks, each voter sets its window.
      const view: PlacementView = {
        self: "lhr",
        voters: [...REGIONS],
        regions: Object.fromEntries(REGIONS.map((r) => [r, r])),
        rtt: Object.fromEntries(Object.entries(RTT_MS).map(([a, row]) => [a, Object.fromEntries(Object.entries(row).map(([b, ms]) => [b, ms * SCALE]))])),
        healthy: [...REGIONS],
      };
      const ranking = rankVoters(view, DEFAULT_PLACEMENT)!;
      for (const [id, node] of this.nodes) {
        const rank = new ElectionRank();
        rank.received(this.time, "lhr", "lhr", ranking);
        node.setElectionWindow(rank.window(this.time, { self: id, leader: "lhr", tickMs: tick, electionTicks: ELECTION_TICKS }));
      }
    }
    // Some heartbeats later, at a phase drawn from the seed, the leader dies (kill -9).
    this.runUntil(this.time + this.rng.range(5, 15) * tick, () => false);
    const oldTerm = this.nodes.get("lhr")!.status().term;
    const killedAt = this.time;
    this.kill("lhr");
    if (opts.killBestToo) this.kill("fra");
    const candidatesByTerm = new Map<number, Set<NodeId>>();
    const done = () => {
      const l = this.leader();
      return l !== null && [...this.nodes.values()].every((n) => n.status().leader === l.id && n.status().term === l.status().term);
    };
    const watch = () => {
      for (const [id, n] of this.nodes) {
        const s = n.status();
        if (s.role !== "candidate") continue;
        const set = candidatesByTerm.get(s.term) ?? new Set<NodeId>();
        set.add(id);
        candidatesByTerm.set(s.term, set);
      }
    };
    const ok = this.runUntil(killedAt + 20 * ELECTION_TICKS * tick, done, watch);
    const l = ok ? this.leader() : null;
    const termsUsed = l === null ? Infinity : l.status().term - oldTerm;
    const candidates = [...candidatesByTerm.values()].reduce((a, s) => a + s.size, 0);
    const split = termsUsed > 1 || [...candidatesByTerm.values()].some((s) => s.size > 1);
    for (const c of this.clocks.values()) c.dead = true;
    for (const d of this.disks.values()) d.destroy();
    return { seed: this.seed, newLeader: l?.id ?? null, termsUsed, candidates, split, ms: ok ? (this.time - killedAt) / SCALE : Infinity };
  }
}

export function runFailover(seed: number, opts: FailoverOptions): FailoverResult {
  return new Failover(seed).run(opts);
}

/** Summary over seeds [from, from + count). */
export function failoverSeeds(from: number, count: number, opts: FailoverOptions): { results: FailoverResult[]; splits: number; maxMs: number; medianMs: number } {
  const results = Array.from({ length: count }, (_, i) => runFailover(from + i, opts));
  const ms = results.map((r) => r.ms).sort((a, b) => a - b);
  return { results, splits: results.filter((r) => r.split).length, maxMs: ms[ms.length - 1]!, medianMs: ms[Math.floor(ms.length / 2)]! };
}

if (import.meta.main) {
  const n = Number(process.argv[2] ?? "50");
  for (const ranking of [false, true]) {
    const s = failoverSeeds(1, n, { ranking, killBestToo: false });
    console.log(`ranking ${ranking ? "on " : "off"}: ${s.splits} of ${n} leader kills with a split vote; kill → new leader median ${s.medianMs.toFixed(0)} ms, max ${s.maxMs.toFixed(0)} ms`);
  }
  const both = failoverSeeds(1, n, { ranking: true, killBestToo: true });
  console.log(`ranking on, best survivor dead too: ${both.splits} of ${n} split; median ${both.medianMs.toFixed(0)} ms, max ${both.maxMs.toFixed(0)} ms`);
}
