// A closed-loop load generator: `concurrency` workers, each with one request in flight, for
// `durationS` seconds, over keys bench/0..keys-1, reads with probability `reads`. What a request
// is stays pluggable (`phalanx bench` passes the phalanx API request).

/** One request; resolves with whether it counts as a success (a failure names its cause). */
export type LoadOp = (op: { key: string; read: boolean }) => Promise<{ ok: true } | { ok: false; error: string }>;

export interface LoadOptions {
  concurrency: number;
  durationS: number;
  keys: number;
  /** Probability that a request is a read, in [0, 1]. */
  reads: number;
  op: LoadOp;
  /** Called about once a second while the load runs. */
  onProgress?: (p: { seconds: number; ops: number; lastSecond: number; errors: number }) => void;
}

export interface LoadResult {
  ops: number;
  reads: number;
  writes: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  /** Of successful requests only. */
  latencyMs: { p50: number; p95: number; p99: number; max: number };
  lastError: string;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

const round2 = (n: number) => Number(n.toFixed(2));

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let errors = 0;
  let reads = 0;
  let writes = 0;
  let lastError = "";
  const start = performance.now();
  const end = start + opts.durationS * 1000;
  const worker = async () => {
    // Bounded by the clock: each request ends (the op carries its own timeout) and none starts after `end`.
    while (performance.now() < end) {
      const key = `bench/${Math.floor(Math.random() * opts.keys)}`;
      const read = Math.random() < opts.reads;
      const t0 = performance.now();
      let r: Awaited<ReturnType<LoadOp>>;
      try {
        r = await opts.op({ key, read });
      } catch (err) {
        r = { ok: false, error: err instanceof Error ? err.message : String(err) };
      }
      if (r.ok) {
        latencies.push(performance.now() - t0);
        if (read) reads++;
        else writes++;
      } else {
        errors++;
        lastError = r.error;
      }
    }
  };
  let shown = 0;
  const progress = setInterval(() => {
    const done = latencies.length;
    opts.onProgress?.({ seconds: (performance.now() - start) / 1000, ops: done, lastSecond: done - shown, errors });
    shown = done;
  }, 1000);
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
  } finally {
    clearInterval(progress);
  }
  const seconds = (performance.now() - start) / 1000;
  const sorted = latencies.sort((a, b) => a - b);
  return {
    ops: sorted.length,
    reads,
    writes,
    errors,
    seconds: round2(seconds),
    opsPerSec: Math.round(sorted.length / seconds),
    latencyMs: {
      p50: round2(percentile(sorted, 50)),
      p95: round2(percentile(sorted, 95)),
      p99: round2(percentile(sorted, 99)),
      max: round2(sorted[sorted.length - 1] ?? 0),
    },
    lastError,
  };
}
