// Push-pull over the node's HTTP/2 server: full state exchange on join and periodically, too big
// for one UDP packet. The request is a signed peer request (the node's peer auth: CLUSTER_KEY HMAC
// or mutual TLS), and the body is the keyring-sealed msgpack state; the answer is the peer's state
// in the same sealed form. Two locks: without the peer credential the body is never read, and
// without the gossip key it never opens.

import { Hono } from "hono";
import { type PeerAuth, type PeerEnv, PeerGate, peerAuth, peerRequestHeaders } from "../transport/auth.ts";
import { H2Client, type ClientTls } from "../transport/h2_client.ts";

export const PUSH_PULL_PATH = "/gossip/v1/push-pull";
export const MAX_PUSH_PULL_BYTES = 8 << 20;
const CONTENT_TYPE = "application/msgpack";

/** `from` is the authenticated sender's node id. */
export type PushPullHandler = (bytes: Uint8Array, from: string) => Uint8Array | null;
/** `to` is the member's node id: the request is signed for it alone. */
export type PushPullFn = (rpcAddr: string, to: string, localState: Uint8Array) => Promise<Uint8Array>;

/**
 * The sub-app the node mounts: POST PUSH_PULL_PATH, behind the peer auth (headers proven before
 * a byte of body is read, the body bounded and checked against its signed digest, nonces used
 * once, the request addressed to `self`).
 */
export function pushPullRoute(auth: PeerAuth, self: string, handle: PushPullHandler): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = new PeerGate(auth, self);
  app.post(PUSH_PULL_PATH, peerAuth(gate, MAX_PUSH_PULL_BYTES), (c) => {
    const answer = handle(c.var.peerBody, c.var.peerFrom);
    if (answer === null) return c.text("push-pull state refused", 400);
    return c.body(answer as Uint8Array<ArrayBuffer>, 200, { "content-type": CONTENT_TYPE });
  });
  return app;
}

export interface PushPullClient {
  pushPull: PushPullFn;
  close(): void;
}

export interface PushPullClientOptions {
  auth: PeerAuth;
  /** Our node id, signed into every request. */
  from: string;
  tls?: ClientTls;
  timeoutMs?: number;
}

/** A client keeping one HTTP/2 session per peer. `rpcAddr` is "host:port" ("[v6]:port" for IPv6). */
export function pushPullClient(o: PushPullClientOptions): PushPullClient {
  const client = new H2Client({ maxResponseBytes: MAX_PUSH_PULL_BYTES, ...(o.tls === undefined ? {} : { tls: o.tls }) });
  const pushPull: PushPullFn = async (addr, to, localState) => {
    const headers = { "content-type": CONTENT_TYPE, ...peerRequestHeaders(o.auth, { method: "POST", path: PUSH_PULL_PATH, from: o.from, to, body: localState }) };
    const res = await client.request(client.originFor(addr), { method: "POST", path: PUSH_PULL_PATH, headers, body: localState, timeoutMs: o.timeoutMs ?? 10_000 });
    if (res.status !== 200) throw new Error(`push-pull to ${addr} failed: status ${res.status}, ${res.body.length} bytes`);
    return res.body;
  };
  return {
    pushPull,
    close(): void {
      void client.close();
    },
  };
}
