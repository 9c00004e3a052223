// Latencies in bounded memory: logarithmic buckets 1% wide from 1 µs to 100 s (about 1,850
// counters, whatever the number of samples), so a long bench at high rates keeps its percentiles
// without keeping every sample. A percentile is the upper edge of its bucket: at most 1% high.

const MIN_MS = 0.001;
const MAX_MS = 100_000;
const GROWTH = 1.01;
const BUCKETS = Math.ceil(Math.log(MAX_MS / MIN_MS) / Math.log(GROWTH)) + 1;

export class LatencyHistogram {
  private readonly counts = new Uint32Array(BUCKETS);
  count = 0;
  max = 0;

  observe(ms: number): void {
    const v = Math.min(Math.max(ms, MIN_MS), MAX_MS);
    const i = Math.min(BUCKETS - 1, Math.max(0, Math.ceil(Math.log(v / MIN_MS) / Math.log(GROWTH))));
    this.counts[i]!++;
    this.count++;
    if (ms > this.max) this.max = ms;
  }

  /** The smallest bucket edge with at least p% of the samples at or below it; 0 when empty. */
  percentile(p: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil((p / 100) * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, MIN_MS * GROWTH ** i);
    }
    return this.max;
  }

  merge(other: LatencyHistogram): void {
    for (let i = 0; i < BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.max = Math.max(this.max, other.max);
  }

  /** Counters held: the memory bound. */
  static readonly buckets = BUCKETS;
}
