// Majority arithmetic over a voter set (§5.2, §5.4.2). Learners never count.
import type { NodeId } from "./types.ts";

export function majority(voterCount: number): number {
  return Math.floor(voterCount / 2) + 1;
}

/**
 * The largest value that a majority of voters has reached: with values sorted descending, the
 * majority-th one. Used for the commit index (values = match indexes) and the lease start
 * (values = tick of each voter's latest acknowledged heartbeat).
 */
export function quorumValue(voters: readonly NodeId[], valueOf: (id: NodeId) => number): number {
  const n = voters.length;
  if (n === 0) return 0;
  const values = new Array<number>(n);
  for (let i = 0; i < n; i++) values[i] = valueOf(voters[i]!);
  values.sort((a, b) => b - a);
  return values[majority(n) - 1]!;
}

export type VoteResult = "won" | "lost" | "pending";

export function voteResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let granted = 0;
  let rejected = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === true) granted++;
    else if (v === false) rejected++;
  }
  const need = majority(voters.length);
  if (granted >= need) return "won";
  if (voters.length - rejected < need) return "lost";
  return "pending";
}

/**
 * Won when every voter granted, lost once one refused: a brand-new cluster's first election
 * (raft.ts explains why it may not settle for a majority).
 */
export function everyVoterResult(voters: readonly NodeId[], votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  let granted = 0;
  for (const id of voters) {
    const v = votes.get(id);
    if (v === false) return "lost";
    if (v === true) granted++;
  }
  return granted === voters.length ? "won" : "pending";
}
