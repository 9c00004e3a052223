// A closed-loop load generator: `concurrency` workers, each with one request in flight, for
// `durationS` seconds, over keys bench/0..keys-1, reads with probability `reads`. What a request
// is stays pluggable (`phalanx bench` passes the phalanx API request). With `prefill`, every key
// is written once first (untimed), so reads find values instead of measuring 404s. Latencies go
// into fixed-size histograms, reads and writes apart: memory does not grow with the run.
import { LatencyHistogram } from "./latency_histogram.ts";

/** One request; resolves with whether it counts as a success (a failure names its cause). */
export type LoadOp = (op: { key: string; read: boolean }) => Promise<{ ok: true } | { ok: false; error: string }>;

export interface LoadOptions {
  concurrency: number;
  durationS: number;
  keys: number;
  /** Probability that a request is a read, in [0, 1]. */
  reads: number;
  op: LoadOp;
  /** Write every key once before the timed run. */
  prefill?: boolean;
  /** Called after the prefill with how many keys were written (and how many failed). */
  onPrefilled?: (p: { keys: number; errors: number; seconds: number }) => void;
  /** Called about once a second while the load runs. */
  onProgress?: (p: { seconds: number; ops: number; lastSecond: number; errors: number }) => void;
}

export interface Latencies {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

export interface KindResult {
  ops: number;
  errors: number;
  opsPerSec: number;
  /** Of successful requests only. */
  latencyMs: Latencies;
}

export interface LoadResult {
  ops: number;
  reads: number;
  writes: number;
  errors: number;
  seconds: number;
  opsPerSec: number;
  /** Of successful requests only, reads and writes together. */
  latencyMs: Latencies;
  read: KindResult;
  write: KindResult;
  prefilled: number;
  lastError: string;
}

const round2 = (n: number) => Number(n.toFixed(2));

function latencies(h: LatencyHistogram): Latencies {
  return { p50: round2(h.percentile(50)), p95: round2(h.percentile(95)), p99: round2(h.percentile(99)), max: round2(h.max) };
}

/** Writes bench/0..keys-1 once each with `concurrency` workers; bounded by the key count. */
async function prefill(opts: LoadOptions): Promise<{ keys: number; errors: number }> {
  let next = 0;
  let errors = 0;
  let written = 0;
  const worker = async () => {
    while (next < opts.keys) {
      const key = `bench/${next++}`;
      try {
        const r = await opts.op({ key, read: false });
        if (r.ok) written++;
        else errors++;
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.keys) }, worker));
  return { keys: written, errors };
}

export async function runLoad(opts: LoadOptions): Promise<LoadResult> {
  let prefilled = 0;
  if (opts.prefill === true) {
    const t0 = performance.now();
    const p = await prefill(opts);
    prefilled = p.keys;
    opts.onPrefilled?.({ ...p, seconds: (performance.now() - t0) / 1000 });
  }
  const readLatency = new LatencyHistogram();
  const writeLatency = new LatencyHistogram();
  let readErrors = 0;
  let writeErrors = 0;
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
      if (r.ok) (read ? readLatency : writeLatency).observe(performance.now() - t0);
      else {
        if (read) readErrors++;
        else writeErrors++;
        lastError = r.error;
      }
    }
  };
  let shown = 0;
  const progress = setInterval(() => {
    const done = readLatency.count + writeLatency.count;
    opts.onProgress?.({ seconds: (performance.now() - start) / 1000, ops: done, lastSecond: done - shown, errors: readErrors + writeErrors });
    shown = done;
  }, 1000);
  try {
    await Promise.all(Array.from({ length: opts.concurrency }, worker));
  } finally {
    clearInterval(progress);
  }
  const seconds = (performance.now() - start) / 1000;
  const all = new LatencyHistogram();
  all.merge(readLatency);
  all.merge(writeLatency);
  const kind = (h: LatencyHistogram, errors: number): KindResult => ({ ops: h.count, errors, opsPerSec: Math.round(h.count / seconds), latencyMs: latencies(h) });
  return {
    ops: all.count,
    reads: readLatency.count,
    writes: writeLatency.count,
    errors: readErrors + writeErrors,
    seconds: round2(seconds),
    opsPerSec: Math.round(all.count / seconds),
    latencyMs: latencies(all),
    read: kind(readLatency, readErrors),
    write: kind(writeLatency, writeErrors),
    prefilled,
    lastError,
  };
}
