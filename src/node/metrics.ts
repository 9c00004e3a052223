// Counters the node keeps for /metrics and /debug/raft. Plain fields, updated on the hot path.
import type { NodeId } from "../raft/types.ts";

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

  /** Runs `fn` and observes how long it took (seconds), also when it throws. */
  time<T>(fn: () => T): T {
    const t0 = performance.now();
    try {
      return fn();
    } finally {
      this.observe((performance.now() - t0) / 1000);
    }
  }
}

/** Disk and loop latencies: 0.5 ms to 8 s (etcd's fsync buckets reach 8 s too). */
const DISK_BUCKETS = [0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/** Request latencies, 1 ms to 10 s. */
const REQUEST_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Network round trips, 0.1 ms (loopback) to 6.5 s (etcd's peer RTT buckets start at 0.1 ms). */
export const RTT_BUCKETS = [0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384, 3.2768, 6.5536];
/** Snapshots: a few ms to minutes. */
const SNAPSHOT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** HTTP requests by method, route pattern and status, with a latency histogram per method and route. */
export class HttpMetrics {
  readonly requests = new Map<string, { method: string; route: string; code: string; n: number }>();
  readonly latency = new Map<string, { method: string; route: string; h: Histogram }>();

  observe(method: string, route: string, code: number, seconds: number): void {
    const key = `${method} ${route}`;
    let l = this.latency.get(key);
    if (l === undefined) {
      l = { method, route, h: new Histogram(REQUEST_BUCKETS) };
      this.latency.set(key, l);
    }
    l.h.observe(seconds);
    const ckey = `${key} ${code}`;
    const r = this.requests.get(ckey);
    if (r === undefined) this.requests.set(ckey, { method, route, code: String(code), n: 1 });
    else r.n++;
  }
}

export class NodeMetrics {
  /** Elections this node started (became candidate) and won. */
  electionsStarted = 0;
  electionsWon = 0;
  /** A new leader became known: one per (leader, term), so a transfer counts once. See observeLeader(). */
  leaderChanges = 0;
  private lastLeaderTerm: string | null = null;
  proposals = 0;
  proposalsFailed = 0;
  readsLinearizable = 0;
  readsLease = 0;
  readsStale = 0;
  readsFailed = 0;
  /** Bounded-staleness reads: answered from the proof at hand, after a ReadIndex round, refused. */
  readsBoundedLocal = 0;
  readsBoundedRound = 0;
  readsBoundedRefused = 0;
  /** Background ReadIndex rounds that keep the freshness proof current (freshness.ts). */
  freshnessProbes = 0;
  forwarded = 0;
  /** Forwards sent again because the leader provably never saw the previous attempt. */
  forwardRetries = 0;
  /** Forwards this node, as leader, refused unrun: a follower's running forwards or the peer body budget at their cap. */
  forwardsRefused = 0;
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
  /** Proposal to applied, on the proposing node (seconds). Its count is the proposals committed. */
  readonly commitLatency = new Histogram(REQUEST_BUCKETS);
  /** Persisting one Ready with fsync (seconds): one SQLite COMMIT covers the log write, the apply and the fsync. */
  readonly persistLatency = new Histogram(DISK_BUCKETS);
  /** Applying one Ready's committed entries to the state machine (seconds). */
  readonly applyDuration = new Histogram(DISK_BUCKETS);
  /** Taking a snapshot of the local state machine for log compaction (seconds). */
  readonly snapshotSaveDuration = new Histogram(SNAPSHOT_BUCKETS);
  /** Installing a snapshot received from the leader (seconds). */
  readonly snapshotInstallDuration = new Histogram(SNAPSHOT_BUCKETS);
  /** Taking a backup image for GET /v1/snapshot (seconds). */
  readonly backupDuration = new Histogram(SNAPSHOT_BUCKETS);
  /** Peer round trips by peer (seconds, a stream frame to its answer); fed by the transport's onRoundTrip. */
  readonly peerRtt = new Map<NodeId, Histogram>();
  readonly http = new HttpMetrics();

  /**
   * Called with the leader the node knows whenever it changes. Counts a change only when a leader
   * is known and it is not the one already counted for that term: a transfer passes through "no
   * leader" (X, none, Y) and used to count twice; a re-election of X in a new term counts once.
   */
  observeLeader(lead: NodeId | null, term: number): void {
    if (lead === null) return;
    const key = `${lead}@${term}`;
    if (key === this.lastLeaderTerm) return;
    this.lastLeaderTerm = key;
    this.leaderChanges++;
  }

  observePeerRtt(peer: NodeId, seconds: number): void {
    let h = this.peerRtt.get(peer);
    if (h === undefined) {
      h = new Histogram(RTT_BUCKETS);
      this.peerRtt.set(peer, h);
    }
    h.observe(seconds);
  }
}
