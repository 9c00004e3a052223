// Serves one Hono app on one port: HTTP/2 for peers and clients, HTTP/1.1 for plain HTTP clients
// (curl, wget, Python's urllib, Node's fetch). In cleartext the first bytes of a connection choose:
// the HTTP/2 preface means h2c with prior knowledge, anything else HTTP/1.1. With a cert and key,
// TLS chooses by ALPN (h2, else HTTP/1.1); mutual TLS when a CA is given as well. Peer routes
// answer over HTTP/1.1 too, behind the same peer proof; peers themselves always use h2.
//
// Bun 1.4.5 notes, checked by hand and in tests/transport:
// - h2c, TLS, mTLS, IPv4 and IPv6 (including [::], which also accepts IPv4) all work.
// - session.setLocalWindowSize() stalls every upload at 65,535 bytes (it also changes the stream
//   window without telling the peer; oven-sh/bun PR #40180). We never call it and raise the stream
//   window through SETTINGS instead; the connection window stays at 65,535, which caps one session
//   at ≈ 64 KiB per round trip on long links.
// - A TCP connection that never sends the HTTP/2 preface is not closed by session timeouts, and
//   socket.destroy() on it leaves the peer's side open: we reset idle sockets with resetAndDestroy().
// - An h2c server does not speak HTTP/1.1, so a net.Server sniffs and emits 'connection' on an
//   http2 or an http server that never listens; both accept emitted sockets (TLS ones too, with
//   authorized/getPeerCertificate intact for mTLS). The sniff costs one look at the first packet
//   of a connection; peers keep theirs open, so requests pay nothing.
// - node:http's headersTimeout and requestTimeout do nothing: HTTP/1.1 limits are enforced here.
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

import http from "node:http";
import http2 from "node:http2";
import net, { type Socket } from "node:net";
import nodeTls from "node:tls";
import { getRequestListener } from "@hono/node-server";
import type { Hono } from "hono";
import { parseHostPort } from "./address.ts";
import { endOnStream } from "./h2_answer.ts";

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
  /**
   * Paths served below the app, by exact :path, for long-lived streams (raft_stream.ts says why).
   * Their bodies are exempt from bodyTimeoutMs (a stream's body never ends); the handler enforces
   * its own limits. Every other limit (connection caps, session memory, streams) still applies.
   */
  streamRoutes?: ReadonlyMap<string, StreamRoute>;
}

export interface StreamRoute {
  handle(req: http2.Http2ServerRequest | http.IncomingMessage, res: http2.Http2ServerResponse | http.ServerResponse): void;
  /** Ends every open stream: close() calls it first, so sessions can drain instead of waiting out the grace. */
  closeAll(): void;
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
  // One request listener, two protocol servers that never listen themselves: the listening server
  // below hands each connection to one of them (by its first bytes, or by ALPN under TLS).
  const appListener = getRequestListener(app.fetch, { hostname: host });
  const streamRoutes = opts.streamRoutes ?? new Map<string, StreamRoute>();
  // Requests for the app wait for the end of the current turn of the event loop and then run in
  // arrival order, all of a turn together. Bun's HTTP/2 server hands us each request from inside
  // its frame parser, and an answer written from there (a stale read answers without awaiting
  // anything) cost far more than one written after the parser returned: measured with
  // bench/client_path.ts over h2c, a stale GET took 94 µs of CPU answered in place and 56 µs
  // answered from the batch, a raw PUT 150 → 126 µs; linearizable reads, which already answer on a
  // later turn (the read barrier), stayed where they were. The wait is one setImmediate: the same
  // iteration of the loop, after its I/O callbacks. Peer streams (streamRoutes) are not queued.
  const queued: [http2.Http2ServerRequest | http.IncomingMessage, http2.Http2ServerResponse | http.ServerResponse][] = [];
  const runQueued = () => {
    // Requests that arrive while these run (a nested dispatch) wait for the next turn.
    for (const [req, res] of queued.splice(0)) void appListener(req as never, res as never);
  };
  const listener = (req: http2.Http2ServerRequest | http.IncomingMessage, res: http2.Http2ServerResponse | http.ServerResponse) => {
    const route = streamRoutes.get(req.url ?? "");
    if (route !== undefined) {
      route.handle(req, res);
      return;
    }
    if (res instanceof http2.Http2ServerResponse) endOnStream(req as http2.Http2ServerRequest, res);
    if (queued.length === 0) setImmediate(runQueued);
    queued.push([req, res]);
  };
  const h2 = http2.createServer(limits, listener as never);
  const h1 = http.createServer({ maxHeaderSize: settings.maxHeaderListSize }, listener as never);
  const server: net.Server =
    tls === undefined
      ? net.createServer()
      : nodeTls.createServer(
          {
            cert: asPem(tls.cert),
            key: asPem(tls.key),
            ALPNProtocols: ["h2", "http/1.1"],
            ...(tls.ca === undefined
              ? {}
              : { ca: asPem(tls.ca), requestCert: true, rejectUnauthorized: tls.requireClientCert ?? true }),
          },
          // No ALPN at all is an HTTP/1.1 client (HTTP/2 over TLS requires "h2", RFC 9113 §3.2).
          (socket) => (socket.alpnProtocol === "h2" ? h2 : h1).emit("connection", socket),
        );
  server.listen(port, host);

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
  /** When a stream last opened or closed on each connection (same key), performance.now(). */
  const lastStreamAt = new Map<string, number>();
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
    // Nor is one that opened or finished a stream within the last idleMs: Bun's timeout does not
    // see HTTP/2 frames as activity, so without this a busy peer connection was reset every
    // idleMs whenever the timer found it between two requests (issue 11's connection resets).
    const onQuiet = () => {
      const quietFor = performance.now() - (lastStreamAt.get(peer) ?? 0);
      if ((openStreams.get(peer) ?? 0) > 0 || quietFor < idleMs) setTimeout(onQuiet, Math.max(1, idleMs - quietFor)).unref();
      else socket.resetAndDestroy();
    };
    socket.once("close", () => lastStreamAt.delete(peer));
    socket.setTimeout(idleMs, onQuiet);
    // Under TLS the tls server hands the socket on by ALPN once the handshake is done.
    if (tls === undefined) sniffProtocol(socket, { h2, h1 });
  });
  /**
   * Per session: streams open on it, since when it has had none, and the one timer that closes it
   * once that lasts idleNoStreamMs. Keyed by session, not socket: with TLS the 'connection' socket
   * is the TCP one, the session's the TLS one. Streams only count and stamp; the timer, when it
   * fires early (streams came and went), sleeps again for what is left. Re-arming a timer at every
   * stream's open and close instead cost a setTimeout and a clearTimeout per request.
   */
  const idle = new WeakMap<http2.Http2Session, { open: number; quietSince: number; timer: ReturnType<typeof setTimeout> | undefined; peer: string | undefined }>();
  function checkIdle(session: http2.Http2Session): void {
    const state = idle.get(session);
    if (state === undefined || session.destroyed) return;
    const quietFor = state.open > 0 ? 0 : performance.now() - state.quietSince;
    if (quietFor < idleNoStreamMs) {
      state.timer = setTimeout(() => checkIdle(session), Math.max(1, idleNoStreamMs - quietFor));
      state.timer.unref?.();
      return;
    }
    counters.idleClosed++;
    // GOAWAY first, so a client about to reuse the session opens a new one instead of failing.
    session.close();
    setTimeout(() => session.destroyed || session.destroy(), 1000).unref?.();
  }
  h2.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    idle.set(session, { open: 0, quietSince: performance.now(), timer: undefined, peer: undefined });
    checkIdle(session);
    session.once("close", () => {
      sessions.delete(session);
      clearTimeout(idle.get(session)?.timer);
    });
    // A broken session must not surface as an unhandled 'error' event.
    session.on("error", () => undefined);
  });
  /** The connection key of openStreams and lastStreamAt (see above): read through Bun's socket proxy. */
  const peerOf = (session: http2.Http2Session | undefined) => `${session?.socket?.remoteAddress}:${session?.socket?.remotePort}`;
  h2.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    const session = stream.session;
    const state = session === undefined ? undefined : idle.get(session);
    // Once per session, not per stream: a session keeps its socket, and every request pays here.
    const peer = state === undefined ? peerOf(session) : (state.peer ??= peerOf(session));
    openStreams.set(peer, (openStreams.get(peer) ?? 0) + 1);
    lastStreamAt.set(peer, performance.now());
    if (state !== undefined) state.open++;
    // One listener for both counts (each listener costs per request too).
    stream.once("close", () => {
      lastStreamAt.set(peer, performance.now());
      const left = (openStreams.get(peer) ?? 1) - 1;
      if (left > 0) openStreams.set(peer, left);
      else openStreams.delete(peer);
      if (state !== undefined && --state.open === 0) state.quietSince = performance.now();
    });
    if (stream.endAfterHeaders) return;
    const path = headers[":path"];
    if (typeof path === "string" && streamRoutes.has(path)) return;
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
  h2.on("sessionError", () => undefined);
  server.on("tlsClientError", () => undefined);

  // HTTP/1.1 gets the same protections as HTTP/2, by hand: Bun 1.4.5's node:http ignores
  // headersTimeout and requestTimeout (a client trickling a header line was never closed).
  // - headers: a connection's first request must have its headers within bodyTimeoutMs of the
  //   connection; later ones within idleNoStreamMs of the previous answer (the idle close below);
  // - body: a request whose body has not ended bodyTimeoutMs after its headers loses its socket
  //   (HTTP/1.1 has no stream to reset);
  // - idle: a connection with no request in flight for idleNoStreamMs is closed;
  // - header size: maxHeaderSize answers 431 past maxHeaderListSize (checked by hand).
  const h1InFlight = new Map<Socket, number>();
  const h1Idle = new Map<Socket, ReturnType<typeof setTimeout>>();
  function armH1Idle(socket: Socket, ms: number): void {
    clearTimeout(h1Idle.get(socket));
    const timer = setTimeout(() => {
      if ((h1InFlight.get(socket) ?? 0) > 0 || socket.destroyed) return;
      counters.idleClosed++;
      socket.resetAndDestroy();
    }, ms);
    timer.unref?.();
    h1Idle.set(socket, timer);
  }
  h1.on("connection", (socket: Socket) => {
    h1InFlight.set(socket, 0);
    armH1Idle(socket, Math.min(bodyTimeoutMs, idleNoStreamMs));
    socket.once("close", () => {
      clearTimeout(h1Idle.get(socket));
      h1Idle.delete(socket);
      h1InFlight.delete(socket);
    });
  });
  h1.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    // A reset mid-body (ours, or the client's) must not surface as an unhandled 'error' event.
    req.on("error", () => undefined);
    h1InFlight.set(socket, (h1InFlight.get(socket) ?? 0) + 1);
    clearTimeout(h1Idle.get(socket));
    let bodyTimer: ReturnType<typeof setTimeout> | undefined;
    if (!req.complete) {
      bodyTimer = setTimeout(() => {
        if (req.complete || socket.destroyed) return;
        counters.slowBodies++;
        socket.resetAndDestroy();
      }, bodyTimeoutMs);
      bodyTimer.unref?.();
      req.once("end", () => clearTimeout(bodyTimer));
    }
    res.once("close", () => {
      clearTimeout(bodyTimer);
      const left = (h1InFlight.get(socket) ?? 1) - 1;
      h1InFlight.set(socket, left);
      if (left === 0 && !socket.destroyed) armH1Idle(socket, idleNoStreamMs);
    });
  });
  // Malformed or oversized requests get a one-line answer and lose the connection (what Node does
  // without a listener; with one the answer is ours to send).
  h1.on("clientError", (err: Error & { code?: string }, socket: net.Socket) => {
    if (socket.destroyed) return;
    const status = err.code === "HPE_HEADER_OVERFLOW" ? "431 Request Header Fields Too Large" : "400 Bad Request";
    if (socket.writable) socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    setTimeout(() => socket.destroyed || socket.resetAndDestroy(), 1000).unref?.();
  });

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
    for (const route of streamRoutes.values()) route.closeAll();
    for (const s of sessions) s.close();
    const grace = opts.closeGraceMs ?? 1000;
    // HTTP/1.1 connections with nothing in flight close now; the others after their answer.
    for (const [socket, open] of h1InFlight) if (open === 0) socket.resetAndDestroy();
    const h1Drained = [...h1InFlight.keys()].map((s) => new Promise<void>((r) => (s.destroyed ? r() : s.once("close", () => r()))));
    const drained = Promise.all([
      ...[...sessions].map((s) => new Promise<void>((r) => (s.closed ? r() : s.once("close", () => r())))),
      ...h1Drained,
    ]);
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

/** The HTTP/2 connection preface (RFC 9113 §3.4); an HTTP/1.1 request line never starts with it. */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/**
 * Reads just enough of a cleartext connection to tell h2c with prior knowledge from HTTP/1.1, then
 * gives the socket, bytes put back, to the matching server. Decided at the first byte that leaves
 * the preface (one byte for any HTTP/1.1 method but "PRI"), or at the 24th byte. A client that sends
 * nothing is left to the socket's idle timeout, like one that never finished a preface before.
 */
export function sniffProtocol(socket: Socket, to: { h2: net.Server | http2.Http2Server; h1: net.Server | http.Server }): void {
  let seen: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const n = Math.min(seen.length, H2_PREFACE.length);
    const h2 = seen.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (h2 && seen.length < H2_PREFACE.length) return;
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    (h2 ? to.h2 : to.h1).emit("connection", socket);
    socket.resume();
  };
  socket.on("data", onData);
}

function asPem(v: string | Uint8Array): string | Buffer {
  return typeof v === "string" ? v : Buffer.from(v);
}
