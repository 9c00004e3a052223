// The membership rules both the autopilot and `phalanx member` follow, written once: a learner is
// promoted only when it is caught up, and a voter is removed only while the voters left keep a
// quorum of live ones. Each answers with the reason to refuse, or null when the change is safe.
import type { NodeId } from "../../raft/types.ts";

/** How far behind the leader's last index a learner may be and still count as caught up. */
export const MAX_TRAILING_LOGS = 250;

export interface ReplicationView {
  lastIndex: number;
  progress: Record<NodeId, { match: number; answeredRecently: boolean } | undefined>;
}

/**
 * Why `id` is not caught up, or null. Promoting a learner that is far behind makes it a voter the
 * quorum may need before it has the log: a 3-voter cluster with one slow new voter and one down
 * stops committing until the new one catches up.
 */
export function notCaughtUp(view: ReplicationView, id: NodeId, maxTrailingLogs = MAX_TRAILING_LOGS): string | null {
  const pr = view.progress[id];
  if (pr === undefined) return `the leader has no replication state for ${id}`;
  if (!pr.answeredRecently) return `${id} has not answered the leader within an election timeout`;
  const behind = view.lastIndex - pr.match;
  if (behind > maxTrailingLogs) return `${id} is ${behind} entries behind the leader (at most ${maxTrailingLogs} allowed)`;
  return null;
}

/**
 * Why removing `removing` from `voters` would leave a configuration whose live voters cannot
 * form a quorum, or null. `alive` is the caller's evidence (gossip for the autopilot, the
 * leader's recent contact for an operator's request).
 */
export function quorumLostByRemoving(voters: readonly NodeId[], removing: NodeId, alive: (id: NodeId) => boolean): string | null {
  const remaining = voters.filter((v) => v !== removing);
  if (remaining.length === 0) return `${removing} is the last voter`;
  const live = remaining.filter(alive).length;
  const quorum = Math.floor(remaining.length / 2) + 1;
  if (live < quorum) return `without ${removing}, ${live} of the ${remaining.length} remaining voters are alive; a quorum needs ${quorum}`;
  return null;
}
