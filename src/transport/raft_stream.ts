// The receiving end of the long-lived peer stream: POST /raft/v1/stream, opened once per peer and
// kept. The opening request is checked by the node's PeerGate exactly like any peer request (proof
// over method, path, time, sender, recipient and nonce; replay cache; certificate naming the sender
// under mTLS) before a byte of its body is read. After the 200 the request body carries frames
// from the peer and the response body one answer frame per frame, in order (stream_frame.ts): the
// messages for the peer that handling the batch produced (today's replies), an empty batch when
// there were none, or "refused" with the reason the node did not take the batch. The answer is
// also the peer's acknowledgement, its round trip and its proof that we still read.
//
// A follower's stream to its leader also carries the client requests it forwards (Forward frames,
// forward_frame.ts). Each runs through onForward (the node's own app) and is answered by a
// ForwardReply frame as soon as it is done, in any order, never in the batches' answer slots: a
// slow write must not hold up the answers the peer's silence clock waits for. Every forward gets
// exactly one reply: the app's answer, "refused" when it was not run (over the caps below, no
// app), or "failed" when the app threw or outlived the request's deadline by forwardGraceMs.
//
// Served below Hono (server.ts routes this one path to handle()): @hono/node-server destroys a
// POST's request and response two timers after the handler returns unless its body has ended, so
// a stream cannot live behind it; and what the stream saves is exactly the per-request dispatch.
//
// Limits: frames are capped at maxFrameBytes (the batch body limit) and their lengths drawn from
// the peer body budget until complete; a frame must finish within frameTimeoutMs of its first
// byte; answers not yet written pause the reading (HTTP/2 flow control then holds the sender);
// one stream per peer, a new authenticated one replacing the old. Forwards: at most
// maxForwardsPerPeer running per peer (across its streams: a replaced stream's forwards still run),
// each holding its frame's length of the peer body budget until it is done; past either the
// forward is refused unrun. Anything wrong ends the stream with RST_STREAM and a rate-limited log
// line; the peer reopens it.

import type http from "node:http";
import http2 from "node:http2";
import type { Message, NodeId } from "../raft/types.ts";
import { type PeerAuth, PeerGate, verifiedPeerCertificate } from "./auth.ts";
import { CodecError, decodeMessages, encodeMessages } from "./codec.ts";
import { checkBatch, DEFAULT_MAX_BATCH_BODY } from "./raft_routes.ts";
import { Direction, FrameError, FrameKind, FrameReader, FrameWriter, streamKey } from "./stream_frame.ts";
import { DEFAULT_MAX_FORWARD_BYTES, LEADER_FORWARD_GRACE_MS, DEFAULT_MAX_FORWARDS_PER_PEER, decodeForward, encodeForwardReply, type ForwardAnswer, type ForwardReply, type ForwardRequest } from "./forward_frame.ts";
import { DEFAULT_BODY_TIMEOUT_MS } from "./server.ts";

export const RAFT_STREAM_PATH = "/raft/v1/stream";
export const FRAMES_CONTENT_TYPE = "application/x-phalanx-frames";
/** A frame must finish as fast as a request body must (server.ts). */
export const DEFAULT_FRAME_TIMEOUT_MS = DEFAULT_BODY_TIMEOUT_MS;

export interface RaftStreamOptions {
  self: NodeId;
  auth: PeerAuth;
  /** The node's gate, shared with its other peer routes (one nonce cache, one body budget). */
  gate?: PeerGate;
  /** Called synchronously with each whole, valid batch. A throw is answered with a "refused" frame. */
  onMessages: (msgs: Message[], from: NodeId) => void;
  /** Called right after onMessages: the messages for `from` to answer with. Without it answers are empty. */
  awaitReplies?: (from: NodeId) => Promise<Message[]>;
  /**
   * Runs a client request `from` forwarded to us (the node's app). Without it forwards are
   * refused. Its answer's body must fit maxForwardBytes (the caller caps what it reads).
   */
  onForward?: (req: ForwardRequest, from: NodeId) => Promise<ForwardAnswer>;
  maxFrameBytes?: number;
  /** Largest Forward frame taken, and largest ForwardReply sent. */
  maxForwardBytes?: number;
  maxForwardsPerPeer?: number;
  /** A forward not answered this long after its own deadline is answered "failed" (outcome unknown). */
  forwardGraceMs?: number;
  /** Told of every forward refused unrun over the caps (the node counts them: phalanx_forwards_refused_total). */
  onForwardRefused?: (from: NodeId, reason: string) => void;
  frameTimeoutMs?: number;
  /** Why a stream was refused or ended; rate-limit it (a stranger can make many). */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}

type Request = http2.Http2ServerRequest | http.IncomingMessage;
type Response = http2.Http2ServerResponse | http.ServerResponse;

export class RaftStreamRoute {
  private readonly gate: PeerGate;
  private readonly open = new Map<NodeId, Inbound>();
  /** Forwards running now, by the peer that sent them. */
  private readonly running = new Map<NodeId, number>();
  private readonly maxFrameBytes: number;
  private readonly maxForwardBytes: number;
  private readonly maxForwardsPerPeer: number;
  private readonly forwardGraceMs: number;
  private readonly frameTimeoutMs: number;

  constructor(private readonly opts: RaftStreamOptions) {
    this.gate = opts.gate ?? new PeerGate(opts.auth, opts.self);
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_BATCH_BODY;
    this.maxForwardBytes = opts.maxForwardBytes ?? DEFAULT_MAX_FORWARD_BYTES;
    this.maxForwardsPerPeer = opts.maxForwardsPerPeer ?? DEFAULT_MAX_FORWARDS_PER_PEER;
    this.forwardGraceMs = opts.forwardGraceMs ?? LEADER_FORWARD_GRACE_MS;
    this.frameTimeoutMs = opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
  }

  /** Forwards running now (all peers). */
  forwardsRunning(): number {
    let n = 0;
    for (const k of this.running.values()) n += k;
    return n;
  }

  /** Streams open now, by peer. */
  peers(): NodeId[] {
    return [...this.open.keys()];
  }

  handle = (req: Request, res: Response): void => {
    // A reset mid-body must not surface as an unhandled 'error' event.
    req.on("error", () => undefined);
    res.on("error", () => undefined);
    if (req.httpVersionMajor !== 2 || !("stream" in req)) return refuse(res, 505, `${RAFT_STREAM_PATH} needs HTTP/2`);
    if (req.method !== "POST") return refuse(res, 405, `${RAFT_STREAM_PATH} takes POST`);
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (!name.startsWith(":") && typeof value === "string") headers.set(name, value);
    }
    const admission = this.gate.admitHeaders({
      method: "POST",
      path: req.url ?? "",
      headers,
      peerCert: verifiedPeerCertificate({ incoming: req }),
      // A stream declares no length: its frames are capped and checked one by one.
      maxBodyBytes: 0,
    });
    if (!admission.ok) {
      this.opts.warn?.("refused a peer stream", { status: admission.status, reason: admission.reason });
      return refuse(res, admission.status, admission.status === 401 ? `unauthorized: ${admission.reason}` : admission.reason);
    }
    const from = admission.from;
    const id = { nonce: admission.nonce, opener: from, acceptor: this.opts.self };
    const inbound = new Inbound(req as http2.Http2ServerRequest, res as http2.Http2ServerResponse, from, {
      reader: new FrameReader({
        key: streamKey(this.opts.auth, id, Direction.FromOpener),
        maxPayload: this.maxFrameBytes,
        maxForwardPayload: this.maxForwardBytes,
        budget: this.gate.budget,
      }),
      writer: new FrameWriter(streamKey(this.opts.auth, id, Direction.FromAcceptor)),
      route: this,
    });
    // At most one per peer: a peer that reopens has given up on the old one (or lost it to a dead
    // connection we have not noticed yet).
    this.open.get(from)?.end("replaced by a newer stream from the same peer");
    this.open.set(from, inbound);
    inbound.start();
  };

  /** Ends every open stream (node shutting down). */
  closeAll(): void {
    for (const s of [...this.open.values()]) s.end("the node is shutting down");
  }

  /** @internal */
  forget(from: NodeId, s: Inbound): void {
    if (this.open.get(from) === s) this.open.delete(from);
  }

  /** @internal The batch in one frame: delivered, or the reason it was refused; throws FrameError on nonsense. */
  take(payload: Uint8Array, from: NodeId): { replies: Promise<Message[]> | null } | { refused: string } {
    let msgs: Message[];
    try {
      msgs = decodeMessages(payload);
    } catch (err) {
      if (err instanceof CodecError) throw new FrameError(err.message);
      return { refused: `decoder failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    const bad = checkBatch(msgs, this.opts.self, from, false);
    if (bad !== null) throw new FrameError(bad);
    try {
      this.opts.onMessages(msgs, from);
    } catch (err) {
      return { refused: `core rejected the batch: ${err instanceof Error ? err.message : String(err)}` };
    }
    return { replies: this.opts.awaitReplies?.(from) ?? null };
  }

  /** @internal A reply as its frame's payload; one over the forward cap becomes "failed" (the opener would refuse the frame, and the stream with it). */
  encodeReply(id: number, reply: ForwardReply): Uint8Array {
    const payload = encodeForwardReply(id, reply);
    if (payload.byteLength <= this.maxForwardBytes) return payload;
    return encodeForwardReply(id, { kind: "failed", reason: `the answer of ${payload.byteLength} bytes exceeds the forward cap` });
  }

  /**
   * @internal Runs one forward from `from` within the caps; `answer` is called exactly once, by the
   * request's deadline plus forwardGraceMs at the latest. Its slot and budget are held until the
   * app is done, not until the answer: a request that outlives its answer still holds memory.
   */
  forward(from: NodeId, req: ForwardRequest, bytes: number, answer: (reply: ForwardReply) => void): void {
    const onForward = this.opts.onForward;
    if (onForward === undefined) return answer({ kind: "refused", reason: "this node does not take forwarded requests" });
    const running = this.running.get(from) ?? 0;
    const budget = this.gate.budget;
    const over = running >= this.maxForwardsPerPeer ? `${running} forwards from ${from} are running (the cap)` : budget.tryTake(bytes) ? null : `peer body budget (${budget.limit} bytes) in use`;
    if (over !== null) {
      // The follower tries again within the client's deadline; the operator should know the leader is full.
      this.opts.warn?.("refused a forwarded request", { from, reason: over });
      this.opts.onForwardRefused?.(from, over);
      return answer({ kind: "refused", reason: over });
    }
    this.running.set(from, running + 1);
    let answered = false;
    const once = (reply: ForwardReply) => {
      if (answered) return;
      answered = true;
      clearTimeout(timer);
      answer(reply);
    };
    const ms = req.timeoutMs + this.forwardGraceMs;
    const timer = setTimeout(() => once({ kind: "failed", reason: `no answer within ${ms} ms` }), ms);
    timer.unref?.();
    let done: Promise<ForwardAnswer>;
    try {
      done = onForward(req, from);
    } catch (err) {
      done = Promise.reject(err);
    }
    done
      .then(
        (a) => once({ kind: "answer", ...a }),
        (err: unknown) => once({ kind: "failed", reason: `the request failed: ${err instanceof Error ? err.message : String(err)}` }),
      )
      .finally(() => {
        budget.give(bytes);
        const left = (this.running.get(from) ?? 1) - 1;
        if (left > 0) this.running.set(from, left);
        else this.running.delete(from);
      });
  }

  /** @internal */
  get limits(): { frameTimeoutMs: number } {
    return { frameTimeoutMs: this.frameTimeoutMs };
  }

  /** @internal */
  warn(msg: string, fields: Record<string, unknown>): void {
    this.opts.warn?.(msg, fields);
  }
}

/** One answer slot per frame read, written strictly in the order the frames came. */
interface Slot {
  kind: FrameKind;
  payload: Uint8Array | null;
}

const EMPTY_BATCH = encodeMessages([]);

class Inbound {
  private readonly slots: Slot[] = [];
  private frameTimer: ReturnType<typeof setTimeout> | undefined;
  private ended = false;
  private waitingDrain = false;

  constructor(
    private readonly req: http2.Http2ServerRequest,
    private readonly res: http2.Http2ServerResponse,
    private readonly from: NodeId,
    private readonly parts: { reader: FrameReader; writer: FrameWriter; route: RaftStreamRoute },
  ) {}

  start(): void {
    // writeHead sends the HEADERS frame at once: the peer starts writing when it sees the 200.
    this.res.writeHead(200, { "content-type": FRAMES_CONTENT_TYPE });
    this.req.on("data", (chunk: Buffer) => this.onData(chunk));
    this.req.once("end", () => this.end(null));
    this.req.once("close", () => this.end(null));
    this.res.once("close", () => this.end(null));
  }

  /** Ends the stream: null when the peer ended it, otherwise the reason (logged, stream reset). */
  end(why: string | null): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.frameTimer);
    this.parts.reader.close();
    this.parts.route.forget(this.from, this);
    if (why !== null) this.parts.route.warn("ended a peer stream", { from: this.from, reason: why });
    const stream = this.req.stream;
    if (!stream.closed && !stream.destroyed) stream.close(why === null ? http2.constants.NGHTTP2_NO_ERROR : http2.constants.NGHTTP2_CANCEL);
  }

  private onData(chunk: Buffer): void {
    if (this.ended) return;
    let frames;
    try {
      frames = this.parts.reader.push(chunk);
    } catch (err) {
      return this.end(err instanceof Error ? err.message : String(err));
    }
    for (const frame of frames) {
      if (frame.kind === FrameKind.Forward) {
        let forward;
        try {
          forward = decodeForward(frame.payload);
        } catch (err) {
          return this.end(err instanceof Error ? err.message : String(err));
        }
        const id = forward.id;
        this.parts.route.forward(this.from, forward.req, frame.payload.byteLength, (reply) => this.write(FrameKind.ForwardReply, this.parts.route.encodeReply(id, reply)));
        continue;
      }
      if (frame.kind !== FrameKind.Batch) return this.end(`a peer sent a frame of kind ${frame.kind} upstream`);
      let outcome;
      try {
        outcome = this.parts.route.take(frame.payload, this.from);
      } catch (err) {
        return this.end(err instanceof Error ? err.message : String(err));
      }
      const slot: Slot = { kind: FrameKind.Batch, payload: null };
      this.slots.push(slot);
      if ("refused" in outcome) {
        slot.kind = FrameKind.Refused;
        slot.payload = new TextEncoder().encode(outcome.refused.slice(0, 300));
      } else if (outcome.replies === null) {
        slot.payload = EMPTY_BATCH;
      } else {
        // The batch was delivered either way: an answer that cannot be had is sent empty.
        outcome.replies.then(
          (msgs) => this.fill(slot, msgs),
          () => this.fill(slot, []),
        );
      }
    }
    this.flush();
    // The frame clock runs from a frame's first byte: restart it whenever a frame completed.
    if (frames.length > 0 || !this.parts.reader.partial) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
    if (this.parts.reader.partial && this.frameTimer === undefined) {
      const ms = this.parts.route.limits.frameTimeoutMs;
      this.frameTimer = setTimeout(() => this.end(`a frame did not finish within ${ms} ms`), ms);
      this.frameTimer.unref?.();
    }
  }

  private fill(slot: Slot, msgs: Message[]): void {
    slot.payload = msgs.length === 0 ? EMPTY_BATCH : encodeMessages(msgs);
    this.flush();
  }

  /** Writes every ready answer at the head; while the peer does not read them, we stop reading it. */
  private flush(): void {
    if (this.ended) return;
    while (this.slots.length > 0 && this.slots[0]!.payload !== null) {
      const slot = this.slots.shift()!;
      this.write(slot.kind, slot.payload!);
    }
  }

  /** One answer frame, numbered as it is written; dropped once the stream ended (the opener then knows nothing came). */
  private write(kind: FrameKind, payload: Uint8Array): void {
    if (this.ended) return;
    const more = this.res.write(this.parts.writer.encode(kind, payload));
    if (!more && !this.waitingDrain) {
      this.waitingDrain = true;
      this.req.pause();
      this.res.once("drain", () => {
        this.waitingDrain = false;
        if (!this.ended) this.req.resume();
      });
    }
  }
}

function refuse(res: Response, status: number, text: string): void {
  (res as http.ServerResponse).writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(text);
}

/** Stands in for the node's route while a server is up before its node (gossip discovery): 503 until `target` is set. */
export class PendingStreamRoute {
  target: RaftStreamRoute | null = null;

  handle = (req: Request, res: Response): void => {
    if (this.target !== null) return this.target.handle(req, res);
    req.on("error", () => undefined);
    refuse(res, 503, "this server is still looking for its cluster");
  };

  closeAll(): void {
    this.target?.closeAll();
  }
}
