// The sending side of the Raft transport: one long-lived HTTP/2 stream per peer (raft_stream.ts
// serves it) carrying one authenticated frame per batch, messages batched once per event-loop turn,
// bounded queues, reconnect with capped exponential backoff.
//
// One stream instead of one request per batch: a request cost the sender a HEADERS frame with a
// dozen fields, a fresh HMAC and digest, and the receiver Hono's dispatch and header validation
// (the largest CPU items of a leader under a 1-client write load, issue 10). A frame costs a
// length, one HMAC and the msgpack batch.
//
// The peer answers every frame, in order: the answer acknowledges it (sent, round trip), carries
// the messages handling it produced for us (replies), and proves the peer still reads. No answer
// for silenceTimeoutMs while a frame waits means dead, blackholed or stuck: the stream is reset
// and reopened after a backoff. Loss is acceptable (Raft retransmits), blocking is not: when a
// queue is full the oldest non-essential message goes, and snapshot chunks travel as requests of
// their own, one at a time per peer, so a large chunk never sits in front of a heartbeat.
//
// The same stream carries the client requests a follower forwards to its leader (forward(),
// forward_frame.ts): a Forward frame each, answered by a ForwardReply frame matched by id, in any
// order, outside the batches' answer order and silence clock. What a forward's caller is told
// is exactly what we know: "unprocessed" while it never left our queue (or the peer refused it
// unrun), "unknown" once its frame was written and the stream broke or the deadline passed.

import http2 from "node:http2";
import type { Message, NodeId, SnapshotMsg } from "../raft/types.ts";
import { certificateNames, checkPeerAuth, NONCE_HEADER, type PeerAuth, peerRequestHeaders } from "./auth.ts";
import { CodecError, decodeMessages, encodeMessages } from "./codec.ts";
import { H2Error, type H2Client, type H2Response, serverCertificate } from "./h2_client.ts";
import { Fifo } from "./fifo.ts";
import { checkBatch, DEFAULT_MAX_BATCH_BODY, RAFT_SNAPSHOT_PATH } from "./raft_routes.ts";
import { FRAMES_CONTENT_TYPE, RAFT_STREAM_PATH } from "./raft_stream.ts";
import { Direction, type Frame, FrameError, FrameKind, FrameReader, FrameWriter, streamKey } from "./stream_frame.ts";
import { DEFAULT_MAX_FORWARD_BYTES, FOLLOWER_FORWARD_GRACE_MS, DEFAULT_MAX_FORWARDS_PER_PEER, decodeForwardReply, encodeForward, type ForwardAnswer, type ForwardRequest } from "./forward_frame.ts";

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
  /** Frames per peer written and not yet answered. */
  maxInflight?: number;
  /** Largest answer frame taken from a peer (the receiver's batch limit). */
  maxFrameBytes?: number;
  /** Largest Forward or ForwardReply frame, either way (the receiver's forward limit). */
  maxForwardBytes?: number;
  /** Forwards per peer written and not yet answered; more wait in the queue. */
  maxForwardsInflight?: number;
  /** Forwards per peer waiting to be written; more are refused at once (unprocessed). */
  maxForwardQueue?: number;
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /** A stream whose peer answers nothing this long while a frame (or the open) waits is reset. */
  silenceTimeoutMs?: number;
  snapshotTimeoutMs?: number;
  /** How long after the start a refused connection is retried at once (default STARTUP_WINDOW_MS; 0: never). */
  startupWindowMs?: number;
}

export type PeerState = "idle" | "up" | "backoff";

export interface PeerStats {
  id: NodeId;
  address: string;
  state: PeerState;
  /** Messages the peer accepted (answered frames, snapshot chunks, replies we sent). */
  sent: number;
  /** Messages lost: queue overflow, failed requests, refused batches, peer removed. */
  dropped: number;
  /** Failures: streams lost or refused, refused batches and chunks, bad answers. */
  errors: number;
  batches: number;
  queued: number;
  inflight: number;
  /** Smoothed frame round trip (ms, frame written → its answer read), null before the first answer. */
  rttMs: number | null;
  lastError: string | null;
  /** False from a failed request (connection refused, timeout) until the peer answers again. */
  reachable: boolean;
  /** Frame and chunk bytes sent, answer bytes received. */
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
 * starts, more on a loaded machine. The queue is kept and the stream opened again after
 * STARTUP_RETRY_MS, instead of the queue being dropped with the peer put in backoff. Dropped,
 * the first election's requests would wait for an election timeout, and a backoff of 25-50 ms,
 * doubling, would add as much to the cluster's start. A refused connection carried nothing, so
 * sending the queue again duplicates nothing. Bounded: at most window / STARTUP_RETRY_MS tries per
 * peer, then the usual backoff (and a peer that is down is reported unreachable as before, only
 * that much later).
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
  maxFrameBytes: number;
  maxForwardBytes: number;
  maxForwardsInflight: number;
  maxForwardQueue: number;
  backoffMinMs: number;
  backoffMaxMs: number;
  silenceTimeoutMs: number;
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
      // The queue and batch caps still bound memory; past 64 messages wait and share a frame.
      maxInflight: opts.maxInflight ?? 64,
      maxFrameBytes: opts.maxFrameBytes ?? DEFAULT_MAX_BATCH_BODY,
      maxForwardBytes: opts.maxForwardBytes ?? DEFAULT_MAX_FORWARD_BYTES,
      // As many as HTTP/2 let one connection carry when each forward was a request of its own
      // (SETTINGS_MAX_CONCURRENT_STREAMS, server.ts), and the receiver's cap (raft_stream.ts).
      maxForwardsInflight: opts.maxForwardsInflight ?? DEFAULT_MAX_FORWARDS_PER_PEER,
      maxForwardQueue: opts.maxForwardQueue ?? 1024,
      backoffMinMs: opts.backoffMinMs ?? 50,
      backoffMaxMs: opts.backoffMaxMs ?? 5000,
      // About an election timeout and a half (the node derives it from its own; this is for 10
      // ticks of 100 ms): a leader's heartbeat is answered every tick, so this much silence is no
      // slow peer; a live peer that stalls this long (a 1.5 s fsync) costs one reconnect.
      silenceTimeoutMs: opts.silenceTimeoutMs ?? 1500,
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
   * Sends a client request to peer `to` (the leader) on our stream to it, to be run by its app.
   * Never throws; resolves exactly once, by the request's timeoutMs plus FOLLOWER_FORWARD_GRACE_MS at the
   * latest. Never sent twice: a caller that wants to try again after "unprocessed" calls again.
   */
  forward(to: NodeId, req: ForwardRequest): Promise<ForwardOutcome> {
    const peer = this.closed ? undefined : this.peers.get(to);
    if (peer === undefined) return Promise.resolve({ kind: "unprocessed", reason: `${to} is not a peer of this node` });
    return peer.forward(req);
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

/** The stream to one peer, from the moment we start opening it until it fails or is closed. */
interface Link {
  /** Null while the session connects. */
  stream: http2.ClientHttp2Stream | null;
  /** The peer answered 200: frames may go. */
  open: boolean;
  writer: FrameWriter | null;
  reader: FrameReader | null;
  /** Frames written and not answered yet, oldest first: how many messages each carried, when sent. */
  unacked: Fifo<{ count: number; at: number }>;
  /** Forwards written on this stream and not answered yet, by id. */
  forwards: Map<number, PendingForward>;
  /** When bytes of a frame not yet complete last arrived (0: never): a large answer in transit. */
  arrivingAt: number;
  waitingDrain: boolean;
  startedAt: number;
  watch: ReturnType<typeof setTimeout> | undefined;
  /** The answer to a refused open (status and text), read until the stream closes. */
  refusal: string | null;
  done: () => void;
}

const EMPTY = new Uint8Array(0);

/** How a forward ended, as far as this node can know (ForwardReply kinds folded into what they prove). */
export type ForwardOutcome =
  | { kind: "answered"; answer: ForwardAnswer }
  /** It never reached the peer's app: never written (still queued when the stream failed, the deadline passed) or refused unrun. */
  | { kind: "unprocessed"; reason: string }
  /** Its frame was written: the peer may have run it (the stream broke, the deadline passed, the app failed). */
  | { kind: "unknown"; reason: string };


/**
 * Queued (Peer.forwardQueue) until its frame is written, then on its stream (Link.forwards): where
 * it is says what its caller may be told, "unprocessed" only from the queue.
 */
interface PendingForward {
  id: number;
  req: ForwardRequest;
  timer: ReturnType<typeof setTimeout> | undefined;
  settle: (o: ForwardOutcome) => void;
}

class Peer {
  private readonly essential = new Fifo<Message>();
  private readonly bulk = new Fifo<Message>();
  private readonly chunks = new Fifo<SnapshotMsg>();
  /** Forwards not written yet, oldest first (a Map: a timed-out one leaves from the middle). */
  private readonly forwardQueue = new Map<number, PendingForward>();
  private nextForwardId = 0;
  /** Open answers to this peer's frames: messages for it go into the first one. */
  private replies: Array<{ msgs: Message[]; resolve: (msgs: Message[]) => void }> = [];
  private state: PeerState = "idle";
  private reachable = true;
  private attempt = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private link: Link | null = null;
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
    if (this.queued() >= this.s.maxQueue) {
      this.drop(this.bulk.length > 0 ? this.bulk : this.essential);
    }
    (ESSENTIAL.has(msg.type) ? this.essential : this.bulk).push(msg);
  }

  /** Writes what the stream and its in-flight limit allow, opening it first; a peer in backoff waits for its timer. */
  pump(): void {
    if (this.removed || this.state === "backoff") return;
    if (this.queued() > 0 || this.forwardQueue.size > 0) {
      if (this.link === null) this.openLink();
      else if (this.link.open) this.writeFrames(this.link);
    }
    const chunk = this.snapshotInflight ? undefined : this.chunks.shift();
    if (chunk !== undefined) {
      this.snapshotInflight = true;
      this.launchSnapshot(chunk);
    }
  }

  forward(req: ForwardRequest): Promise<ForwardOutcome> {
    if (this.forwardQueue.size >= this.s.maxForwardQueue) {
      return Promise.resolve({ kind: "unprocessed", reason: `${this.forwardQueue.size} forwards to ${this.id} are already waiting to be sent` });
    }
    return new Promise((resolve) => {
      // Settling stops its timer, whichever way it ends (on time-out the timer is spent anyway).
      const f: PendingForward = {
        id: this.nextForwardId++,
        req,
        timer: undefined,
        settle: (o) => {
          clearTimeout(f.timer);
          resolve(o);
        },
      };
      f.timer = setTimeout(() => this.forwardTimedOut(f), req.timeoutMs + FOLLOWER_FORWARD_GRACE_MS);
      this.forwardQueue.set(f.id, f);
      // Now, not at the end of the turn: a forward is one client's latency, and it does not change
      // how the turn's messages are batched (writeForwards writes forwards only).
      if (this.removed || this.state === "backoff") return;
      if (this.link === null) this.openLink();
      else if (this.link.open) this.writeForwards(this.link);
    });
  }

  private forwardTimedOut(f: PendingForward): void {
    const ms = f.req.timeoutMs + FOLLOWER_FORWARD_GRACE_MS;
    if (this.forwardQueue.delete(f.id)) return f.settle({ kind: "unprocessed", reason: `not sent to ${this.id} within ${ms} ms (the stream was not open)` });
    if (this.link?.forwards.delete(f.id) === true) f.settle({ kind: "unknown", reason: `no answer from ${this.id} within ${ms} ms` });
  }

  /** Every forward still queued is answered "unprocessed": it never left this node. */
  private refuseQueuedForwards(why: string): void {
    for (const f of this.forwardQueue.values()) {
      f.settle({ kind: "unprocessed", reason: `not sent to ${this.id}: ${why}` });
    }
    this.forwardQueue.clear();
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
    this.dropped += this.dropLink();
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
    this.dropped += this.dropLink() + this.queued() + this.chunks.length;
    this.refuseQueuedForwards("the peer was removed");
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
      queued: this.queued() + this.chunks.length,
      inflight: (this.link?.unacked.length ?? 0) + (this.snapshotInflight ? 1 : 0),
      rttMs: this.rttMs,
      lastError: this.lastError,
      reachable: this.reachable,
      bytesSent: this.bytesSent,
      bytesReceived: this.bytesReceived,
    };
  }

  private queued(): number {
    return this.essential.length + this.bulk.length;
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

  /**
   * Opens the stream: one signed POST, checked by the peer like any peer request. Messages wait in
   * the queue until the peer's 200 (a refused open loses nothing that was written).
   */
  private openLink(): void {
    let done!: () => void;
    const ended = new Promise<void>((resolve) => (done = resolve));
    this.s.track(ended);
    const link: Link = { stream: null, open: false, writer: null, reader: null, unacked: new Fifo(), forwards: new Map(), arrivingAt: 0, waitingDrain: false, startedAt: performance.now(), watch: undefined, refusal: null, done };
    this.link = link;
    this.watch(link);
    const path = RAFT_STREAM_PATH;
    const headers: Record<string, string> = {
      "content-type": FRAMES_CONTENT_TYPE,
      ...peerRequestHeaders(this.s.auth, { method: "POST", path, from: this.s.self, to: this.id, body: EMPTY }),
    };
    const identity = { nonce: headers[NONCE_HEADER] ?? "", opener: this.s.self, acceptor: this.id };
    this.s.client.session(this.origin).then(
      (session) => {
        if (this.link !== link) return;
        let stream: http2.ClientHttp2Stream;
        try {
          stream = session.request({ ":method": "POST", ":path": path, ...headers }, { endStream: false });
        } catch (err) {
          return this.linkFailed(link, `open: ${errorText(err)}`, { unreachable: true });
        }
        link.stream = stream;
        stream.on("response", (h) => {
          // A stream we already dropped (moved, removed, failed) says nothing any more.
          if (this.link !== link) return;
          const status = Number(h[":status"]);
          if (status !== 200) {
            // It answered: reachable, but it did not take the stream (auth, wrong node).
            link.refusal = `HTTP ${status}: `;
            this.markUp();
            return;
          }
          if (this.s.auth.mode === "mtls") {
            // The handshake proved a CA-signed certificate for the address; messages "from" the
            // peer also need the certificate to name it (as the server demands of us).
            const cert = serverCertificate(session);
            if (cert === null || !certificateNames(cert, this.id)) {
              return this.linkFailed(link, `the server certificate does not name ${this.id}`, { unreachable: false });
            }
          }
          link.writer = new FrameWriter(streamKey(this.s.auth, identity, Direction.FromOpener));
          link.reader = new FrameReader({
            key: streamKey(this.s.auth, identity, Direction.FromAcceptor),
            maxPayload: this.s.maxFrameBytes,
            maxForwardPayload: this.s.maxForwardBytes,
          });
          link.open = true;
          this.markUp();
          this.pump();
        });
        stream.on("data", (chunk: Buffer) => {
          if (this.link !== link) return;
          if (link.refusal !== null) {
            if (link.refusal.length < 400) link.refusal += new TextDecoder().decode(chunk.subarray(0, 300));
          } else if (link.open) this.onAnswers(link, chunk);
        });
        // A refusal ends the answer while our side is still open: the stream would never close by itself.
        stream.on("end", () => {
          if (link.refusal !== null) this.linkFailed(link, link.refusal, { unreachable: false });
        });
        stream.on("error", (err) => this.linkFailed(link, err.message, { unreachable: true }));
        stream.on("close", () => {
          if (link.refusal !== null) this.linkFailed(link, link.refusal, { unreachable: false });
          else this.linkFailed(link, `stream closed (code ${stream.rstCode})`, { unreachable: true });
        });
      },
      (err: unknown) => {
        if (this.link === link && this.stillStarting(err)) this.retrySoon(link, errorText(err));
        else this.linkFailed(link, errorText(err), { unreachable: true });
      },
    );
  }

  /** A refused connection within STARTUP_WINDOW_MS of the transport's start: the peer is not listening yet. */
  private stillStarting(err: unknown): boolean {
    return err instanceof H2Error && err.kind === "connect" && err.message.includes("ECONNREFUSED") && performance.now() < this.s.startingUntil;
  }

  /** The open never left (no connection): keep the queue and open again in STARTUP_RETRY_MS. */
  private retrySoon(link: Link, why: string): void {
    if (link.open || link.unacked.length > 0 || link.forwards.size > 0) throw new Error("bug: only an open that never connected is retried at once");
    this.dropLink();
    if (this.removed) return;
    this.lastError = why;
    this.state = "backoff";
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.state = "idle";
      this.pump();
    }, STARTUP_RETRY_MS);
  }

  /** One frame per batch, while the stream takes them and fewer than maxInflight wait for answers. */
  private writeFrames(link: Link): void {
    const stream = link.stream;
    const writer = link.writer;
    if (stream === null || writer === null) throw new Error("writeFrames on a stream that is not open");
    this.writeForwards(link);
    while (!link.waitingDrain && link.unacked.length < this.s.maxInflight && this.queued() > 0) {
      const batch = this.takeBatch();
      let frame: Uint8Array;
      try {
        frame = writer.encode(FrameKind.Batch, encodeMessages(batch));
      } catch (err) {
        this.fail(batch.length, `encode: ${errorText(err)}`, false);
        continue;
      }
      link.unacked.push({ count: batch.length, at: performance.now() });
      this.bytesSent += frame.byteLength;
      if (link.watch === undefined) this.watch(link);
      this.writeFrame(link, frame);
    }
  }

  /** Flow control: when the peer (or the connection) is full, stop writing until it drains; queues keep within their bounds. */
  private writeFrame(link: Link, frame: Uint8Array): void {
    const stream = link.stream;
    if (stream === null) throw new Error("writeFrame on a stream that is not open");
    if (stream.write(frame)) return;
    link.waitingDrain = true;
    stream.once("drain", () => {
      link.waitingDrain = false;
      if (this.link === link) this.pump();
    });
  }

  /** Queued forwards, oldest first, while the stream takes them and fewer than maxForwardsInflight wait for answers. */
  private writeForwards(link: Link): void {
    const writer = link.writer;
    if (writer === null) throw new Error("writeForwards on a stream that is not open");
    for (const f of this.forwardQueue.values()) {
      if (link.waitingDrain || link.forwards.size >= this.s.maxForwardsInflight) return;
      this.forwardQueue.delete(f.id);
      let frame: Uint8Array;
      try {
        const payload = encodeForward(f.id, f.req);
        if (payload.byteLength > this.s.maxForwardBytes) throw new Error(`${payload.byteLength} bytes exceed the ${this.s.maxForwardBytes}-byte forward cap`);
        frame = writer.encode(FrameKind.Forward, payload);
      } catch (err) {
        f.settle({ kind: "unprocessed", reason: `encode: ${errorText(err)}` });
        continue;
      }
      // Onto the stream before the write: once any of its bytes may be on the wire, "unprocessed"
      // is no longer provable (a failing write or stream settles it "unknown" from here).
      link.forwards.set(f.id, f);
      this.bytesSent += frame.byteLength;
      this.writeFrame(link, frame);
    }
  }

  /**
   * The peer answers every frame, in order, each tick at least (heartbeats): silence while we wait
   * for an answer (or for the open) means it is dead, or blackholed, or no longer reading. The
   * stream is reset and reopened rather than left to fill the connection window.
   *
   * A frame still arriving is not silence: a large forward answer (a transaction's reads, MiBs)
   * takes many round trips on a long link with a small connection window, and the batch answers
   * behind it wait for it. Counting only completed answers reset such a stream, and answered the
   * forward "outcome unknown", every time. A peer that stops mid-frame is silent again.
   */
  private watch(link: Link): void {
    link.watch = undefined;
    if (this.link !== link) return;
    const since = link.open ? link.unacked.peek()?.at : link.startedAt;
    if (since === undefined) return;
    const left = Math.max(since, link.arrivingAt) + this.s.silenceTimeoutMs - performance.now();
    if (left <= 0) return this.linkFailed(link, `no answer from the peer for ${this.s.silenceTimeoutMs} ms`, { unreachable: true });
    link.watch = setTimeout(() => this.watch(link), left);
  }

  /** Answer frames: each settles the oldest unanswered frame and may carry messages for us. */
  private onAnswers(link: Link, chunk: Buffer): void {
    const reader = link.reader;
    if (reader === null) throw new Error("answers on a stream that is not open");
    this.bytesReceived += chunk.byteLength;
    let frames: Frame[];
    try {
      frames = reader.push(chunk);
    } catch (err) {
      return this.linkFailed(link, `bad answer: ${errorText(err)}`, { unreachable: true });
    }
    if (reader.partial) link.arrivingAt = performance.now();
    if (frames.length === 0) return;
    this.markUp();
    const now = performance.now();
    for (const frame of frames) {
      if (frame.kind === FrameKind.ForwardReply) {
        const bad = this.takeForwardReply(link, frame.payload);
        if (bad !== null) return this.linkFailed(link, `bad answer: ${bad}`, { unreachable: true });
        continue;
      }
      if (frame.kind !== FrameKind.Batch && frame.kind !== FrameKind.Refused) {
        return this.linkFailed(link, `bad answer: a frame of kind ${frame.kind} downstream`, { unreachable: true });
      }
      const asked = link.unacked.shift();
      if (asked === undefined) return this.linkFailed(link, "an answer to no frame", { unreachable: true });
      const rtt = now - asked.at;
      this.s.onRoundTrip?.(this.id, rtt / 1000);
      this.rttMs = this.rttMs === null ? rtt : this.rttMs + (rtt - this.rttMs) / 8;
      if (frame.kind === FrameKind.Refused) {
        // Reachable, but it did not take the batch (shutting down, disk full): count it, do not back off.
        this.fail(asked.count, `refused: ${new TextDecoder().decode(frame.payload.subarray(0, 300))}`, false);
        continue;
      }
      this.sent += asked.count;
      this.batches++;
      // An empty batch is one byte (0x90): nothing to deliver.
      if (frame.payload.byteLength > 1 && this.s.deliver !== null) this.takeReply(frame.payload);
      if (this.link !== link) return;
    }
    this.pump();
  }

  /** Settles the forward a reply names; the reason when the reply is nonsense (the stream then ends). */
  private takeForwardReply(link: Link, payload: Uint8Array): string | null {
    let decoded;
    try {
      decoded = decodeForwardReply(payload);
    } catch (err) {
      if (err instanceof FrameError) return err.message;
      throw err;
    }
    const { id, reply } = decoded;
    if (id >= this.nextForwardId) return `a reply to forward ${id}, which was never sent`;
    const f = link.forwards.get(id);
    // Answered after its deadline here: its caller was already told "unknown".
    if (f === undefined) return null;
    link.forwards.delete(id);
    if (reply.kind === "answer") f.settle({ kind: "answered", answer: { status: reply.status, headers: reply.headers, body: reply.body } });
    else if (reply.kind === "refused") f.settle({ kind: "unprocessed", reason: `${this.id} refused it: ${reply.reason}` });
    else f.settle({ kind: "unknown", reason: `${this.id} ran it without an answer: ${reply.reason}` });
    return null;
  }

  /** Messages in an answer pass the same checks as a request's: schema, sender, recipient. */
  private takeReply(payload: Uint8Array): void {
    let msgs: Message[];
    try {
      msgs = decodeMessages(payload);
    } catch (err) {
      return this.refuseReply(err instanceof CodecError ? `reply refused: ${err.message}` : `reply decoder failed: ${errorText(err)}`);
    }
    const bad = checkBatch(msgs, this.s.self, this.id, false);
    if (bad !== null) return this.refuseReply(`reply refused: ${bad}`);
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

  /**
   * The stream is gone. Its unanswered frames are lost (Raft resends) and so is the queue, as a
   * failed request lost its batch: what waited for a dead peer is stale when it comes back.
   */
  private linkFailed(link: Link, why: string, how: { unreachable: boolean }): void {
    if (this.link !== link) return;
    const lost = this.dropLink();
    if (this.removed) return;
    this.refuseQueuedForwards(why);
    const queued = this.queued();
    this.essential.clear();
    this.bulk.clear();
    this.fail(lost + queued, why, how.unreachable);
  }

  /** Closes the current stream, if any; returns how many messages it had in flight. */
  private dropLink(): number {
    const link = this.link;
    if (link === null) return 0;
    this.link = null;
    clearTimeout(link.watch);
    link.reader?.close();
    let lost = 0;
    for (let f = link.unacked.shift(); f !== undefined; f = link.unacked.shift()) lost += f.count;
    // Written: the peer may have read and run them. Only its answer could have told.
    for (const f of link.forwards.values()) {
      f.settle({ kind: "unknown", reason: `the stream to ${this.id} ended after the request was sent` });
    }
    link.forwards.clear();
    const stream = link.stream;
    if (stream !== null && !stream.closed && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
    link.done();
    return lost;
  }

  /** Snapshot chunks keep their own request each (their own route and body limit), one at a time. */
  private launchSnapshot(chunk: SnapshotMsg): void {
    const release = () => (this.snapshotInflight = false);
    let body: Uint8Array;
    try {
      body = encodeMessages([chunk]);
    } catch (err) {
      release();
      this.fail(1, `encode: ${errorText(err)}`, false);
      return;
    }
    const path = RAFT_SNAPSHOT_PATH;
    const headers: Record<string, string> = {
      "content-type": "application/msgpack",
      ...peerRequestHeaders(this.s.auth, { method: "POST", path, from: this.s.self, to: this.id, body }),
    };
    const generation = this.generation;
    this.bytesSent += body.byteLength;
    const request = this.s.client
      .request(this.origin, { method: "POST", path, headers, body, timeoutMs: this.s.snapshotTimeoutMs })
      .then(
        (res) => this.snapshotAnswered(res),
        (err: unknown) => this.fail(1, errorText(err), generation === this.generation),
      )
      .finally(() => {
        release();
        this.pump();
      });
    this.s.track(request);
  }

  private snapshotAnswered(res: H2Response): void {
    if (this.removed) return;
    this.markUp();
    this.bytesReceived += res.body.byteLength;
    if (res.status >= 200 && res.status < 300) {
      this.sent++;
      this.batches++;
      return;
    }
    // The peer is reachable but refused the chunk (auth, validation, size): count it, do not back off.
    const text = new TextDecoder().decode(res.body.subarray(0, 300));
    this.fail(1, `HTTP ${res.status}: ${text}`, false);
  }

  private fail(count: number, why: string, unreachable: boolean): void {
    if (this.removed) return;
    this.errors++;
    this.dropped += count;
    this.lastError = why;
    if (unreachable) this.markDown();
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
