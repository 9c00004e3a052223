// The SWIM + Lifeguard membership state machine. Pure and deterministic: time comes in as `now`
// (ms), randomness from the injected Rng, and everything it wants done (packets to send,
// push-pulls to start, membership events) is collected for the caller to `drain()`.
// No clocks, timers or sockets here, so the simulator can run it exactly.

import { Awareness } from "./awareness.ts";
import { BroadcastQueue } from "./broadcast_queue.ts";
import { MAX_INCARNATION, assemblePacket, decodePacket, decodePushPull, encodeMessage, encodePushPull } from "./codec.ts";
import { retransmitLimit, validateConfig, type GossipConfig } from "./config.ts";
import { copyPeer, sameMeta, type GossipPeer, type PeerEvent, type PeerEventType, type PeerMeta } from "./peer.ts";
import type { AliveMsg, DeadMsg, Message, PushPullState, SuspectMsg } from "./messages.ts";
import { ReplyBudget } from "./reply_budget.ts";
import { randomInt, shuffle, type Rng } from "./rng.ts";
import { Suspicion, expectedConfirmations, suspicionBounds } from "./suspicion.ts";

export interface SwimOptions {
  id: string;
  meta: PeerMeta;
  config: GossipConfig;
  rng: Rng;
  now: number;
  /** Bytes the edge adds to every packet (encryption), taken off config.maxPacketBytes. */
  packetOverhead: number;
  /** Starting incarnation; refutation raises it past whatever the cluster remembers anyway. */
  incarnation?: number;
}

export interface OutPacket {
  /** Gossip "host:port". */
  addr: string;
  bytes: Uint8Array;
}

export interface PushPullRequest {
  /** RPC "host:port" of the member to exchange state with. */
  addr: string;
  /** Its node id: the signed request names its recipient, so it cannot be replayed to another. */
  to: string;
  state: Uint8Array;
}

export interface SwimOutput {
  packets: OutPacket[];
  pushPulls: PushPullRequest[];
  events: PeerEvent[];
}

interface Probe {
  seq: number;
  target: string;
  indirectAt: number;
  endAt: number;
  indirectSent: boolean;
  expectedNacks: number;
  nacks: number;
}

/** A ping-req we are serving: our own ping's seq maps back to the requester's. */
interface Relay {
  requesterAddr: string;
  requesterSeq: number;
  nackAt: number;
  expiresAt: number;
  nacked: boolean;
}

/** Who a packet with piggybacked updates goes to: a member's id (null for a seed not known yet) and its gossip address. */
interface Recipient {
  id: string | null;
  addr: string;
}

/** Room for the packet's array header (3 bytes covers up to 65,535 messages). */
const PACKET_HEADER = 3;
/** Garbage from an authenticated peer should not grow memory without bound. */
const MAX_RELAYS = 1024;
/**
 * A claim about a member we know may raise its incarnation by at most this much. A member raises
 * its own by one per refutation or metadata change, so an honest jump this large never happens;
 * a claim near the top of the range (issue 9: `dead n3 at 2^53-1`) would leave the member no
 * room to refute, so it is ignored instead. A restarted member (incarnation 0) refutes what the
 * cluster remembers of it as long as that is below this bound.
 */
export const MAX_INCARNATION_STEP = 1 << 20;
/** Probes (ping, ping-req) and relayed acks answered per received packet; one is normal. */
export const MAX_REPLIES_PER_PACKET = 2;
/** Answers per source address: a member probes us about once per probe interval. */
const REPLY_BUDGET = { burst: 8, perSecond: 4, maxSources: 4096 };

export class Swim {
  readonly id: string;
  private readonly cfg: GossipConfig;
  private readonly rng: Rng;
  private readonly maxPayload: number;
  private readonly awareness: Awareness;
  private readonly queue = new BroadcastQueue();
  private readonly table = new Map<string, GossipPeer>();
  private readonly suspicions = new Map<string, Suspicion>();
  private readonly relays = new Map<number, Relay>();
  /** When we last answered each accuser directly, to send at most one refutation per probe interval. */
  private readonly answered = new Map<string, number>();
  private readonly replyBudget = new ReplyBudget(REPLY_BUDGET);
  /** Answers the packet being handled may still cause (see receive()). */
  private repliesLeft = 0;
  /** Gossip addresses members claim for themselves in the packet being handled. */
  private claimed = new Map<string, string>();
  private probeOrder: string[] = [];
  private probeIndex = 0;
  private probe: Probe | null = null;
  private seq = 0;
  private lastNow: number;
  private nextProbeAt: number;
  private nextGossipAt: number;
  private nextPushPullAt: number;
  private leaving = false;
  /** Until the first member is learned a full push-pull with it is due (a member started without seeds). */
  private needSync = true;
  /** Seqs of the join pings of the latest join() call: an ack to one is a seed's answer. */
  private joinPings = new Set<number>();
  /** Whether a seed answered a join ping (see joined()). */
  private seedAnswered = false;
  private out: SwimOutput = { packets: [], pushPulls: [], events: [] };

  constructor(o: SwimOptions) {
    validateConfig(o.config);
    if (o.id.length === 0 || o.id.length > 128) throw new Error("gossip node id must be 1..128 characters");
    this.id = o.id;
    this.cfg = o.config;
    this.rng = o.rng;
    this.maxPayload = o.config.maxPacketBytes - o.packetOverhead;
    this.awareness = new Awareness(o.config.awarenessMaxMultiplier);
    this.lastNow = o.now;
    // Stagger the first probe so members started together do not probe in lockstep.
    this.nextProbeAt = o.now + randomInt(this.rng, o.config.probeIntervalMs);
    this.nextGossipAt = o.now + o.config.gossipIntervalMs;
    this.nextPushPullAt = o.now + o.config.pushPullIntervalMs;
    this.table.set(o.id, { id: o.id, incarnation: o.incarnation ?? 0, state: "alive", meta: { ...o.meta }, since: o.now });
    // Announce ourselves with the first packets we send, not only to the seed we join through.
    this.queue.enqueue(o.id, "alive", encodeMessage(this.selfAlive()));
  }

  // ---- inputs ----

  tick(now: number): void {
    this.advance(now);
    this.checkProbe(now);
    if (now >= this.nextProbeAt) this.startProbe(now);
    this.checkRelays(now);
    this.checkSuspicions(now);
    if (now >= this.nextGossipAt) {
      this.nextGossipAt = now + this.cfg.gossipIntervalMs;
      this.gossip(now);
    }
    if (now >= this.nextPushPullAt) {
      this.nextPushPullAt = now + this.cfg.pushPullIntervalMs;
      this.pushPullRound();
    }
    this.reap(now);
  }

  /**
   * Handles one plaintext packet from `fromAddr`. False if the packet, or any message in it, was
   * malformed; the well-formed messages are handled either way.
   */
  receive(now: number, fromAddr: string, bytes: Uint8Array): boolean {
    this.advance(now);
    const decoded = decodePacket(bytes);
    if (decoded === null) return false;
    const msgs = decoded.messages;
    this.repliesLeft = MAX_REPLIES_PER_PACKET;
    this.claimed = new Map();
    for (const m of msgs) if (m.type === "alive") this.claimed.set(m.node, m.meta.gossipAddr);
    // Membership news first, so an ack we send back already carries our answer to it (a refutation).
    for (const m of msgs) if (isNews(m)) this.handle(now, fromAddr, m);
    for (const m of msgs) if (!isNews(m)) this.handle(now, fromAddr, m);
    this.claimed = new Map();
    return decoded.malformed === 0;
  }

  /**
   * Pings each seed (gossip "host:port") announcing ourselves; a seed's ack triggers a push-pull
   * with it. The caller retries with backoff until joined(). Only the latest call's pings count
   * (a bounded set): the agent retries a probe interval apart at the least, far longer than an ack's round trip.
   */
  join(now: number, addrs: readonly string[]): void {
    this.advance(now);
    // We sync with the seed that answers (see the ack handler), not with whoever we hear of first.
    this.needSync = false;
    this.joinPings = new Set();
    for (const addr of addrs) {
      const seq = this.nextSeq();
      this.joinPings.add(seq);
      this.sendWithPiggyback({ id: null, addr }, [encodeMessage({ type: "ping", seq, from: this.id, target: "" }), encodeMessage(this.selfAlive())], this.id);
    }
  }

  /**
   * Whether one of the seeds given to join() answered us: the join loop retries until then.
   * Knowing some member is not enough. With seeds n1 via n0 and n3 via n1, if n1's join ping is
   * lost and n3 then finds n1, n1 knows a member but nobody in {n1, n3} knows n0; push-pull only
   * goes to known members, so the cluster stayed split for good (memberlist counts a join only
   * when a seed answered, for the same reason).
   */
  joined(): boolean {
    return this.seedAnswered;
  }

  /** Announces a graceful leave; keep ticking a little so the news is gossiped before stopping. */
  leave(now: number): void {
    this.advance(now);
    if (this.leaving) return;
    this.leaving = true;
    const self = this.self();
    self.state = "left";
    self.since = now;
    this.probe = null;
    this.queue.enqueue(this.id, "dead", encodeMessage({ type: "dead", node: this.id, incarnation: self.incarnation, from: this.id }));
  }

  /** Changes our metadata; the higher incarnation makes the change win everywhere. */
  setMeta(now: number, meta: PeerMeta): void {
    this.advance(now);
    if (this.leaving) throw new Error("gossip: setMeta after leave");
    const self = this.self();
    self.meta = { ...meta };
    if (self.incarnation >= MAX_INCARNATION) throw new Error("gossip: incarnation exhausted");
    self.incarnation++;
    this.queue.enqueue(this.id, "alive", encodeMessage(this.selfAlive()));
  }

  /**
   * Serves a push-pull from authenticated member `from`: merge its state, then answer with ours
   * (including any refutation). A state that claims another sender is refused.
   */
  handlePushPull(now: number, bytes: Uint8Array, from: string): Uint8Array | null {
    this.advance(now);
    const st = decodePushPull(bytes);
    if (st === null || st.from !== from) return null;
    this.mergeState(now, st);
    return this.localState();
  }

  /** Merges the answer to a push-pull we started; false if malformed. */
  mergePushPull(now: number, bytes: Uint8Array): boolean {
    this.advance(now);
    const st = decodePushPull(bytes);
    if (st === null) return false;
    this.mergeState(now, st);
    return true;
  }

  // ---- outputs and views ----

  drain(): SwimOutput {
    const o = this.out;
    this.out = { packets: [], pushPulls: [], events: [] };
    return o;
  }

  localState(): Uint8Array {
    const members = [...this.table.values()].map((m) => ({ id: m.id, incarnation: m.incarnation, state: m.state, meta: m.meta }));
    return encodePushPull({ from: this.id, members });
  }

  members(): GossipPeer[] {
    return [...this.table.values()].map(copyPeer);
  }

  member(id: string): GossipPeer | undefined {
    const m = this.table.get(id);
    return m === undefined ? undefined : copyPeer(m);
  }

  /** Members known, ourselves and the dead included (more than 1 does not mean joined(): see there). */
  memberCount(): number {
    return this.table.size;
  }

  /** Lifeguard health score: 0 is healthy. */
  health(): number {
    return this.awareness.health();
  }

  pendingBroadcasts(): number {
    return this.queue.size();
  }

  // ---- probing ----

  private startProbe(now: number): void {
    if (this.probe !== null) throw new Error("gossip invariant: a probe started while another is open");
    const interval = this.awareness.scale(this.cfg.probeIntervalMs);
    this.nextProbeAt = now + interval;
    if (this.leaving) return;
    const target = this.nextProbeTarget();
    if (target === undefined) return;
    const seq = this.nextSeq();
    this.probe = {
      seq,
      target: target.id,
      indirectAt: now + this.awareness.scale(this.cfg.probeTimeoutMs),
      endAt: now + interval,
      indirectSent: false,
      expectedNacks: 0,
      nacks: 0,
    };
    const parts = [encodeMessage({ type: "ping", seq, from: this.id, target: target.id })];
    // Tell a suspect directly, so it can refute without waiting for gossip to reach it.
    if (target.state === "suspect") {
      parts.push(encodeMessage({ type: "suspect", node: target.id, incarnation: target.incarnation, from: this.id }));
    }
    this.sendWithPiggyback({ id: target.id, addr: target.meta.gossipAddr }, parts);
  }

  private checkProbe(now: number): void {
    const p = this.probe;
    if (p === null) return;
    const target = this.table.get(p.target);
    if (target === undefined || target.state === "dead" || target.state === "left") {
      this.probe = null;
      return;
    }
    if (!p.indirectSent && now >= p.indirectAt) {
      p.indirectSent = true;
      const helpers = this.randomMembers(this.cfg.indirectChecks, (m) => m.id !== p.target && m.state === "alive");
      for (const h of helpers) {
        const req = encodeMessage({ type: "pingReq", seq: p.seq, from: this.id, target: p.target, targetAddr: target.meta.gossipAddr });
        this.sendWithPiggyback({ id: h.id, addr: h.meta.gossipAddr }, [req]);
        p.expectedNacks++;
      }
    }
    if (now >= p.endAt) {
      this.probe = null;
      // Lifeguard: helpers that did not even nack suggest our own link or process is the slow one.
      this.awareness.apply(p.expectedNacks > 0 ? p.expectedNacks - p.nacks : 1);
      this.suspectNode(now, { type: "suspect", node: target.id, incarnation: target.incarnation, from: this.id });
    }
  }

  /** Round-robin over a shuffled list, reshuffled after each full pass. */
  private nextProbeTarget(): GossipPeer | undefined {
    for (let tries = 0; tries <= this.probeOrder.length; tries++) {
      if (this.probeIndex >= this.probeOrder.length) {
        this.probeOrder = shuffle(this.rng, [...this.table.keys()].filter((id) => id !== this.id));
        this.probeIndex = 0;
        if (this.probeOrder.length === 0) return undefined;
      }
      const m = this.table.get(this.probeOrder[this.probeIndex++] as string);
      if (m !== undefined && m.id !== this.id && (m.state === "alive" || m.state === "suspect")) return m;
    }
    return undefined;
  }

  private checkRelays(now: number): void {
    for (const [seq, r] of this.relays) {
      if (!r.nacked && now >= r.nackAt) {
        r.nacked = true;
        this.send(r.requesterAddr, [encodeMessage({ type: "nack", seq: r.requesterSeq, from: this.id })]);
      }
      if (now >= r.expiresAt) this.relays.delete(seq);
    }
  }

  private checkSuspicions(now: number): void {
    for (const [id, s] of this.suspicions) {
      if (now < s.deadline()) continue;
      const m = this.table.get(id);
      if (m === undefined || m.state !== "suspect") throw new Error(`gossip invariant: suspicion timer for ${id} in state ${m?.state}`);
      this.deadNode(now, { type: "dead", node: id, incarnation: m.incarnation, from: this.id });
    }
  }

  // ---- dissemination ----

  private gossip(now: number): void {
    const targets = this.randomMembers(this.cfg.gossipNodes, (m) =>
      m.state === "alive" || m.state === "suspect" || now - m.since < this.cfg.gossipToTheDeadMs,
    );
    for (const t of targets) {
      // Not `return` on an empty take: what is left may be news to the next target (an alive
      // about this target is not spent on it).
      const parts = this.queue.take(this.maxPayload - PACKET_HEADER, this.limit(), t.id);
      if (parts.length === 0) continue;
      this.send(t.meta.gossipAddr, parts);
    }
  }

  /**
   * One exchange with a random live member, and one with a remembered dead member: if it answers,
   * a partition has healed and both sides learn they were declared dead, refute, and merge.
   */
  private pushPullRound(): void {
    if (this.leaving) return;
    const [live] = this.randomMembers(1, (m) => m.state === "alive");
    if (live !== undefined) this.out.pushPulls.push({ addr: live.meta.rpcAddr, to: live.id, state: this.localState() });
    const [dead] = this.randomMembers(1, (m) => m.state === "dead");
    if (dead !== undefined) this.out.pushPulls.push({ addr: dead.meta.rpcAddr, to: dead.id, state: this.localState() });
  }

  private reap(now: number): void {
    for (const [id, at] of this.answered) if (now - at >= this.cfg.probeIntervalMs) this.answered.delete(id);
    this.replyBudget.prune(now);
    for (const [id, m] of this.table) {
      if (id === this.id) continue;
      const age = now - m.since;
      if ((m.state === "left" && age > this.cfg.gossipToTheDeadMs) || (m.state === "dead" && age > this.cfg.reconnectTimeoutMs)) {
        this.table.delete(id);
      }
    }
  }

  // ---- message handling ----

  private handle(now: number, fromAddr: string, m: Message): void {
    switch (m.type) {
      case "ping": {
        // A ping meant for a previous owner of this address must not be acked as if we were it.
        if (m.target !== "" && m.target !== this.id) return;
        const to = this.replyAddr(m.from);
        if (to === null || !this.mayReply(now, fromAddr)) return;
        const parts = [encodeMessage({ type: "ack", seq: m.seq, from: this.id })];
        // A join ping: tell the newcomer who we are so it can push-pull with us.
        if (m.target === "") parts.push(encodeMessage(this.selfAlive()));
        this.sendWithPiggyback({ id: m.from, addr: to }, parts);
        return;
      }
      case "pingReq": {
        if (this.relays.size >= MAX_RELAYS) return;
        // Probe only members we know, at the address we know: a ping-req must not make us send
        // to an address of the requester's choosing (m.targetAddr is not used for that reason).
        // Any state: a member we hold dead may be alive, and the requester wants our nack anyway.
        const target = this.table.get(m.target);
        const requesterAddr = this.replyAddr(m.from);
        if (target === undefined || target.id === this.id) return;
        if (requesterAddr === null || !this.mayReply(now, fromAddr)) return;
        const seq = this.nextSeq();
        this.relays.set(seq, {
          requesterAddr,
          requesterSeq: m.seq,
          nackAt: now + this.cfg.probeTimeoutMs,
          expiresAt: now + this.cfg.probeIntervalMs,
          nacked: false,
        });
        this.sendWithPiggyback({ id: target.id, addr: target.meta.gossipAddr }, [encodeMessage({ type: "ping", seq, from: this.id, target: m.target })]);
        return;
      }
      case "ack": {
        const r = this.relays.get(m.seq);
        if (r !== undefined) {
          this.relays.delete(m.seq);
          if (!this.mayReply(now, fromAddr)) return;
          this.send(r.requesterAddr, [encodeMessage({ type: "ack", seq: r.requesterSeq, from: this.id })]);
          return;
        }
        if (this.probe !== null && this.probe.seq === m.seq) {
          this.probe = null;
          this.awareness.apply(-1);
          return;
        }
        if (this.joinPings.has(m.seq)) {
          // A seed answered our join ping; its ack came with its alive (handled first), so it is known.
          const seed = this.table.get(m.from);
          if (seed === undefined || seed.id === this.id) return;
          this.joinPings = new Set();
          this.seedAnswered = true;
          this.syncWith(now, seed);
        }
        return;
      }
      case "nack":
        if (this.probe !== null && this.probe.seq === m.seq && this.probe.nacks < this.probe.expectedNacks) this.probe.nacks++;
        return;
      case "alive":
        return this.aliveNode(now, m);
      case "suspect":
        return this.suspectNode(now, m);
      case "dead":
        return this.deadNode(now, m);
    }
  }

  /**
   * Where an answer to member `id` goes: the gossip address it claims in this very packet (a join,
   * or a restart on a new address), else the one we know. Never the packet's source address,
   * which a replayer can spoof: we send only to members' own addresses. Null for a stranger
   * (a probe from a non-member is ignored; its join packet carries its alive, so a real
   * newcomer is known by the time its ping is handled).
   */
  private replyAddr(id: string): string | null {
    if (id === this.id) return null;
    return this.claimed.get(id) ?? this.table.get(id)?.meta.gossipAddr ?? null;
  }

  /** One answer more for the packet being handled, within its cap and its source's budget. */
  private mayReply(now: number, fromAddr: string): boolean {
    if (this.repliesLeft <= 0 || !this.replyBudget.take(now, fromAddr)) return false;
    this.repliesLeft--;
    return true;
  }

  /**
   * Whether a claim of `claimed` about a member we know at `known` may be believed: not at the top
   * of the range (it could never be refuted) and not an implausible jump (see MAX_INCARNATION_STEP).
   */
  private plausible(claimed: number, known: number): boolean {
    return claimed < MAX_INCARNATION && claimed - known <= MAX_INCARNATION_STEP;
  }

  private mergeState(now: number, st: PushPullState): void {
    for (const e of st.members) {
      if (e.state === "alive") this.aliveNode(now, { type: "alive", node: e.id, incarnation: e.incarnation, meta: e.meta });
      else if (e.state === "left") this.deadNode(now, { type: "dead", node: e.id, incarnation: e.incarnation, from: e.id });
      // Another member's verdict of death is only grounds for suspicion here: the accused gets to refute.
      else this.suspectNode(now, { type: "suspect", node: e.id, incarnation: e.incarnation, from: st.from });
    }
  }

  private aliveNode(now: number, a: AliveMsg): void {
    if (a.incarnation >= MAX_INCARNATION) return;
    if (a.node === this.id) {
      const self = this.self();
      if (this.leaving || !this.plausible(a.incarnation, self.incarnation)) return;
      if (a.incarnation > self.incarnation || (a.incarnation === self.incarnation && !sameMeta(a.meta, self.meta))) {
        this.refute(a.incarnation);
      }
      return;
    }
    const m = this.table.get(a.node);
    if (m === undefined) {
      const fresh: GossipPeer = { id: a.node, incarnation: a.incarnation, state: "alive", meta: { ...a.meta }, since: now };
      this.table.set(a.node, fresh);
      // A random slot in the current pass, so a newcomer is probed within one round on average.
      this.probeOrder.splice(randomInt(this.rng, this.probeOrder.length - this.probeIndex + 1) + this.probeIndex, 0, a.node);
      this.queue.enqueue(a.node, "alive", encodeMessage(a));
      this.emit("join", fresh);
      if (this.needSync) {
        this.needSync = false;
        this.syncWith(now, fresh);
      }
      return;
    }
    if (a.incarnation <= m.incarnation || !this.plausible(a.incarnation, m.incarnation)) return;
    const was = m.state;
    const metaChanged = !sameMeta(m.meta, a.meta);
    m.incarnation = a.incarnation;
    m.meta = { ...a.meta };
    this.suspicions.delete(a.node);
    if (was !== "alive") {
      m.state = "alive";
      m.since = now;
    }
    this.queue.enqueue(a.node, "alive", encodeMessage(a));
    if (was === "dead" || was === "left") this.emit("join", m);
    else if (was === "suspect" || metaChanged) this.emit("update", m);
  }

  private suspectNode(now: number, s: SuspectMsg): void {
    if (s.node === this.id) return this.accused(now, s.incarnation, s.from);
    const m = this.table.get(s.node);
    if (m === undefined || s.incarnation < m.incarnation || !this.plausible(s.incarnation, m.incarnation)) return;
    if (m.state === "suspect") {
      // Pass on news of an independent confirmation so the others' timers shrink too.
      if (this.suspicions.get(s.node)?.confirm(s.from) === true) this.queue.enqueue(s.node, "suspect", encodeMessage(s));
      return;
    }
    if (m.state !== "alive") return;
    m.incarnation = s.incarnation;
    m.state = "suspect";
    m.since = now;
    const n = this.liveCount();
    this.suspicions.set(s.node, new Suspicion(now, expectedConfirmations(this.cfg, n), suspicionBounds(this.cfg, n), s.from));
    this.queue.enqueue(s.node, "suspect", encodeMessage(s));
    this.emit("suspect", m);
  }

  private deadNode(now: number, d: DeadMsg): void {
    if (d.node === this.id) return this.accused(now, d.incarnation, d.from);
    const m = this.table.get(d.node);
    if (m === undefined || d.incarnation < m.incarnation || !this.plausible(d.incarnation, m.incarnation)) return;
    if (m.state === "dead" || m.state === "left") return;
    this.suspicions.delete(d.node);
    m.incarnation = d.incarnation;
    m.state = d.from === d.node ? "left" : "dead";
    m.since = now;
    this.queue.enqueue(d.node, "dead", encodeMessage(d));
    this.emit(m.state === "left" ? "leave" : "dead", m);
  }

  /**
   * `accuser` says we are suspect or dead. Besides gossiping the refutation, tell the accuser
   * directly: it is the one whose timer will declare us dead, and under loss it may miss every
   * gossiped copy. A stale accusation means our refutation missed someone, so it is resent too.
   */
  private accused(now: number, incarnation: number, accuser: string): void {
    if (this.leaving || !this.plausible(incarnation, this.self().incarnation)) return;
    if (incarnation >= this.self().incarnation) this.refute(incarnation);
    else this.queue.enqueue(this.id, "alive", encodeMessage(this.selfAlive()));
    const to = this.table.get(accuser);
    const last = this.answered.get(accuser);
    if (to === undefined || accuser === this.id || (last !== undefined && now - last < this.cfg.probeIntervalMs)) return;
    this.answered.set(accuser, now);
    this.sendWithPiggyback({ id: to.id, addr: to.meta.gossipAddr }, [encodeMessage(this.selfAlive())]);
  }

  /** Someone thinks we are suspect or dead (or alive with other meta): outbid them. */
  private refute(accused: number): void {
    const self = this.self();
    self.incarnation = Math.max(self.incarnation, accused) + 1;
    // plausible() admits claims below MAX_INCARNATION only, so the refutation always fits the wire.
    if (self.incarnation > MAX_INCARNATION) throw new Error(`gossip invariant: refutation to incarnation ${self.incarnation}`);
    this.awareness.apply(1);
    this.queue.enqueue(this.id, "alive", encodeMessage(this.selfAlive()));
  }

  // ---- helpers ----

  /** A full push-pull with `m` now, on joining. */
  private syncWith(now: number, m: GossipPeer): void {
    this.out.pushPulls.push({ addr: m.meta.rpcAddr, to: m.id, state: this.localState() });
    // Members joining at the same moment through different seeds may each miss the other:
    // a second exchange, with a random member, soon after joining catches that up.
    this.nextPushPullAt = Math.min(this.nextPushPullAt, now + 2 * this.cfg.probeIntervalMs);
  }

  /** `parts`, then queued news that fits; `carried`: a member whose alive `parts` holds already. */
  private sendWithPiggyback(to: Recipient, parts: Uint8Array[], carried: string | null = null): void {
    let used = PACKET_HEADER;
    for (const p of parts) used += p.length;
    this.send(to.addr, parts.concat(this.queue.take(this.maxPayload - used, this.limit(), to.id, carried)));
  }

  private send(addr: string, parts: Uint8Array[]): void {
    const bytes = assemblePacket(parts);
    if (bytes.length > this.maxPayload) throw new Error(`gossip invariant: packet of ${bytes.length} bytes exceeds ${this.maxPayload}`);
    this.out.packets.push({ addr, bytes });
  }

  private emit(type: PeerEventType, m: GossipPeer): void {
    this.out.events.push({ type, member: copyPeer(m) });
  }

  private randomMembers(k: number, keep: (m: GossipPeer) => boolean): GossipPeer[] {
    const pool = [...this.table.values()].filter((m) => m.id !== this.id && keep(m));
    return shuffle(this.rng, pool).slice(0, k);
  }

  private liveCount(): number {
    let n = 0;
    for (const m of this.table.values()) if (m.state === "alive" || m.state === "suspect") n++;
    return n;
  }

  private limit(): number {
    return retransmitLimit(this.cfg, this.liveCount());
  }

  private self(): GossipPeer {
    const s = this.table.get(this.id);
    if (s === undefined) throw new Error("gossip invariant: own member entry missing");
    return s;
  }

  private selfAlive(): AliveMsg {
    const s = this.self();
    return { type: "alive", node: this.id, incarnation: s.incarnation, meta: { ...s.meta } };
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    return this.seq;
  }

  private advance(now: number): void {
    if (!(now >= this.lastNow)) throw new Error(`gossip invariant: time went backwards (${now} < ${this.lastNow})`);
    this.lastNow = now;
  }
}

function isNews(m: Message): boolean {
  return m.type === "alive" || m.type === "suspect" || m.type === "dead";
}

/** The longest wait between two join attempts. */
export const MAX_JOIN_BACKOFF_MS = 30_000;

/**
 * How long a member that has not joined() waits before it pings its seeds again: one probe
 * interval after the first attempt, then twice the previous wait, at most MAX_JOIN_BACKOFF_MS
 * (memberlist retries its seeds with a backoff too). `previousMs` is the last wait, null before
 * the first retry. The agent's join loop and the gossip simulator (tests/gossip/sim.ts) both wait
 * by this rule.
 */
export function nextJoinBackoffMs(cfg: Pick<GossipConfig, "probeIntervalMs">, previousMs: number | null): number {
  return previousMs === null ? cfg.probeIntervalMs : Math.min(previousMs * 2, MAX_JOIN_BACKOFF_MS);
}
