// Updates waiting to be piggybacked. Each is sent a bounded number of times (the caller passes
// retransmitMult × ceil(log10(n+1))), least-sent first, and a newer update about the same member
// replaces the older one, which is then moot.

interface Queued {
  key: string;
  bytes: Uint8Array;
  transmits: number;
  /** Insertion order: among equally-sent updates the newest goes first. */
  order: number;
}

export class BroadcastQueue {
  private items = new Map<string, Queued>();
  private counter = 0;

  /** `key` names what the update is about (a member id); one pending update per key. */
  enqueue(key: string, bytes: Uint8Array): void {
    this.items.set(key, { key, bytes, transmits: 0, order: this.counter++ });
  }

  size(): number {
    return this.items.size;
  }

  /** Picks updates that together fit in `budget` bytes; counts a transmit on each and drops those that reach `limit`. */
  take(budget: number, limit: number): Uint8Array[] {
    if (this.items.size === 0 || budget <= 0) return [];
    const ordered = [...this.items.values()].sort((a, b) => a.transmits - b.transmits || b.order - a.order);
    const out: Uint8Array[] = [];
    let left = budget;
    for (const q of ordered) {
      if (q.bytes.length > left) continue;
      left -= q.bytes.length;
      out.push(q.bytes);
      q.transmits++;
      if (q.transmits >= limit) this.items.delete(q.key);
    }
    return out;
  }
}
