// The peer route for snapshot chunks: one authenticated msgpack chunk per request, validated, out
// to the core; 204 means "accepted". Raft's other messages travel on the long-lived peer stream
// (raft_stream.ts), which replaced a request per batch; a chunk keeps a request of its own so that
// a 512 KiB body never sits in the stream in front of a heartbeat, with its own larger body limit.

import { Hono } from "hono";
import type { Message, NodeId } from "../raft/types.ts";
import { type PeerAuth, type PeerEnv, PeerGate, peerAuth } from "./auth.ts";
import { CodecError, decodeMessages } from "./codec.ts";

export const RAFT_SNAPSHOT_PATH = "/raft/v1/snapshot";

/** The largest batch of messages (one stream frame). */
export const DEFAULT_MAX_BATCH_BODY = 4 << 20;
/** A snapshot chunk is 512 KiB (raft config snapshotChunkBytes); the cap leaves room for larger. */
export const DEFAULT_MAX_SNAPSHOT_BODY = 8 << 20;

export interface RaftRoutesOptions {
  self: NodeId;
  auth: PeerAuth;
  /** The gate checking requests (own budget, cache size); built from `auth` and `self` otherwise. */
  gate?: PeerGate;
  /** Called synchronously with a whole, valid chunk from `from`. A throw becomes a 500. */
  onMessages: (msgs: Message[], from: NodeId) => void;
  maxSnapshotBody?: number;
}

export function raftRoutes(opts: RaftRoutesOptions): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = opts.gate ?? new PeerGate(opts.auth, opts.self);
  app.post(RAFT_SNAPSHOT_PATH, peerAuth(gate, opts.maxSnapshotBody ?? DEFAULT_MAX_SNAPSHOT_BODY), (c) => {
    const from = c.var.peerFrom;
    let msgs: Message[];
    try {
      msgs = decodeMessages(c.var.peerBody);
    } catch (err) {
      if (err instanceof CodecError) return c.text(err.message, 400);
      return c.text(`decoder failed: ${err instanceof Error ? err.message : String(err)}`, 500);
    }
    const bad = checkBatch(msgs, opts.self, from, true);
    if (bad !== null) return c.text(bad, 400);
    try {
      opts.onMessages(msgs, from);
    } catch (err) {
      return c.text(`core rejected the batch: ${err instanceof Error ? err.message : String(err)}`, 500);
    }
    return c.body(null, 204);
  });
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
