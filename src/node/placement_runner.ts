// Runs latency-aware leader placement on a live node. Every node measures its own round trips to
// the other members (HTTP/2 PING frames on the sessions the node already keeps, smoothed) and
// hands them to the leader on request (placement_report.ts). On the leader, once a second, the
// decider (placement.ts) judges the matrix and, when it says so, the existing leadership transfer
// runs. Every transfer is logged with its reason; "stay" and "wait" are logged when they change.
// `phalanx status` shows the state (/v1/status → placement).
//
// Why PING frames: they are answered by the peer's HTTP/2 layer with no route, no auth and no
// body, cost 17 bytes each way, and measure the link itself, not the peer's fsync. A follower
// has no reason to talk to another follower otherwise, so this is the only traffic between them.
//
// The same measurements order who runs first after a leader loss (election_rank.ts): the leader
// sends its ranking with each report request, and every node, once a second, turns the latest
// ranking it got from its leader into its election-timeout window.
import type { NodeId } from "../raft/types.ts";
import type { PlacementSettings } from "./config.ts";
import type { Logger } from "./log.ts";
import type { PhalanxNode } from "./node.ts";
import { ElectionRank, rankVoters, type RankedWindow } from "./election_rank.ts";
import { commitFloorMs, DEFAULT_PLACEMENT, LeaderPlacement, type PlacementConfig, type PlacementDecision, type PlacementView } from "./placement.ts";
import { fetchPlacementReport, type PlacementReport } from "./placement_report.ts";

const STEP_MS = 1000;
const PROBE_EVERY_MS = 2000;
const FETCH_EVERY_MS = 5000;
const PING_TIMEOUT_MS = 2000;
const FETCH_TIMEOUT_MS = 3000;
/** A measurement or report older than this is not used (the peer may be gone). */
const FRESH_MS = 12_000;
/** Weight of a new ping sample (EWMA): ±5% jitter shrinks to about ±2%. */
const SMOOTHING = 0.25;
const KEEP_DECISIONS = 20;

export interface PlacementRecord {
  at: string;
  decision: string;
  reason: string;
  outcome: string;
}

export class PlacementRunner {
  private readonly decider: LeaderPlacement;
  private readonly own = new Map<NodeId, { ms: number; at: number }>();
  private readonly probing = new Set<NodeId>();
  private readonly reports = new Map<NodeId, { report: PlacementReport; at: number }>();
  private readonly fetchErrors = new Map<NodeId, string>();
  private readonly decisions: PlacementRecord[] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private leading = false;
  private lastProbe = -Infinity;
  private lastFetch = -Infinity;
  private current: PlacementDecision | null = null;
  private lastLogged = "";
  private readonly rank = new ElectionRank();
  private window: RankedWindow | null = null;

  constructor(
    private readonly node: PhalanxNode,
    private readonly settings: PlacementSettings,
    private readonly log: Logger,
    timing: Partial<Omit<PlacementConfig, "prefer" | "never">> = {},
  ) {
    this.decider = new LeaderPlacement({ ...DEFAULT_PLACEMENT, ...timing, prefer: settings.prefer, never: settings.never });
  }

  start(): void {
    this.node.placement = {
      info: () => this.info(),
      report: () => this.report(),
      ranked: (from, ranking) => {
        this.rank.received(performance.now(), from, this.node.status().leader, ranking);
      },
    };
    this.timer = setInterval(() => this.step(), STEP_MS);
    this.step();
  }

  stop(): void {
    clearInterval(this.timer);
    this.node.placement = null;
    this.node.setElectionWindow(null);
  }

  /** This node's region and fresh round trips, for the leader. */
  report(): PlacementReport {
    const now = performance.now();
    const rttMs: Record<NodeId, number> = {};
    for (const [id, m] of this.own) if (now - m.at <= FRESH_MS) rttMs[id] = round(m.ms);
    return { id: this.node.id, region: this.node.config.region, rttMs };
  }

  private step(): void {
    if (this.node.isStopped) return;
    const now = performance.now();
    if (now - this.lastProbe >= PROBE_EVERY_MS) {
      this.lastProbe = now;
      this.probe();
    }
    this.applyElectionWindow(now);
    if (!this.node.isLeader()) {
      if (this.leading) this.decider.reset();
      this.leading = false;
      this.current = null;
      return;
    }
    if (!this.leading) {
      this.leading = true;
      this.decider.reset();
      this.lastFetch = -Infinity;
    }
    if (now - this.lastFetch >= FETCH_EVERY_MS) {
      this.lastFetch = now;
      void this.fetchReports();
    }
    const d = this.decider.decide(now, this.view(now));
    this.current = d;
    if (d.kind !== "transfer") {
      const key = d.kind === "wait" ? `wait ${d.to}` : "stay";
      if (key !== this.lastLogged) this.log.info(`leader placement: ${key}`, { reason: d.reason });
      this.lastLogged = key;
      return;
    }
    this.lastLogged = "";
    const r = this.node.transferLeadership(d.to);
    const outcome = r.ok ? "transfer started" : `transfer refused: ${r.reason}`;
    this.log.info("leader placement: transfer", { to: d.to, reason: d.reason, outcome });
    this.record(`transfer to ${d.to}`, d.reason, outcome);
  }

  /** This node's election-timeout window from the latest ranking (election_rank.ts); logged when it changes. */
  private applyElectionWindow(now: number): void {
    const { tickMs, electionTicks } = this.node.config;
    const w = this.rank.window(now, { self: this.node.id, leader: this.node.status().leader, tickMs, electionTicks });
    if (w?.offsetTicks === this.window?.offsetTicks && w?.widthTicks === this.window?.widthTicks) return;
    const before = this.window;
    this.window = w;
    this.node.setElectionWindow(w === null ? null : { offsetTicks: w.offsetTicks, widthTicks: w.widthTicks });
    // Logged when the rank changes (or the ranking comes or goes), not when the measured round
    // trips move the window by a tick or two every report round.
    if ((w === null) === (before === null) && w?.rank === before?.rank) return;
    const span = (ticks: number) => `${ticks * tickMs} ms`;
    if (w === null) this.log.info("election timeout: the randomized window (no fresh ranking)", { from: span(electionTicks), to: span(2 * electionTicks) });
    else this.log.info("election timeout: by placement rank", { rank: w.rank, from: span(electionTicks + w.offsetTicks), to: span(electionTicks + w.offsetTicks + w.widthTicks) });
  }

  private view(now: number): PlacementView {
    const s = this.node.status();
    const self = this.node.id;
    const rtt: Record<NodeId, Record<NodeId, number>> = { [self]: {} };
    for (const [id, m] of this.own) if (now - m.at <= FRESH_MS) rtt[self]![id] = m.ms;
    // Regions as the log records them (the one member model); a voter's own report fills in one
    // not recorded yet (and the leader records it, so the next leader reads it from the log).
    const recorded = new Map(this.node.members().map((m) => [m.id, m.region]));
    const regions: Record<NodeId, string> = { [self]: recorded.get(self) || this.node.config.region };
    // Healthy: we reach it now (fresh PING) and it answered our last report request in time. Not
    // the core's recentActive, which is cleared every election timeout and would break the
    // "sustained" clock for a moment each time.
    const healthy: NodeId[] = [self];
    for (const id of s.conf.voters) {
      const rep = this.reports.get(id);
      if (id === self || rep === undefined || now - rep.at > FRESH_MS) continue;
      rtt[id] = rep.report.rttMs;
      regions[id] = recorded.get(id) || rep.report.region;
      if (rtt[self]![id] !== undefined) healthy.push(id);
    }
    return { self, voters: s.conf.voters, regions, rtt, healthy };
  }

  private probe(): void {
    for (const m of this.node.members()) {
      if (m.id === this.node.id || m.address === "" || this.probing.has(m.id)) continue;
      this.probing.add(m.id);
      void this.ping(m.address).then(
        (ms) => {
          const prev = this.own.get(m.id);
          const fresh = prev !== undefined && performance.now() - prev.at <= FRESH_MS;
          this.own.set(m.id, { ms: fresh ? prev.ms + (ms - prev.ms) * SMOOTHING : ms, at: performance.now() });
        },
        // A lost PING keeps the last measurement until it is stale (FRESH_MS): one slow answer on a
        // busy machine must not make a voter unknown and restart the leader's sustained period.
        () => undefined,
      ).finally(() => this.probing.delete(m.id));
    }
    const members = new Set(this.node.members().map((m) => m.id));
    for (const id of [...this.own.keys()]) if (!members.has(id)) this.own.delete(id);
  }

  /** One HTTP/2 PING on the node's session to `address` (connecting if there is none). */
  private async ping(address: string): Promise<number> {
    const client = this.node.client;
    const session = await client.session(client.originFor(address));
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no PING answer")), PING_TIMEOUT_MS);
      const started = performance.now();
      const sent = session.ping((err) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve(performance.now() - started);
      });
      if (!sent) {
        clearTimeout(timer);
        reject(new Error("PING not sent"));
      }
    });
  }

  private async fetchReports(): Promise<void> {
    const voters = new Set(this.node.status().conf.voters);
    // Ranked from the reports so far (the previous round's), sent with this round's requests.
    const mine = this.rank.current();
    const ranking = rankVoters(this.view(performance.now()), this.decider.cfg, mine?.from === this.node.id ? mine.ranking.order : null);
    if (ranking !== null) this.rank.received(performance.now(), this.node.id, this.node.id, ranking);
    const asks = this.node.members().filter((m) => m.id !== this.node.id && voters.has(m.id) && m.address !== "");
    await Promise.all(
      asks.map(async (m) => {
        try {
          const report = await fetchPlacementReport(this.node.client, this.node.auth, this.node.id, m.id, m.address, FETCH_TIMEOUT_MS, ranking);
          this.reports.set(m.id, { report, at: performance.now() });
          // Signed by the voter itself: its region goes into the log where the log has none or another.
          if (m.region !== report.region) this.node.recordRegion(m.id, report.region);
          this.fetchErrors.delete(m.id);
        } catch (err) {
          this.fetchErrors.set(m.id, err instanceof Error ? err.message : String(err));
        }
      }),
    );
    for (const id of [...this.reports.keys()]) if (!voters.has(id)) this.reports.delete(id);
  }

  private record(decision: string, reason: string, outcome: string): void {
    this.decisions.push({ at: new Date().toISOString(), decision, reason, outcome });
    if (this.decisions.length > KEEP_DECISIONS) this.decisions.shift();
  }

  /** For /v1/status: what this node measures, and on the leader what it decided and why. */
  private info(): unknown {
    const now = performance.now();
    const view = this.leading ? this.view(now) : null;
    return {
      prefer: this.settings.prefer,
      never: this.settings.never,
      rttMs: this.report().rttMs,
      electionWindowTicks: this.window,
      electionRankingFrom: this.rank.current()?.from ?? null,
      ...(view === null
        ? { decision: null, note: "only the leader decides" }
        : {
            commitFloorMs: Object.fromEntries(view.voters.map((v) => [v, finiteOrNull(commitFloorMs(view, v))])),
            decision: this.current,
            unreachable: Object.fromEntries(this.fetchErrors),
          }),
      decisions: this.decisions,
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

function finiteOrNull(ms: number): number | null {
  return Number.isFinite(ms) ? round(ms) : null;
}
