// The peer stream's frame codec: whatever is tampered with, replayed, reordered, moved to another
// stream, cut short or oversized is refused, and nothing past the cap is ever held.

import { describe, expect, test } from "bun:test";
import { ByteBudget, type PeerAuth } from "../../src/transport/auth.ts";
import { Direction, FRAME_HEADER_BYTES, FRAME_TAG_BYTES, FrameError, FrameKind, FrameReader, FrameWriter, streamKey } from "../../src/transport/stream_frame.ts";
import { HMAC } from "./helpers.ts";

const id = { nonce: "ab".repeat(16), opener: "a", acceptor: "b" };
const key = (d: Direction = Direction.FromOpener, auth: PeerAuth = HMAC, identity = id) => streamKey(auth, identity, d);
const bytes = (...xs: number[]) => Uint8Array.from(xs);
const reader = (opts: { maxPayload?: number; budget?: ByteBudget; key?: Buffer | null } = {}) =>
  new FrameReader({ key: opts.key === undefined ? key() : opts.key, maxPayload: opts.maxPayload ?? 1024, ...(opts.budget ? { budget: opts.budget } : {}) });
const concat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));

describe("stream frames", () => {
  test("frames round-trip, in order, however the bytes are cut", () => {
    const w = new FrameWriter(key());
    const frames = [bytes(1, 2, 3), bytes(), bytes(...Array(300).fill(7))].map((p) => w.encode(FrameKind.Batch, p));
    const all = concat(...frames);
    for (const step of [1, 2, 5, 37, all.length]) {
      const r = reader();
      const got: number[][] = [];
      for (let at = 0; at < all.length; at += step) for (const f of r.push(all.subarray(at, at + step))) got.push([...f.payload]);
      expect(got).toEqual([[1, 2, 3], [], Array(300).fill(7)]);
      expect(r.partial).toBe(false);
    }
  });

  test("a flipped bit anywhere (length, kind, payload, tag) is refused", () => {
    const frame = new FrameWriter(key()).encode(FrameKind.Batch, bytes(1, 2, 3, 4));
    for (let i = 0; i < frame.length; i++) {
      const bad = Uint8Array.from(frame);
      bad[i]! ^= 0x01;
      const r = reader();
      // A longer length waits for bytes that never come; the rest fail at once.
      const outcome = (() => {
        try {
          return r.push(bad).length;
        } catch (err) {
          return err instanceof FrameError ? "refused" : "crashed";
        }
      })();
      expect(outcome === "refused" || (outcome === 0 && r.partial)).toBe(true);
    }
  });

  test("a replayed frame is refused (the second copy carries the next sequence number)", () => {
    const frame = new FrameWriter(key()).encode(FrameKind.Batch, bytes(9));
    const r = reader();
    expect(r.push(frame)).toHaveLength(1);
    expect(() => r.push(frame)).toThrow(/frame 1 has a bad tag/);
    // And the stream stays failed.
    expect(() => r.push(new Uint8Array(0))).toThrow(FrameError);
  });

  test("reordered frames are refused", () => {
    const w = new FrameWriter(key());
    const first = w.encode(FrameKind.Batch, bytes(1));
    const second = w.encode(FrameKind.Batch, bytes(2));
    expect(() => reader().push(concat(second, first))).toThrow(/frame 0 has a bad tag/);
  });

  test("a frame from another stream, the other direction, or another cluster key is refused", () => {
    const payload = bytes(1, 2);
    const elsewhere = [
      key(Direction.FromOpener, HMAC, { ...id, nonce: "cd".repeat(16) }),
      key(Direction.FromAcceptor),
      key(Direction.FromOpener, HMAC, { ...id, opener: "c" }),
      key(Direction.FromOpener, HMAC, { ...id, acceptor: "c" }),
      key(Direction.FromOpener, { mode: "hmac", key: "another-cluster-key-0123" }),
    ];
    for (const k of elsewhere) expect(() => reader().push(new FrameWriter(k).encode(FrameKind.Batch, payload))).toThrow(/bad tag/);
  });

  test("a frame cut short is held as partial, never delivered", () => {
    const frame = new FrameWriter(key()).encode(FrameKind.Batch, bytes(1, 2, 3));
    const r = reader();
    expect(r.push(frame.subarray(0, frame.length - 1))).toEqual([]);
    expect(r.partial).toBe(true);
  });

  test("an oversized length is refused from its header, before any of its bytes are kept", () => {
    const budget = new ByteBudget(1 << 20);
    const r = reader({ maxPayload: 1024, budget });
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    head.writeUInt32BE(0xffffffff, 0);
    expect(() => r.push(head)).toThrow(/exceeds the 1024-byte cap/);
    expect(budget.inUse).toBe(0);
    // Exactly the cap passes.
    const ok = reader({ maxPayload: 1024 }).push(new FrameWriter(key()).encode(FrameKind.Batch, new Uint8Array(1024)));
    expect(ok).toHaveLength(1);
  });

  test("an unknown kind is refused", () => {
    const frame = new FrameWriter(key()).encode(FrameKind.Batch, bytes(1));
    frame[4] = 9;
    expect(() => reader().push(frame)).toThrow(/unknown frame kind 9/);
  });

  test("a frame's length is drawn from the body budget until it completes, and given back on close", () => {
    const budget = new ByteBudget(100);
    const w = new FrameWriter(key());
    const frame = w.encode(FrameKind.Batch, new Uint8Array(60));
    const r = reader({ budget });
    r.push(frame.subarray(0, 10));
    expect(budget.inUse).toBe(60);
    r.push(frame.subarray(10));
    expect(budget.inUse).toBe(0);
    // Two frames in progress on two streams would need 120: the second stream is refused.
    const other = reader({ budget });
    r.push(w.encode(FrameKind.Batch, new Uint8Array(60)).subarray(0, 10));
    expect(() => other.push(new FrameWriter(key()).encode(FrameKind.Batch, new Uint8Array(60)).subarray(0, 10))).toThrow(/budget/);
    r.close();
    expect(budget.inUse).toBe(0);
  });

  test("with mTLS (no key) frames carry no tag", () => {
    expect(key(Direction.FromOpener, { mode: "mtls" })).toBeNull();
    const frame = new FrameWriter(null).encode(FrameKind.Refused, bytes(1, 2));
    expect(frame.length).toBe(FRAME_HEADER_BYTES + 2);
    expect(reader({ key: null }).push(frame).map((f) => [f.kind, [...f.payload]])).toEqual([[FrameKind.Refused, [1, 2]]]);
    expect(new FrameWriter(key()).encode(FrameKind.Batch, bytes(1)).length).toBe(FRAME_HEADER_BYTES + 1 + FRAME_TAG_BYTES);
  });
});
