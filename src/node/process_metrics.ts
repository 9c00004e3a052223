// Process-level figures for /metrics: memory, CPU, file descriptors, start time, and the
// event-loop lag. A JavaScript node does all its Raft work on one thread: when the loop is late
// (a long SQLite transaction, a big snapshot, GC, a starved CPU), heartbeats go out late and
// followers start elections. The lag says so directly, where missed heartbeats only hint at it.
import { readdirSync, readFileSync } from "node:fs";
import { Histogram } from "./metrics.ts";

/** How often the lag probe wakes up. */
const LAG_PROBE_MS = 100;
const LAG_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/**
 * A timer that measures its own lateness: it asks to wake up every LAG_PROBE_MS and records how
 * much later than asked it actually ran. Unref'd, so it never keeps a process alive.
 */
export class EventLoopLag {
  readonly histogram = new Histogram(LAG_BUCKETS);
  private timer: ReturnType<typeof setTimeout> | null = null;
  /** Debug servers using the probe: several nodes in one process (tests) share it. */
  private users = 0;

  start(): void {
    this.users++;
    if (this.timer !== null) return;
    const arm = () => {
      const expected = performance.now() + LAG_PROBE_MS;
      this.timer = setTimeout(() => {
        const lag = Math.max(0, performance.now() - expected) / 1000;
        this.histogram.observe(lag);
        arm();
      }, LAG_PROBE_MS);
      this.timer.unref?.();
    };
    arm();
  }

  stop(): void {
    this.users = Math.max(0, this.users - 1);
    if (this.users > 0) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}

/** One event-loop lag probe per process: the loop is shared by everything in it. */
export const eventLoopLag = new EventLoopLag();

export interface ProcessSample {
  residentBytes: number;
  heapUsedBytes: number;
  cpuSeconds: number;
  /** null where /proc is not available (not Linux). */
  openFds: number | null;
  maxFds: number | null;
  startTimeSeconds: number;
}

/** The process start time as a Unix time: the clock now minus how long the process has run. */
const START_TIME_SECONDS = Math.floor((Date.now() - process.uptime() * 1000) / 1000);

export function sampleProcess(): ProcessSample {
  const mem = process.memoryUsage();
  const cpu = process.cpuUsage();
  return {
    residentBytes: mem.rss,
    heapUsedBytes: mem.heapUsed,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
    openFds: openFds(),
    maxFds: maxFds(),
    startTimeSeconds: START_TIME_SECONDS,
  };
}

function openFds(): number | null {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return null;
  }
}

function maxFds(): number | null {
  try {
    const limits = readFileSync("/proc/self/limits", "utf8");
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (m === null || m[1] === "unlimited") return null;
    return Number(m[1]);
  } catch {
    return null;
  }
}
