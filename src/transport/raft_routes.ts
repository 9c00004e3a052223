// The peer RPC routes: authenticated msgpack batches in, validated Message[] out to the core.
// A 204 means "accepted". A sender that sets x-phalanx-reply lets the node answer in the response
// body (200, msgpack, signed like a request): a follower's acknowledgement then rides back on the
// append's own stream instead of costing a request of its own. Replies are ordinary messages;
// whatever the node does not answer in time travels as requests of its own.

import { Hono } from "hono";
import type { Message, NodeId } from "../raft/types.ts";
import { type PeerAuth, type PeerEnv, PeerGate, peerAuth, peerReplyHeaders } from "./auth.ts";
import { CodecError, decodeMessages, encodeMessages } from "./codec.ts";

export const RAFT_MESSAGES_PATH = "/raft/v1/messages";
/** Snapshot chunks go to their own route: larger body limit, their own stream beside heartbeats. */
export const RAFT_SNAPSHOT_PATH = "/raft/v1/snapshot";

/** Request header: the sender reads messages from the response body (value "1"). */
export const REPLY_HEADER = "x-phalanx-reply";

export const DEFAULT_MAX_BATCH_BODY = 4 << 20;
/** A snapshot chunk is 512 KiB (raft config snapshotChunkBytes); the cap leaves room for larger. */
export const DEFAULT_MAX_SNAPSHOT_BODY = 8 << 20;

export interface RaftRoutesOptions {
  self: NodeId;
  auth: PeerAuth;
  /** The gate checking requests (own budget, cache size); built from `auth` and `self` otherwise. */
  gate?: PeerGate;
  /** Called synchronously with a whole, valid batch from `from`. A throw becomes a 500. */
  onMessages: (msgs: Message[], from: NodeId) => void;
  /**
   * Called right after onMessages when the sender accepts replies: resolves with the messages for
   * `from` that handling the batch produced. Without it every answer is a 204.
   */
  awaitReplies?: (from: NodeId) => Promise<Message[]>;
  maxBatchBody?: number;
  maxSnapshotBody?: number;
}

export function raftRoutes(opts: RaftRoutesOptions): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = opts.gate ?? new PeerGate(opts.auth, opts.self);
  /** Null when the batch reached the core; otherwise the refusal. */
  const deliver = (
    body: Uint8Array,
    from: NodeId,
    snapshotRoute: boolean,
    acceptsReply: boolean,
  ): { status: 400 | 500; error: string } | { reply: Promise<Message[]> | undefined } => {
    let msgs: Message[];
    try {
      msgs = decodeMessages(body);
    } catch (err) {
      if (err instanceof CodecError) return { status: 400, error: err.message };
      return { status: 500, error: `decoder failed: ${err instanceof Error ? err.message : String(err)}` };
    }
    const bad = checkBatch(msgs, opts.self, from, snapshotRoute);
    if (bad !== null) return { status: 400, error: bad };
    try {
      opts.onMessages(msgs, from);
      return { reply: acceptsReply && opts.awaitReplies !== undefined ? opts.awaitReplies(from) : undefined };
    } catch (err) {
      return { status: 500, error: `core rejected the batch: ${err instanceof Error ? err.message : String(err)}` };
    }
  };

  const route = (path: string, limit: number, snapshotRoute: boolean) =>
    app.post(path, peerAuth(gate, limit), async (c) => {
      const from = c.var.peerFrom;
      // Replies are held only for a request whose nonce was just used for the first time (the gate
      // refuses a replay before this point), so a replayer never receives messages meant for `from`.
      const r = deliver(c.var.peerBody, from, snapshotRoute, c.req.header(REPLY_HEADER) === "1");
      if ("error" in r) return c.text(r.error, r.status);
      // The batch is delivered either way: a reply that cannot be had is simply not sent.
      const replies = r.reply === undefined ? [] : await r.reply.catch(() => []);
      if (replies.length === 0) return c.body(null, 204);
      // The encoder returns a fresh buffer, never a shared one.
      const body = encodeMessages(replies) as Uint8Array<ArrayBuffer>;
      const headers = { "content-type": "application/msgpack", ...peerReplyHeaders(opts.auth, { path, from: opts.self, to: from, nonce: c.var.peerNonce, body }) };
      return c.body(body, 200, headers);
    });
  route(RAFT_MESSAGES_PATH, opts.maxBatchBody ?? DEFAULT_MAX_BATCH_BODY, false);
  route(RAFT_SNAPSHOT_PATH, opts.maxSnapshotBody ?? DEFAULT_MAX_SNAPSHOT_BODY, true);
  return app;
}

/** The checks zod cannot make: the batch is for this node, from its authenticated sender, on the right route. */
export function checkBatch(msgs: Message[], self: NodeId, from: NodeId, snapshotRoute: boolean): string | null {
  if (snapshotRoute && (msgs.length !== 1 || msgs[0]?.type !== "snapshot")) {
    return `${RAFT_SNAPSHOT_PATH} takes exactly one snapshot message`;
  }
  for (const m of msgs) {
    if (m.to !== self) return `message ${m.type} is addressed to ${m.to}, this node is ${self}`;
    if (m.from !== from) return `message ${m.type} claims to be from ${m.from}, the request is from ${from}`;
  }
  return null;
}
