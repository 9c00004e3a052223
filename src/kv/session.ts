// Exactly-once client sessions (Raft paper §8, dissertation §6.3). A client registers (its id is
// the log index of the register entry), then numbers its writes 1, 2, 3... with one write in
// flight at a time. The state machine keeps each client's last sequence number and result, so a
// retried write returns the cached result instead of applying twice. Sessions expire by the log's
// own clock (the proposer's timestamp carried in each entry), so every replica evicts the same
// sessions at the same index.

export interface SessionRecord<R> {
  seq: number;
  result: R;
  /** Log time (ms) of the client's last write. */
  lastActive: number;
}

export type SessionVerdict<R> =
  | { kind: "apply" }
  | { kind: "duplicate"; result: R }
  | { kind: "error"; code: "session_expired" | "stale_sequence"; message: string };

export function checkSession<R>(
  client: number,
  rec: SessionRecord<R> | undefined,
  seq: number,
): SessionVerdict<R> {
  if (rec === undefined) {
    // Unknown client: either never registered or evicted. Applying could apply a retry twice.
    return {
      kind: "error",
      code: "session_expired",
      // User-facing name: "client id" (a Consul "session" is a lock/lease concept; this is not one).
      message: `client id ${client} is unknown or expired (idle longer than the client id TTL); register a new one with POST /v1/clients`,
    };
  }
  if (seq === rec.seq) return { kind: "duplicate", result: rec.result };
  if (seq < rec.seq) {
    return {
      kind: "error",
      code: "stale_sequence",
      message: `client ${client} sequence ${seq} is older than its last write ${rec.seq}`,
    };
  }
  return { kind: "apply" };
}

/** Advances the log clock: proposers' clocks differ, the log's clock never goes back. */
export function advanceLogTime(current: number, proposed: number): number {
  return proposed > current ? proposed : current;
}

export function isExpired(rec: { lastActive: number }, logTime: number, ttlMs: number): boolean {
  return logTime - rec.lastActive > ttlMs;
}
