// Every client request has a deadline: `timeout` (ms) in the query or x-phalanx-timeout-ms,
// else the node's default, capped so a client cannot park requests on a node for long.
import type { Context } from "hono";

export const TIMEOUT_HEADER = "x-phalanx-timeout-ms";
const MAX_TIMEOUT_MS = 60_000;

export class Deadline {
  private readonly at: number;

  constructor(ms: number) {
    this.at = performance.now() + ms;
  }

  static of(c: Context, defaultMs: number): Deadline {
    const text = c.req.query("timeout") ?? c.req.header(TIMEOUT_HEADER);
    const n = Number(text);
    const ms = text !== undefined && Number.isFinite(n) && n > 0 ? Math.min(n, MAX_TIMEOUT_MS) : defaultMs;
    return new Deadline(ms);
  }

  remaining(): number {
    return Math.max(0, Math.floor(this.at - performance.now()));
  }
}
