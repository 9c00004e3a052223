// /metrics in the Prometheus text format (0.0.4), written by hand: a few gauges, counters and
// histograms do not justify a client library.
import type { Histogram } from "../node/metrics.ts";
import type { PhalanxNode } from "../node/node.ts";

class Writer {
  private readonly lines: string[] = [];

  metric(name: string, type: "gauge" | "counter", help: string, samples: Array<[Record<string, string>, number]>): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, v] of samples) this.lines.push(`${name}${labelText(labels)} ${v}`);
  }

  one(name: string, type: "gauge" | "counter", help: string, v: number): void {
    this.metric(name, type, help, [[{}, v]]);
  }

  histogram(name: string, help: string, h: Histogram): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    h.bounds.forEach((b, i) => this.lines.push(`${name}_bucket{le="${b}"} ${h.counts[i]}`));
    this.lines.push(`${name}_bucket{le="+Inf"} ${h.count}`, `${name}_sum ${h.sum}`, `${name}_count ${h.count}`);
  }

  text(): string {
    return `${this.lines.join("\n")}\n`;
  }
}

function labelText(labels: Record<string, string>): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

export function metricsText(node: PhalanxNode): string {
  const s = node.status();
  const m = node.metrics;
  const w = new Writer();
  w.one("phalanx_raft_term", "gauge", "Current Raft term.", s.term);
  w.metric("phalanx_raft_role", "gauge", "1 for the role this node has.", (["follower", "preCandidate", "candidate", "leader"] as const).map((r) => [{ role: r }, s.role === r ? 1 : 0]));
  w.one("phalanx_raft_has_leader", "gauge", "1 when a leader is known.", s.leader === null ? 0 : 1);
  w.one("phalanx_raft_commit_index", "gauge", "Highest committed log index.", s.commit);
  w.one("phalanx_raft_applied_index", "gauge", "Highest applied log index.", s.applied);
  w.one("phalanx_raft_last_index", "gauge", "Last index in the local log.", s.lastIndex);
  w.one("phalanx_raft_elections_started_total", "counter", "Elections this node started.", m.electionsStarted);
  w.one("phalanx_raft_elections_won_total", "counter", "Elections this node won.", m.electionsWon);
  w.one("phalanx_raft_leader_changes_total", "counter", "Leader changes observed.", m.leaderChanges);
  w.one("phalanx_proposals_total", "counter", "Writes proposed on this node.", m.proposals);
  w.one("phalanx_proposals_failed_total", "counter", "Proposals refused, lost or timed out.", m.proposalsFailed);
  w.metric("phalanx_reads_total", "counter", "Reads served, by kind.", [
    [{ kind: "linearizable" }, m.readsLinearizable],
    [{ kind: "stale" }, m.readsStale],
  ]);
  w.one("phalanx_reads_lease_total", "counter", "Read barriers the leader answered from its lease.", m.readsLease);
  w.one("phalanx_reads_failed_total", "counter", "Linearizable reads refused or timed out.", m.readsFailed);
  w.one("phalanx_forwarded_total", "counter", "Requests forwarded to the leader.", m.forwarded);
  w.one("phalanx_entries_applied_total", "counter", "Log entries applied.", m.entriesApplied);
  w.one("phalanx_disk_full_errors_total", "counter", "Writes refused because the disk was full.", m.diskFullErrors);
  w.one("phalanx_disk_full", "gauge", "1 while the node waits for disk space.", node.diskFull() ? 1 : 0);
  w.one("phalanx_protocol_violations_total", "counter", "Peer messages refused as protocol violations.", m.protocolViolations);
  w.one("phalanx_follower_regressions_total", "counter", "Followers found (by this leader) holding fewer entries than they had acknowledged.", m.followerRegressions);
  w.one("phalanx_followers_regressed", "gauge", "Followers that lost acknowledged entries and have not caught up again (leader only).", Object.values(s.progress).filter((p) => p.regressedFrom > 0).length);
  w.one("phalanx_snapshots_created_total", "counter", "Snapshots taken of the local state machine.", m.snapshotsCreated);
  w.one("phalanx_snapshots_installed_total", "counter", "Snapshots installed from the leader.", m.snapshotsInstalled);
  w.histogram("phalanx_commit_latency_seconds", "Proposal to applied, on the proposing node.", m.commitLatency);
  w.histogram("phalanx_persist_latency_seconds", "Persisting one Ready (transaction and fsync).", m.persistLatency);
  const peers = node.peerStats();
  w.metric("phalanx_peer_rtt_seconds", "gauge", "Smoothed peer request round trip.", peers.filter((p) => p.rttMs !== null).map((p) => [{ peer: p.id }, p.rttMs! / 1000]));
  w.metric("phalanx_peer_sent_total", "counter", "Messages a peer accepted.", peers.map((p) => [{ peer: p.id }, p.sent]));
  w.metric("phalanx_peer_dropped_total", "counter", "Messages to a peer that were lost.", peers.map((p) => [{ peer: p.id }, p.dropped]));
  w.metric("phalanx_peer_errors_total", "counter", "Failed peer requests.", peers.map((p) => [{ peer: p.id }, p.errors]));
  w.metric("phalanx_peer_up", "gauge", "1 when the last request to the peer got an answer.", peers.map((p) => [{ peer: p.id }, p.state === "up" ? 1 : 0]));
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
  return w.text();
}
