// Updates waiting to be piggybacked. Each is sent a bounded number of times (the caller passes
// retransmitMult × ceil(log10(n+1))), least-sent first, and a newer update about the same member
// replaces the older one, which is then moot.
//
// An alive update is not spent on the member it is about: that member learns nothing from it, and
// right after a join the member that learned of the newcomer probes and gossips to it, so both of
// the `local` preset's two transmits could go there and the rest of the cluster would hear of the
// newcomer only at the next push-pull (a test saw one member not learn of another for 15 s). It
// still goes to every other recipient until its limit is spent. A suspect or dead update does go
// to the member it accuses: that member needs it most, to refute. (An alive about us that differs
// from our own view, a stale one after a restart, reaches us by push-pull, which merges it and
// makes us refute.)

import type { AliveMsg, DeadMsg, SuspectMsg } from "./messages.ts";

/** What an update says about its member. */
export type News = (AliveMsg | SuspectMsg | DeadMsg)["type"];

interface Queued {
  about: string;
  news: News;
  bytes: Uint8Array;
  transmits: number;
  /** Insertion order: among equally-sent updates the newest goes first. */
  order: number;
}

export class BroadcastQueue {
  private items = new Map<string, Queued>();
  private counter = 0;

  /** `about` names the member the update is about; one pending update per member. */
  enqueue(about: string, news: News, bytes: Uint8Array): void {
    this.items.set(about, { about, news, bytes, transmits: 0, order: this.counter++ });
  }

  size(): number {
    return this.items.size;
  }

  /**
   * Picks updates for member `to` (null: a seed we do not know yet) that together fit in `budget`
   * bytes; counts a transmit on each and drops those that reach `limit`. No alive about `to` (it
   * knows), nor about `carried`, whose alive the packet holds already (a join ping's own).
   */
  take(budget: number, limit: number, to: string | null, carried: string | null = null): Uint8Array[] {
    if (this.items.size === 0 || budget <= 0) return [];
    const ordered = [...this.items.values()].sort((a, b) => a.transmits - b.transmits || b.order - a.order);
    const out: Uint8Array[] = [];
    let left = budget;
    for (const q of ordered) {
      if (q.news === "alive" && (q.about === to || q.about === carried)) continue;
      if (q.bytes.length > left) continue;
      left -= q.bytes.length;
      out.push(q.bytes);
      q.transmits++;
      if (q.transmits >= limit) this.items.delete(q.about);
    }
    return out;
  }
}
