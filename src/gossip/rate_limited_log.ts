// Logging for events a peer can cause at line rate (bad keys, garbage): one line per kind per
// interval, with how many were suppressed in between.

export type LogLevel = "info" | "warn" | "error";
export type GossipLog = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;

export const stderrLog: GossipLog = (level, msg, fields) => {
  process.stderr.write(`${JSON.stringify({ level, component: "gossip", msg, ...fields })}\n`);
};

export class RateLimitedLog {
  private readonly last = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly log: GossipLog,
    private readonly intervalMs: number,
  ) {}

  warn(now: number, kind: string, msg: string, fields: Record<string, unknown> = {}): void {
    const seen = this.last.get(kind);
    if (seen !== undefined && now - seen.at < this.intervalMs) {
      seen.suppressed++;
      return;
    }
    this.log("warn", msg, { kind, suppressed: seen?.suppressed ?? 0, ...fields });
    this.last.set(kind, { at: now, suppressed: 0 });
  }
}
