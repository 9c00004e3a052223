// How many packets the gossip core may send in answer to one source address: a token bucket per
// source, on the core's clock (deterministic, so the simulator runs it). Without it one ping
// packet holding a thousand pings returned a thousand acks (issue 9): an amplifier for whoever
// can replay a sealed packet from a spoofed address. Answers go only to known members' addresses
// (swim.ts), so this bounds what a replayer can make us send to any one member.

export interface ReplyBudgetConfig {
  /** Answers a source may draw at once. */
  burst: number;
  /** Tokens regained per second. */
  perSecond: number;
  /** Sources tracked at most; past it, new sources get no answers until idle ones are forgotten. */
  maxSources: number;
}

const PRUNE_EVERY_MS = 1000;

interface Bucket {
  tokens: number;
  at: number;
}

export class ReplyBudget {
  private readonly buckets = new Map<string, Bucket>();
  private nextPruneAt = -Infinity;

  constructor(private readonly cfg: ReplyBudgetConfig) {
    if (!(cfg.burst >= 1 && cfg.perSecond > 0 && cfg.maxSources >= 1)) throw new Error("reply budget needs burst >= 1, perSecond > 0, maxSources >= 1");
  }

  /** Takes one token for `source`; false when it has none left. */
  take(now: number, source: string): boolean {
    let b = this.buckets.get(source);
    if (b === undefined) {
      if (this.buckets.size >= this.cfg.maxSources) return false;
      b = { tokens: this.cfg.burst, at: now };
      this.buckets.set(source, b);
    }
    this.refill(now, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /**
   * Forgets sources whose bucket is full again: they cost nothing to recreate. Called every tick,
   * it walks the buckets at most once per PRUNE_EVERY_MS (a walk per 10 ms tick cost the
   * simulator a third of its time).
   */
  prune(now: number): void {
    if (now < this.nextPruneAt) return;
    this.nextPruneAt = now + PRUNE_EVERY_MS;
    for (const [source, b] of this.buckets) {
      this.refill(now, b);
      if (b.tokens >= this.cfg.burst) this.buckets.delete(source);
    }
  }

  size(): number {
    return this.buckets.size;
  }

  private refill(now: number, b: Bucket): void {
    b.tokens = Math.min(this.cfg.burst, b.tokens + ((now - b.at) / 1000) * this.cfg.perSecond);
    b.at = now;
  }
}
