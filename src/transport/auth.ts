// Peer authentication for node-to-node routes (Raft, gossip): mutual TLS, or a shared cluster key.
//
// The proof travels in headers and is checked before a byte of body is read: a stranger who can
// open streams must not be able to make us buffer anything (issue 9 §2: 32 streams with fake
// signatures and 64 MiB bodies took a node to 2 GB). The body is checked afterwards against a
// digest the signature covers.
//
// With a cluster key a request carries
//   x-phalanx-from, x-phalanx-to, x-phalanx-ts (ms since the epoch), x-phalanx-nonce (128 random
//   bits, hex), content-length, x-phalanx-digest (hex sha256 of the body) and x-phalanx-sig =
//   hex HMAC-SHA256(key, "phalanx-peer-v2" \n method \n path \n ts \n from \n to \n nonce \n length \n digest).
// The recipient is signed so that a request for n2 cannot be played to n3; the nonce is accepted
// once (a replay cache covers the whole ±10 s window), so a captured request cannot be sent again:
// replaying one `x-phalanx-reply: 1` request made a leader hand 77,323 appends meant for n1 to the
// replayer (issue 9 §3). An answer carrying messages is signed the same way with the method
// "REPLY" and the request's nonce, so it answers that request and no other.
//
// With mutual TLS the handshake proves the sender holds a certificate of the cluster CA, and the
// certificate must name the node the request claims to be from (DNS SAN, URI SAN
// urn:phalanx:node:<id>, or CN equal to the node id): a CA-signed cert for CN=app-client must not
// speak for n1 (issue 9 §4).
//
// Every CLUSTER_KEY holder can sign as any node: the key proves membership, not identity. Over h2c
// the key hides nothing: use TLS, or a private network (Fly's 6PN runs over WireGuard), when
// message contents matter. This is wire version 2; version 1 nodes cannot talk to it.

import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { PeerCertificate, TLSSocket } from "node:tls";
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
export const TO_HEADER = "x-phalanx-to";
export const TS_HEADER = "x-phalanx-ts";
export const NONCE_HEADER = "x-phalanx-nonce";
export const DIGEST_HEADER = "x-phalanx-digest";
export const SIG_HEADER = "x-phalanx-sig";
export const LENGTH_HEADER = "content-length";

const SIGNED_TEXT_VERSION = "phalanx-peer-v2";
/**
 * Short, because a captured request stays playable for this long and the replay cache must hold
 * every nonce seen in it. Peers' clocks must agree to within this (NTP keeps them to milliseconds).
 */
export const DEFAULT_SKEW_MS = 10_000;
const MIN_KEY_BYTES = 16;
/**
 * Remembered nonces (≈ 30 MiB when full); past this new requests get 503 rather than an unchecked
 * replay window. Nonces live 20-40 s, so this allows ≈ 12,000 peer requests/s into one node.
 */
export const DEFAULT_MAX_NONCES = 500_000;
/**
 * Body bytes in memory for peer requests whose headers passed but whose handling has not finished,
 * summed over every peer route of the process. Past it a request gets 503 before its body is read.
 * The transport's own batches are ≤ ~1 MiB and a snapshot chunk 512 KiB; 5 peers × 5 streams fit.
 */
export const DEFAULT_PEER_BODY_BUDGET = 64 << 20;

/** What a verified peer route finds in the context: who sent it, the authenticated body, its nonce. */
export interface PeerEnv {
  Variables: { peerFrom: NodeId; peerBody: Uint8Array; peerNonce: string };
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
  /** The node the request is for; the receiver refuses a request for anyone else. */
  to: NodeId;
  body: Uint8Array;
}

/** Headers a client adds to a peer request (content-length included; send the body as given). */
export function peerRequestHeaders(auth: PeerAuth, req: PeerRequest): Record<string, string> {
  // An empty body is sent as a bare HEADERS frame with END_STREAM; a `content-length: 0` beside it
  // makes Bun's HTTP/2 reset the stream (PROTOCOL_ERROR), so it is left out and read as 0.
  const base: Record<string, string> = { [FROM_HEADER]: req.from, [TO_HEADER]: req.to };
  if (req.body.byteLength > 0) base[LENGTH_HEADER] = String(req.body.byteLength);
  if (auth.mode === "mtls") return base;
  const ts = String(Math.floor((auth.now ?? Date.now)()));
  const nonce = randomBytes(16).toString("hex");
  const digest = sha256Hex(req.body);
  const proof = { method: req.method, path: req.path, ts, from: req.from, to: req.to, nonce, length: req.body.byteLength, digest };
  return { ...base, [TS_HEADER]: ts, [NONCE_HEADER]: nonce, [DIGEST_HEADER]: digest, [SIG_HEADER]: sign(auth.key, proof) };
}

export type Verdict = { ok: true; from: NodeId } | { ok: false; reason: string };

/**
 * A peer may answer a batch with messages of its own in the response body. With a cluster key the
 * answer is signed like a request, with the method "REPLY" (a signed request can never pass for an
 * answer) and the request's nonce (an answer fits one request only); with mTLS the client already
 * verified the server's certificate.
 */
export const REPLY_METHOD = "REPLY";

export interface PeerReply {
  /** The request's path. */
  path: string;
  /** The node answering. */
  from: NodeId;
  /** The node that sent the request. */
  to: NodeId;
  /** The request's nonce ("" with mTLS, where requests carry none). */
  nonce: string;
  body: Uint8Array;
}

/** Headers for an answer carrying messages. */
export function peerReplyHeaders(auth: PeerAuth, reply: PeerReply): Record<string, string> {
  const base = { [FROM_HEADER]: reply.from, [TO_HEADER]: reply.to };
  if (auth.mode === "mtls") return base;
  const ts = String(Math.floor((auth.now ?? Date.now)()));
  const digest = sha256Hex(reply.body);
  const proof = { method: REPLY_METHOD, path: reply.path, ts, from: reply.from, to: reply.to, nonce: reply.nonce, length: reply.body.byteLength, digest };
  return { ...base, [TS_HEADER]: ts, [DIGEST_HEADER]: digest, [SIG_HEADER]: sign(auth.key, proof) };
}

/** Checks an answer's proof; `reply.from` is the peer the request went to, `reply.nonce` the request's. */
export function verifyPeerReply(auth: PeerAuth, headers: Headers, reply: PeerReply): Verdict {
  const from = headers.get(FROM_HEADER);
  if (from !== reply.from) return { ok: false, reason: `answer from ${from ?? "nobody"}, the request went to ${reply.from}` };
  if (headers.get(TO_HEADER) !== reply.to) return { ok: false, reason: `answer for ${headers.get(TO_HEADER) ?? "nobody"}, not ${reply.to}` };
  if (auth.mode === "mtls") return { ok: true, from };
  const ts = headers.get(TS_HEADER) ?? "";
  const fresh = checkTimestamp(auth, ts);
  if (fresh !== null) return { ok: false, reason: fresh };
  const digest = sha256Hex(reply.body);
  if (headers.get(DIGEST_HEADER) !== digest) return { ok: false, reason: "body digest mismatch" };
  const proof = { method: REPLY_METHOD, path: reply.path, ts, from, to: reply.to, nonce: reply.nonce, length: reply.body.byteLength, digest };
  return signatureMatches(auth.key, proof, headers.get(SIG_HEADER) ?? "") ? { ok: true, from } : { ok: false, reason: "bad signature on the answer" };
}

/** Byte budget shared by concurrent requests: take before buffering, give back when done. */
export class ByteBudget {
  private used = 0;
  constructor(readonly limit: number) {}

  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
    if (this.used < 0) throw new Error(`ByteBudget: gave back more than was taken (${this.used})`);
  }

  get inUse(): number {
    return this.used;
  }
}

/** The process-wide budget for peer bodies: every peer route draws from it unless given its own. */
export const peerBodyBudget = new ByteBudget(DEFAULT_PEER_BODY_BUDGET);

/**
 * Nonces seen within the time window, in two generations rotated every 2 × skew: a nonce admitted
 * at `now` carries a ts ≥ now - skew, stays remembered at least 2 × skew, so it is still here
 * until its ts has left the window and the timestamp check refuses it on its own.
 */
class NonceCache {
  // Keyed by the nonce's first 52 bits as a number: 500,000 hex strings cost 82 MiB, numbers 30.
  // Two different nonces sharing 52 bits (odds ~3e-5 per window at the cap) cost one refused
  // request, which Raft resends; a replay always has the same 52 bits.
  private current = new Set<number>();
  private previous = new Set<number>();
  private rotatedAt: number;

  constructor(
    private readonly spanMs: number,
    private readonly maxEntries: number,
    now: number,
  ) {
    this.rotatedAt = now;
  }

  admit(nonce: string, now: number): "fresh" | "replayed" | "full" {
    const key = Number.parseInt(nonce.slice(0, 13), 16);
    if (now - this.rotatedAt >= 2 * this.spanMs) {
      this.previous = new Set();
      this.current = new Set();
      this.rotatedAt = now;
    } else if (now - this.rotatedAt >= this.spanMs) {
      this.previous = this.current;
      this.current = new Set();
      this.rotatedAt = now;
    }
    if (this.current.has(key) || this.previous.has(key)) return "replayed";
    if (this.current.size + this.previous.size >= this.maxEntries) return "full";
    this.current.add(key);
    return "fresh";
  }
}

export interface PeerGateOptions {
  /** Defaults to the process-wide peerBodyBudget. */
  budget?: ByteBudget;
  maxNonces?: number;
}

/** What the header check decided: go on and read `length` bytes, or answer `status` now. */
export type Admission =
  | { ok: true; from: NodeId; length: number; nonce: string; digest: string | null }
  | { ok: false; status: 400 | 401 | 413 | 503; reason: string };

export interface HeaderCheck {
  method: string;
  path: string;
  headers: Headers;
  /** The verified client certificate of the TLS connection, null without one (or over h2c). */
  peerCert: PeerCertificate | null;
  maxBodyBytes: number;
}

/**
 * The receiving side of peer authentication for one node: checks a request's headers (before its
 * body), then its body, and remembers nonces. One gate per node, shared by its peer routes (so a
 * nonce used on one route is used up on all); any route can use it through peerAuth().
 */
export class PeerGate {
  readonly budget: ByteBudget;
  private readonly nonces: NonceCache | null;

  constructor(
    readonly auth: PeerAuth,
    readonly self: NodeId,
    opts: PeerGateOptions = {},
  ) {
    checkPeerAuth(auth);
    this.budget = opts.budget ?? peerBodyBudget;
    this.nonces =
      auth.mode === "hmac" ? new NonceCache(2 * (auth.skewMs ?? DEFAULT_SKEW_MS), opts.maxNonces ?? DEFAULT_MAX_NONCES, now(auth)) : null;
  }

  /**
   * Everything that needs no body: sender, recipient, declared length, and the proof (signature or
   * certificate name). A request that passes has used up its nonce.
   */
  admitHeaders(req: HeaderCheck): Admission {
    const h = req.headers;
    const from = h.get(FROM_HEADER);
    if (from === null || !nodeIdSchema.safeParse(from).success) return refuse(401, `missing or invalid ${FROM_HEADER}`);
    const to = h.get(TO_HEADER);
    if (to === null || !nodeIdSchema.safeParse(to).success) return refuse(401, `missing or invalid ${TO_HEADER}`);
    // No content-length means an empty body: the reader takes at most this many bytes, so a body
    // sent without a declared length is refused, never buffered.
    const lengthText = h.get(LENGTH_HEADER) ?? "0";
    if (!/^\d{1,12}$/.test(lengthText)) return refuse(401, `invalid ${LENGTH_HEADER}`);
    const length = Number(lengthText);
    if (this.auth.mode === "mtls") {
      if (req.peerCert === null) return refuse(401, "no verified client certificate");
      if (!certificateNames(req.peerCert, from)) {
        return refuse(401, `the client certificate (${describeCert(req.peerCert)}) does not name ${from}`);
      }
      return this.admitted(from, to, length, req.maxBodyBytes, "", null);
    }
    const ts = h.get(TS_HEADER) ?? "";
    const stale = checkTimestamp(this.auth, ts);
    if (stale !== null) return refuse(401, stale);
    const nonce = h.get(NONCE_HEADER) ?? "";
    if (!/^[0-9a-f]{32}$/.test(nonce)) return refuse(401, `missing or invalid ${NONCE_HEADER}`);
    const digest = h.get(DIGEST_HEADER) ?? "";
    if (!/^[0-9a-f]{64}$/.test(digest)) return refuse(401, `missing or invalid ${DIGEST_HEADER}`);
    const proof = { method: req.method, path: req.path, ts, from, to, nonce, length, digest };
    if (!signatureMatches(this.auth.key, proof, h.get(SIG_HEADER) ?? "")) {
      return refuse(401, "bad signature (wrong CLUSTER_KEY or altered request)");
    }
    // Only signed requests reach the cache: a stranger cannot fill it.
    const seen = this.nonces?.admit(nonce, now(this.auth));
    if (seen === "replayed") return refuse(401, "replayed request (nonce already used)");
    if (seen === "full") return refuse(503, "too many peer requests in the replay window; retry");
    return this.admitted(from, to, length, req.maxBodyBytes, nonce, digest);
  }

  /** The check after reading: the body is the one the headers were signed for. */
  checkBody(admission: { from: NodeId; length: number; digest: string | null }, body: Uint8Array): Verdict {
    if (body.byteLength !== admission.length) {
      return { ok: false, reason: `body is ${body.byteLength} bytes, ${LENGTH_HEADER} said ${admission.length}` };
    }
    if (admission.digest !== null && sha256Hex(body) !== admission.digest) {
      return { ok: false, reason: "body digest mismatch (altered request)" };
    }
    return { ok: true, from: admission.from };
  }

  private admitted(from: NodeId, to: NodeId, length: number, max: number, nonce: string, digest: string | null): Admission {
    // After the proof: the recipient and the size are only worth reporting to a real peer.
    if (to !== this.self) return refuse(401, `request is for ${to}, this node is ${this.self}`);
    if (length > max) return refuse(413, `body exceeds ${max} bytes`);
    return { ok: true, from, length, nonce, digest };
  }
}

/**
 * Middleware for peer routes: 401 without valid proof (checked before the body is read), 413 over
 * `maxBodyBytes`, 503 when the peer body budget is spent. On success the handler reads the sender
 * from c.var.peerFrom, the authenticated bytes from c.var.peerBody, the nonce from c.var.peerNonce.
 */
export function peerAuth(gate: PeerGate, maxBodyBytes: number): MiddlewareHandler<PeerEnv> {
  return async (c, next) => {
    const url = new URL(c.req.url);
    const admission = gate.admitHeaders({
      method: c.req.method,
      path: url.pathname + url.search,
      headers: c.req.raw.headers,
      peerCert: verifiedPeerCertificate(c.env),
      maxBodyBytes,
    });
    if (!admission.ok) return c.text(admission.status === 401 ? `unauthorized: ${admission.reason}` : admission.reason, admission.status);
    if (!gate.budget.tryTake(admission.length)) {
      return c.text(`peer body budget (${gate.budget.limit} bytes) in use; retry`, 503);
    }
    try {
      let body: Uint8Array;
      try {
        body = await readCappedBody(c.req.raw, admission.length, incomingOf(c.env));
      } catch (err) {
        if (err instanceof BodyTooLargeError) return c.text(`body is longer than its ${LENGTH_HEADER}`, 400);
        return c.text(`could not read body: ${err instanceof Error ? err.message : String(err)}`, 400);
      }
      const verdict = gate.checkBody(admission, body);
      if (!verdict.ok) return c.text(`unauthorized: ${verdict.reason}`, 401);
      c.set("peerFrom", verdict.from);
      c.set("peerBody", body);
      c.set("peerNonce", admission.nonce);
      await next();
    } finally {
      gate.budget.give(admission.length);
    }
  };
}

interface Proof {
  method: string;
  path: string;
  ts: string;
  from: NodeId;
  to: NodeId;
  nonce: string;
  length: number;
  digest: string;
}

function sign(key: string, p: Proof): string {
  const text = [SIGNED_TEXT_VERSION, p.method.toUpperCase(), p.path, p.ts, p.from, p.to, p.nonce, String(p.length), p.digest].join("\n");
  return createHmac("sha256", key).update(text).digest("hex");
}

function signatureMatches(key: string, proof: Proof, givenHex: string): boolean {
  if (!/^[0-9a-f]{64}$/.test(givenHex)) return false;
  const expected = Buffer.from(sign(key, proof), "hex");
  const given = Buffer.from(givenHex, "hex");
  // Lengths are public (always 32 after the format check); the comparison itself is constant-time.
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function checkTimestamp(auth: PeerAuth & { mode: "hmac" }, ts: string): string | null {
  if (!/^\d{1,15}$/.test(ts)) return `missing or invalid ${TS_HEADER}`;
  const skew = auth.skewMs ?? DEFAULT_SKEW_MS;
  if (Math.abs(now(auth) - Number(ts)) > skew) return `${TS_HEADER} outside the ±${skew} ms window (check clocks)`;
  return null;
}

function now(auth: PeerAuth): number {
  return auth.mode === "hmac" ? (auth.now ?? Date.now)() : Date.now();
}

function sha256Hex(body: Uint8Array): string {
  return createHash("sha256").update(body).digest("hex");
}

function refuse(status: 400 | 401 | 413 | 503, reason: string): Admission {
  return { ok: false, status, reason };
}

/** URI SAN form naming a node, for CAs that issue SPIFFE-like identities rather than DNS names. */
export const NODE_URI_PREFIX = "urn:phalanx:node:";

/** True when `cert` names node `id`: a DNS SAN or URI SAN urn:phalanx:node:<id>, or the CN. */
export function certificateNames(cert: PeerCertificate, id: NodeId): boolean {
  for (const entry of (cert.subjectaltname ?? "").split(",")) {
    const san = entry.trim();
    if (san === `DNS:${id}` || san === `URI:${NODE_URI_PREFIX}${id}`) return true;
  }
  const cn = cert.subject?.CN;
  return Array.isArray(cn) ? cn.includes(id) : cn === id;
}

function describeCert(cert: PeerCertificate): string {
  const cn = cert.subject?.CN;
  return `CN=${Array.isArray(cn) ? cn.join("+") : (cn ?? "")}${cert.subjectaltname ? `, ${cert.subjectaltname}` : ""}`;
}

/**
 * The client certificate of a request that arrived over TLS and that the server's CA verified;
 * null otherwise (h2c, no certificate, or one the CA did not sign).
 */
export function verifiedPeerCertificate(env: unknown): PeerCertificate | null {
  const socket = (env as Partial<Http2Bindings> | undefined)?.incoming?.socket as Partial<TLSSocket> | undefined;
  if (socket === undefined || socket.authorized !== true || typeof socket.getPeerCertificate !== "function") return null;
  const cert = socket.getPeerCertificate();
  return cert !== null && typeof cert === "object" && Object.keys(cert).length > 0 ? cert : null;
}
