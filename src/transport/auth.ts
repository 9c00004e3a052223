// Peer authentication for node-to-node routes (Raft, gossip): mutual TLS, or a shared cluster key.
//
// With a cluster key each request carries x-phalanx-from, x-phalanx-ts (ms since the epoch) and
// x-phalanx-sig = hex HMAC-SHA256(key, "phalanx-peer-v1\n" method \n path \n ts \n from \n sha256(body)).
// A captured request can be replayed within the skew window. That is harmless for Raft: the core
// already copes with duplicated and reordered messages (stale terms and indexes are ignored).
// Over h2c the key proves membership but hides nothing: use TLS, or a private network (Fly's 6PN
// runs over WireGuard), when message contents matter.

import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import type { TLSSocket } from "node:tls";
import type { Http2Bindings } from "@hono/node-server";
import type { MiddlewareHandler } from "hono";
import type { NodeId } from "../raft/types.ts";
import { BodyTooLargeError, incomingOf, readCappedBody } from "./body.ts";
import { nodeIdSchema } from "./codec.ts";

export type PeerAuth =
  | { mode: "hmac"; key: string; skewMs?: number; now?: () => number }
  /** The server must be started with a CA (see server.ts); the TLS handshake is the proof. */
  | { mode: "mtls" };

export const FROM_HEADER = "x-phalanx-from";
export const TS_HEADER = "x-phalanx-ts";
export const SIG_HEADER = "x-phalanx-sig";

export const DEFAULT_SKEW_MS = 30_000;
const MIN_KEY_BYTES = 16;

/** What a verified peer route finds in the context: who sent it, and the body that was authenticated. */
export interface PeerEnv {
  Variables: { peerFrom: NodeId; peerBody: Uint8Array };
}

/** Fails fast at startup on a key too short to be a secret. */
export function checkPeerAuth(auth: PeerAuth): void {
  if (auth.mode === "hmac" && Buffer.byteLength(auth.key) < MIN_KEY_BYTES) {
    throw new Error(`CLUSTER_KEY must be at least ${MIN_KEY_BYTES} bytes`);
  }
}

export interface PeerRequest {
  method: string;
  /** Path and query exactly as sent in :path. */
  path: string;
  from: NodeId;
  body: Uint8Array;
}

/** Headers a client adds to a peer request. */
export function peerRequestHeaders(auth: PeerAuth, req: PeerRequest): Record<string, string> {
  if (auth.mode === "mtls") return { [FROM_HEADER]: req.from };
  const ts = String(Math.floor((auth.now ?? Date.now)()));
  return { [FROM_HEADER]: req.from, [TS_HEADER]: ts, [SIG_HEADER]: sign(auth.key, req, ts) };
}

type Verdict = { ok: true; from: NodeId } | { ok: false; reason: string };

/**
 * A peer may answer a batch with messages of its own in the response body. With a cluster key the
 * answer is signed like a request, with the method "REPLY" so that a signed request can never pass
 * for an answer; with mTLS the client already verified the server's certificate.
 */
export const REPLY_METHOD = "REPLY";

/** Headers for an answer carrying messages; `path` is the request's. */
export function peerReplyHeaders(auth: PeerAuth, reply: { path: string; from: NodeId; body: Uint8Array }): Record<string, string> {
  return peerRequestHeaders(auth, { method: REPLY_METHOD, ...reply });
}

/** Checks an answer's proof; `from` is the peer the request went to. */
export function verifyPeerReply(auth: PeerAuth, headers: Headers, reply: { path: string; from: NodeId; body: Uint8Array }): Verdict {
  const pre = verifyPeerHeaders(auth, headers, true);
  if (!pre.ok) return pre;
  if (pre.from !== reply.from) return { ok: false, reason: `answer from ${pre.from}, the request went to ${reply.from}` };
  return verifyPeerSignature(auth, headers, { method: REPLY_METHOD, ...reply });
}

/** The checks that need no body: run first so an unauthenticated peer cannot make us read one. */
export function verifyPeerHeaders(auth: PeerAuth, headers: Headers, tlsAuthorized: boolean): Verdict {
  const from = headers.get(FROM_HEADER);
  if (from === null || !nodeIdSchema.safeParse(from).success) return { ok: false, reason: `missing or invalid ${FROM_HEADER}` };
  if (auth.mode === "mtls") {
    return tlsAuthorized ? { ok: true, from } : { ok: false, reason: "no verified client certificate" };
  }
  const ts = headers.get(TS_HEADER);
  if (ts === null || !/^\d{1,15}$/.test(ts)) return { ok: false, reason: `missing or invalid ${TS_HEADER}` };
  const skew = auth.skewMs ?? DEFAULT_SKEW_MS;
  if (Math.abs((auth.now ?? Date.now)() - Number(ts)) > skew) {
    return { ok: false, reason: `${TS_HEADER} outside the ±${skew} ms window (check clocks)` };
  }
  if (!/^[0-9a-f]{64}$/.test(headers.get(SIG_HEADER) ?? "")) return { ok: false, reason: `missing or invalid ${SIG_HEADER}` };
  return { ok: true, from };
}

/** The signature check; call after verifyPeerHeaders succeeded. */
export function verifyPeerSignature(auth: PeerAuth, headers: Headers, req: PeerRequest): Verdict {
  if (auth.mode === "mtls") return { ok: true, from: req.from };
  const expected = Buffer.from(sign(auth.key, req, headers.get(TS_HEADER) ?? ""), "hex");
  const given = Buffer.from(headers.get(SIG_HEADER) ?? "", "hex");
  // Lengths are public (always 32 after the header check); the comparison itself is constant-time.
  const ok = given.length === expected.length && timingSafeEqual(given, expected);
  return ok ? { ok: true, from: req.from } : { ok: false, reason: "bad signature (wrong CLUSTER_KEY or altered request)" };
}

/**
 * Middleware for peer routes: 401 without valid proof, 413 over `maxBodyBytes`. On success the
 * handler reads the sender from c.var.peerFrom and the authenticated bytes from c.var.peerBody.
 */
export function peerAuth(auth: PeerAuth, maxBodyBytes: number): MiddlewareHandler<PeerEnv> {
  checkPeerAuth(auth);
  return async (c, next) => {
    const headers = c.req.raw.headers;
    const pre = verifyPeerHeaders(auth, headers, tlsAuthorized(c.env));
    if (!pre.ok) return c.text(`unauthorized: ${pre.reason}`, 401);
    let body: Uint8Array;
    try {
      body = await readCappedBody(c.req.raw, maxBodyBytes, incomingOf(c.env));
    } catch (err) {
      if (err instanceof BodyTooLargeError) return c.text(err.message, 413);
      return c.text(`could not read body: ${err instanceof Error ? err.message : String(err)}`, 400);
    }
    const url = new URL(c.req.url);
    const req = { method: c.req.method, path: url.pathname + url.search, from: pre.from, body };
    const verdict = verifyPeerSignature(auth, headers, req);
    if (!verdict.ok) return c.text(`unauthorized: ${verdict.reason}`, 401);
    c.set("peerFrom", verdict.from);
    c.set("peerBody", body);
    await next();
  };
}

function sign(key: string, req: PeerRequest, ts: string): string {
  const digest = createHash("sha256").update(req.body).digest("hex");
  const text = ["phalanx-peer-v1", req.method.toUpperCase(), req.path, ts, req.from, digest].join("\n");
  return createHmac("sha256", key).update(text).digest("hex");
}

/** True when the request arrived over TLS with a client certificate that the server's CA verified. */
function tlsAuthorized(env: unknown): boolean {
  const socket = (env as Partial<Http2Bindings> | undefined)?.incoming?.socket;
  return socket !== undefined && "authorized" in socket && (socket as TLSSocket).authorized === true;
}
