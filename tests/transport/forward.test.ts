// Client requests forwarded on the peer stream (Forward / ForwardReply frames): the wire format's
// checks, and between real servers on loopback what the forwarding side is told in every case:
// the answer, "unprocessed" only when the request provably never ran (never written, or refused
// unrun), "unknown" once it may have run. Replies come back out of order and never hold up the
// batches' answers; the receiver's caps hold whatever the sender does.

import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import { encodeMessages } from "../../src/transport/codec.ts";
import { decodeForward, decodeForwardReply, encodeForward, encodeForwardReply, type ForwardAnswer, type ForwardRequest } from "../../src/transport/forward_frame.ts";
import type { ForwardOutcome } from "../../src/transport/peers.ts";
import { FRAMES_CONTENT_TYPE, RAFT_STREAM_PATH } from "../../src/transport/raft_stream.ts";
import { peerRequestHeaders } from "../../src/transport/auth.ts";
import { Direction, FrameError, FrameKind, FrameReader, FrameWriter, streamKey } from "../../src/transport/stream_frame.ts";
import { Encoder } from "@msgpack/msgpack";
import { Hono } from "hono";
import { serveApp, type StreamRoute } from "../../src/transport/server.ts";
import { freePort } from "../integration/harness.ts";
import { HMAC, heartbeat, type NodeOptions, startNode, type TestNode, until } from "./helpers.ts";

const running: TestNode[] = [];
const cleanup: Array<() => Promise<void> | void> = [];
const start = async (id: string, opts?: NodeOptions) => {
  const n = await startNode(id, opts);
  running.push(n);
  return n;
};
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((f) => f()));
  await Promise.all(running.splice(0).map((n) => n.stop()));
});

const put = (path: string, timeoutMs = 2000): ForwardRequest => ({
  method: "PUT",
  path,
  headers: { "content-type": "application/json", authorization: "Bearer x" },
  body: new TextEncoder().encode('{"value":"1"}'),
  timeoutMs,
});
const answer = (text: string, status = 200): ForwardAnswer => ({ status, headers: { "x-phalanx-revision": "7" }, body: new TextEncoder().encode(text) });

/** A promise with its resolver outside: lets a test decide when the leader's app answers. */
function gate<T>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

describe("forward frames", () => {
  test("a request and each kind of reply round-trip", () => {
    const req = put("/v1/kv/a%5Cb?prev=1");
    expect(decodeForward(encodeForward(41, req))).toEqual({ id: 41, req });
    expect(decodeForward(encodeForward(0, { ...req, body: null, method: "GET" })).req.body).toBeNull();
    const a = answer("{}");
    expect(decodeForwardReply(encodeForwardReply(3, { kind: "answer", ...a }))).toEqual({ id: 3, reply: { kind: "answer", ...a } });
    expect(decodeForwardReply(encodeForwardReply(4, { kind: "refused", reason: "busy" }))).toEqual({ id: 4, reply: { kind: "refused", reason: "busy" } });
    expect(decodeForwardReply(encodeForwardReply(5, { kind: "failed", reason: "x".repeat(1000) })).reply).toEqual({ kind: "failed", reason: "x".repeat(300) });
  });

  test("anything else is a FrameError (the stream ends), never a request", () => {
    const enc = new Encoder();
    const body = new Uint8Array(1);
    const bad: Array<[string, unknown]> = [
      ["not an array", { id: 1 }],
      ["too few fields", [1, "PUT", "/v1/kv/a", [], body]],
      ["negative id", [-1, "PUT", "/v1/kv/a", [], body, 10]],
      ["fractional id", [1.5, "PUT", "/v1/kv/a", [], body, 10]],
      ["lower-case method", [1, "put", "/v1/kv/a", [], body, 10]],
      ["relative path", [1, "PUT", "v1/kv/a", [], body, 10]],
      ["space in the path", [1, "PUT", "/v1/kv/a b", [], body, 10]],
      ["CRLF in a header", [1, "PUT", "/v1/kv/a", ["x-a", "1\r\nx-b: 2"], body, 10]],
      ["upper-case header name", [1, "PUT", "/v1/kv/a", ["X-A", "1"], body, 10]],
      ["odd header list", [1, "PUT", "/v1/kv/a", ["x-a"], body, 10]],
      ["header given twice", [1, "PUT", "/v1/kv/a", ["x-a", "1", "x-a", "2"], body, 10]],
      ["33 headers", [1, "PUT", "/v1/kv/a", Array.from({ length: 33 }, (_, i) => [`h${i}`, "v"]).flat(), body, 10]],
      ["a body that is a string", [1, "PUT", "/v1/kv/a", [], "text", 10]],
      ["a timeout past the cap", [1, "PUT", "/v1/kv/a", [], body, 600_001]],
    ];
    for (const [why, value] of bad) expect(() => decodeForward(enc.encode(value)), why).toThrow(FrameError);
    expect(() => decodeForward(new Uint8Array([0xc1]))).toThrow(FrameError);
    for (const value of [[1, 0, 99, [], body], [1, 0, 200, [], "x"], [1, 3, "x"], [1, 1, 7], [1]]) {
      expect(() => decodeForwardReply(enc.encode(value)), JSON.stringify(value)).toThrow(FrameError);
    }
  });

  test("forward kinds have their own payload cap; batches keep theirs", () => {
    const writer = new FrameWriter(null);
    const reader = new FrameReader({ key: null, maxPayload: 100, maxForwardPayload: 1000 });
    expect(reader.push(writer.encode(FrameKind.Forward, new Uint8Array(500)))[0]?.kind).toBe(FrameKind.Forward);
    expect(() => reader.push(writer.encode(FrameKind.Batch, new Uint8Array(500)))).toThrow(/exceeds the 100-byte cap/);
  });
});

describe("forwarding on the peer stream", () => {
  test("a forward is answered with the leader app's status, headers and body; replies overtake each other and never hold up batch answers", async () => {
    const slow = gate<ForwardAnswer>();
    const seen: Array<{ req: ForwardRequest; from: string }> = [];
    const b = await start("b", {
      stream: {
        onForward: (req, from) => {
          seen.push({ req, from });
          return req.path === "/slow" ? slow.promise : Promise.resolve(answer(`ran ${req.path}`));
        },
      },
    });
    const a = await start("a");
    a.transport.setPeers(new Map([["b", b.address]]));
    const first = a.transport.forward("b", put("/slow"));
    await until(() => seen.length === 1, "the slow forward running on b");
    // While it runs, a second forward and a batch both get through and are answered.
    const second = await a.transport.forward("b", put("/fast"));
    expect(second).toEqual({ kind: "answered", answer: answer("ran /fast") });
    a.transport.send(heartbeat("a", "b", 1));
    await b.inbox.waitFor(1);
    await until(() => a.transport.stats()[0]?.sent === 1, "the batch answered while the slow forward runs");
    slow.resolve(answer("ran /slow", 201));
    expect(await first).toEqual({ kind: "answered", answer: answer("ran /slow", 201) });
    // The receiver got exactly what was sent, once each, from the stream's authenticated opener.
    expect(seen.map((s) => [s.from, s.req.path])).toEqual([["a", "/slow"], ["a", "/fast"]]);
    expect(seen[1]?.req).toEqual(put("/fast"));
  });

  test("a forward whose stream breaks after it was written is 'unknown', never 'unprocessed'", async () => {
    const never = gate<ForwardAnswer>();
    let ran = 0;
    const b = await start("b", {
      stream: {
        onForward: () => {
          ran++;
          return never.promise;
        },
      },
    });
    const a = await start("a");
    a.transport.setPeers(new Map([["b", b.address]]));
    const pending = a.transport.forward("b", put("/v1/kv/x", 10_000));
    await until(() => ran === 1, "b running the forward");
    await b.stop();
    running.splice(running.indexOf(b), 1);
    const o = await pending;
    expect(o.kind).toBe("unknown");
    expect(ran).toBe(1);
  });

  test("a forward never written (nothing listening) is 'unprocessed'; so is one still queued at its deadline", async () => {
    const a = await start("a");
    a.transport.setPeers(new Map([["b", `127.0.0.1:${await freePort()}`]]));
    const refused = await a.transport.forward("b", put("/v1/kv/x"));
    expect(refused.kind).toBe("unprocessed");
    // A stream that is never answered: the open waits, the forward stays queued until its deadline.
    const silent = http2.createServer();
    silent.on("stream", () => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", () => r()));
    cleanup.push(() => new Promise<void>((r) => silent.close(() => r())));
    const port = (silent.address() as { port: number }).port;
    const c = await start("c", { transport: { silenceTimeoutMs: 60_000 } });
    c.transport.setPeers(new Map([["b", `127.0.0.1:${port}`]]));
    const t0 = performance.now();
    const late = await c.transport.forward("b", put("/v1/kv/x", 200));
    expect(late.kind).toBe("unprocessed");
    expect(performance.now() - t0).toBeGreaterThanOrEqual(200);
    c.transport.setPeers(new Map());
  });

  test("the app throwing, or outliving the deadline, is answered 'unknown'; a node without an app refuses ('unprocessed')", async () => {
    const b = await start("b", {
      stream: {
        forwardGraceMs: 50,
        onForward: (req) => (req.path === "/throw" ? Promise.reject(new Error("boom")) : new Promise<ForwardAnswer>(() => undefined)),
      },
    });
    const a = await start("a", { transport: { silenceTimeoutMs: 60_000 } });
    a.transport.setPeers(new Map([["b", b.address]]));
    const thrown = await a.transport.forward("b", put("/throw"));
    expect(thrown).toEqual({ kind: "unknown", reason: "b ran it without an answer: the request failed: boom" });
    const hung = await a.transport.forward("b", put("/hang", 100));
    expect(hung).toEqual({ kind: "unknown", reason: "b ran it without an answer: no answer within 150 ms" });
    // The stream survived both.
    expect(b.stream.peers()).toEqual(["a"]);
    const c = await start("c");
    c.transport.setPeers(new Map([["a", a.address]]));
    const refused = await c.transport.forward("a", put("/v1/kv/x"));
    expect(refused).toEqual({ kind: "unprocessed", reason: "a refused it: this node does not take forwarded requests" });
  });

  test("a flood past the receiver's cap is refused unrun, whatever the sender's own cap; the leader's running forwards stay at the cap", async () => {
    const hold = gate<ForwardAnswer>();
    let ran = 0;
    let counted = 0;
    const b = await start("b", {
      stream: {
        maxForwardsPerPeer: 4,
        onForwardRefused: () => counted++,
        onForward: () => {
          ran++;
          return hold.promise;
        },
      },
    });
    // A sender that does not keep to the receiver's cap (as a hostile peer would not).
    const a = await start("a", { transport: { maxForwardsInflight: 1000, silenceTimeoutMs: 60_000 } });
    a.transport.setPeers(new Map([["b", b.address]]));
    const all = Array.from({ length: 200 }, (_, i) => a.transport.forward("b", put(`/v1/kv/k${i}`, 10_000)));
    const refused: ForwardOutcome[] = [];
    for (const p of all) void p.then((o) => o.kind === "unprocessed" && refused.push(o));
    await until(() => refused.length === 196, "196 refusals");
    expect(ran).toBe(4);
    expect(counted).toBe(196);
    expect(b.stream.forwardsRunning()).toBe(4);
    expect(refused[0]).toEqual({ kind: "unprocessed", reason: "b refused it: 4 forwards from a are running (the cap)" });
    hold.resolve(answer("ok"));
    const outcomes = await Promise.all(all);
    expect(outcomes.filter((o) => o.kind === "answered").length).toBe(4);
    await until(() => b.stream.forwardsRunning() === 0, "the slots given back");
    // Room again: the next one runs.
    expect((await a.transport.forward("b", put("/v1/kv/after"))).kind).toBe("answered");
  });

  test("the sender keeps to its own in-flight cap: the rest wait queued and are written as answers free slots", async () => {
    const gates: Array<(a: ForwardAnswer) => void> = [];
    const b = await start("b", { stream: { onForward: () => new Promise<ForwardAnswer>((r) => gates.push(r)) } });
    const a = await start("a", { transport: { maxForwardsInflight: 2, silenceTimeoutMs: 60_000 } });
    a.transport.setPeers(new Map([["b", b.address]]));
    const all = Array.from({ length: 5 }, (_, i) => a.transport.forward("b", put(`/v1/kv/k${i}`, 10_000)));
    await until(() => gates.length === 2, "two running");
    for (let done = 0; done < 5; done++) {
      await until(() => gates.length > done, `forward ${done} running`);
      expect(b.stream.forwardsRunning()).toBeLessThanOrEqual(2);
      gates[done]!(answer(`#${done}`));
    }
    expect((await Promise.all(all)).map((o) => o.kind)).toEqual(["answered", "answered", "answered", "answered", "answered"]);
  });
});

describe("a large answer on a slow link", () => {
  /**
   * Node "b" as a slow link shows it: it takes a's stream, waits for a's Forward and Batch frames,
   * then sends the forward's 512 KiB answer in 32 KiB pieces every 50 ms and the batch's answer
   * after it; with `stallAt`, it stops after that many pieces.
   */
  async function trickling(opts: { stallAt?: number }): Promise<string> {
    const route: StreamRoute = {
      handle: (req, res) => {
        const id = { nonce: String(req.headers["x-phalanx-nonce"]), opener: "a", acceptor: "b" };
        const reader = new FrameReader({ key: streamKey(HMAC, id, Direction.FromOpener), maxPayload: 1 << 22, maxForwardPayload: 1 << 24 });
        const writer = new FrameWriter(streamKey(HMAC, id, Direction.FromAcceptor));
        const out = res as http2.Http2ServerResponse;
        out.writeHead(200, { "content-type": FRAMES_CONTENT_TYPE });
        req.on("error", () => undefined);
        let seen = 0;
        req.on("data", (c: Buffer) => {
          seen += reader.push(c).length;
          if (seen !== 2) return;
          const reply = writer.encode(FrameKind.ForwardReply, encodeForwardReply(0, { kind: "answer", ...answer("x".repeat(512 * 1024)) }));
          const batchAnswer = writer.encode(FrameKind.Batch, encodeMessages([]));
          let at = 0;
          let pieces = 0;
          const timer = setInterval(() => {
            if (opts.stallAt !== undefined && pieces === opts.stallAt) return clearInterval(timer);
            if (at >= reply.byteLength) {
              clearInterval(timer);
              out.write(batchAnswer);
              return;
            }
            out.write(reply.subarray(at, at + 32 * 1024));
            at += 32 * 1024;
            pieces++;
          }, 50);
          cleanup.push(() => clearInterval(timer));
        });
      },
      closeAll: () => undefined,
    };
    const server = await serveApp(new Hono(), { listen: "127.0.0.1:0", streamRoutes: new Map([[RAFT_STREAM_PATH, route]]) });
    cleanup.push(() => server.close());
    return `127.0.0.1:${server.port}`;
  }

  test("bytes of an answer still arriving are not silence: the forward is answered, the batch behind it too, the stream stays up", async () => {
    const address = await trickling({});
    // 16 pieces at 50 ms: the answers take ~800 ms, well past the 300 ms silence timeout.
    const a = await start("a", { transport: { silenceTimeoutMs: 300 } });
    a.transport.setPeers(new Map([["b", address]]));
    const pending = a.transport.forward("b", put("/v1/kv/big", 5000));
    a.transport.send(heartbeat("a", "b", 1));
    const o = await pending;
    expect(o.kind).toBe("answered");
    if (o.kind === "answered") expect(o.answer.body.byteLength).toBe(512 * 1024);
    await until(() => a.transport.stats()[0]?.sent === 1, "the batch's answer");
    expect(a.transport.stats()[0]).toMatchObject({ errors: 0, reachable: true });
  });

  test("a peer that stops in the middle of an answer is silent: the stream is reset, the forward 'unknown'", async () => {
    const address = await trickling({ stallAt: 4 });
    const a = await start("a", { transport: { silenceTimeoutMs: 300 } });
    a.transport.setPeers(new Map([["b", address]]));
    const pending = a.transport.forward("b", put("/v1/kv/big", 5000));
    a.transport.send(heartbeat("a", "b", 1));
    const t0 = performance.now();
    const o = await pending;
    expect(o.kind).toBe("unknown");
    // Four pieces (200 ms), then 300 ms of silence.
    expect(performance.now() - t0).toBeGreaterThanOrEqual(450);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(a.transport.stats()[0]?.lastError).toBe("no answer from the peer for 300 ms");
  });
});

describe("forged, replayed and malformed forward frames", () => {
  function open(session: http2.ClientHttp2Session, from: string, to: string) {
    const headers: Record<string, string> = { "content-type": FRAMES_CONTENT_TYPE, ...peerRequestHeaders(HMAC, { method: "POST", path: RAFT_STREAM_PATH, from, to, body: new Uint8Array(0) }) };
    const s = session.request({ ":method": "POST", ":path": RAFT_STREAM_PATH, ...headers }, { endStream: false });
    s.on("error", () => undefined);
    const status = new Promise<number>((r) => s.once("response", (h) => r(Number(h[":status"]))));
    const closed = new Promise<number>((r) => s.once("close", () => r(s.rstCode)));
    const answers: Buffer[] = [];
    s.on("data", (c: Buffer) => answers.push(c));
    const id = { nonce: headers["x-phalanx-nonce"]!, opener: from, acceptor: to };
    return { s, status, closed, answers, writer: new FrameWriter(streamKey(HMAC, id, Direction.FromOpener)) };
  }

  test("a forward under a wrong key, replayed, sent downstream-kind, or malformed ends the stream unrun; a good one runs once", async () => {
    let ran = 0;
    const b = await start("b", {
      stream: {
        onForward: () => {
          ran++;
          return Promise.resolve(answer("ok"));
        },
      },
    });
    const session = http2.connect(`http://${b.address}`);
    session.on("error", () => undefined);
    cleanup.push(() => session.destroy());
    const payload = encodeForward(0, put("/v1/kv/x"));

    const forged = open(session, "a", "b");
    expect(await forged.status).toBe(200);
    const wrong = new FrameWriter(streamKey({ mode: "hmac", key: "not-the-cluster-key" }, { nonce: "0".repeat(32), opener: "a", acceptor: "b" }, Direction.FromOpener));
    forged.s.write(wrong.encode(FrameKind.Forward, payload));
    expect(await forged.closed).toBe(http2.constants.NGHTTP2_CANCEL);

    const good = open(session, "a", "b");
    expect(await good.status).toBe(200);
    const frame = good.writer.encode(FrameKind.Forward, payload);
    good.s.write(frame);
    await until(() => good.answers.length > 0, "the reply");
    expect(ran).toBe(1);
    // The same frame again: its tag was for sequence number 0. Refused, not run a second time.
    good.s.write(frame);
    expect(await good.closed).toBe(http2.constants.NGHTTP2_CANCEL);
    // And onto a fresh stream (another nonce, another key).
    const fresh = open(session, "a", "b");
    expect(await fresh.status).toBe(200);
    fresh.s.write(frame);
    expect(await fresh.closed).toBe(http2.constants.NGHTTP2_CANCEL);

    // A reply kind sent upstream, and a Forward frame whose payload is not a forward: both end the stream.
    const upstreamReply = open(session, "a", "b");
    expect(await upstreamReply.status).toBe(200);
    upstreamReply.s.write(upstreamReply.writer.encode(FrameKind.ForwardReply, encodeForwardReply(0, { kind: "answer", ...answer("x") })));
    expect(await upstreamReply.closed).toBe(http2.constants.NGHTTP2_CANCEL);
    const garbage = open(session, "a", "b");
    expect(await garbage.status).toBe(200);
    garbage.s.write(garbage.writer.encode(FrameKind.Forward, encodeMessages([heartbeat("a", "b", 1)])));
    expect(await garbage.closed).toBe(http2.constants.NGHTTP2_CANCEL);
    expect(ran).toBe(1);
  });
});
