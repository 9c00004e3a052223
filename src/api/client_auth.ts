// Client authentication and scopes. Two ways to prove who you are:
// - a bearer token (`Authorization: Bearer <token>`) listed in CLIENT_TOKENS_FILE, one
//   `<name> <scope> <token>` per line; tokens are compared as SHA-256 digests with
//   timingSafeEqual, against every entry (no early exit), so timing says nothing about a token;
// - a TLS client certificate signed by TLS_CA whose subject CN is listed in CLIENT_CERT_SCOPES
//   (`cn=scope,...`). A certificate that is not listed gets nothing: node certificates signed by
//   the same CA are not clients.
// Scopes are ordered: metrics < read < write < admin (each implies the ones before it).
// metrics: /metrics and /readyz on the debug server; read: GET of keys, ranges, status, members;
// write: PUT, DELETE, sessions; admin: leader transfer, membership, /debug/raft, and every route
// not listed here (a new route is admin until someone decides otherwise).
//
// Without any credential configured the node is "open": every client is admin. That is allowed
// only when the client port (and the debug port) listen on loopback, or with INSECURE_CLIENTS=1
// (config.ts refuses to start otherwise), so `npm start` and `phalanx dev` need no setup while a
// server reachable from the network never runs without client authentication by accident.
import { createHash, timingSafeEqual } from "node:crypto";
import type { PeerCertificate } from "node:tls";
import type { Context, MiddlewareHandler } from "hono";
import { verifiedPeerCertificate } from "../transport/auth.ts";
import { errorReply } from "./wire.ts";

export const SCOPES = ["metrics", "read", "write", "admin"] as const;
export type Scope = (typeof SCOPES)[number];

export function scopeAllows(have: Scope, need: Scope): boolean {
  return SCOPES.indexOf(have) >= SCOPES.indexOf(need);
}

export interface ClientIdentity {
  /** Token or certificate name from the configuration; "anonymous" in open mode. */
  name: string;
  scope: Scope;
  via: "token" | "cert" | "open" | "forwarded";
}

export interface TokenEntry {
  name: string;
  scope: Scope;
  /** SHA-256 of the token: the token itself is not kept. */
  digest: Buffer;
}

export interface ClientAuthConfig {
  tokens: TokenEntry[];
  /** Certificate subject CN → identity (needs TLS_CA). */
  certs: Map<string, { name: string; scope: Scope }>;
  /** INSECURE_CLIENTS: no credentials required even off loopback (everyone is admin). */
  insecure: boolean;
  /** Debug-server paths served without credentials off loopback (always /healthz). */
  debugPublic: string[];
}

export const OPEN_CLIENT_AUTH: ClientAuthConfig = { tokens: [], certs: new Map(), insecure: false, debugPublic: ["/healthz"] };

/** True when some credential is configured, i.e. clients must authenticate. */
export function authRequired(cfg: ClientAuthConfig): boolean {
  return cfg.tokens.length > 0 || cfg.certs.size > 0;
}

export const MIN_TOKEN_BYTES = 16;
export const CLIENT_NAME_HEADER = "x-phalanx-client-name";
export const CLIENT_SCOPE_HEADER = "x-phalanx-client-scope";

export class TokenFileError extends Error {
  override name = "TokenFileError";
}

function isScope(s: string): s is Scope {
  return (SCOPES as readonly string[]).includes(s);
}

/**
 * CLIENT_TOKENS_FILE: `<name> <scope> <token>` per line (whitespace-separated), `#` comments and
 * blank lines ignored. Names and tokens must be unique; a token is at least 16 bytes of visible
 * ASCII. `source` names the file in errors (never the token).
 */
export function parseTokenFile(text: string, source: string): TokenEntry[] {
  const out: TokenEntry[] = [];
  const names = new Set<string>();
  const digests = new Set<string>();
  text.split(/\r?\n/).forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const where = `${source} line ${i + 1}`;
    const parts = trimmed.split(/\s+/);
    if (parts.length !== 3) throw new TokenFileError(`${where}: expected "<name> <scope> <token>", got ${parts.length} field(s)`);
    const [name, scope, token] = parts as [string, string, string];
    if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new TokenFileError(`${where}: name must be 1-64 of A-Z a-z 0-9 . _ @ -`);
    if (!isScope(scope)) throw new TokenFileError(`${where}: scope must be one of ${SCOPES.join(", ")}`);
    if (Buffer.byteLength(token) < MIN_TOKEN_BYTES || !/^[\x21-\x7e]+$/.test(token)) {
      throw new TokenFileError(`${where}: the token must be at least ${MIN_TOKEN_BYTES} visible ASCII characters (e.g. openssl rand -hex 32)`);
    }
    if (names.has(name)) throw new TokenFileError(`${where}: name ${name} is listed twice`);
    const digest = sha256(token);
    if (digests.has(digest.toString("hex"))) throw new TokenFileError(`${where}: the same token is listed twice`);
    names.add(name);
    digests.add(digest.toString("hex"));
    out.push({ name, scope, digest });
  });
  return out;
}

/** CLIENT_CERT_SCOPES: "cn=scope,cn=scope"; the CN is also the client's name. */
export function parseCertScopes(text: string): Map<string, { name: string; scope: Scope }> {
  const out = new Map<string, { name: string; scope: Scope }>();
  for (const item of text.split(",").map((s) => s.trim()).filter((s) => s !== "")) {
    const eq = item.lastIndexOf("=");
    const cn = item.slice(0, eq).trim();
    const scope = item.slice(eq + 1).trim();
    if (eq <= 0 || cn === "") throw new TokenFileError(`CLIENT_CERT_SCOPES: "${item}" is not <certificate CN>=<scope>`);
    if (!isScope(scope)) throw new TokenFileError(`CLIENT_CERT_SCOPES: scope of ${cn} must be one of ${SCOPES.join(", ")}`);
    if (out.has(cn)) throw new TokenFileError(`CLIENT_CERT_SCOPES: ${cn} is listed twice`);
    out.set(cn, { name: cn, scope });
  }
  return out;
}

function sha256(s: string): Buffer {
  return createHash("sha256").update(s).digest();
}

/** The bearer token of an Authorization header, or null. */
export function bearerToken(header: string | null | undefined): string | null {
  if (header === null || header === undefined) return null;
  const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return m === null ? null : m[1]!;
}

/** Constant-time lookup: every entry is compared, whatever matches. */
export function tokenIdentity(cfg: ClientAuthConfig, token: string): ClientIdentity | null {
  const given = sha256(token);
  let found: TokenEntry | null = null;
  for (const t of cfg.tokens) {
    if (timingSafeEqual(given, t.digest) && found === null) found = t;
  }
  return found === null ? null : { name: found.name, scope: found.scope, via: "token" };
}

function commonName(cert: PeerCertificate): string | null {
  const cn = (cert.subject as { CN?: string | string[] } | undefined)?.CN;
  return typeof cn === "string" ? cn : null;
}

/**
 * The env api/forward.ts runForwarded() gives the app: the raw path (raw_path.ts reads
 * `incoming.url`), the body as the frame carried it (transport/body.ts HeldBody), and the member
 * that forwarded the request. Only this process builds it, for a stream frame whose sender the
 * peer stream proved (its tag, or the mTLS connection): no header a client sends makes a request
 * forwarded.
 */
export interface ForwardedEnv {
  incoming: { url: string; held: Uint8Array };
  forwardedBy: string;
}

/** The member that forwarded this request to us over its peer stream; null for a client's own request. */
export function forwardedBy(c: Context): string | null {
  const by = (c.env as Partial<ForwardedEnv> | undefined)?.forwardedBy;
  return typeof by === "string" ? by : null;
}

/** Every client of an open node (no credential configured): one frozen identity, not one per request. */
const OPEN_CLIENT: ClientIdentity = Object.freeze({ name: "anonymous", scope: "admin", via: "open" });

export type AuthVerdict = { ok: true; who: ClientIdentity } | { ok: false; status: 401 | 403; message: string };

export interface AuthContext {
  cfg: ClientAuthConfig;
  /** Current Raft members: a forwarding follower must be one. */
  isMember: (id: string) => boolean;
}

/**
 * Who sent this request. Order: a bearer token (explicit); else, for a request a member forwarded
 * over its peer stream (forwardedBy), the certificate client it vouches for; else a listed client
 * certificate. Only the peer stream carries vouching: a client (whatever CA-signed certificate it
 * has, a node's included) cannot vouch for anyone by sending the headers. Token clients are never
 * vouched for: the follower passes the token and the leader checks it.
 */
export function identify(ctx: AuthContext, c: Context): ClientIdentity | null {
  const { cfg } = ctx;
  if (!authRequired(cfg)) return OPEN_CLIENT;
  const token = bearerToken(c.req.header("authorization"));
  if (token !== null) return tokenIdentity(cfg, token);
  const from = forwardedBy(c);
  if (from === null) {
    const cert = verifiedPeerCertificate(c.env);
    const cn = cert === null ? null : commonName(cert);
    const listed = cn === null ? undefined : cfg.certs.get(cn);
    return listed === undefined ? null : { ...listed, via: "cert" };
  }
  const name = c.req.header(CLIENT_NAME_HEADER);
  const scope = c.req.header(CLIENT_SCOPE_HEADER);
  if (name === undefined || scope === undefined || !isScope(scope)) return null;
  if (!ctx.isMember(from)) return null;
  // The vouched identity must be a listed certificate client with exactly that scope: a member
  // cannot invent clients or upgrade one.
  const vouched = cfg.certs.get(name);
  if (vouched === undefined || vouched.scope !== scope) return null;
  return { ...vouched, via: "forwarded" };
}

/** The scope a client route needs. Unknown routes need admin (deny by default). */
export function requiredScope(method: string, path: string): Scope {
  const m = method.toUpperCase();
  const reads = m === "GET" || m === "HEAD";
  if (path === "/v1/kv" || path.startsWith("/v1/kv/")) return reads ? "read" : "write";
  if (path === "/v1/session" || path === "/v1/clients" || path === "/v1/txn") return "write";
  if (path === "/v1/watch") return reads ? "read" : "admin";
  if (path === "/v1/leases" || path === "/v1/lease" || path.startsWith("/v1/lease/")) return reads ? "read" : "write";
  if (path === "/v1/status" || path === "/v1/members") return reads ? "read" : "admin";
  return "admin";
}

/** Hono variable holding the authenticated client. */
export interface ClientEnv {
  Variables: { client: ClientIdentity };
}

export function clientOf(c: Context): ClientIdentity {
  const who = (c.var as Partial<ClientEnv["Variables"]>).client;
  if (who === undefined) throw new Error("client route reached without client authentication (middleware missing)");
  return who;
}

export function authorize(ctx: AuthContext, c: Context, need: Scope): AuthVerdict {
  const who = identify(ctx, c);
  if (who === null) {
    return { ok: false, status: 401, message: "authentication required: send Authorization: Bearer <token> (or a client certificate listed in CLIENT_CERT_SCOPES)" };
  }
  if (!scopeAllows(who.scope, need)) return { ok: false, status: 403, message: `${who.name} has scope ${who.scope}; this needs ${need}` };
  return { ok: true, who };
}

/**
 * Middleware for the client routes (/v1/*): 401 without a valid credential, 403 without the scope.
 * Not an async function (nothing runs after next()): it is on every client request.
 */
export function clientAuth(ctx: AuthContext): MiddlewareHandler {
  return (c, next) => {
    // The scope is judged on the path Hono routes on (the handler that will run), never the raw one.
    const verdict = authorize(ctx, c, requiredScope(c.req.method, c.req.path));
    if (!verdict.ok) {
      const headers: Record<string, string> = verdict.status === 401 ? { "www-authenticate": 'Bearer realm="phalanx"' } : {};
      return Promise.resolve(errorReply(c, verdict.status, verdict.status === 401 ? "unauthenticated" : "forbidden", verdict.message, headers));
    }
    c.set("client", verdict.who);
    return next();
  };
}

/** Headers a follower adds when it forwards a request: the client's credential, or its vouched identity. */
export function forwardedIdentityHeaders(c: Context): Record<string, string> {
  const who = (c.var as Partial<ClientEnv["Variables"]>).client;
  const auth = c.req.header("authorization");
  if (auth !== undefined) return { authorization: auth };
  if (who !== undefined && (who.via === "cert" || who.via === "forwarded")) return { [CLIENT_NAME_HEADER]: who.name, [CLIENT_SCOPE_HEADER]: who.scope };
  return {};
}
