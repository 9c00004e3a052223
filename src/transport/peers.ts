// The sending side of the Raft transport: one HTTP/2 session per peer, messages batched once per
// event-loop turn, bounded queues, reconnect with capped exponential backoff.
//
// Loss is acceptable (Raft retransmits), blocking is not: when a queue is full the oldest
// non-essential message goes, and snapshot chunks travel on their own stream, one at a time per
// peer, so a large chunk never sits in front of a heartbeat.

import type { Message, NodeId, SnapshotMsg } from "../raft/types.ts";
import { certificateNames, checkPeerAuth, NONCE_HEADER, type PeerAuth, peerRequestHeaders, verifyPeerReply } from "./auth.ts";
import { CodecError, decodeMessages, encodeMessages } from "./codec.ts";
import { H2Error, type H2Client, type H2Response } from "./h2_client.ts";
import { Fifo } from "./fifo.ts";
import { RAFT_MESSAGES_PATH, RAFT_SNAPSHOT_PATH, REPLY_HEADER } from "./raft_routes.ts";

export interface PeerTransportOptions {
  self: NodeId;
  /** Shared with whoever else talks to the same servers; the transport never closes it. */
  client: H2Client;
  auth: PeerAuth;
  /** Called once each time a peer goes from reachable to unreachable (the core then probes it). */
  reportUnreachable: (id: NodeId) => void;
  /**
   * Messages a peer answered with in a response body, validated and checked to be from it and for
   * us. Without it the transport does not ask peers to reply that way.
   */
  deliver?: (msgs: Message[]) => void;
  /** Observes each answered message request's round trip (seconds), for the RTT histogram. */
  onRoundTrip?: (id: NodeId, seconds: number) => void;
  /** Jitter source in [0, 1); injectable for deterministic tests. */
  random?: () => number;
  /** Messages queued per peer (snapshot chunks excluded). */
  maxQueue?: number;
  /** Snapshot chunks queued per peer; one more may be in flight. */
  maxSnapshotQueue?: number;
  /** A batch closes once its estimated size passes this (keep it under the server's body limit). */
  maxBatchBytes?: number;
  /** Concurrent message batches per peer. */
  maxInflight?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  requestTimeoutMs?: number;
  snapshotTimeoutMs?: number;
  /** How long after the start a refused connection is retried at once (default STARTUP_WINDOW_MS; 0: never). */
  startupWindowMs?: number;
}

export type PeerState = "idle" | "up" | "backoff";

export interface PeerStats {
  id: NodeId;
  address: string;
  state: PeerState;
  /** Messages the peer accepted. */
  sent: number;
  /** Messages lost: queue overflow, failed requests, refused batches, peer removed. */
  dropped: number;
  /** Failed requests (transport errors and non-2xx answers). */
  errors: number;
  batches: number;
  queued: number;
  inflight: number;
  /** Smoothed request round trip (ms), null before the first answer. */
  rttMs: number | null;
  lastError: string | null;
  /** False from a failed request (connection refused, timeout) until the peer answers again. */
  reachable: boolean;
  /** Request body bytes sent and response body bytes received. */
  bytesSent: number;
  bytesReceived: number;
}

/** Kept in preference when the queue overflows: losing one costs an election round or a client read. */
const ESSENTIAL: ReadonlySet<Message["type"]> = new Set([
  "vote",
  "preVote",
  "voteResp",
  "preVoteResp",
  "timeoutNow",
  "readIndex",
  "readIndexResp",
  "snapshotResp",
]);

const MAX_MESSAGES_PER_BATCH = 4096;

/**
 * For this long after the transport starts (by default; the node passes the longest its first
 * election may wait), a peer that refuses the connection is taken to be still starting: the
 * nodes of a new cluster start together, and each listens some tens of ms after its process
 * starts, more on a loaded machine. The batch is kept and tried again after STARTUP_RETRY_MS,
 * instead of being dropped with the peer put in backoff. Dropped, the first election's requests
 * would wait for an election timeout, and a backoff of 25-50 ms, doubling, would add as much to
 * the cluster's start. A refused connection carried nothing, so sending the batch again
 * duplicates nothing. Bounded: at most window / STARTUP_RETRY_MS tries per peer, then the usual
 * backoff (and a peer that is down is reported unreachable as before, only that much later).
 */
export const STARTUP_WINDOW_MS = 1000;
const STARTUP_RETRY_MS = 5;

interface Settings {
  self: NodeId;
  client: H2Client;
  auth: PeerAuth;
  reportUnreachable: (id: NodeId) => void;
  deliver: ((msgs: Message[]) => void) | null;
  onRoundTrip: ((id: NodeId, seconds: number) => void) | null;
  random: () => number;
  maxQueue: number;
  maxSnapshotQueue: number;
  maxBatchBytes: number;
  maxInflight: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  requestTimeoutMs: number;
  snapshotTimeoutMs: number;
  /** Lets close() wait for requests still on the wire. */
  track: (p: Promise<void>) => void;
  /** Until this performance.now(), a refused connection means "still starting" (STARTUP_WINDOW_MS). */
  startingUntil: number;
}

export class PeerTransport {
  private readonly peers = new Map<NodeId, Peer>();
  private readonly dirty = new Set<Peer>();
  private readonly pending = new Set<Promise<void>>();
  private readonly settings: Settings;
  private flushScheduled = false;
  private closed = false;
  /** Messages to ids not in the peer set (membership not applied yet, or removed). */
  unroutable = 0;

  constructor(opts: PeerTransportOptions) {
    checkPeerAuth(opts.auth);
    this.settings = {
      self: opts.self,
      client: opts.client,
      auth: opts.auth,
      reportUnreachable: opts.reportUnreachable,
      deliver: opts.deliver ?? null,
      onRoundTrip: opts.onRoundTrip ?? null,
      random: opts.random ?? Math.random,
      maxQueue: opts.maxQueue ?? 4096,
      maxSnapshotQueue: opts.maxSnapshotQueue ?? 2,
      maxBatchBytes: opts.maxBatchBytes ?? 1 << 20,
      // Heartbeats go out every tick and each holds a slot for a whole round trip: at 100 ms ticks
      // and 170-240 ms round trips two or three are always in flight, and with a cap of 4 a write's
      // append waited behind them (geo lab, leader in jnb: p50 221 → 182 ms against a 173 ms floor).
      // The queue and batch caps still bound memory; past 16 messages wait and share a batch.
      maxInflight: opts.maxInflight ?? 16,
      backoffMinMs: opts.backoffMinMs ?? 50,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
      requestTimeoutMs: opts.requestTimeoutMs ?? 5000,
      snapshotTimeoutMs: opts.snapshotTimeoutMs ?? 60_000,
      track: (p) => {
        this.pending.add(p);
        p.finally(() => this.pending.delete(p));
      },
      startingUntil: performance.now() + (opts.startupWindowMs ?? STARTUP_WINDOW_MS),
    };
  }

  /**
   * Replaces the peer set (id → "host:port"). Peers that left are dropped with their queues;
   * a changed address gets a fresh session. Returns the ids skipped for an invalid address.
   */
  setPeers(peers: ReadonlyMap<NodeId, string>): NodeId[] {
    if (this.closed) return [];
    const invalid: NodeId[] = [];
    for (const [id, peer] of this.peers) {
      if (!peers.has(id)) {
        peer.remove();
        this.peers.delete(id);
      }
    }
    for (const [id, address] of peers) {
      if (id === this.settings.self) continue;
      let origin: string;
      try {
        origin = this.settings.client.originFor(address);
      } catch {
        invalid.push(id);
        continue;
      }
      const peer = this.peers.get(id);
      if (peer === undefined) this.peers.set(id, new Peer(id, address, origin, this.settings));
      else peer.moveTo(address, origin);
    }
    return invalid;
  }

  /** Queues `msg` for `msg.to`; batches go out once per event-loop turn. Never throws, never blocks. */
  send(msg: Message): void {
    if (this.closed) return;
    const peer = this.peers.get(msg.to);
    if (peer === undefined) {
      this.unroutable++;
      return;
    }
    peer.enqueue(msg);
    this.dirty.add(peer);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /**
   * Until releaseReplies(), messages for `id` are held for the answer to its request instead of
   * being queued; resolves with them (empty for an unknown peer or once closed).
   */
  holdReplies(id: NodeId): Promise<Message[]> {
    const peer = this.closed ? undefined : this.peers.get(id);
    return peer === undefined ? Promise.resolve([]) : peer.holdReply();
  }

  /** Answers every held request with what was sent to its peer meanwhile. */
  releaseReplies(): void {
    for (const peer of this.peers.values()) peer.releaseReplies();
  }

  stats(): PeerStats[] {
    return [...this.peers.values()].map((p) => p.stats());
  }

  /**
   * An authenticated batch from `id` arrived: it is alive and reaches us. A follower sends almost
   * nothing of its own (its answers ride on the leader's requests), so without this it would
   * hold a restarted peer unreachable, in backoff, until its next own request failed or passed.
   */
  heardFrom(id: NodeId): void {
    this.peers.get(id)?.heard();
  }

  /** Drops every queue and session; resolves when no request is left on the wire. */
  async close(): Promise<void> {
    this.closed = true;
    for (const peer of this.peers.values()) peer.remove();
    this.peers.clear();
    this.dirty.clear();
    await Promise.allSettled([...this.pending]);
  }

  /** Starts the queued batches now rather than at the end of the turn (a leader about to fsync). */
  flushNow(): void {
    for (const peer of this.dirty) peer.pump();
    this.dirty.clear();
  }

  private flush(): void {
    this.flushScheduled = false;
    this.flushNow();
  }
}

class Peer {
  private readonly essential = new Fifo<Message>();
  private readonly bulk = new Fifo<Message>();
  private readonly chunks = new Fifo<SnapshotMsg>();
  /** Open answers to this peer's requests: messages for it go into the first one. */
  private replies: Array<{ msgs: Message[]; resolve: (msgs: Message[]) => void }> = [];
  private state: PeerState = "idle";
  private reachable = true;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private inflight = 0;
  private snapshotInflight = false;
  private removed = false;
  /** Bumped on an address change: failures of requests to the old address say nothing about the new one. */
  private generation = 0;
  private sent = 0;
  private dropped = 0;
  private errors = 0;
  private batches = 0;
  private rttMs: number | null = null;
  private lastError: string | null = null;
  private bytesSent = 0;
  private bytesReceived = 0;

  constructor(
    private readonly id: NodeId,
    private address: string,
    private origin: string,
    private readonly s: Settings,
  ) {}

  enqueue(msg: Message): void {
    const reply = this.replies[0];
    if (reply !== undefined && msg.type !== "snapshot") {
      reply.msgs.push(msg);
      return;
    }
    if (msg.type === "snapshot") {
      if (this.chunks.length >= this.s.maxSnapshotQueue) this.drop(this.chunks);
      this.chunks.push(msg);
      return;
    }
    if (this.essential.length + this.bulk.length >= this.s.maxQueue) {
      this.drop(this.bulk.length > 0 ? this.bulk : this.essential);
    }
    (ESSENTIAL.has(msg.type) ? this.essential : this.bulk).push(msg);
  }

  /** Starts as many requests as the in-flight limits allow; a peer in backoff waits for its timer. */
  pump(): void {
    if (this.removed || this.state === "backoff") return;
    while (this.inflight < this.s.maxInflight && this.essential.length + this.bulk.length > 0) {
      this.inflight++;
      this.launch(this.takeBatch(), RAFT_MESSAGES_PATH, this.s.requestTimeoutMs, () => this.inflight--);
    }
    const chunk = this.snapshotInflight ? undefined : this.chunks.shift();
    if (chunk !== undefined) {
      this.snapshotInflight = true;
      this.launch([chunk], RAFT_SNAPSHOT_PATH, this.s.snapshotTimeoutMs, () => (this.snapshotInflight = false));
    }
  }

  holdReply(): Promise<Message[]> {
    return new Promise((resolve) => this.replies.push({ msgs: [], resolve }));
  }

  releaseReplies(): void {
    if (this.replies.length === 0) return;
    const open = this.replies;
    this.replies = [];
    for (const r of open) {
      this.sent += r.msgs.length;
      r.resolve(r.msgs);
    }
  }

  moveTo(address: string, origin: string): void {
    if (origin === this.origin) return;
    this.s.client.closeOrigin(this.origin);
    this.generation++;
    this.address = address;
    this.origin = origin;
    clearTimeout(this.timer);
    this.state = "idle";
    this.attempt = 0;
    this.pump();
  }

  remove(): void {
    this.removed = true;
    this.releaseReplies();
    clearTimeout(this.timer);
    this.dropped += this.essential.length + this.bulk.length + this.chunks.length;
    this.essential.clear();
    this.bulk.clear();
    this.chunks.clear();
    this.s.client.closeOrigin(this.origin);
  }

  stats(): PeerStats {
    return {
      id: this.id,
      address: this.address,
      state: this.state,
      sent: this.sent,
      dropped: this.dropped,
      errors: this.errors,
      batches: this.batches,
      queued: this.essential.length + this.bulk.length + this.chunks.length,
      inflight: this.inflight + (this.snapshotInflight ? 1 : 0),
      rttMs: this.rttMs,
      lastError: this.lastError,
      reachable: this.reachable,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
    };
  }

  private drop<T>(queue: Fifo<T>): void {
    queue.shift();
    this.dropped++;
  }

  /** Essential messages first, then the rest, up to the size and count caps (at least one message). */
  private takeBatch(): Message[] {
    const batch: Message[] = [];
    let bytes = 0;
    while (batch.length < MAX_MESSAGES_PER_BATCH && bytes < this.s.maxBatchBytes) {
      const msg = this.essential.shift() ?? this.bulk.shift();
      if (msg === undefined) break;
      batch.push(msg);
      bytes += estimateSize(msg);
    }
    return batch;
  }

  private launch(batch: Message[], path: string, timeoutMs: number, release: () => void): void {
    let body: Uint8Array;
    try {
      body = encodeMessages(batch);
    } catch (err) {
      release();
      this.fail(batch.length, `encode: ${errorText(err)}`, false);
      return;
    }
    const headers: Record<string, string> = {
      "content-type": "application/msgpack",
      ...peerRequestHeaders(this.s.auth, { method: "POST", path, from: this.s.self, to: this.id, body }),
    };
    const nonce = headers[NONCE_HEADER] ?? "";
    if (this.s.deliver !== null && path === RAFT_MESSAGES_PATH) headers[REPLY_HEADER] = "1";
    const started = performance.now();
    const generation = this.generation;
    this.bytesSent += body.byteLength;
    const request = this.s.client
      .request(this.origin, { method: "POST", path, headers, body, timeoutMs })
      .then(
        (res) => this.answered(res, path, nonce, batch.length, path === RAFT_MESSAGES_PATH ? performance.now() - started : null),
        (err: unknown) => {
          if (path === RAFT_MESSAGES_PATH && generation === this.generation && this.stillStarting(err)) this.retrySoon(batch, errorText(err));
          else this.fail(batch.length, errorText(err), generation === this.generation);
        },
      )
      .finally(() => {
        release();
        this.pump();
      });
    this.s.track(request);
  }

  private answered(res: H2Response, path: string, nonce: string, count: number, rtt: number | null): void {
    if (this.removed) return;
    this.markUp();
    this.bytesReceived += res.body.byteLength;
    if (rtt !== null) this.s.onRoundTrip?.(this.id, rtt / 1000);
    if (rtt !== null) this.rttMs = this.rttMs === null ? rtt : this.rttMs + (rtt - this.rttMs) / 8;
    if (res.status >= 200 && res.status < 300) {
      this.sent += count;
      this.batches++;
      if (res.status === 200 && res.body.byteLength > 0 && this.s.deliver !== null) this.takeReply(res, path, nonce);
      return;
    }
    // The peer is reachable but refused the batch (auth, validation, size): count it, do not back off.
    const text = new TextDecoder().decode(res.body.subarray(0, 300));
    this.fail(count, `HTTP ${res.status}: ${text}`, false);
  }

  /** Messages in an answer pass the same checks as a request's: proof, schema, sender, recipient. */
  private takeReply(res: H2Response, path: string, nonce: string): void {
    const headers = new Headers();
    for (const [name, value] of Object.entries(res.headers)) {
      if (!name.startsWith(":") && typeof value === "string") headers.set(name, value);
    }
    const verdict = verifyPeerReply(this.s.auth, headers, { path, from: this.id, to: this.s.self, nonce, body: res.body });
    if (!verdict.ok) return this.refuseReply(`reply refused: ${verdict.reason}`);
    if (this.s.auth.mode === "mtls") {
      // The handshake proved a CA-signed certificate for the address; messages "from" the peer
      // also need the certificate to name it (as the server demands of our requests).
      const cert = res.peerCertificate?.() ?? null;
      if (cert === null || !certificateNames(cert, this.id)) return this.refuseReply(`reply refused: the server certificate does not name ${this.id}`);
    }
    let msgs: Message[];
    try {
      msgs = decodeMessages(res.body);
    } catch (err) {
      return this.refuseReply(err instanceof CodecError ? `reply refused: ${err.message}` : `reply decoder failed: ${errorText(err)}`);
    }
    const stray = msgs.find((m) => m.from !== this.id || m.to !== this.s.self);
    if (stray !== undefined) return this.refuseReply(`reply refused: a ${stray.type} from ${stray.from} to ${stray.to}`);
    try {
      this.s.deliver?.(msgs);
    } catch (err) {
      this.refuseReply(`reply not delivered: ${errorText(err)}`);
    }
  }

  private refuseReply(why: string): void {
    this.errors++;
    this.lastError = why;
  }

  private fail(count: number, why: string, unreachable: boolean): void {
    if (this.removed) return;
    this.errors++;
    this.dropped += count;
    this.lastError = why;
    if (unreachable) this.markDown();
  }

  /** A refused connection within STARTUP_WINDOW_MS of the transport's start: the peer is not listening yet. */
  private stillStarting(err: unknown): boolean {
    return err instanceof H2Error && err.kind === "connect" && err.message.includes("ECONNREFUSED") && performance.now() < this.s.startingUntil;
  }

  /** Puts a batch that never left back in front of the queue and tries again in STARTUP_RETRY_MS. */
  private retrySoon(batch: Message[], why: string): void {
    if (this.removed) return;
    this.lastError = why;
    this.essential.prepend(batch.filter((m) => ESSENTIAL.has(m.type)));
    this.bulk.prepend(batch.filter((m) => !ESSENTIAL.has(m.type)));
    while (this.essential.length + this.bulk.length > this.s.maxQueue) this.drop(this.bulk.length > 0 ? this.bulk : this.essential);
    if (this.state === "backoff") return;
    this.state = "backoff";
    this.timer = setTimeout(() => {
      this.state = "idle";
      this.pump();
    }, STARTUP_RETRY_MS);
  }

  /** The peer sent us a verified batch: reachable again, and a pending backoff ends now. */
  heard(): void {
    if (this.removed || this.reachable) return;
    if (this.state === "backoff") {
      clearTimeout(this.timer);
      this.state = "idle";
    }
    this.markUp();
    this.pump();
  }

  private markUp(): void {
    if (this.state !== "backoff") this.state = "up";
    this.reachable = true;
    this.attempt = 0;
  }

  /** Enters backoff (once, however many requests fail together) and reports the first failure. */
  private markDown(): void {
    if (this.state === "backoff") return;
    this.state = "backoff";
    const delay = backoffDelay(this.attempt++, this.s.backoffMinMs, this.s.backoffMaxMs, this.s.random);
    this.timer = setTimeout(() => {
      this.state = "idle";
      this.pump();
    }, delay);
    if (this.reachable) {
      this.reachable = false;
      try {
        this.s.reportUnreachable(this.id);
      } catch {
        // The callback belongs to the core; its failure must not stop the transport.
      }
    }
  }
}

/**
 * Delay before retry number `attempt` (0-based): doubling from `minMs`, capped at `maxMs`, with
 * "equal jitter" (half fixed, half random) so peers that failed together do not retry together.
 */
export function backoffDelay(attempt: number, minMs: number, maxMs: number, random: () => number): number {
  const cap = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return cap / 2 + (random() * cap) / 2;
}

/** Rough encoded size, to close batches before they approach the server's body limit. */
function estimateSize(msg: Message): number {
  if (msg.type === "append") return msg.entries.reduce((n, e) => n + e.data.byteLength + 32, 96);
  if (msg.type === "readIndex" || msg.type === "readIndexResp") return 96 + msg.ctx.length;
  return 96;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
