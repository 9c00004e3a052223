// One port, two protocols: HTTP/1.1 and h2c (prior knowledge) told apart by their first bytes, h2
// and HTTP/1.1 over TLS by ALPN; and HTTP/1.1 held to the same limits as HTTP/2 (connection caps,
// a header or body trickled in, idle keep-alive connections, oversized headers).
import { afterEach, expect, test } from "bun:test";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { Hono } from "hono";
import { type RunningServer, type ServeOptions, serveApp } from "../../src/transport/server.ts";
import { haveOpenssl, makePki, until, withDeadline } from "./helpers.ts";

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function app(): Hono {
  const a = new Hono();
  a.get("/v1/kv/x", (c) => c.json({ value: "hello" }));
  a.put("/v1/kv/x", async (c) => c.json({ bytes: (await c.req.arrayBuffer()).byteLength }));
  // A body cut off by the server's reset rejects the read; nobody is left to answer.
  a.onError((_err, c) => c.body(null, 500));
  return a;
}

async function start(opts: Partial<ServeOptions> = {}): Promise<RunningServer> {
  const server = await serveApp(app(), { listen: "127.0.0.1:0", ...opts });
  cleanup.push(() => server.close());
  return server;
}

async function h2Request(url: string, method: string, body?: Uint8Array, ca?: string): Promise<{ status: number; text: string }> {
  const session = http2.connect(url, ca === undefined ? {} : { ca });
  session.on("error", () => undefined);
  try {
    return await withDeadline(
      new Promise((resolve, reject) => {
        const u = new URL(url);
        const req = session.request({ ":method": method, ":path": u.pathname });
        let status = 0;
        let text = "";
        req.on("response", (h) => (status = Number(h[":status"])));
        req.setEncoding("utf8");
        req.on("data", (d: string) => (text += d));
        req.on("end", () => resolve({ status, text }));
        req.on("error", reject);
        req.end(body);
      }),
      3000,
      "h2 request",
    );
  } finally {
    session.destroy();
  }
}

/** A raw TCP connection with everything it receives collected, and a promise for its close. */
async function raw(port: number): Promise<{ socket: net.Socket; received: () => string; closed: Promise<void> }> {
  const socket = net.connect({ port, host: "127.0.0.1" });
  socket.on("error", () => undefined);
  let got = "";
  socket.on("data", (d) => (got += d.toString("latin1")));
  const closed = new Promise<void>((r) => socket.once("close", () => r()));
  cleanup.push(() => void socket.destroy());
  await new Promise<void>((r, j) => {
    socket.once("connect", () => r());
    socket.once("error", j);
  });
  return { socket, received: () => got, closed };
}

test("HTTP/1.1 and h2c on the same port give the same answers", async () => {
  const server = await start();
  const url = `http://127.0.0.1:${server.port}/v1/kv/x`;
  const viaFetch = await fetch(url); // Bun's fetch speaks HTTP/1.1
  expect(viaFetch.status).toBe(200);
  expect(await viaFetch.text()).toBe('{"value":"hello"}');
  const viaH2 = await h2Request(url, "GET");
  expect(viaH2).toEqual({ status: 200, text: '{"value":"hello"}' });
  const body = new Uint8Array(200_000).fill(7);
  const put1 = await fetch(url, { method: "PUT", body });
  expect(await put1.json()).toEqual({ bytes: 200_000 });
  expect(await h2Request(url, "PUT", body)).toEqual({ status: 200, text: '{"bytes":200000}' });
  // A request line starting like the preface ("P" of PUT, then not "R") is HTTP/1.1 after one byte.
  const c = await raw(server.port);
  c.socket.write("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  await until(() => c.received().includes('{"bytes":3}'), "the HTTP/1.1 answer");
  expect(c.received().startsWith("HTTP/1.1 200")).toBe(true);
});

test("a header trickled in over HTTP/1.1 loses its connection after bodyTimeoutMs", async () => {
  const server = await start({ bodyTimeoutMs: 300 });
  const c = await raw(server.port);
  c.socket.write("GET /v1/kv/x HTTP/1.1\r\nHost: a\r\n"); // never the blank line
  const t0 = performance.now();
  await withDeadline(c.closed, 3000, "the trickling connection closed");
  expect(performance.now() - t0).toBeLessThan(2000);
  expect(server.stats().idleClosed).toBe(1);
  await until(() => server.stats().connections === 0, "counted out");
});

test("a body trickled in over HTTP/1.1 loses its connection after bodyTimeoutMs", async () => {
  const server = await start({ bodyTimeoutMs: 300 });
  const c = await raw(server.port);
  c.socket.write("PUT /v1/kv/x HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789");
  await withDeadline(c.closed, 3000, "the slow body's connection closed");
  expect(server.stats().slowBodies).toBe(1);
  expect(c.received()).toBe("");
});

test("an idle HTTP/1.1 keep-alive connection is closed after idleNoStreamMs", async () => {
  const server = await start({ idleNoStreamMs: 300 });
  const c = await raw(server.port);
  c.socket.write("GET /v1/kv/x HTTP/1.1\r\nHost: a\r\n\r\n");
  await until(() => c.received().includes('{"value":"hello"}'), "the answer");
  await withDeadline(c.closed, 3000, "the idle keep-alive connection closed");
  expect(server.stats().idleClosed).toBe(1);
});

test("HTTP/1.1 headers past maxHeaderListSize get 431", async () => {
  const server = await start({ maxHeaderListSize: 4096 });
  const c = await raw(server.port);
  c.socket.write(`GET /v1/kv/x HTTP/1.1\r\nHost: a\r\nX-Big: ${"a".repeat(8000)}\r\n\r\n`);
  await until(() => c.received().length > 0, "an answer");
  expect(c.received().startsWith("HTTP/1.1 431")).toBe(true);
});

test("HTTP/1.1 connections count against the same connection cap as HTTP/2", async () => {
  const server = await start({ maxConnectionsPerAddress: 3 });
  const held = await Promise.all([0, 1, 2].map(() => raw(server.port)));
  await until(() => server.stats().connections === 3, "three held");
  const over = await raw(server.port);
  await withDeadline(over.closed, 3000, "the fourth connection reset");
  expect(server.stats().refusedConnections).toBe(1);
  held[0]!.socket.destroy();
  await until(() => server.stats().connections === 2, "one freed");
  const res = await fetch(`http://127.0.0.1:${server.port}/v1/kv/x`);
  expect(res.status).toBe(200);
});

test.skipIf(!haveOpenssl)("over TLS, ALPN h2 and http/1.1 both answer on the same port", async () => {
  const pki = await makePki();
  const server = await start({ tls: pki.server });
  const url = `https://127.0.0.1:${server.port}/v1/kv/x`;
  expect(await h2Request(url, "GET", undefined, pki.ca)).toEqual({ status: 200, text: '{"value":"hello"}' });
  const h1 = await new Promise<{ status: number; text: string; alpn: unknown }>((resolve, reject) => {
    const req = https.request(url, { ca: pki.ca, ALPNProtocols: ["http/1.1"], agent: false } as https.RequestOptions, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, text, alpn: (res.socket as { alpnProtocol?: unknown }).alpnProtocol }));
    });
    req.on("error", reject);
    req.end();
  });
  expect(h1).toEqual({ status: 200, text: '{"value":"hello"}', alpn: "http/1.1" });
});
