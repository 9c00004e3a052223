// Gossip timing parameters and the lan / wan / local presets (hashicorp/memberlist's defaults).

import { suspicionBounds } from "./suspicion.ts";

export interface GossipConfig {
  probeIntervalMs: number;
  probeTimeoutMs: number;
  /** Members asked to ping-req a target that missed its direct ack. */
  indirectChecks: number;
  suspicionMult: number;
  suspicionMaxTimeoutMult: number;
  retransmitMult: number;
  /** Members each gossip round sends pending broadcasts to. */
  gossipNodes: number;
  gossipIntervalMs: number;
  pushPullIntervalMs: number;
  /** How long a dead member still receives gossip, so it can learn it was declared dead and refute. */
  gossipToTheDeadMs: number;
  /**
   * How long a dead member is remembered and tried by push-pull so a healed partition merges back;
   * after it the member is forgotten. Left members are forgotten after gossipToTheDeadMs.
   */
  reconnectTimeoutMs: number;
  awarenessMaxMultiplier: number;
  /** Largest UDP payload, after encryption. Fly's WireGuard takes 60 of a 1,360-byte path MTU. */
  maxPacketBytes: number;
  /** How often the agent drives the core's timers; bounds timer error. */
  tickMs: number;
}

export type PresetName = "lan" | "wan" | "local";

export const PRESETS: Readonly<Record<PresetName, Readonly<GossipConfig>>> = {
  lan: {
    probeIntervalMs: 1000,
    probeTimeoutMs: 500,
    indirectChecks: 3,
    suspicionMult: 4,
    suspicionMaxTimeoutMult: 6,
    retransmitMult: 4,
    gossipNodes: 3,
    gossipIntervalMs: 200,
    pushPullIntervalMs: 30_000,
    gossipToTheDeadMs: 30_000,
    reconnectTimeoutMs: 6 * 3600_000,
    awarenessMaxMultiplier: 8,
    maxPacketBytes: 1300,
    tickMs: 20,
  },
  wan: {
    probeIntervalMs: 5000,
    probeTimeoutMs: 3000,
    indirectChecks: 3,
    suspicionMult: 6,
    suspicionMaxTimeoutMult: 6,
    retransmitMult: 4,
    gossipNodes: 4,
    gossipIntervalMs: 500,
    pushPullIntervalMs: 60_000,
    gossipToTheDeadMs: 60_000,
    reconnectTimeoutMs: 24 * 3600_000,
    awarenessMaxMultiplier: 8,
    maxPacketBytes: 1300,
    tickMs: 50,
  },
  local: {
    probeIntervalMs: 1000,
    probeTimeoutMs: 200,
    indirectChecks: 1,
    suspicionMult: 3,
    suspicionMaxTimeoutMult: 6,
    retransmitMult: 2,
    gossipNodes: 3,
    gossipIntervalMs: 100,
    pushPullIntervalMs: 15_000,
    gossipToTheDeadMs: 15_000,
    reconnectTimeoutMs: 600_000,
    awarenessMaxMultiplier: 8,
    maxPacketBytes: 1300,
    tickMs: 10,
  },
};

export function gossipConfig(preset: PresetName, overrides: Partial<GossipConfig> = {}): GossipConfig {
  const cfg = { ...PRESETS[preset], ...overrides };
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(cfg: GossipConfig): void {
  for (const [k, v] of Object.entries(cfg)) {
    if (!Number.isFinite(v) || v < 0) throw new Error(`gossip config ${k} must be a finite number >= 0, got ${v}`);
  }
  if (cfg.probeTimeoutMs >= cfg.probeIntervalMs) throw new Error("gossip probeTimeoutMs must be below probeIntervalMs");
  if (cfg.suspicionMult < 1 || cfg.suspicionMaxTimeoutMult < 1) throw new Error("gossip suspicion multipliers must be >= 1");
  if (cfg.awarenessMaxMultiplier < 1) throw new Error("gossip awarenessMaxMultiplier must be >= 1");
  if (cfg.maxPacketBytes < 256) throw new Error("gossip maxPacketBytes must be at least 256");
  if (cfg.tickMs <= 0 || cfg.gossipIntervalMs <= 0 || cfg.pushPullIntervalMs <= 0) {
    throw new Error("gossip tickMs, gossipIntervalMs and pushPullIntervalMs must be > 0");
  }
}

/** Retransmit limit per update: retransmitMult × ceil(log10(n + 1)). */
export function retransmitLimit(cfg: GossipConfig, n: number): number {
  return cfg.retransmitMult * Math.ceil(Math.log10(n + 1));
}

/**
 * Worst case from a crash to every survivor calling it dead, at health score 0: a full round-robin
 * pass before anyone probes it, the longest suspicion timeout, then gossip of the verdict.
 */
export function detectionBoundMs(cfg: GossipConfig, n: number): number {
  return n * cfg.probeIntervalMs + suspicionBounds(cfg, n).maxMs + retransmitLimit(cfg, n) * cfg.gossipIntervalMs;
}
