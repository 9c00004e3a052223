// Core configuration. All durations are in ticks: the node decides how long a tick is.
import type { LogStorage } from "./storage.ts";
import type { NodeId } from "./types.ts";

export interface RaftConfig {
  id: NodeId;
  storage: LogStorage;
  /** Seeded source of uniform numbers in [0, 1): the only randomness the core uses. */
  random: () => number;
  /** Index the state machine has already applied (on restart), so it is not applied twice. */
  applied?: number;
  /** Followers start an election after a random timeout in [electionTicks, 2 * electionTicks). */
  electionTicks?: number;
  heartbeatTicks?: number;
  /**
   * Lease safety margin: the leader serves lease reads for electionTicks - maxClockDriftTicks
   * ticks after a majority acknowledged it. Must cover tick-rate drift between nodes and one
   * tick of rounding (a follower's first tick can come right after it heard the leader).
   */
  maxClockDriftTicks?: number;
  /** Serve linearizable reads from the leader lease (else always ReadIndex). */
  leaseReads?: boolean;
  /** Appends in flight per follower while replicating. */
  maxInflight?: number;
  /** Byte cap of the entries in one append message. */
  maxMsgBytes?: number;
  /** Proposals are refused while this many bytes are appended but not committed. */
  maxUncommittedBytes?: number;
  /** Byte cap of committed entries handed out in one Ready. */
  maxApplyBytes?: number;
  snapshotChunkBytes?: number;
  /** Ask the node for a snapshot after this many applied entries since the last one (0: never). */
  snapshotEvery?: number;
  /**
   * Called at the core's decision points (votes granted or refused and why, pre-votes, appends
   * rejected) for debug logs. A plain function, so the core stays pure; when unset the core does
   * not even build the fields.
   */
  trace?: TraceHook;
}

export type TraceHook = (event: string, fields: Record<string, unknown>) => void;

export type ResolvedConfig = Required<Omit<RaftConfig, "trace">> & Pick<RaftConfig, "trace">;

export function resolveConfig(c: RaftConfig): ResolvedConfig {
  const r: ResolvedConfig = {
    applied: 0,
    electionTicks: 10,
    heartbeatTicks: 1,
    maxClockDriftTicks: 3,
    leaseReads: true,
    maxInflight: 256,
    maxMsgBytes: 1 << 20,
    maxUncommittedBytes: 64 << 20,
    maxApplyBytes: 64 << 20,
    snapshotChunkBytes: 512 << 10,
    snapshotEvery: 10_000,
    ...c,
  };
  const bad = (why: string): never => {
    throw new Error(`invalid raft config: ${why}`);
  };
  if (r.id === "") bad("id is empty");
  if (r.heartbeatTicks < 1) bad("heartbeatTicks must be >= 1");
  if (r.electionTicks <= r.heartbeatTicks) bad("electionTicks must exceed heartbeatTicks");
  if (r.maxClockDriftTicks < 1 || r.maxClockDriftTicks >= r.electionTicks) {
    bad("maxClockDriftTicks must be in [1, electionTicks)");
  }
  if (r.maxInflight < 1) bad("maxInflight must be >= 1");
  if (r.snapshotChunkBytes < 1) bad("snapshotChunkBytes must be >= 1");
  return r;
}
