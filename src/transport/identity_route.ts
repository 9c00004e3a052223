// Proof of identity for membership changes: before the leader adds a server that gossip found, it
// asks the advertised rpc address "who are you?" over a signed peer request, with a fresh nonce.
// The answer is signed like a Raft reply (peerReplyHeaders) and names the node id, the cluster id
// and the nonce: a server passes only if it holds the cluster credential (CLUSTER_KEY or a
// certificate from the cluster CA), answers as the id gossip advertised, belongs to our cluster,
// and answers now (the nonce defeats a replayed answer). Gossip alone can then never make the
// leader send appends to an address of a stranger's choosing (issue 9).

import { randomBytes } from "node:crypto";
import { Hono } from "hono";
import type { NodeId } from "../raft/types.ts";
import { NONCE_HEADER, type PeerAuth, type PeerEnv, PeerGate, peerAuth, peerReplyHeaders, peerRequestHeaders, verifyPeerReply } from "./auth.ts";
import type { H2Client } from "./h2_client.ts";

export const IDENTITY_PATH = "/peer/v1/identity";
const MAX_BODY = 1024;
const NONCE_RE = /^[0-9a-f]{32}$/;

interface Challenge {
  /** The node id the asker expects to reach. */
  to: string;
  nonce: string;
}

export interface IdentityAnswer {
  node: NodeId;
  /** "c:<digest>" of the cluster the server belongs to, "" while it is still looking for one. */
  cluster: string;
  nonce: string;
}

export interface IdentityRouteOptions {
  self: NodeId;
  auth: PeerAuth;
  /** The cluster id the server believes it is in, at the moment of asking. */
  cluster: () => string;
}

/** POST IDENTITY_PATH behind the peer auth: answers a challenge with a signed claim of who we are. */
export function identityRoute(o: IdentityRouteOptions): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = new PeerGate(o.auth, o.self);
  app.post(IDENTITY_PATH, peerAuth(gate, MAX_BODY), (c) => {
    const ch = parseJson(c.var.peerBody) as Partial<Challenge> | null;
    if (ch === null || typeof ch.to !== "string" || typeof ch.nonce !== "string" || !NONCE_RE.test(ch.nonce)) {
      return c.text("identity: body must be {to, nonce}", 400);
    }
    // Answering for another id would let an address vouch for a server that is not there.
    if (ch.to !== o.self) return c.text(`identity: this is ${o.self}, not ${ch.to}`, 409);
    const answer: IdentityAnswer = { node: o.self, cluster: o.cluster(), nonce: ch.nonce };
    const body = new TextEncoder().encode(JSON.stringify(answer));
    return c.body(body, 200, { "content-type": "application/json", ...peerReplyHeaders(o.auth, { path: IDENTITY_PATH, from: o.self, to: c.var.peerFrom, nonce: c.var.peerNonce, body }) });
  });
  return app;
}

export interface VerifyIdentityOptions {
  client: H2Client;
  auth: PeerAuth;
  /** Our node id (signed into the request). */
  self: NodeId;
  /** The server to check, at the address gossip advertised for it. */
  node: NodeId;
  rpcAddr: string;
  /** Our cluster id; the server must report the same one. */
  cluster: string;
  timeoutMs?: number;
}

export type IdentityVerdict = { ok: true } | { ok: false; reason: string };

/** Asks `rpcAddr` to prove it is `node` of our cluster. Never throws. */
export async function verifyIdentity(o: VerifyIdentityOptions): Promise<IdentityVerdict> {
  const nonce = randomBytes(16).toString("hex");
  const body = new TextEncoder().encode(JSON.stringify({ to: o.node, nonce } satisfies Challenge));
  const signed = peerRequestHeaders(o.auth, { method: "POST", path: IDENTITY_PATH, from: o.self, to: o.node, body });
  const headers = { "content-type": "application/json", ...signed };
  let res;
  try {
    res = await o.client.request(o.client.originFor(o.rpcAddr), { method: "POST", path: IDENTITY_PATH, headers, body, timeoutMs: o.timeoutMs ?? 3000 });
  } catch (err) {
    return { ok: false, reason: `no answer from ${o.rpcAddr}: ${err instanceof Error ? err.message : String(err)}` };
  }
  if (res.status !== 200) return { ok: false, reason: `${o.rpcAddr} answered HTTP ${res.status}: ${new TextDecoder().decode(res.body).slice(0, 200)}` };
  const h = new Headers();
  for (const [name, value] of Object.entries(res.headers)) if (!name.startsWith(":") && typeof value === "string") h.set(name, value);
  const requestNonce = signed[NONCE_HEADER] ?? "";
  const proof = verifyPeerReply(o.auth, h, { path: IDENTITY_PATH, from: o.node, to: o.self, nonce: requestNonce, body: res.body });
  if (!proof.ok) return { ok: false, reason: `${o.rpcAddr} did not prove it is ${o.node}: ${proof.reason}` };
  const a = parseJson(res.body) as Partial<IdentityAnswer> | null;
  if (a === null || a.nonce !== nonce) return { ok: false, reason: `${o.rpcAddr} answered another challenge` };
  if (a.node !== o.node) return { ok: false, reason: `${o.rpcAddr} is ${String(a.node)}, not ${o.node}` };
  if (a.cluster !== o.cluster) return { ok: false, reason: `${o.node} is in cluster "${String(a.cluster)}", we are "${o.cluster}"` };
  return { ok: true };
}

function parseJson(bytes: Uint8Array): unknown {
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    return null;
  }
}
