// /metrics in the Prometheus text format (0.0.4), written by hand: a few gauges, counters and
// histograms do not justify a client library. Names follow the Prometheus conventions (base
// units, _seconds / _bytes / _total); `promtool check metrics` passes on the output
// (tests/integration/metrics.test.ts runs it, and a strict format check of its own).
import { statSync } from "node:fs";
import type { Histogram } from "../node/metrics.ts";
import type { PhalanxNode } from "../node/node.ts";
import { eventLoopLag, sampleProcess } from "../node/process_metrics.ts";
import { VERSION } from "../node/version.ts";


type Labels = Record<string, string>;

class Writer {
  private readonly lines: string[] = [];

  metric(name: string, type: "gauge" | "counter", help: string, samples: Array<[Labels, number]>): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) this.lines.push(`${name}${labelText(labels)} ${num(v)}`);
  }

  one(name: string, type: "gauge" | "counter", help: string, v: number): void {
    this.metric(name, type, help, [[{}, v]]);
  }

  histogram(name: string, help: string, h: Histogram): void {
    this.histograms(name, help, [[{}, h]]);
  }

  /** One histogram family with a series per label set. */
  histograms(name: string, help: string, series: Array<[Labels, Histogram]>): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const [labels, h] of series) {
      h.bounds.forEach((b, i) => this.lines.push(`${name}_bucket${labelText({ ...labels, le: num(b) })} ${h.counts[i]}`));
      this.lines.push(`${name}_bucket${labelText({ ...labels, le: "+Inf" })} ${h.count}`);
      this.lines.push(`${name}_sum${labelText(labels)} ${num(h.sum)}`, `${name}_count${labelText(labels)} ${h.count}`);
    }
  }

  text(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

function num(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

function fileSize(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

export function metricsText(node: PhalanxNode): string {
  const s = node.status();
  const m = node.metrics;
  const w = new Writer();
  w.metric("phalanx_build_info", "gauge", "Always 1; the labels say which build runs.", [[{ version: VERSION, runtime: `bun ${Bun.version}` }, 1]]);
  w.one("phalanx_raft_term", "gauge", "Current Raft term.", s.term);
  w.metric("phalanx_raft_role", "gauge", "1 for the role this node has.", (["follower", "preCandidate", "candidate", "leader"] as const).map((r) => [{ role: r }, s.role === r ? 1 : 0]));
  w.one("phalanx_raft_has_leader", "gauge", "1 when a leader is known.", s.leader === null ? 0 : 1);
  w.one("phalanx_raft_is_leader", "gauge", "1 when this node is the leader.", s.role === "leader" ? 1 : 0);
  w.one("phalanx_raft_is_voter", "gauge", "1 when this node is a voter of the configuration.", s.conf.voters.includes(s.id) ? 1 : 0);
  w.one("phalanx_raft_is_learner", "gauge", "1 when this node is a learner (non-voting) of the configuration.", s.conf.learners.includes(s.id) ? 1 : 0);
  w.one("phalanx_raft_voters", "gauge", "Voters in the configuration.", s.conf.voters.length);
  w.one("phalanx_raft_learners", "gauge", "Learners in the configuration.", s.conf.learners.length);
  w.one("phalanx_raft_commit_index", "gauge", "Highest committed log index.", s.commit);
  w.one("phalanx_raft_applied_index", "gauge", "Highest applied log index.", s.applied);
  w.one("phalanx_raft_last_index", "gauge", "Last index in the local log.", s.lastIndex);
  w.one("phalanx_raft_elections_started_total", "counter", "Elections this node started.", m.electionsStarted);
  w.one("phalanx_raft_elections_won_total", "counter", "Elections this node won.", m.electionsWon);
  w.one("phalanx_raft_leader_changes_total", "counter", "Leader changes observed (one per new leader and term).", m.leaderChanges);
  const committed = m.commitLatency.count;
  w.one("phalanx_proposals_total", "counter", "Writes proposed on this node.", m.proposals);
  w.one("phalanx_proposals_committed_total", "counter", "Writes proposed on this node that were applied.", committed);
  w.one("phalanx_proposals_failed_total", "counter", "Proposals refused, lost or timed out.", m.proposalsFailed);
  // Every proposal ends exactly once as committed or failed; the rest are still waiting.
  w.one("phalanx_proposals_pending", "gauge", "Proposals of this node waiting to be applied.", Math.max(0, m.proposals - committed - m.proposalsFailed));
  w.metric("phalanx_reads_total", "counter", "Reads served, by kind.", [
    [{ kind: "linearizable" }, m.readsLinearizable],
    [{ kind: "stale" }, m.readsStale],
    [{ kind: "bounded_local" }, m.readsBoundedLocal],
    [{ kind: "bounded_round" }, m.readsBoundedRound],
  ]);
  w.one("phalanx_reads_bounded_refused_total", "counter", "Bounded-staleness reads refused: the node could not prove the bound.", m.readsBoundedRefused);
  w.one("phalanx_freshness_probes_total", "counter", "Background ReadIndex rounds that keep bounded-staleness reads local.", m.freshnessProbes);
  w.one("phalanx_reads_lease_total", "counter", "Read barriers the leader answered from its lease.", m.readsLease);
  w.one("phalanx_reads_failed_total", "counter", "Linearizable reads refused or timed out.", m.readsFailed);
  w.one("phalanx_forwarded_total", "counter", "Requests forwarded to the leader.", m.forwarded);
  w.one("phalanx_forwards_refused_total", "counter", "Forwarded requests this node refused unrun, over a follower's cap of running forwards or the peer body budget (the follower retries them within the client's deadline).", m.forwardsRefused);
  w.one("phalanx_forward_retries_total", "counter", "Forwards sent again because the leader provably never ran the attempt before (never written to the peer stream, or refused unrun).", m.forwardRetries);
  w.one("phalanx_entries_applied_total", "counter", "Log entries applied.", m.entriesApplied);
  w.one("phalanx_disk_full_errors_total", "counter", "Writes refused because the disk was full.", m.diskFullErrors);
  w.one("phalanx_disk_full", "gauge", "1 while the node waits for disk space.", node.diskFull() ? 1 : 0);
  w.one("phalanx_protocol_violations_total", "counter", "Peer messages refused as protocol violations.", m.protocolViolations);
  w.one("phalanx_follower_regressions_total", "counter", "Followers found (by this leader) holding fewer entries than they had acknowledged.", m.followerRegressions);
  w.one("phalanx_followers_regressed", "gauge", "Followers that lost acknowledged entries and have not caught up again (leader only).", Object.values(s.progress).filter((p) => p.regressedFrom > 0).length);
  w.one("phalanx_snapshots_created_total", "counter", "Snapshots taken of the local state machine.", m.snapshotsCreated);
  w.one("phalanx_snapshots_installed_total", "counter", "Snapshots installed from the leader.", m.snapshotsInstalled);
  w.histogram("phalanx_proposal_commit_duration_seconds", "Proposal to applied, on the proposing node.", m.commitLatency);
  w.histogram("phalanx_disk_fsync_duration_seconds", "Durable commit of one Ready: log write, apply and fsync in one SQLite transaction.", m.persistLatency);
  w.histogram("phalanx_apply_duration_seconds", "Applying one Ready's committed entries to the key-value store.", m.applyDuration);
  w.histogram("phalanx_snapshot_save_duration_seconds", "Taking a snapshot of the state machine for log compaction.", m.snapshotSaveDuration);
  w.histogram("phalanx_snapshot_install_duration_seconds", "Installing a snapshot received from the leader.", m.snapshotInstallDuration);
  w.histogram("phalanx_backup_duration_seconds", "Taking a backup image for GET /v1/snapshot.", m.backupDuration);
  dbMetrics(w, node);
  const peers = node.peerStats();
  w.metric("phalanx_peer_rtt_smoothed_seconds", "gauge", "Smoothed peer round trip (a stream frame to its answer).", peers.filter((p) => p.rttMs !== null).map((p) => [{ peer: p.id }, p.rttMs! / 1000]));
  w.histograms("phalanx_peer_round_trip_time_seconds", "Peer round trips (a stream frame to its answer).", [...m.peerRtt].map(([peer, h]) => [{ peer }, h]));
  w.metric("phalanx_peer_sent_bytes_total", "counter", "Bytes of the frames and snapshot chunks this node sent to a peer (a link's traffic is the sum over both ends).", peers.map((p) => [{ peer: p.id }, p.bytesSent]));
  w.metric("phalanx_peer_received_bytes_total", "counter", "Bytes a peer answered this node's frames and chunks with (replies ride in the answers).", peers.map((p) => [{ peer: p.id }, p.bytesReceived]));
  w.metric("phalanx_peer_sent_total", "counter", "Messages a peer accepted.", peers.map((p) => [{ peer: p.id }, p.sent]));
  w.metric("phalanx_peer_dropped_total", "counter", "Messages to a peer that were lost.", peers.map((p) => [{ peer: p.id }, p.dropped]));
  w.metric("phalanx_peer_errors_total", "counter", "Peer failures: streams lost or refused, refused batches and chunks, bad answers.", peers.map((p) => [{ peer: p.id }, p.errors]));
  w.metric("phalanx_peer_up", "gauge", "1 when the last request to the peer got an answer.", peers.map((p) => [{ peer: p.id }, p.state === "up" ? 1 : 0]));
  const http = m.http;
  w.metric("phalanx_http_requests_total", "counter", "HTTP requests answered, by method, route and status code.", [...http.requests.values()].map((r) => [{ method: r.method, route: r.route, code: r.code }, r.n]));
  w.histograms("phalanx_http_request_duration_seconds", "HTTP request latency until the response starts, by method and route.", [...http.latency.values()].map((l) => [{ method: l.method, route: l.route }, l.h]));
  const g = node.gossipCounters?.() ?? null;
  if (g !== null) {
    const counter = (name: string, help: string, v: number) => w.one(`phalanx_gossip_${name}_total`, "counter", help, v);
    counter("packets_in", "Gossip UDP packets received.", g.packetsIn);
    counter("packets_out", "Gossip UDP packets sent.", g.packetsOut);
    counter("bytes_in", "Gossip UDP bytes received.", g.bytesIn);
    counter("bytes_out", "Gossip UDP bytes sent.", g.bytesOut);
    counter("malformed", "Gossip packets dropped as malformed.", g.malformed);
    counter("decrypt_failures", "Gossip packets that no key in the keyring opens.", g.decryptFailures);
    counter("send_errors", "Gossip sends that failed.", g.sendErrors + g.socketErrors);
    counter("push_pulls", "Full-state exchanges started.", g.pushPulls);
    counter("push_pull_failures", "Full-state exchanges that failed.", g.pushPullFailures);
    counter("internal_errors", "Gossip input that raised an error (logged, never fatal).", g.internalErrors);
    w.one("phalanx_gossip_health", "gauge", "Lifeguard local health score (0 is healthy).", g.health);
    w.metric("phalanx_gossip_members", "gauge", "Members by gossip state.", Object.entries(g.members).map(([state, n]) => [{ state }, n]));
  }
  processMetrics(w);
  return w.text();
}

/** The database's size (pages times page size, WAL excluded) and the part in use; for /metrics and /v1/status. */
export function dbSize(node: PhalanxNode): { bytes: number; inUseBytes: number } {
  const db = node.dd.db;
  const pragma = (name: string) => Number((db.query(`PRAGMA ${name}`).values()[0] as [number] | undefined)?.[0] ?? 0);
  const pageSize = pragma("page_size");
  const pages = pragma("page_count");
  const free = pragma("freelist_count");
  return { bytes: pages * pageSize, inUseBytes: (pages - free) * pageSize };
}

function dbMetrics(w: Writer, node: PhalanxNode): void {
  if (node.isStopped) return;
  const size = dbSize(node);
  w.one("phalanx_db_size_bytes", "gauge", "Size of the data file's database (pages times page size), WAL excluded.", size.bytes);
  w.one("phalanx_db_size_in_use_bytes", "gauge", "Part of the database in use (free pages excluded).", size.inUseBytes);
  w.one("phalanx_db_wal_size_bytes", "gauge", "Size of the write-ahead log file.", fileSize(`${node.dd.file}-wal`));
  w.one("phalanx_kv_keys", "gauge", "Keys in the key-value store.", node.kv.count("").count);
}

function processMetrics(w: Writer): void {
  const p = sampleProcess();
  w.one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", p.residentBytes);
  w.one("process_heap_used_bytes", "gauge", "JavaScript heap in use, in bytes.", p.heapUsedBytes);
  w.one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", p.cpuSeconds);
  if (p.openFds !== null) w.one("process_open_fds", "gauge", "Number of open file descriptors.", p.openFds);
  if (p.maxFds !== null) w.one("process_max_fds", "gauge", "Maximum number of open file descriptors.", p.maxFds);
  w.one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", p.startTimeSeconds);
  w.histogram("phalanx_event_loop_lag_seconds", "How late a 100 ms timer fires: time the event loop was busy (heartbeats wait as long).", eventLoopLag.histogram);
}
