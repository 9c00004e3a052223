// The peer RPC routes: authenticated msgpack batches in, validated Message[] out to the core.
// Raft messages are one-way, so a 204 only means "accepted"; replies travel as messages of their own.

import { Hono } from "hono";
import type { Message, NodeId } from "../raft/types.ts";
import { type PeerAuth, type PeerEnv, peerAuth } from "./auth.ts";
import { CodecError, decodeMessages } from "./codec.ts";

export const RAFT_MESSAGES_PATH = "/raft/v1/messages";
/** Snapshot chunks go to their own route: larger body limit, their own stream beside heartbeats. */
export const RAFT_SNAPSHOT_PATH = "/raft/v1/snapshot";

export const DEFAULT_MAX_BATCH_BODY = 4 << 20;
export const DEFAULT_MAX_SNAPSHOT_BODY = 64 << 20;

export interface RaftRoutesOptions {
  self: NodeId;
  auth: PeerAuth;
  /** Called synchronously with a whole, valid batch from `from`. A throw becomes a 500. */
  onMessages: (msgs: Message[], from: NodeId) => void;
  maxBatchBody?: number;
  maxSnapshotBody?: number;
}

export function raftRoutes(opts: RaftRoutesOptions): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  /** Null when the batch reached the core; otherwise the refusal. */
  const deliver = (body: Uint8Array, from: NodeId, snapshotRoute: boolean): { status: 400 | 500; error: string } | null => {
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
    } catch (err) {
      return { status: 500, error: `core rejected the batch: ${err instanceof Error ? err.message : String(err)}` };
    }
    return null;
  };

  const route = (path: string, limit: number, snapshotRoute: boolean) =>
    app.post(path, peerAuth(opts.auth, limit), (c) => {
      const refused = deliver(c.var.peerBody, c.var.peerFrom, snapshotRoute);
      return refused === null ? c.body(null, 204) : c.text(refused.error, refused.status);
    });
  route(RAFT_MESSAGES_PATH, opts.maxBatchBody ?? DEFAULT_MAX_BATCH_BODY, false);
  route(RAFT_SNAPSHOT_PATH, opts.maxSnapshotBody ?? DEFAULT_MAX_SNAPSHOT_BODY, true);
  return app;
}

/** The checks zod cannot make: the batch is for this node, from its authenticated sender, on the right route. */
function checkBatch(msgs: Message[], self: NodeId, from: NodeId, snapshotRoute: boolean): string | null {
  if (snapshotRoute && (msgs.length !== 1 || msgs[0]?.type !== "snapshot")) {
    return `${RAFT_SNAPSHOT_PATH} takes exactly one snapshot message`;
  }
  for (const m of msgs) {
    if (m.to !== self) return `message ${m.type} is addressed to ${m.to}, this node is ${self}`;
    if (m.from !== from) return `message ${m.type} claims to be from ${m.from}, the request is from ${from}`;
  }
  return null;
}
