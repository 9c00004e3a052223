// The long-lived peer stream between real servers on loopback: liveness (a killed, restarted or
// blackholed peer), one inbound stream per peer, and the limits of the receiving end.

import { afterEach, expect, test } from "bun:test";
import http2 from "node:http2";
import { Hono } from "hono";
import { peerRequestHeaders } from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { FRAMES_CONTENT_TYPE, RAFT_STREAM_PATH } from "../../src/transport/raft_stream.ts";
import { serveApp, type StreamRoute } from "../../src/transport/server.ts";
import { Direction, FrameKind, FrameWriter, streamKey } from "../../src/transport/stream_frame.ts";
import { HMAC, heartbeat, mesh, type NodeOptions, startNode, type TestNode, until } from "./helpers.ts";

const running: TestNode[] = [];
const cleanup: Array<() => Promise<void> | void> = [];
const start = async (id: string, opts?: NodeOptions) => {
  const n = await startNode(id, opts);
  running.push(n);
  return n;
};
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
  await Promise.all(cleanup.splice(0).map((f) => f()));
});

test("a killed peer is reported unreachable; restarted, its first frame ends our backoff and it is reached within 1 s", async () => {
  const rtts: number[] = [];
  // A backoff of 2.5-5 s: without being heard from, a would not retry within the second below.
  const a = await start("a", { transport: { backoffMinMs: 5000, backoffMaxMs: 5000, onRoundTrip: (_, s) => rtts.push(s) } });
  const b = await start("b");
  mesh([a, b]);
  a.transport.send(heartbeat("a", "b", 1));
  await b.inbox.waitFor(1);
  await until(() => a.transport.stats()[0]?.sent === 1, "the answer");
  expect(rtts.length).toBe(1);
  expect(a.transport.stats()[0]?.rttMs).toBeGreaterThan(0);

  await b.stop();
  running.splice(running.indexOf(b), 1);
  await until(() => a.unreachable.includes("b"), "unreachable report (the stream closed)");
  expect(a.transport.stats()[0]).toMatchObject({ state: "backoff", reachable: false });

  const b2 = await start("b", { listen: b.address });
  const restarted = performance.now();
  mesh([a, b2]);
  // A restarted follower speaks first (its election timer, or an answer): one frame from it.
  b2.transport.send(heartbeat("b", "a", 1));
  await a.inbox.waitFor(1);
  a.transport.send(heartbeat("a", "b", 2));
  await b2.inbox.waitFor(1);
  expect(performance.now() - restarted).toBeLessThan(1000);
  await until(() => a.transport.stats()[0]?.reachable === true && a.transport.stats()[0]?.state === "up", "reachable again");
  expect(a.unreachable).toEqual(["b"]);
});

test("a blackholed peer (it takes the stream, then neither reads nor answers) is detected and the stream reopened", async () => {
  let opens = 0;
  const blackhole: StreamRoute = {
    handle: (req, res) => {
      opens++;
      (res as http2.Http2ServerResponse).writeHead(200, { "content-type": FRAMES_CONTENT_TYPE });
      // Reads nothing: flow control fills, and nothing is ever answered.
      req.pause();
    },
    closeAll: () => undefined,
  };
  const server = await serveApp(new Hono(), { listen: "127.0.0.1:0", streamRoutes: new Map([[RAFT_STREAM_PATH, blackhole]]) });
  cleanup.push(() => server.close());
  const a = await start("a", { transport: { silenceTimeoutMs: 300, backoffMinMs: 10, backoffMaxMs: 20 } });
  a.transport.setPeers(new Map([["b", `127.0.0.1:${server.port}`]]));
  // Raft keeps sending (a heartbeat a tick); bounded to 200 ticks of 20 ms.
  for (let i = 0; i < 200 && opens < 2; i++) {
    a.transport.send(heartbeat("a", "b", i));
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(opens).toBeGreaterThanOrEqual(2);
  expect(a.unreachable).toEqual(["b"]);
  expect(a.transport.stats()[0]?.lastError).toBe("no answer from the peer for 300 ms");
  expect(a.transport.stats()[0]?.sent).toBe(0);
});

/** Opens a stream to `to` as `from` by hand. */
function open(session: http2.ClientHttp2Session, from: string, to: string) {
  const headers: Record<string, string> = { "content-type": FRAMES_CONTENT_TYPE, ...peerRequestHeaders(HMAC, { method: "POST", path: RAFT_STREAM_PATH, from, to, body: new Uint8Array(0) }) };
  const s = session.request({ ":method": "POST", ":path": RAFT_STREAM_PATH, ...headers }, { endStream: false });
  s.on("error", () => undefined);
  const status = new Promise<number>((r) => s.once("response", (h) => r(Number(h[":status"]))));
  const closed = new Promise<number>((r) => s.once("close", () => r(s.rstCode)));
  const writer = new FrameWriter(streamKey(HMAC, { nonce: headers["x-phalanx-nonce"]!, opener: from, acceptor: to }, Direction.FromOpener));
  return { s, status, closed, writer };
}

test("one inbound stream per peer: a newer authenticated one replaces the old", async () => {
  const b = await start("b");
  const session = http2.connect(`http://${b.address}`);
  session.on("error", () => undefined);
  cleanup.push(() => session.destroy());
  const first = open(session, "a", "b");
  expect(await first.status).toBe(200);
  expect(b.stream.peers()).toEqual(["a"]);
  const second = open(session, "a", "b");
  expect(await second.status).toBe(200);
  expect(await first.closed).toBe(http2.constants.NGHTTP2_CANCEL);
  expect(b.stream.peers()).toEqual(["a"]);
  second.s.write(second.writer.encode(FrameKind.Batch, encodeMessages([heartbeat("a", "b", 5)])));
  await b.inbox.waitFor(1);
});

test("a frame that starts but does not finish within the frame timeout ends the stream; nothing is delivered", async () => {
  const b = await start("b", { stream: { frameTimeoutMs: 200 } });
  const session = http2.connect(`http://${b.address}`);
  session.on("error", () => undefined);
  cleanup.push(() => session.destroy());
  const slow = open(session, "a", "b");
  expect(await slow.status).toBe(200);
  const frame = slow.writer.encode(FrameKind.Batch, encodeMessages([heartbeat("a", "b", 1)]));
  const t0 = performance.now();
  slow.s.write(frame.subarray(0, frame.length - 1));
  expect(await slow.closed).toBe(http2.constants.NGHTTP2_CANCEL);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(150);
  expect(b.inbox.msgs).toEqual([]);
  expect(b.stream.peers()).toEqual([]);
});

test("a batch that fails validation (a message for another node) ends the stream undelivered", async () => {
  const b = await start("b");
  const session = http2.connect(`http://${b.address}`);
  session.on("error", () => undefined);
  cleanup.push(() => session.destroy());
  const s = open(session, "a", "b");
  expect(await s.status).toBe(200);
  s.s.write(s.writer.encode(FrameKind.Batch, encodeMessages([heartbeat("a", "c", 1)])));
  expect(await s.closed).toBe(http2.constants.NGHTTP2_CANCEL);
  expect(b.inbox.msgs).toEqual([]);
});

test("the stream path over HTTP/1.1 is refused", async () => {
  const b = await start("b");
  const res = await fetch(`http://${b.address}${RAFT_STREAM_PATH}`, { method: "POST", body: "x" });
  expect(res.status).toBe(505);
});

test("a peer that does not read its answers is held by flow control: the receiver stops reading it", async () => {
  const b = await start("b");
  const session = http2.connect(`http://${b.address}`);
  session.on("error", () => undefined);
  cleanup.push(() => session.destroy());
  const s = open(session, "a", "b");
  expect(await s.status).toBe(200);
  // Never read the answers: once our receive window (64 KiB) is full, b's answers back up.
  s.s.pause();
  const total = 50_000;
  let written = 0;
  let blocked = false;
  // Writes until the stream refuses more (bounded by `total`), one turn at a time.
  for (let turn = 0; turn < 500 && written < total && !blocked; turn++) {
    for (let i = 0; i < 100 && written < total; i++) {
      blocked = !s.s.write(s.writer.encode(FrameKind.Batch, encodeMessages([heartbeat("a", "b", written++)])));
      if (blocked) break;
    }
    await new Promise((r) => setImmediate(r));
  }
  // b delivers what it read before its answers backed up, then stops reading: HTTP/2 flow control
  // holds the rest on our side instead of in b's memory.
  let settled = -1;
  await until(() => {
    const n = b.inbox.msgs.length;
    const same = n === settled;
    settled = n;
    return same && n > 0;
  }, "b stops taking frames");
  expect(blocked).toBe(true);
  expect(b.inbox.msgs.length).toBeLessThan(written);
  // Reading the answers again lets everything through, in order.
  s.s.resume();
  await b.inbox.waitFor(written);
  expect(b.inbox.msgs.map((m) => (m.type === "heartbeat" ? m.seq : -1))).toEqual([...Array(written).keys()]);
});

test("a batch the core refuses is answered 'refused': counted as an error and dropped, the stream and the peer stay up", async () => {
  let refuse = true;
  const b = await start("b", {
    stream: {
      onMessages: () => {
        if (refuse) throw new Error("disk full");
      },
    },
  });
  const a = await start("a");
  a.transport.setPeers(new Map([["b", b.address]]));
  a.transport.send(heartbeat("a", "b", 1));
  await until(() => (a.transport.stats()[0]?.errors ?? 0) === 1, "the refusal");
  expect(a.transport.stats()[0]).toMatchObject({ state: "up", reachable: true, sent: 0, dropped: 1, inflight: 0 });
  expect(a.transport.stats()[0]?.lastError).toBe("refused: core rejected the batch: disk full");
  refuse = false;
  a.transport.send(heartbeat("a", "b", 2));
  await until(() => a.transport.stats()[0]?.sent === 1, "the next batch taken");
  expect(a.unreachable).toEqual([]);
  expect(b.stream.peers()).toEqual(["a"]);
});
