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
// - The SETTINGS given to createServer are advertised and enforced (maxConcurrentStreams,
//   maxHeaderListSize); @hono/node-server passes serverOptions to http2.createServer unchanged.
//   The 'stream' event fires for every request next to the compat 'request' handler.
//
// Limits, because a node must survive whoever can reach its port (issue 9 §2: 20,000 idle
// connections exhausted file descriptors and /readyz stopped answering; 20,000 never-finished
// streams were all accepted): connections are capped in total and per remote address (a
// connection over a cap is reset at once), a session with no open stream is closed after
// idleNoStreamMs, a request whose body has not ended bodyTimeoutMs after its headers is reset,
// and sessions carry at most maxConcurrentStreams streams and maxSessionMemory MB.

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
  /** Open connections in total; more are reset as they arrive. */
  maxConnections?: number;
  /** Open connections from one remote address (IPv4-mapped IPv6 counts as the IPv4 address). */
  maxConnectionsPerAddress?: number;
  /** A connection with no open stream this long is closed (GOAWAY, then reset). */
  idleNoStreamMs?: number;
  /** A request body must end this long after its headers, or the stream is reset. */
  bodyTimeoutMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS per session. */
  maxConcurrentStreams?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE (bytes, uncompressed). */
  maxHeaderListSize?: number;
  /** node:http2 maxSessionMemory (MB): past it new streams of the session are refused. */
  maxSessionMemoryMb?: number;
}

export interface RunningServer {
  port: number;
  stats(): ServerStats;
  close(): Promise<void>;
}

export interface ServerStats {
  connections: number;
  /** Connections reset on arrival because a cap was reached. */
  refusedConnections: number;
  /** Streams reset because their body did not end in time. */
  slowBodies: number;
  /** Connections closed for having no stream for idleNoStreamMs. */
  idleClosed: number;
}

export const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
export const DEFAULT_INITIAL_WINDOW = 1 << 20;
/** Far above a cluster's needs (peers hold one connection each way), far below the fd limit. */
export const DEFAULT_MAX_CONNECTIONS = 1024;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 128;
export const DEFAULT_IDLE_NO_STREAM_MS = 60_000;
/**
 * Never shorter than what a peer waits itself: batches give up after 5 s (peers.ts
 * requestTimeoutMs), and a 512 KiB snapshot chunk needs only 35 KB/s to finish within 15 s.
 */
export const DEFAULT_BODY_TIMEOUT_MS = 15_000;
export const DEFAULT_MAX_CONCURRENT_STREAMS = 128;
export const DEFAULT_MAX_HEADER_LIST_SIZE = 16 << 10;
export const DEFAULT_MAX_SESSION_MEMORY_MB = 16;

// `any`: the composed app's Env type is the node's business, not the server's.
export async function serveApp(app: Hono<any, any, any>, opts: ServeOptions): Promise<RunningServer> {
  const { host, port } = parseHostPort(opts.listen);
  const settings = {
    initialWindowSize: opts.initialWindowSize ?? DEFAULT_INITIAL_WINDOW,
    maxConcurrentStreams: opts.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS,
    maxHeaderListSize: opts.maxHeaderListSize ?? DEFAULT_MAX_HEADER_LIST_SIZE,
  };
  const limits = { settings, maxSessionMemory: opts.maxSessionMemoryMb ?? DEFAULT_MAX_SESSION_MEMORY_MB };
  const tls = opts.tls;
  const server = serve({
    fetch: app.fetch,
    hostname: host,
    port,
    ...(tls === undefined
      ? { createServer: http2.createServer, serverOptions: limits }
      : {
          createServer: http2.createSecureServer,
          serverOptions: {
            ...limits,
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
  const perAddress = new Map<string, number>();
  const counters = { refusedConnections: 0, slowBodies: 0, idleClosed: 0 };
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  const maxPerAddress = opts.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS;
  const idleNoStreamMs = opts.idleNoStreamMs ?? DEFAULT_IDLE_NO_STREAM_MS;
  const bodyTimeoutMs = opts.bodyTimeoutMs ?? DEFAULT_BODY_TIMEOUT_MS;
  // Open streams per connection (by remote address and port: Bun hands sessions a proxy of the
  // socket, not the socket itself). A connection carrying a long response (a watch) is not idle,
  // even when the client only listens: Bun fires the socket timeout regardless of HTTP/2 traffic.
  const openStreams = new Map<string, number>();
  server.on("connection", (socket: Socket) => {
    const from = remoteKey(socket);
    const fromThere = perAddress.get(from) ?? 0;
    if (sockets.size >= maxConnections || fromThere >= maxPerAddress) {
      // Refused before TLS or HTTP/2 spend anything on it. A reset, not destroy(): see above.
      counters.refusedConnections++;
      socket.resetAndDestroy();
      return;
    }
    sockets.add(socket);
    perAddress.set(from, fromThere + 1);
    socket.once("close", () => {
      sockets.delete(socket);
      const left = (perAddress.get(from) ?? 1) - 1;
      if (left > 0) perAddress.set(from, left);
      else perAddress.delete(from);
    });
    // A connection that goes quiet (including one that never sends a preface or finishes its
    // handshake) is reset; one that talks but opens no stream is closed by its session below.
    // One with an open stream is not idle: Bun fires the socket timeout even while HTTP/2 data
    // flows, and a watch only listens.
    const peer = `${socket.remoteAddress}:${socket.remotePort}`;
    const onQuiet = () => {
      if ((openStreams.get(peer) ?? 0) > 0) setTimeout(onQuiet, idleMs).unref();
      else socket.resetAndDestroy();
    };
    socket.setTimeout(idleMs, onQuiet);
  });
  /**
   * Per session: streams open on it, and the timer that closes it when there are none. Keyed by
   * session, not socket: with TLS the 'connection' socket is the TCP one, the session's the TLS one.
   */
  const idle = new WeakMap<http2.Http2Session, { open: number; timer: ReturnType<typeof setTimeout> | undefined }>();
  function armIdle(session: http2.Http2Session): void {
    const state = idle.get(session);
    if (state === undefined) return;
    clearTimeout(state.timer);
    state.timer = setTimeout(() => {
      if (state.open > 0 || session.destroyed) return;
      counters.idleClosed++;
      // GOAWAY first, so a client about to reuse the session opens a new one instead of failing.
      session.close();
      setTimeout(() => session.destroyed || session.destroy(), 1000).unref?.();
    }, idleNoStreamMs);
    state.timer.unref?.();
  }
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    idle.set(session, { open: 0, timer: undefined });
    armIdle(session);
    session.once("close", () => {
      sessions.delete(session);
      clearTimeout(idle.get(session)?.timer);
    });
    // A broken session must not surface as an unhandled 'error' event.
    session.on("error", () => undefined);
  });
  server.on("stream", (stream: http2.ServerHttp2Stream) => {
    const session = stream.session;
    const peer = `${session?.socket?.remoteAddress}:${session?.socket?.remotePort}`;
    openStreams.set(peer, (openStreams.get(peer) ?? 0) + 1);
    stream.once("close", () => {
      const left = (openStreams.get(peer) ?? 1) - 1;
      if (left > 0) openStreams.set(peer, left);
      else openStreams.delete(peer);
    });
    const state = session === undefined ? undefined : idle.get(session);
    if (session !== undefined && state !== undefined) {
      state.open++;
      clearTimeout(state.timer);
      stream.once("close", () => {
        state.open--;
        if (state.open === 0) armIdle(session);
      });
    }
    if (stream.endAfterHeaders) return;
    // A body trickled in (or never finished) must not hold a stream, its buffers and a share of the
    // peer body budget for ever.
    const timer = setTimeout(() => {
      if (stream.closed || stream.destroyed) return;
      counters.slowBodies++;
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }, bodyTimeoutMs);
    timer.unref?.();
    stream.once("end", () => clearTimeout(timer));
    stream.once("close", () => clearTimeout(timer));
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
  const stats = (): ServerStats => ({ connections: sockets.size, ...counters });
  return { port: boundPort, stats, close };
}

/** The remote address a connection counts against; IPv4-mapped IPv6 is the IPv4 address. */
function remoteKey(socket: Socket): string {
  const a = socket.remoteAddress ?? "unknown";
  return a.startsWith("::ffff:") ? a.slice(7) : a;
}
