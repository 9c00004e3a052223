// A small HTTP/2 client: one pooled session per origin, requests with a body, a timeout and a
// response size cap. Used for peer traffic (peers.ts) and by the API/CLI to call servers.
//
// Bun 1.4.5: session.setLocalWindowSize() stalls transfers (see server.ts); the receive window is
// raised only through SETTINGS.

import http2 from "node:http2";
import type { PeerCertificate, TLSSocket } from "node:tls";
import { originOf } from "./address.ts";

export interface ClientTls {
  /** Trust anchor for the server certificate (the cluster CA). Without it, the system roots. */
  ca?: string | Uint8Array;
  /** Client certificate and key, for servers that require mutual TLS. */
  cert?: string | Uint8Array;
  key?: string | Uint8Array;
  /** Name to verify the server certificate against when it differs from the address's host. */
  servername?: string;
}

export interface H2ClientOptions {
  /** When set, origins built by originFor() are https and sessions use these credentials. */
  tls?: ClientTls;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  maxResponseBytes?: number;
  initialWindowSize?: number;
}

/** connect: no session; timeout: no complete answer in time; stream: reset or broken mid-request. */
export type H2ErrorKind = "connect" | "timeout" | "stream" | "tooLarge" | "closed";

export class H2Error extends Error {
  override readonly name = "H2Error";

  constructor(
    readonly kind: H2ErrorKind,
    message: string,
  ) {
    super(message);
  }
}

export interface H2Request {
  method?: string;
  /** Path and query. */
  path: string;
  headers?: Record<string, string>;
  body?: Uint8Array;
  timeoutMs?: number;
}

export interface H2Response {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: Uint8Array;
  /** The server's certificate (verified by the TLS handshake); null over h2c. */
  peerCertificate?: () => PeerCertificate | null;
}

interface PoolEntry {
  session: http2.ClientHttp2Session;
  ready: Promise<http2.ClientHttp2Session>;
  connected: boolean;
}

export class H2Client {
  readonly secure: boolean;
  private readonly pool = new Map<string, PoolEntry>();
  private closed = false;

  constructor(private readonly opts: H2ClientOptions = {}) {
    this.secure = opts.tls !== undefined;
  }

  /** "host:port" → origin with this client's scheme. */
  originFor(address: string): string {
    return originOf(address, this.secure);
  }

  /** The live session for `origin`, connecting if there is none. */
  session(origin: string): Promise<http2.ClientHttp2Session> {
    if (this.closed) return Promise.reject(new H2Error("closed", "client is closed"));
    const existing = this.pool.get(origin);
    if (existing !== undefined && !existing.session.closed && !existing.session.destroyed) return existing.ready;
    const tls = this.opts.tls ?? {};
    const session = http2.connect(origin, {
      ...tls,
      settings: { initialWindowSize: this.opts.initialWindowSize ?? 1 << 20 },
    });
    const timeoutMs = this.opts.connectTimeoutMs ?? 5000;
    const ready = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        reject(new H2Error("connect", `connect to ${origin}: ${why}`));
      };
      const timer = setTimeout(() => {
        fail(`no connection after ${timeoutMs} ms`);
        session.destroy();
      }, timeoutMs);
      session.once("connect", () => {
        clearTimeout(timer);
        entry.connected = true;
        resolve(session);
      });
      session.once("error", (err) => fail(err.message));
      session.once("close", () => fail("closed"));
    });
    // Callers may give up on `ready`; a later rejection must not be reported as unhandled.
    ready.catch(() => undefined);
    // Errors also reach every open stream; the session-level event only needs a listener.
    session.on("error", () => undefined);
    const forget = () => {
      if (this.pool.get(origin)?.session === session) this.pool.delete(origin);
    };
    // After GOAWAY the session finishes its streams; new requests get a fresh session.
    session.once("goaway", forget);
    session.once("close", forget);
    const entry: PoolEntry = { session, ready, connected: false };
    this.pool.set(origin, entry);
    return ready;
  }

  /**
   * On a connected session the stream starts before this returns, not a microtask later: the
   * node counts on requests it starts being written out at the next tick (see node.ts).
   */
  request(origin: string, req: H2Request): Promise<H2Response> {
    const entry = this.closed ? undefined : this.pool.get(origin);
    if (entry !== undefined && entry.connected && !entry.session.closed && !entry.session.destroyed) {
      return this.start(entry.session, origin, req);
    }
    return this.session(origin).then((session) => this.start(session, origin, req));
  }

  private start(session: http2.ClientHttp2Session, origin: string, req: H2Request): Promise<H2Response> {
    const timeoutMs = req.timeoutMs ?? this.opts.requestTimeoutMs ?? 10_000;
    const maxBytes = this.opts.maxResponseBytes ?? 16 << 20;
    const where = `${req.method ?? "GET"} ${origin}${req.path}`;
    return new Promise<H2Response>((resolve, reject) => {
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request(
          { ":method": req.method ?? "GET", ":path": req.path, ...req.headers },
          { endStream: req.body === undefined },
        );
      } catch (err) {
        reject(new H2Error("closed", `${where}: ${err instanceof Error ? err.message : String(err)}`));
        return;
      }
      let status = 0;
      let headers: http2.IncomingHttpHeaders = {};
      const chunks: Uint8Array[] = [];
      let size = 0;
      let settled = false;
      const done = (err: H2Error | null) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err !== null) {
          if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
          reject(err);
        } else {
          const body = chunks.length === 1 && chunks[0] ? chunks[0] : Buffer.concat(chunks);
          resolve({ status, headers, body, peerCertificate: () => serverCertificate(session) });
        }
      };
      const timer = setTimeout(() => done(new H2Error("timeout", `${where}: no response after ${timeoutMs} ms`)), timeoutMs);
      stream.on("response", (h) => {
        status = Number(h[":status"]);
        headers = h;
      });
      stream.on("data", (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > maxBytes) done(new H2Error("tooLarge", `${where}: response exceeds ${maxBytes} bytes`));
        else chunks.push(chunk);
      });
      stream.on("end", () => done(status > 0 ? null : new H2Error("stream", `${where}: ended without a response`)));
      stream.on("error", (err) => done(new H2Error("stream", `${where}: ${err.message}`)));
      // A server that answers early (413, 401) may reset the upload with NO_ERROR: the answer stands.
      stream.on("close", () => {
        const clean = status > 0 && stream.rstCode === http2.constants.NGHTTP2_NO_ERROR;
        done(clean ? null : new H2Error("stream", `${where}: stream closed (code ${stream.rstCode}) before the response completed`));
      });
      if (req.body !== undefined) writeBody(stream, req.body);
    });
  }

  /** Drops the session to `origin` (peer removed or moved); its open requests fail. */
  closeOrigin(origin: string): void {
    const entry = this.pool.get(origin);
    this.pool.delete(origin);
    entry?.session.destroy();
  }

  async close(): Promise<void> {
    this.closed = true;
    const sessions = [...this.pool.values()].map((e) => e.session);
    this.pool.clear();
    await Promise.all(
      sessions.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (s.destroyed) return resolve();
            s.once("close", () => resolve());
            s.destroy();
          }),
      ),
    );
  }
}

export function serverCertificate(session: http2.ClientHttp2Session): PeerCertificate | null {
  const socket = session.socket as Partial<TLSSocket> | undefined;
  if (socket === undefined || typeof socket.getPeerCertificate !== "function") return null;
  const cert = socket.getPeerCertificate();
  return cert !== null && typeof cert === "object" && Object.keys(cert).length > 0 ? cert : null;
}

/**
 * Writes a body in slices, waiting for 'drain'. Handing Bun a large buffer at once queues it all
 * in the session, and past maxSessionMemory (10 MB) every new stream on it — heartbeats included —
 * is refused with ENHANCE_YOUR_CALM until the upload is through.
 */
function writeBody(stream: http2.ClientHttp2Stream, body: Uint8Array): void {
  const slice = 64 * 1024;
  let at = 0;
  const pump = (): void => {
    while (at < body.byteLength) {
      const end = Math.min(at + slice, body.byteLength);
      const more = stream.write(body.subarray(at, end));
      at = end;
      if (!more) {
        stream.once("drain", pump);
        return;
      }
    }
    stream.end();
  };
  pump();
}
