// The receiving end of the long-lived peer stream: POST /raft/v1/stream, opened once per peer and
// kept. The opening request is checked by the node's PeerGate exactly like any peer request (proof
// over method, path, time, sender, recipient and nonce; replay cache; certificate naming the sender
// under mTLS) before a byte of its body is read. After the 200 the request body carries frames
// from the peer and the response body one answer frame per frame, in order (stream_frame.ts): the
// messages for the peer that handling the batch produced (today's replies), an empty batch when
// there were none, or "refused" with the reason the node did not take the batch. The answer is
// also the peer's acknowledgement, its round trip and its proof that we still read.
//
// Served below Hono (server.ts routes this one path to handle()): @hono/node-server destroys a
// POST's request and response two timers after the handler returns unless its body has ended, so
// a stream cannot live behind it; and what the stream saves is exactly the per-request dispatch.
//
// Limits: frames are capped at maxFrameBytes (the batch body limit) and their lengths drawn from
// the peer body budget until complete; a frame must finish within frameTimeoutMs of its first
// byte; answers not yet written pause the reading (HTTP/2 flow control then holds the sender);
// one stream per peer, a new authenticated one replacing the old. Anything wrong ends the stream
// with RST_STREAM and a rate-limited log line; the peer reopens it.

import type http from "node:http";
import http2 from "node:http2";
import type { Message, NodeId } from "../raft/types.ts";
import { type PeerAuth, PeerGate, verifiedPeerCertificate } from "./auth.ts";
import { CodecError, decodeMessages, encodeMessages } from "./codec.ts";
import { checkBatch, DEFAULT_MAX_BATCH_BODY } from "./raft_routes.ts";
import { Direction, FrameError, FrameKind, FrameReader, FrameWriter, streamKey } from "./stream_frame.ts";
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
  maxFrameBytes?: number;
  frameTimeoutMs?: number;
  /** Why a stream was refused or ended; rate-limit it (a stranger can make many). */
  warn?: (msg: string, fields: Record<string, unknown>) => void;
}

type Request = http2.Http2ServerRequest | http.IncomingMessage;
type Response = http2.Http2ServerResponse | http.ServerResponse;

export class RaftStreamRoute {
  private readonly gate: PeerGate;
  private readonly open = new Map<NodeId, Inbound>();
  private readonly maxFrameBytes: number;
  private readonly frameTimeoutMs: number;

  constructor(private readonly opts: RaftStreamOptions) {
    this.gate = opts.gate ?? new PeerGate(opts.auth, opts.self);
    this.maxFrameBytes = opts.maxFrameBytes ?? DEFAULT_MAX_BATCH_BODY;
    this.frameTimeoutMs = opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;
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
      reader: new FrameReader({ key: streamKey(this.opts.auth, id, Direction.FromOpener), maxPayload: this.maxFrameBytes, budget: this.gate.budget }),
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
      const more = this.res.write(this.parts.writer.encode(slot.kind, slot.payload!));
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
