// The server's own limits, in process over loopback: connection caps (total and per address), idle
// connections closed, slow bodies reset (and their budget given back), HTTP/2 SETTINGS advertised.
import { afterEach, describe, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import { Hono } from "hono";
import { ByteBudget, PeerGate, peerRequestHeaders } from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { RAFT_SNAPSHOT_PATH, raftRoutes } from "../../src/transport/raft_routes.ts";
import { type RunningServer, type ServeOptions, serveApp } from "../../src/transport/server.ts";
import { HMAC, haveOpenssl, makePki, snapshotChunk, until, withDeadline } from "./helpers.ts";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

async function start(opts: Partial<ServeOptions>, budget = new ByteBudget(1 << 30)): Promise<{ server: RunningServer; budget: ByteBudget }> {
  const app = new Hono();
  const gate = new PeerGate(HMAC, "b", { budget });
  app.route("/", raftRoutes({ self: "b", auth: HMAC, gate, onMessages: () => undefined }));
  app.get("/ping", (c) => c.text("pong"));
  const server = await serveApp(app, { listen: "127.0.0.1:0", ...opts });
  cleanup.push(() => server.close());
  return { server, budget };
}

/** Opens a raw TCP connection; resolves once connected, with a promise for its close. */
async function connect(port: number, localAddress?: string): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect({ port, host: "127.0.0.1", ...(localAddress === undefined ? {} : { localAddress }) });
  socket.on("error", () => undefined);
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  cleanup.push(() => void socket.destroy());
  await new Promise<void>((r, j) => {
    socket.once("connect", () => r());
    socket.once("error", j);
  });
  return { socket, closed };
}

/** GET /ping on an open session: its status, within 3 s. */
function pingOn(session: http2.ClientHttp2Session, what: string): Promise<number> {
  return withDeadline(
    new Promise<number>((resolve, reject) => {
      const req = session.request({ ":path": "/ping" });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
      req.end();
    }),
    3000,
    what,
  );
}

async function ping(port: number): Promise<number> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  try {
    return await pingOn(session, "ping");
  } finally {
    session.destroy();
  }
}

test("connections over the per-address cap are reset at once; others still get in", async () => {
  const { server } = await start({ maxConnectionsPerAddress: 5 });
  const conns = await Promise.all(Array.from({ length: 12 }, () => connect(server.port)));
  await until(() => server.stats().refusedConnections === 7, "7 refusals");
  expect(server.stats().connections).toBe(5);
  // Another address is not affected by 127.0.0.1's cap.
  const other = await connect(server.port, "127.0.0.2");
  await until(() => server.stats().connections === 6, "the other address admitted");
  expect(other.socket.destroyed).toBe(false);
  for (const c of conns) c.socket.destroy();
  await until(() => server.stats().connections === 1, "the closed ones counted out");
  expect(await ping(server.port)).toBe(200);
});

test("connections over the total cap are reset, whatever their address", async () => {
  const { server } = await start({ maxConnections: 8 });
  const conns = await Promise.all(Array.from({ length: 20 }, (_, i) => connect(server.port, `127.0.0.${10 + i}`)));
  await until(() => server.stats().refusedConnections === 12, "12 refusals");
  expect(server.stats().connections).toBe(8);
  expect(conns.filter((c) => c.socket.destroyed || c.socket.readyState === "closed").length).toBeLessThanOrEqual(12);
  for (const c of conns) c.socket.destroy();
  await until(() => server.stats().connections === 0, "all counted out");
  expect(await ping(server.port)).toBe(200);
});

test("a connection that never sends a byte is reset after idleTimeoutMs; a session with no stream is closed after idleNoStreamMs", async () => {
  // The socket timeout longer than the no-stream one: the pinging session must be closed by the
  // no-stream rule, not by the socket timer (which Bun fires regardless of HTTP/2 frames).
  const { server } = await start({ idleTimeoutMs: 600, idleNoStreamMs: 300 });
  const silent = await connect(server.port);
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => undefined);
  // PINGs keep the socket from going quiet: only the no-stream rule can close this one.
  const pinger = setInterval(() => {
    if (!session.closed && !session.destroyed) session.ping(() => undefined);
  }, 100);
  const sessionClosed = new Promise<void>((r) => session.once("close", () => r()));
  try {
    await withDeadline(silent.closed, 5000, "the silent connection closed");
    await withDeadline(sessionClosed, 5000, "the idle session closed");
  } finally {
    clearInterval(pinger);
  }
  // Bun gives even the silent h2c connection a session, so both may count here.
  expect(server.stats().idleClosed).toBeGreaterThanOrEqual(1);
  expect(await ping(server.port)).toBe(200);
});

test("a session that served requests is closed idleNoStreamMs after its last stream, not before", async () => {
  // The session's one timer is armed when the session opens and fires while requests come and
  // go: it must then wait out the rest of the quiet time after the last stream, not close early.
  const { server } = await start({ idleTimeoutMs: 10_000, idleNoStreamMs: 400 });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => undefined);
  cleanup.push(() => void session.destroy());
  const sessionClosed = new Promise<void>((r) => session.once("close", () => r()));
  // Bounded: requests for 600 ms (past the first firing of the timer), 20 ms apart.
  const until = performance.now() + 600;
  while (performance.now() < until) {
    const status = await pingOn(session, "a request");
    expect(status).toBe(200);
    await new Promise((r) => setTimeout(r, 20));
  }
  const lastAnswer = performance.now();
  expect(server.stats().idleClosed).toBe(0);
  await withDeadline(sessionClosed, 5000, "the session closed once quiet");
  // The server's stream closed a little before our answer arrived: a few ms of slack.
  expect(performance.now() - lastAnswer).toBeGreaterThanOrEqual(400 - 50);
  expect(server.stats().idleClosed).toBe(1);
});

test("a connection busy with short requests is never reset as idle, whenever the socket timer fires", async () => {
  // Bun's socket timeout fires even while HTTP/2 frames flow; a timer that found the connection
  // between two requests used to reset it (dropping whatever was in flight next).
  const { server } = await start({ idleTimeoutMs: 200, idleNoStreamMs: 10_000 });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => undefined);
  let closed = false;
  session.once("close", () => (closed = true));
  const statuses: number[] = [];
  // Bounded: 60 sequential requests with a 15 ms pause between them, about 1.2 s: six timer periods.
  for (let i = 0; i < 60 && !closed; i++) {
    statuses.push(await pingOn(session, `request ${i}`));
    await new Promise((r) => setTimeout(r, 15));
  }
  expect(closed).toBe(false);
  expect(statuses.filter((st) => st === 200).length).toBe(60);
  session.close();
});

describe.skipIf(!haveOpenssl)("busy sessions stay open past idleNoStreamMs", async () => {
  const pki = haveOpenssl ? await makePki() : undefined;
  for (const secure of [false, true]) {
    test(secure ? "TLS" : "h2c", async () => {
      const { server } = await start({ idleNoStreamMs: 300, ...(secure ? { tls: pki!.server } : {}) });
      const session = http2.connect(`${secure ? "https" : "http"}://127.0.0.1:${server.port}`, secure ? { ca: pki!.ca } : {});
      session.on("error", () => undefined);
      cleanup.push(() => void session.destroy());
      let closed = false;
      session.once("close", () => (closed = true));
      // One long stream (held open 1.2 s), and short requests back to back beside it.
      const long = session.request({ ":method": "POST", ":path": "/ping-later" }, { endStream: false });
      long.on("error", () => undefined);
      const until = performance.now() + 1200;
      let answered = 0;
      while (performance.now() < until) {
        const status = await pingOn(session, "a short request");
        if (status === 200) answered++;
        await new Promise((r) => setTimeout(r, 20));
      }
      long.close();
      expect(closed).toBe(false);
      expect(answered).toBeGreaterThan(2);
      expect(server.stats().idleClosed).toBe(0);
    });
  }
});

test("a signed request whose body never finishes is reset after bodyTimeoutMs, and its budget comes back", async () => {
  const { server, budget } = await start({ bodyTimeoutMs: 400 });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => undefined);
  cleanup.push(() => void session.destroy());
  const announced = new Uint8Array(1 << 20);
  const headers = peerRequestHeaders(HMAC, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body: announced });
  const slow = session.request({ ":method": "POST", ":path": RAFT_SNAPSHOT_PATH, ...headers }, { endStream: false });
  slow.on("error", () => undefined);
  slow.write(new Uint8Array(100));
  await until(() => budget.inUse === announced.byteLength, "the budget taken for the announced body");
  const closed = new Promise<number>((r) => slow.once("close", () => r(slow.rstCode)));
  const code = await withDeadline(closed, 5000, "the slow stream reset");
  expect(code).toBe(http2.constants.NGHTTP2_CANCEL);
  expect(server.stats().slowBodies).toBe(1);
  await until(() => budget.inUse === 0, "the budget given back");
  // The server still takes a well-behaved chunk.
  const hb = encodeMessages([snapshotChunk("a", "b", 1)]);
  const ok = await new Promise<number>((resolve) => {
    const s = session.request({ ":method": "POST", ":path": RAFT_SNAPSHOT_PATH, ...peerRequestHeaders(HMAC, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body: hb }) });
    s.on("response", (h) => resolve(Number(h[":status"])));
    s.end(hb);
  });
  expect(ok).toBe(204);
});

test("SETTINGS advertise the stream and header limits", async () => {
  const { server } = await start({ maxConcurrentStreams: 7, maxHeaderListSize: 9000 });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  session.on("error", () => undefined);
  cleanup.push(() => void session.destroy());
  const settings = await withDeadline(new Promise<http2.Settings>((r) => session.once("remoteSettings", r)), 3000, "remote settings");
  expect(settings.maxConcurrentStreams).toBe(7);
  expect(settings.maxHeaderListSize).toBe(9000);
});

/** Frame header + payload (RFC 9113 §4.1). */
function frame(type: number, flags: number, stream: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out.set([(payload.length >> 16) & 0xff, (payload.length >> 8) & 0xff, payload.length & 0xff, type, flags, (stream >>> 24) & 0x7f, (stream >>> 16) & 0xff, (stream >>> 8) & 0xff, stream & 0xff]);
  out.set(payload, 9);
  return out;
}

// Bun's client obeys the server's SETTINGS, an attacker's does not: raw frames check that the
// server itself refuses streams over maxConcurrentStreams (RST_STREAM REFUSED_STREAM).
test("a client that ignores SETTINGS_MAX_CONCURRENT_STREAMS gets REFUSED_STREAM past the limit", async () => {
  const app = new Hono();
  let release: () => void = () => undefined;
  const held = new Promise<void>((r) => (release = r));
  let started = 0;
  app.get("/slow", async (c) => {
    started++;
    await held;
    return c.text("late");
  });
  const server = await serveApp(app, { listen: "127.0.0.1:0", maxConcurrentStreams: 4 });
  cleanup.push(() => server.close());
  const { socket } = await connect(server.port);
  const received: Uint8Array[] = [];
  socket.on("data", (d: Uint8Array) => received.push(d));
  // GET /slow: static-table :method GET (0x82), :scheme http (0x86), then literal :path (0x04)
  // and :authority (0x01) values.
  const enc = (s: string) => [s.length, ...new TextEncoder().encode(s)];
  const block = new Uint8Array([0x82, 0x86, 0x04, ...enc("/slow"), 0x01, ...enc("localhost")]);
  const frames = [new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frame(4, 0, 0, new Uint8Array(0))];
  for (let i = 0; i < 10; i++) frames.push(frame(1, 0x5, 1 + 2 * i, block));
  socket.write(Buffer.concat(frames));
  /** RST_STREAM frames with error code 7 (REFUSED_STREAM) among what the server sent. */
  const refused = () => {
    const bytes = Buffer.concat(received);
    let n = 0;
    for (let at = 0; at + 9 <= bytes.length; ) {
      const len = (bytes[at]! << 16) | (bytes[at + 1]! << 8) | bytes[at + 2]!;
      if (bytes[at + 3] === 3 && len === 4 && bytes.readUInt32BE(at + 9) === 7) n++;
      at += 9 + len;
    }
    return n;
  };
  await until(() => refused() === 6 && started === 4, "6 refusals, 4 streams served", 3000).catch((e) => {
    const b = Buffer.concat(received);
    for (let at = 0; at + 9 <= b.length; ) {
      const len = (b[at]! << 16) | (b[at + 1]! << 8) | b[at + 2]!;
      console.log("frame type", b[at + 3], "flags", b[at + 4], "stream", b.readUInt32BE(at + 5), "payload", b.subarray(at + 9, at + 9 + len).toString("hex").slice(0, 80));
      at += 9 + len;
    }
    throw e;
  });
  release();
  expect(started).toBe(4);
});
