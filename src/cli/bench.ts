// `phalanx bench`: a closed-loop load generator. `concurrency` workers each send one request at a
// time for `duration` seconds over keys bench/0..keys-1, reads with probability `reads`. Progress
// each second on stderr; at the end ops/s and latency percentiles (successful ops only).
import { CLIENT_HELP } from "./client.ts";
import { runClientCommand, UsageError } from "./command.ts";
import { EXIT, printJson } from "./output.ts";

const HELP = `usage: phalanx bench [--concurrency 16] [--duration 10] [--keys 1000] [--value-size 128]
                     [--reads 0.5] [--consistency linearizable|stale]
options:
${CLIENT_HELP}`;

const EXTRA = {
  concurrency: { type: "string" },
  duration: { type: "string" },
  keys: { type: "string" },
  "value-size": { type: "string" },
  reads: { type: "string" },
  consistency: { type: "string" },
} as const;

function num(v: unknown, fallback: number, name: string, min: number, max: number): number {
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be in [${min}, ${max}]`);
  return n;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

export function benchCommand(argv: string[]): Promise<number> {
  return runClientCommand(argv, HELP, EXTRA, async (ctx) => {
    const v = ctx.values;
    const concurrency = Math.floor(num(v.concurrency, 16, "concurrency", 1, 4096));
    const durationS = num(v.duration, 10, "duration", 0.1, 86_400);
    const keys = Math.floor(num(v.keys, 1000, "keys", 1, 10_000_000));
    const valueSize = Math.floor(num(v["value-size"], 128, "value-size", 0, 1 << 20));
    const reads = num(v.reads, 0.5, "reads", 0, 1);
    const consistency = (v.consistency as string | undefined) ?? "linearizable";
    if (consistency !== "linearizable" && consistency !== "stale") throw new UsageError("--consistency must be linearizable or stale");
    const value = "x".repeat(valueSize);
    const latencies: number[] = [];
    let errors = 0;
    let reqReads = 0;
    let reqWrites = 0;
    let lastError = "";
    const start = performance.now();
    const end = start + durationS * 1000;
    const worker = async () => {
      while (performance.now() < end) {
        const key = `/v1/kv/bench%2F${Math.floor(Math.random() * keys)}`;
        const isRead = Math.random() < reads;
        const t0 = performance.now();
        try {
          const res = isRead
            ? await ctx.client.request("GET", `${key}?consistency=${consistency}`, { timeoutMs: 5000 })
            : await ctx.client.request("PUT", key, { json: { value }, timeoutMs: 5000 });
          if (res.status === 200 || (isRead && res.status === 404)) {
            latencies.push(performance.now() - t0);
            if (isRead) reqReads++;
            else reqWrites++;
          } else {
            errors++;
            lastError = `HTTP ${res.status}: ${String(res.json?.message ?? "")}`;
          }
        } catch (err) {
          errors++;
          lastError = (err as Error).message;
        }
      }
    };
    let shown = 0;
    const progress = setInterval(() => {
      const t = (performance.now() - start) / 1000;
      const done = latencies.length;
      process.stderr.write(`\r${t.toFixed(0)}s  ops ${done}  ${((done - shown) / 1).toFixed(0)} ops/s  errors ${errors}   `);
      shown = done;
    }, 1000);
    await Promise.all(Array.from({ length: concurrency }, worker));
    clearInterval(progress);
    process.stderr.write("\n");
    const elapsed = (performance.now() - start) / 1000;
    const sorted = latencies.sort((a, b) => a - b);
    const summary = {
      ops: sorted.length,
      reads: reqReads,
      writes: reqWrites,
      errors,
      seconds: Number(elapsed.toFixed(2)),
      opsPerSec: Math.round(sorted.length / elapsed),
      latencyMs: {
        p50: Number(percentile(sorted, 50).toFixed(2)),
        p95: Number(percentile(sorted, 95).toFixed(2)),
        p99: Number(percentile(sorted, 99).toFixed(2)),
        max: Number((sorted[sorted.length - 1] ?? 0).toFixed(2)),
      },
      config: { concurrency, durationS, keys, valueSize, reads, consistency },
      ...(lastError === "" ? {} : { lastError }),
    };
    if (ctx.json) printJson(summary);
    else {
      const l = summary.latencyMs;
      process.stdout.write(
        `${summary.ops} ops in ${summary.seconds}s: ${summary.opsPerSec} ops/s (${reqReads} reads, ${reqWrites} writes, ${errors} errors)\n` +
          `latency ms: p50 ${l.p50}  p95 ${l.p95}  p99 ${l.p99}  max ${l.max}\n` +
          (lastError === "" ? "" : `last error: ${lastError}\n`),
      );
    }
    return errors > 0 && sorted.length === 0 ? EXIT.unavailable : EXIT.ok;
  });
}
