// Frames of the long-lived peer stream (raft_stream.ts receives, peers.ts sends).
//
//   frame = length (u32, big-endian) | kind (u8) | payload (length bytes) | tag (32 bytes, hmac mode)
//   tag   = HMAC-SHA256(direction key, seq (u64, big-endian) | length | kind | payload)
//
// The stream is opened by a request signed like any other peer request (auth.ts: method, path,
// time, sender, recipient, nonce, replay cache); after that no header is checked again, so each
// frame proves itself. The direction key is derived from the cluster key, the stream's nonce, its
// opener and its acceptor, one key per direction: a frame cannot be moved to another stream (other
// nonce), reflected back to its sender (other direction) or spoken by a stranger (no cluster key).
// The sequence number is implicit (frames counted from 0 in each direction), so a frame replayed,
// dropped or reordered within its stream fails its tag. With mutual TLS the TLS records already
// give integrity, order and no replay on one connection, and the handshake proved who is at the
// other end: frames carry no tag.

import { createHmac, timingSafeEqual } from "node:crypto";
import type { ByteBudget, PeerAuth } from "./auth.ts";
import type { NodeId } from "../raft/types.ts";

export const FRAME_HEADER_BYTES = 5;
export const FRAME_TAG_BYTES = 32;

/**
 * Batch: messages (msgpack, codec.ts), either way; Refused: the reason (UTF-8) a batch was not
 * taken, acceptor → opener, in the batch's answer slot. Forward: a client request a follower
 * tunnels to the leader, opener → acceptor; ForwardReply: its answer, acceptor → opener, matched
 * by request id, in any order (forward_frame.ts has both payloads).
 */
export enum FrameKind {
  Batch = 0,
  Refused = 1,
  Forward = 2,
  ForwardReply = 3,
}

const KNOWN_KINDS: ReadonlySet<number> = new Set([FrameKind.Batch, FrameKind.Refused, FrameKind.Forward, FrameKind.ForwardReply]);

/** The kinds a tunnelled client request travels in, each with its own payload cap (maxForwardPayload). */
function isForwardKind(kind: number): boolean {
  return kind === FrameKind.Forward || kind === FrameKind.ForwardReply;
}

export interface Frame {
  kind: FrameKind;
  /** A view into the received bytes. */
  payload: Uint8Array;
}

/** Anything that makes a stream's bytes untrustworthy or unreadable; the stream ends with it. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

/** Which way a frame travels: from the stream's opener (request body) or its acceptor (response body). */
export enum Direction {
  FromOpener = "from-opener",
  FromAcceptor = "from-acceptor",
}

export interface StreamIdentity {
  /** The opening request's nonce ("" with mTLS). */
  nonce: string;
  opener: NodeId;
  acceptor: NodeId;
}

/** The direction's key; null with mTLS (no tags). */
export function streamKey(auth: PeerAuth, id: StreamIdentity, direction: Direction): Buffer | null {
  if (auth.mode === "mtls") return null;
  return createHmac("sha256", auth.key).update(`phalanx-stream-v1\n${direction}\n${id.nonce}\n${id.opener}\n${id.acceptor}`).digest();
}

function tag(key: Buffer, seq: number, frame: Uint8Array, end: number): Buffer {
  const seqBytes = Buffer.allocUnsafe(8);
  seqBytes.writeBigUInt64BE(BigInt(seq));
  return createHmac("sha256", key).update(seqBytes).update(frame.subarray(0, end)).digest();
}

/** Encodes the frames of one direction, numbering them. */
export class FrameWriter {
  private seq = 0;
  constructor(private readonly key: Buffer | null) {}

  encode(kind: FrameKind, payload: Uint8Array): Uint8Array {
    const tagBytes = this.key === null ? 0 : FRAME_TAG_BYTES;
    const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.byteLength + tagBytes);
    out.writeUInt32BE(payload.byteLength, 0);
    out[4] = kind;
    out.set(payload, FRAME_HEADER_BYTES);
    const end = FRAME_HEADER_BYTES + payload.byteLength;
    if (this.key !== null) tag(this.key, this.seq, out, end).copy(out, end);
    this.seq++;
    return out;
  }
}

export interface FrameReaderOptions {
  key: Buffer | null;
  /** Largest payload accepted; a length above it ends the stream before a byte of it is kept. */
  maxPayload: number;
  /**
   * The same for Forward and ForwardReply frames (default maxPayload): a tunnelled request or its
   * answer is as large as the client API allows (an 8 MiB transaction), larger than a batch.
   */
  maxForwardPayload?: number;
  /** Each frame's announced length is taken from it until the frame is complete. */
  budget?: ByteBudget;
}

/**
 * Cuts one direction's bytes into verified frames. Holds at most one incomplete frame (its length
 * capped by maxPayload) plus the chunk being cut; frames handed out are views, not copies.
 */
export class FrameReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private seq = 0;
  /** Budget taken for the frame in progress (0 before its header is in). */
  private held = 0;
  private failed = false;

  constructor(private readonly opts: FrameReaderOptions) {}

  /** True while part of a frame has arrived and the rest has not. */
  get partial(): boolean {
    return this.buffered > 0;
  }

  /** Frames completed by `chunk`, in order. Throws FrameError on the first bad one (and for ever after). */
  push(chunk: Uint8Array): Frame[] {
    if (this.failed) throw new FrameError("the stream already failed");
    if (chunk.byteLength > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.byteLength;
    }
    const frames: Frame[] = [];
    const tagBytes = this.opts.key === null ? 0 : FRAME_TAG_BYTES;
    while (this.buffered >= FRAME_HEADER_BYTES) {
      const head = this.peekHeader();
      const length = head.readUInt32BE(0);
      const kind = head[4]!;
      if (!KNOWN_KINDS.has(kind)) return this.fail(`unknown frame kind ${kind}`);
      const cap = isForwardKind(kind) ? (this.opts.maxForwardPayload ?? this.opts.maxPayload) : this.opts.maxPayload;
      if (length > cap) return this.fail(`frame of ${length} bytes exceeds the ${cap}-byte cap`);
      if (this.held === 0 && length > 0 && this.opts.budget !== undefined) {
        if (!this.opts.budget.tryTake(length)) return this.fail(`peer body budget (${this.opts.budget.limit} bytes) in use`);
        this.held = length;
      }
      const total = FRAME_HEADER_BYTES + length + tagBytes;
      if (this.buffered < total) break;
      const bytes = this.take(total);
      const end = FRAME_HEADER_BYTES + length;
      if (this.opts.key !== null) {
        const expected = tag(this.opts.key, this.seq, bytes, end);
        if (!timingSafeEqual(expected, bytes.subarray(end, total))) {
          return this.fail(`frame ${this.seq} has a bad tag (forged, replayed, reordered or from another stream)`);
        }
      }
      this.release();
      this.seq++;
      frames.push({ kind, payload: bytes.subarray(FRAME_HEADER_BYTES, end) });
    }
    return frames;
  }

  /** Gives back the budget of a frame that will never finish. Idempotent. */
  close(): void {
    this.release();
    this.chunks = [];
    this.buffered = 0;
  }

  private fail(why: string): never {
    this.failed = true;
    this.close();
    throw new FrameError(why);
  }

  private release(): void {
    if (this.held > 0) this.opts.budget?.give(this.held);
    this.held = 0;
  }

  private peekHeader(): Buffer {
    const first = this.chunks[0]!;
    if (first.byteLength >= FRAME_HEADER_BYTES) return Buffer.from(first.buffer, first.byteOffset, FRAME_HEADER_BYTES);
    const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    let at = 0;
    for (const c of this.chunks) {
      const n = Math.min(c.byteLength, FRAME_HEADER_BYTES - at);
      head.set(c.subarray(0, n), at);
      at += n;
      if (at === FRAME_HEADER_BYTES) break;
    }
    return head;
  }

  /** Removes the first `n` buffered bytes: a view when one chunk holds them, else one copy. */
  private take(n: number): Uint8Array {
    const first = this.chunks[0]!;
    if (first.byteLength >= n) {
      const out = first.subarray(0, n);
      if (first.byteLength === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      this.buffered -= n;
      return out;
    }
    const out = new Uint8Array(n);
    let at = 0;
    while (at < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.byteLength, n - at);
      out.set(c.subarray(0, k), at);
      at += k;
      if (k === c.byteLength) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    this.buffered -= n;
    return out;
  }
}
