// What a client is told about a write, and why each answer is true. This is the one place that
// says which answers are definite; the node (node.ts, waiters.ts), the API (api/kv_routes.ts,
// api/forward.ts) and the simulator's clients (tests/sim) all follow it.
//
// A write is told one of three things:
//
//   applied      It committed and was applied; `result` is what the state machine returned.
//                A failed compare (409 compare_failed) is definite: the key did not match. A
//                session error (410 session_expired, 409 stale_sequence) says this attempt did
//                nothing; an earlier attempt with the same sequence may have applied.
//   not_applied  It never took effect and never will: retrying it cannot apply it twice.
//   unknown      It may have taken effect, may still take effect later, or may never: only a
//                retry with the same session (client id + sequence) is safe, since the state
//                machine answers a retry of an applied write with the cached result.
//
// Definite "not applied" answers, each with its proof:
//
//   rejected     The core refused to append the entry (not the leader, a transfer under way,
//                too many uncommitted bytes): nothing was written anywhere, so nothing can commit.
//   not_started  The node was shutting down before the write reached the core: same as above.
//   overwritten  The entry at the write's index was applied with a different term. An entry
//                never changes its index, and one index commits exactly one entry on every node
//                (Raft's State Machine Safety), so ours can never commit.
//   unreachable  A forwarded request never reached the leader's app: its frame was never
//                written to the peer stream (no connection, the stream failed or was not open
//                before the deadline), or the leader refused it unrun (over its caps).
//
// Everything else is "unknown", never "not applied":
//
//   snapshot     A snapshot from the leader covered the write's index. The snapshot carries the
//                state, not the entries: ours may be in it (a new leader committed it while this
//                one stalled) or may have been overwritten; nobody here can tell which.
//   timeout      The deadline passed while the entry was in the log: it may still commit.
//   disk_full    This node could not persist; copies already sent may commit elsewhere.
//   shutdown     The node stopped (or failed) with the entry appended and maybe sent.
//   displaced    This node, leading again, proposed a new entry at the write's index: its own
//                log lost the entry before it committed, but a follower that holds it may still
//                win an election and commit it. (Not "not applied": that follower's log can be
//                as up to date as a majority's while ours was cut.)
//   lost_leader  A forwarded request failed after its frame was written (the stream broke, no
//                answer by the deadline, the leader's app failed): the leader may have applied it.
//
// On the HTTP API every failed write carries `outcome: "not_applied" | "unknown"` next to its
// `error` code: not_applied answers are 503 (retry freely, `retry-after` says when); unknown
// answers are never 503, so a client that retries every 503 stays correct without a session:
// 504 timeout / outcome_unknown, 507 insufficient_storage.
import type { Result } from "../kv/command.ts";
import type { NodeId } from "../raft/types.ts";

export type NotAppliedReason = "rejected" | "not_started" | "overwritten" | "unreachable";
export type UnknownReason = "snapshot" | "timeout" | "disk_full" | "shutdown" | "displaced" | "lost_leader";

/** How a pending proposal ended, as the waiters see it. */
export type ProposalOutcome =
  | { kind: "applied"; result: Result }
  | { kind: "not_applied"; reason: NotAppliedReason; message: string }
  | { kind: "unknown"; reason: UnknownReason; message: string };

/** What PhalanxNode.propose() answers: a proposal's outcome, or the core's refusal (with a leader hint). */
export type ProposeOutcome = ProposalOutcome | { kind: "rejected"; reason: string; leader: NodeId | null };

export function notApplied(reason: NotAppliedReason, message: string): ProposalOutcome {
  return { kind: "not_applied", reason, message };
}

export function unknownOutcome(reason: UnknownReason, message: string): ProposalOutcome {
  return { kind: "unknown", reason, message };
}
