// Hostile bytes on the wire: the server must stay up and keep serving well-formed requests.

import { afterAll, beforeAll, expect, test } from "bun:test";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { Hono } from "hono";
import type { Message } from "../../src/raft/types.ts";
import { peerRequestHeaders } from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { RAFT_SNAPSHOT_PATH, raftRoutes } from "../../src/transport/raft_routes.ts";
import { type RunningServer, serveApp } from "../../src/transport/server.ts";
import { HMAC, haveOpenssl, makePki, snapshotChunk, withDeadline } from "./helpers.ts";

const PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const EMPTY_SETTINGS = new Uint8Array([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const random = (n: number) => crypto.getRandomValues(new Uint8Array(n));

const received: Message[] = [];
const app = new Hono();
app.route("/", raftRoutes({ self: "b", auth: HMAC, onMessages: (m) => received.push(...m) }));

let h2c: RunningServer;
let h2tls: RunningServer | undefined;
let ca = "";
beforeAll(async () => {
  h2c = await serveApp(app, { listen: "127.0.0.1:0", idleTimeoutMs: 1000 });
  if (haveOpenssl) {
    const pki = await makePki();
    ca = pki.ca;
    h2tls = await serveApp(app, { listen: "[::1]:0", tls: pki.server, idleTimeoutMs: 1000 });
  }
});
afterAll(async () => {
  await h2c.close();
  await h2tls?.close();
});

/** Writes `bytes` on a fresh connection and resolves when the server closes it (or after 3 s). */
function blast(connect: () => net.Socket, bytes: Uint8Array, end: boolean): Promise<void> {
  return new Promise((resolve) => {
    const sock = connect();
    const finish = () => {
      clearTimeout(timer);
      sock.destroy();
      resolve();
    };
    // The server resets idle sockets after 1 s; 3 s bounds the wait if it does not.
    const timer = setTimeout(finish, 3000);
    sock.on("error", () => undefined);
    sock.on("close", finish);
    // Read (and ignore) the server's answer, or its FIN is never seen.
    sock.resume();
    sock.write(bytes, () => {
      if (end) sock.end();
    });
  });
}

const plain = (port: number) => () => net.connect(port, "127.0.0.1");
const overTls = (port: number) => () => tls.connect({ port, host: "::1", ca, ALPNProtocols: ["h2"] });

/** A signed, well-formed chunk through a fresh client: the proof the server is still serving. */
async function healthy(origin: string, seq: number): Promise<void> {
  const client = new H2Client({ tls: origin.startsWith("https") ? { ca } : undefined });
  const body = encodeMessages([snapshotChunk("a", "b", seq)]);
  const headers = peerRequestHeaders(HMAC, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body });
  const res = await client.request(origin, { method: "POST", path: RAFT_SNAPSHOT_PATH, body, headers });
  await client.close();
  expect(res.status).toBe(204);
  expect(received.some((m) => m.type === "snapshot" && m.offset === seq)).toBe(true);
}

const garbage: [string, Uint8Array, boolean][] = [
  ["random bytes", random(64 * 1024), true],
  ["truncated preface, left open", new TextEncoder().encode(PREFACE.slice(0, 10)), false],
  ["preface then a truncated frame", new Uint8Array([...new TextEncoder().encode(PREFACE), 0, 0, 12, 4, 0, 0, 0]), false],
  ["preface, settings, then random frames", new Uint8Array([...new TextEncoder().encode(PREFACE), ...EMPTY_SETTINGS, ...random(4096)]), true],
  ["HTTP/1.1 on an h2c port", new TextEncoder().encode("POST /raft/v1/snapshot HTTP/1.1\r\nHost: x\r\n\r\n"), true],
];

test("h2c: garbage and truncated frames, then a good request", async () => {
  for (const [, bytes, end] of garbage) await blast(plain(h2c.port), bytes, end);
  await healthy(`http://127.0.0.1:${h2c.port}`, 1);
}, 20_000);

test.skipIf(!haveOpenssl)("TLS: garbage inside and outside the handshake, then a good request", async () => {
  const port = h2tls?.port ?? 0;
  await blast(plain(port), random(4096), true);
  for (const [, bytes, end] of garbage) await blast(overTls(port), bytes, end);
  await healthy(`https://[::1]:${port}`, 2);
}, 20_000);

test("a truncated msgpack body is a 400, and a body cut off mid-upload hurts nobody", async () => {
  const origin = `http://127.0.0.1:${h2c.port}`;
  const full = encodeMessages([snapshotChunk("a", "b", 3)]);
  const cut = full.subarray(0, full.length - 7);
  const client = new H2Client();
  const headers = peerRequestHeaders(HMAC, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body: cut });
  const res = await client.request(origin, { method: "POST", path: RAFT_SNAPSHOT_PATH, body: cut, headers });
  expect(res.status).toBe(400);
  expect(new TextDecoder().decode(res.body)).toContain("malformed msgpack");
  await client.close();

  // Announce 1 MiB (signed), send 1 KiB, then drop the connection.
  const session = http2.connect(origin);
  session.on("error", () => undefined);
  const announced = peerRequestHeaders(HMAC, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body: random(1 << 20) });
  const stream = session.request({ ":method": "POST", ":path": RAFT_SNAPSHOT_PATH, ...announced });
  stream.on("error", () => undefined);
  await withDeadline(new Promise<void>((r) => stream.write(random(1024), () => r())), 5000, "partial upload");
  session.destroy();

  await healthy(origin, 5);
  expect(received.some((m) => m.type === "snapshot" && m.offset === 3)).toBe(false);
}, 20_000);
