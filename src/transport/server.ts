// Serves one Hono app over HTTP/2: h2c by default, TLS (h2 by ALPN, HTTP/1.1 allowed) with a
// cert and key, mutual TLS when a CA is given as well.
//
// Bun 1.4.5 notes, checked by hand and in tests/transport:
// - h2c, TLS, mTLS, IPv4 and IPv6 (including [::], which also accepts IPv4) all work.
// - session.setLocalWindowSize() stalls every upload at 65,535 bytes (it also changes the stream
//   window without telling the peer; oven-sh/bun PR #40180). We never call it and raise the stream
//   window through SETTINGS instead; the connection window stays at 65,535, which caps one session
//   at ≈ 64 KiB per round trip on long links.
// - A TCP connection that never sends the HTTP/2 preface is not closed by session timeouts, and
//   socket.destroy() on it leaves the peer's side open: we reset idle sockets with resetAndDestroy().
// - An h2c server does not speak HTTP/1.1: curl needs --http2-prior-knowledge.

import http2 from "node:http2";
import type { Socket } from "node:net";
import { serve } from "@hono/node-server";
import type { Hono } from "hono";
import { parseHostPort } from "./address.ts";

export interface TlsConfig {
  cert: string | Uint8Array;
  key: string | Uint8Array;
  /** Enables mutual TLS: client certificates are requested and verified against this CA. */
  ca?: string | Uint8Array;
  /**
   * With a CA: refuse clients without a valid certificate during the handshake (default). False
   * lets them in (for a public client API) and leaves the check to peerAuth({ mode: "mtls" }).
   */
  requireClientCert?: boolean;
}

export interface ServeOptions {
  /** "127.0.0.1:9000", "[::1]:9000", "[::]:0"; port 0 picks a free port. */
  listen: string;
  tls?: TlsConfig;
  /** Sockets quiet for this long are reset (peers send heartbeats far more often). */
  idleTimeoutMs?: number;
  /** Per-stream receive window advertised in SETTINGS. */
  initialWindowSize?: number;
  /** Grace period for in-flight streams on close() before sessions are destroyed. */
  closeGraceMs?: number;
}

export interface RunningServer {
  port: number;
  close(): Promise<void>;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_INITIAL_WINDOW = 1 << 20;

// `any`: the composed app's Env type is the node's business, not the server's.
export async function serveApp(app: Hono<any, any, any>, opts: ServeOptions): Promise<RunningServer> {
  const { host, port } = parseHostPort(opts.listen);
  const settings = { initialWindowSize: opts.initialWindowSize ?? DEFAULT_INITIAL_WINDOW };
  const tls = opts.tls;
  const server = serve({
    fetch: app.fetch,
    hostname: host,
    port,
    ...(tls === undefined
      ? { createServer: http2.createServer, serverOptions: { settings } }
      : {
          createServer: http2.createSecureServer,
          serverOptions: {
            settings,
            cert: tls.cert,
            key: tls.key,
            allowHTTP1: true,
            ...(tls.ca === undefined
              ? {}
              : { ca: tls.ca, requestCert: true, rejectUnauthorized: tls.requireClientCert ?? true }),
          },
        }),
  });

  const sockets = new Set<Socket>();
  const sessions = new Set<http2.ServerHttp2Session>();
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  // Open streams per connection (by remote address and port: Bun hands sessions a proxy of the
  // socket, not the socket itself). A connection carrying a long response (a watch) is not idle,
  // even when the client only listens: Bun fires the socket timeout regardless of HTTP/2 traffic.
  const openStreams = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const idle = () => {
      if ((openStreams.get(peer) ?? 0) > 0) setTimeout(idle, idleMs).unref();
      else socket.resetAndDestroy();
    };
    socket.setTimeout(idleMs, idle);
  });
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
    const peer = `${session.socket?.remoteAddress}:${session.socket?.remotePort}`;
    session.on("stream", (stream: http2.ServerHttp2Stream) => {
      openStreams.set(peer, (openStreams.get(peer) ?? 0) + 1);
      stream.once("close", () => {
        const left = (openStreams.get(peer) ?? 1) - 1;
        if (left > 0) openStreams.set(peer, left);
        else openStreams.delete(peer);
      });
    });
    // A broken session must not surface as an unhandled 'error' event.
    session.on("error", () => undefined);
  });
  // Bad preface, bad frames, failed handshakes: the session is dropped; nothing to do for us.
  server.on("sessionError", () => undefined);
  server.on("tlsClientError", () => undefined);

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${opts.listen}: ${err.message}`));
    server.once("error", onError);
    server.once("listening", () => {
      server.off("error", onError);
      resolve();
    });
  });
  server.on("error", () => undefined);
  const address = server.address();
  const boundPort = typeof address === "object" && address !== null ? address.port : port;

  const close = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of sessions) s.close();
    const grace = opts.closeGraceMs ?? 1000;
    const drained = Promise.all([...sessions].map((s) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())))));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([drained, new Promise<void>((r) => (timer = setTimeout(r, grace)))]);
    clearTimeout(timer);
    for (const s of sessions) s.destroy();
    for (const socket of sockets) socket.resetAndDestroy();
    await closed;
  };
  return { port: boundPort, close };
}
