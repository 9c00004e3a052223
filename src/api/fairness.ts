// Fair shares of a node's write path. The core caps uncommitted bytes per leader (64 MiB); without
// shares, one client with 512 in-flight 64 KiB PUTs on one HTTP/2 connection filled that budget
// and a polite client got 0 of 82 writes through. Each connection (HTTP/2 session) and each
// authenticated client may have only so many writes, and so many body bytes, in flight; beyond
// that the answer is 429 with Retry-After at once, before the node buffers or proposes anything.
// Session registration is rate-limited per client (each session is replicated state).
import type { Context, MiddlewareHandler } from "hono";
import type { ClientIdentity } from "./client_auth.ts";
import { isForwarded } from "./forward.ts";
import { errorReply } from "./wire.ts";

export interface FairnessLimits {
  /** Writes (PUT, DELETE, POST /v1/session) in flight on one connection. */
  writesPerConnection: number;
  /** Request body bytes of in-flight writes on one connection. */
  writeBytesPerConnection: number;
  /** The same two, for one authenticated client over all its connections. */
  writesPerClient: number;
  writeBytesPerClient: number;
  /** Session registrations per client: a token bucket. */
  sessionsPerSecond: number;
  sessionBurst: number;
}

/**
 * Bytes protect the 64 MiB uncommitted budget and the log queue a polite write waits in (8 MiB per
 * connection, 16 MiB per client). Counts bound the bodies being read at once (a body is charged
 * as it is read): measured with 512 hog streams, 512 per connection let the hog's traffic take
 * the leader to 1.2 GB and starve the polite client (7 of 40 writes), 128/256 still lost 2 of 40
 * (623 MiB); 64 per connection and 128 per client kept it at 40/40 (~330 MiB).
 */
export const DEFAULT_FAIRNESS: FairnessLimits = {
  writesPerConnection: 64,
  writeBytesPerConnection: 8 * 1024 * 1024,
  writesPerClient: 128,
  writeBytesPerClient: 16 * 1024 * 1024,
  sessionsPerSecond: 20,
  sessionBurst: 100,
};

export const RETRY_AFTER_BUSY_S = "1";

/** Thrown when a body would exceed a share; app.ts answers 429. */
export class OverShareError extends Error {
  override name = "OverShareError";
}

interface Usage {
  writes: number;
  bytes: number;
}

/** The HTTP/2 session (or socket) a request came on; null in process (app.request). */
function connectionOf(c: Context): object | null {
  const incoming = (c.env as { incoming?: { stream?: { session?: object }; socket?: object } } | undefined)?.incoming;
  return incoming?.stream?.session ?? incoming?.socket ?? null;
}

/** The client a share belongs to: its authenticated name, or its address in open mode. */
export function clientKey(c: Context, who: ClientIdentity | undefined): string {
  if (who !== undefined && who.via !== "open") return `client:${who.name}`;
  const socket = (c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined)?.incoming?.socket;
  return `addr:${socket?.remoteAddress ?? "local"}`;
}

/** Token buckets by key, bounded in number (full buckets are the first forgotten). */
class Buckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private static readonly MAX_KEYS = 10_000;

  constructor(
    private readonly perSecond: number,
    private readonly burst: number,
  ) {}

  take(key: string, now: number): boolean {
    let b = this.buckets.get(key);
    if (b === undefined) {
      if (this.buckets.size >= Buckets.MAX_KEYS) this.forgetFull(now);
      b = { tokens: this.burst, at: now };
      this.buckets.set(key, b);
    }
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.at) / 1000) * this.perSecond);
    b.at = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  private forgetFull(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.at) / 1000) * this.perSecond >= this.burst) this.buckets.delete(k);
    }
    // Still full of active keys: forget the oldest rather than grow without bound.
    while (this.buckets.size >= Buckets.MAX_KEYS) this.buckets.delete(this.buckets.keys().next().value!);
  }
}

export class Fairness {
  private readonly byConnection = new WeakMap<object, Usage>();
  private readonly byClient = new Map<string, Usage>();
  private readonly sessions: Buckets;

  constructor(readonly limits: FairnessLimits = DEFAULT_FAIRNESS) {
    this.sessions = new Buckets(limits.sessionsPerSecond, limits.sessionBurst);
  }

  /** Middleware for write routes: admits the request against its connection's and client's shares. */
  writes(): MiddlewareHandler {
    return async (c, next) => {
      const who = (c.var as { client?: ClientIdentity }).client;
      // A follower's pooled connection carries all of its clients' forwarded writes, and the
      // follower already held each client to its shares: on the leader a forwarded write counts
      // only against its (re-authenticated) client, never against the connection; in open mode
      // (no credentials: loopback or INSECURE_CLIENTS) it is not counted again at all.
      const forwarded = isForwarded(c);
      if (forwarded && (who === undefined || who.via === "open")) return next();
      const conn = forwarded ? null : connectionOf(c);
      const key = clientKey(c, who);
      const connUsage = conn === null ? null : this.usage(this.byConnection.get(conn), (u) => this.byConnection.set(conn, u));
      const clientUsage = this.usage(this.byClient.get(key), (u) => this.byClient.set(key, u));
      if ((connUsage !== null && connUsage.writes >= this.limits.writesPerConnection) || clientUsage.writes >= this.limits.writesPerClient) {
        return busy(c, "too many writes in flight from this client or connection; wait for answers before sending more");
      }
      const charged = { bytes: 0 };
      charges.set(c.req.raw, (n: number) => this.charge(connUsage, clientUsage, charged, n));
      if (connUsage !== null) connUsage.writes++;
      clientUsage.writes++;
      try {
        await next();
      } finally {
        if (connUsage !== null) {
          connUsage.writes--;
          connUsage.bytes -= charged.bytes;
        }
        clientUsage.writes--;
        clientUsage.bytes -= charged.bytes;
        if (clientUsage.writes === 0) this.byClient.delete(key);
      }
    };
  }

  /** Middleware for POST /v1/session: a token bucket per client. */
  sessionRate(): MiddlewareHandler {
    return async (c, next) => {
      const who = (c.var as { client?: ClientIdentity }).client;
      // As for writes: in open mode the follower that forwarded the registration already counted
      // it, and here every client behind that follower would share the follower's address.
      if (isForwarded(c) && (who === undefined || who.via === "open")) return next();
      const key = clientKey(c, who);
      if (!this.sessions.take(key, performance.now())) {
        return busy(c, `session registrations are limited to ${this.limits.sessionsPerSecond}/s per client (burst ${this.limits.sessionBurst}); reuse a session for many writes`);
      }
      await next();
    };
  }

  private usage(u: Usage | undefined, store: (u: Usage) => void): Usage {
    if (u !== undefined) return u;
    const fresh = { writes: 0, bytes: 0 };
    store(fresh);
    return fresh;
  }

  private charge(conn: Usage | null, client: Usage, charged: { bytes: number }, n: number): void {
    if ((conn !== null && conn.bytes + n > this.limits.writeBytesPerConnection) || client.bytes + n > this.limits.writeBytesPerClient) {
      throw new OverShareError("too many bytes of writes in flight from this client or connection; wait for answers before sending more");
    }
    if (conn !== null) conn.bytes += n;
    client.bytes += n;
    charged.bytes += n;
  }
}

/** Charges a write's body to its shares (a no-op outside the writes() middleware). Throws OverShareError. */
export function chargeBody(c: Context, bytes: number): void {
  charges.get(c.req.raw)?.(bytes);
}

/** Each admitted write's charge function, by its request (gone with the request). */
const charges = new WeakMap<Request, (n: number) => void>();

/**
 * 429 with Retry-After, at once: an unread body is not drained (reading it would cost the node
 * the very bytes the share refuses). The HTTP/2 layer resets the stream, and a client that keeps
 * pushing refused bodies has its session reset by Bun (ENHANCE_YOUR_CALM) and must reconnect;
 * measured, that is cheaper for the node than draining (+112 MiB peak vs +290 MiB under the hog test).
 */
export function busy(c: Context, message: string): Response {
  return errorReply(c, 429, "too_many_requests", message, { "retry-after": RETRY_AFTER_BUSY_S });
}
