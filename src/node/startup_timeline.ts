// Where a node's start goes, phase by phase (issue 10: a brand-new 3-node cluster up in under
// 200 ms). Each phase is marked once, the first time it is reached, in milliseconds since the
// process started (performance.now() counts from the process's time origin, so the first mark
// already includes Bun's own start and the loading of the modules). One debug line lists them all
// when the first write of a client has been applied here, and again at none of the later ones:
//   LOG_LEVEL=debug phalanx serve ... 2>&1 | grep "startup timeline"
// The breakdown measured with it is in BENCHMARKS.md, "Cluster start-up".
import type { Logger } from "./log.ts";

/** The phases, in the order a brand-new node normally reaches them. */
export type StartupPhase =
  | "serving" // serveCommand entered: Bun started and main.ts with its imports evaluated
  | "config" // settings parsed and validated
  | "dataDir" // data dir opened or created (lock, state record, quick_check), KV store and core built
  | "gossip" // the gossip agent runs (DISCOVERY only: before the data dir, which waits for the cluster)
  | "listening" // the HTTP/2 server accepts peer and client requests
  | "running" // the node's clock started
  | "firstTick" // the core's first tick
  | "campaign" // this node started an election (pre-vote)
  | "leader" // a leader is known (this node or another)
  | "firstCommit" // the first committed entry applied here (a new leader's no-op)
  | "firstWrite"; // the first client write applied here

export class StartupTimeline {
  private readonly marks = new Map<StartupPhase, number>();
  private reported = false;

  constructor(private readonly now: () => number = () => performance.now()) {}

  /** Records `phase` the first time only; later calls are free. */
  mark(phase: StartupPhase): void {
    if (this.reported || this.marks.has(phase)) return;
    this.marks.set(phase, this.now());
  }

  /** The phases reached so far, in milliseconds since the process started, rounded to 0.1 ms. */
  snapshot(): Partial<Record<StartupPhase, number>> {
    const out: Partial<Record<StartupPhase, number>> = {};
    for (const [k, v] of this.marks) out[k] = Math.round(v * 10) / 10;
    return out;
  }

  /** Logs the timeline once (debug), after the first client write was applied here. */
  report(log: Logger): void {
    if (this.reported || !this.marks.has("firstWrite")) return;
    this.reported = true;
    // CPU used so far: on a loaded machine the phases wait for a core, this says how much they needed.
    const cpu = process.cpuUsage();
    log.debug("startup timeline", { unit: "ms since process start", ...this.snapshot(), cpuMs: Math.round((cpu.user + cpu.system) / 1000) });
  }
}
