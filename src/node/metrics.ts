// Counters the node keeps for /metrics and /debug/raft. Plain fields, updated on the hot path.

/** Cumulative histogram with fixed upper bounds (Prometheus semantics). */
export class Histogram {
  readonly counts: number[];
  count = 0;
  sum = 0;

  constructor(readonly bounds: readonly number[]) {
    this.counts = bounds.map(() => 0);
  }

  observe(v: number): void {
    this.count++;
    this.sum += v;
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]!) this.counts[i]!++;
  }
}

export class NodeMetrics {
  /** Elections this node started (became candidate) and won. */
  electionsStarted = 0;
  electionsWon = 0;
  leaderChanges = 0;
  proposals = 0;
  proposalsFailed = 0;
  readsLinearizable = 0;
  readsLease = 0;
  readsStale = 0;
  readsFailed = 0;
  forwarded = 0;
  readies = 0;
  /** Peer messages the core refused as protocol violations. */
  protocolViolations = 0;
  /** Followers this node, as leader, found holding fewer entries than they had acknowledged. */
  followerRegressions = 0;
  /** Writes refused because the disk was full. */
  diskFullErrors = 0;
  entriesApplied = 0;
  snapshotsCreated = 0;
  snapshotsInstalled = 0;
  /** Proposal to applied, on the proposing node (seconds). */
  readonly commitLatency = new Histogram([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5]);
  /** Persisting one Ready (seconds): the fsync cost. */
  readonly persistLatency = new Histogram([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]);
}
