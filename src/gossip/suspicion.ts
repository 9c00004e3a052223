// Lifeguard's dynamic suspicion timeout: a suspicion starts with the longest timeout and shortens
// as independent members confirm it, so a lone slow prober cannot kill a healthy member quickly.

import type { GossipConfig } from "./config.ts";

export interface SuspicionBounds {
  minMs: number;
  maxMs: number;
}

/** min = suspicionMult × max(1, log10(n)) × probeInterval; max = maxTimeoutMult × min. */
export function suspicionBounds(cfg: GossipConfig, n: number): SuspicionBounds {
  const minMs = cfg.suspicionMult * Math.max(1, Math.log10(Math.max(1, n))) * cfg.probeIntervalMs;
  return { minMs, maxMs: cfg.suspicionMaxTimeoutMult * minMs };
}

/** max − log(c+1)/log(k+1) × (max − min), never below min; k < 1 means no confirmations are awaited. */
export function suspicionTimeoutMs(b: SuspicionBounds, k: number, confirmations: number): number {
  if (k < 1) return b.minMs;
  const frac = Math.log(confirmations + 1) / Math.log(k + 1);
  return Math.max(b.minMs, Math.floor(b.maxMs - frac * (b.maxMs - b.minMs)));
}

/** Confirmations awaited: suspicionMult − 2, none in a cluster too small to provide them. */
export function expectedConfirmations(cfg: GossipConfig, n: number): number {
  const k = cfg.suspicionMult - 2;
  return n - 2 < k ? 0 : k;
}

/** One member's suspicion of another, tracking who independently agrees. */
export class Suspicion {
  private readonly froms = new Set<string>();
  private confirmations = 0;

  constructor(
    readonly startedAt: number,
    private readonly k: number,
    private readonly bounds: SuspicionBounds,
    firstFrom: string,
  ) {
    // The member that raised it is not a confirmation of itself.
    this.froms.add(firstFrom);
  }

  /** Counts `from` once; returns whether it was news (worth re-gossiping). */
  confirm(from: string): boolean {
    if (this.confirmations >= this.k || this.froms.has(from)) return false;
    this.froms.add(from);
    this.confirmations++;
    return true;
  }

  deadline(): number {
    return this.startedAt + suspicionTimeoutMs(this.bounds, this.k, this.confirmations);
  }
}
