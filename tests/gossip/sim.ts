// Deterministic network simulator for the gossip core: simulated time, a seeded network with loss,
// delay, partitions, crashed and slow members. Same seed, same run.

import { gossipConfig, type GossipConfig } from "../../src/gossip/config.ts";
import { ENCRYPTION_OVERHEAD } from "../../src/gossip/keyring.ts";
import type { PeerEvent, PeerState } from "../../src/gossip/peer.ts";
import { seededRng, type Rng } from "../../src/gossip/rng.ts";
import { nextJoinBackoffMs, Swim } from "../../src/gossip/swim.ts";

export interface SimOptions {
  seed: number;
  config?: GossipConfig;
  /** Probability each packet (and each push-pull leg) is lost. */
  loss?: number;
  delayMs?: [number, number];
  stepMs?: number;
}

interface SimNode {
  id: string;
  swim: Swim;
  up: boolean;
  /** Extra inbound delay, uniform in [0, slowMs]: a member that handles packets late. */
  slowMs: number;
  /** Seeds to retry until one answers (the core's joined()), waiting by nextJoinBackoffMs as the agent does. */
  seeds: readonly string[];
  nextJoinAt: number;
  /** The last wait between attempts; null before the first retry. */
  joinBackoffMs: number | null;
  events: { at: number; event: PeerEvent }[];
}

interface Scheduled {
  at: number;
  order: number;
  run: () => void;
}

export class Sim {
  now = 0;
  readonly cfg: GossipConfig;
  readonly nodes = new Map<string, SimNode>();
  packets = 0;
  bytes = 0;
  largestPacket = 0;
  private readonly rng: Rng;
  private readonly loss: number;
  private readonly delay: [number, number];
  private readonly stepMs: number;
  private readonly seed: number;
  private readonly byAddr = new Map<string, string>();
  private group = new Map<string, number>();
  private agenda: Scheduled[] = [];
  private order = 0;

  constructor(o: SimOptions) {
    this.seed = o.seed;
    this.rng = seededRng(o.seed);
    this.cfg = o.config ?? gossipConfig("lan");
    this.loss = o.loss ?? 0;
    this.delay = o.delayMs ?? [1, 10];
    this.stepMs = o.stepMs ?? 10;
  }

  /** Adds a member that joins through the given seeds (none: it starts alone). */
  add(id: string, seeds: readonly string[] = []): void {
    const swim = new Swim({
      id,
      meta: { gossipAddr: `${id}:7946`, rpcAddr: `${id}:8000`, region: "sim", role: "voter", cluster: "" },
      config: this.cfg,
      rng: seededRng(this.seed * 7919 + this.nodes.size + 1),
      now: this.now,
      packetOverhead: ENCRYPTION_OVERHEAD,
    });
    const node: SimNode = { id, swim, up: true, slowMs: 0, seeds, nextJoinAt: this.now, joinBackoffMs: null, events: [] };
    this.nodes.set(id, node);
    this.byAddr.set(`${id}:7946`, id);
    this.byAddr.set(`${id}:8000`, id);
    this.maybeJoin(node);
  }

  private maybeJoin(n: SimNode): void {
    if (n.seeds.length === 0 || this.now < n.nextJoinAt || n.swim.joined()) return;
    n.swim.join(this.now, n.seeds.map((s) => `${s}:7946`));
    n.joinBackoffMs = nextJoinBackoffMs(this.cfg, n.joinBackoffMs);
    n.nextJoinAt = this.now + n.joinBackoffMs;
    this.flush(n);
  }

  /** Adds n members n0..n(n-1), each joining through n0. */
  addMany(n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      const id = `n${i}`;
      this.add(id, i === 0 ? [] : ["n0"]);
      ids.push(id);
    }
    return ids;
  }

  crash(id: string): void {
    this.node(id).up = false;
  }

  /** Restarts a crashed member from scratch (incarnation 0) and joins it through `seeds`. */
  restart(id: string, seeds: readonly string[]): void {
    const old = this.node(id);
    if (old.up) throw new Error(`sim: ${id} is still up`);
    this.nodes.delete(id);
    this.add(id, seeds);
  }

  setSlow(id: string, ms: number): void {
    this.node(id).slowMs = ms;
  }

  partition(groups: readonly (readonly string[])[]): void {
    this.group = new Map();
    groups.forEach((g, i) => g.forEach((id) => this.group.set(id, i)));
  }

  heal(): void {
    this.group = new Map();
  }

  /** Steps until `cond` holds or `maxMs` of simulated time passes; returns whether it held. */
  runUntil(cond: () => boolean, maxMs: number): boolean {
    const end = this.now + maxMs;
    while (this.now < end) {
      this.step();
      if (cond()) return true;
    }
    return cond();
  }

  run(ms: number): void {
    const end = this.now + ms;
    while (this.now < end) this.step();
  }

  stateOf(viewer: string, of: string): PeerState | undefined {
    return this.node(viewer).swim.member(of)?.state;
  }

  /** Every up member in `ids` sees every other as alive, and knows nobody else as alive. */
  /** Each member's view, for a failure message: "n0 sees n0 alive, n1 suspect; n1 sees ...". */
  views(ids: readonly string[]): string {
    return ids.map((id) => `${id} sees ${this.node(id).swim.members().map((m) => `${m.id} ${m.state}`).join(", ")}`).join("; ");
  }

  /**
   * Adds n0..n(n-1) 200 ms apart, each joining through one earlier member as
   * tests/gossip/cluster.ts startCluster seeds real agents: n1, n2 via n0; n3, n4 via n1; ...
   */
  addTree(n: number): string[] {
    const ids: string[] = [];
    for (let i = 0; i < n; i++) {
      ids.push(`n${i}`);
      this.add(`n${i}`, i === 0 ? [] : [`n${(i - 1) >> 1}`]);
      this.run(200);
    }
    return ids;
  }

  converged(ids: readonly string[]): boolean {
    const want = new Set(ids);
    for (const id of ids) {
      const n = this.node(id);
      if (!n.up) continue;
      const alive = n.swim.members().filter((m) => m.state === "alive");
      if (alive.length !== want.size || alive.some((m) => !want.has(m.id))) return false;
    }
    return true;
  }

  /** Every up member other than `target` holds it in `state`. */
  allSee(target: string, state: PeerState): boolean {
    for (const n of this.nodes.values()) {
      if (n.id === target || !n.up) continue;
      if (n.swim.member(target)?.state !== state) return false;
    }
    return true;
  }

  events(id: string): { at: number; event: PeerEvent }[] {
    return this.node(id).events;
  }

  node(id: string): SimNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`sim: no member ${id}`);
    return n;
  }

  /** Delivers a plaintext packet to `to` as if from `fromAddr` (an attacker's, or a replay). */
  inject(to: string, fromAddr: string, bytes: Uint8Array): boolean {
    const n = this.node(to);
    const ok = n.swim.receive(this.now, fromAddr, bytes);
    this.flush(n);
    return ok;
  }

  private step(): void {
    this.now += this.stepMs;
    this.agenda.sort((a, b) => a.at - b.at || a.order - b.order);
    let due = 0;
    while (due < this.agenda.length && (this.agenda[due] as Scheduled).at <= this.now) due++;
    const batch = this.agenda.splice(0, due);
    for (const s of batch) s.run();
    for (const n of this.nodes.values()) {
      if (!n.up) continue;
      this.maybeJoin(n);
      n.swim.tick(this.now);
      this.flush(n);
    }
  }

  private later(delayMs: number, run: () => void): void {
    this.agenda.push({ at: this.now + delayMs, order: this.order++, run });
  }

  private linkDelay(to: SimNode): number {
    const [lo, hi] = this.delay;
    return lo + this.rng.next() * (hi - lo) + this.rng.next() * to.slowMs;
  }

  private reachable(from: string, to: string): boolean {
    return (this.group.get(from) ?? -1) === (this.group.get(to) ?? -1) && this.rng.next() >= this.loss;
  }

  private flush(n: SimNode): void {
    const out = n.swim.drain();
    for (const e of out.events) n.events.push({ at: this.now, event: e });
    for (const p of out.packets) {
      this.packets++;
      this.bytes += p.bytes.length;
      this.largestPacket = Math.max(this.largestPacket, p.bytes.length);
      const to = this.nodes.get(this.byAddr.get(p.addr) ?? "");
      if (to === undefined || !this.reachable(n.id, to.id)) continue;
      this.later(this.linkDelay(to), () => {
        if (!to.up) return;
        to.swim.receive(this.now, `${n.id}:7946`, p.bytes);
        this.flush(to);
      });
    }
    for (const pp of out.pushPulls) {
      const to = this.nodes.get(this.byAddr.get(pp.addr) ?? "");
      if (to === undefined || !this.reachable(n.id, to.id)) continue;
      this.later(this.linkDelay(to), () => {
        if (!to.up) return;
        const answer = to.swim.handlePushPull(this.now, pp.state, n.id);
        this.flush(to);
        if (answer === null || !this.reachable(to.id, n.id)) return;
        this.later(this.linkDelay(n), () => {
          if (!n.up) return;
          n.swim.mergePushPull(this.now, answer);
          this.flush(n);
        });
      });
    }
  }
}
