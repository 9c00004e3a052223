// `phalanx bench`: the closed-loop load of load.ts against the phalanx API (PUT, or GET with the
// chosen consistency), after writing every key once (--skip-prefill to not). Progress each second
// on stderr; at the end ops/s and latency percentiles for reads and writes apart (successful ops).
import { CLIENT_HELP } from "./client.ts";
import { runClientCommand, UsageError } from "./command.ts";
import { runLoad } from "./load.ts";
import { EXIT, printJson } from "./output.ts";

const HELP = `usage: phalanx bench [--concurrency 16] [--duration 10] [--keys 1000] [--value-size 128]
                     [--reads 0.5] [--consistency linearizable|stale] [--skip-prefill]
  writes every key once before the timed run (so reads find values), unless --skip-prefill;
  reports reads and writes apart; memory stays bounded (latency histograms, not samples)
options:
${CLIENT_HELP}`;

const EXTRA = {
  concurrency: { type: "string" },
  duration: { type: "string" },
  keys: { type: "string" },
  "value-size": { type: "string" },
  reads: { type: "string" },
  consistency: { type: "string" },
  "skip-prefill": { type: "boolean" },
} as const;

function num(v: unknown, fallback: number, name: string, min: number, max: number): number {
  const n = v === undefined ? fallback : Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be in [${min}, ${max}]`);
  return n;
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
    const r = await runLoad({
      concurrency,
      durationS,
      keys,
      reads,
      prefill: v["skip-prefill"] !== true,
      onPrefilled: (p) => process.stderr.write(`prefilled ${p.keys} keys in ${p.seconds.toFixed(1)}s${p.errors > 0 ? ` (${p.errors} failed)` : ""}\n`),
      op: async ({ key, read }) => {
        const path = `/v1/kv/${encodeURIComponent(key)}`;
        const res = read
          ? await ctx.client.request("GET", `${path}?consistency=${consistency}`, { timeoutMs: 5000 })
          : await ctx.client.request("PUT", path, { json: { value }, timeoutMs: 5000 });
        if (res.status === 200 || (read && res.status === 404)) return { ok: true };
        return { ok: false, error: `HTTP ${res.status}: ${String(res.json?.message ?? "")}` };
      },
      onProgress: (p) => process.stderr.write(`\r${p.seconds.toFixed(0)}s  ops ${p.ops}  ${p.lastSecond} ops/s  errors ${p.errors}   `),
    });
    process.stderr.write("\n");
    const summary = {
      ops: r.ops,
      reads: r.reads,
      writes: r.writes,
      errors: r.errors,
      seconds: r.seconds,
      opsPerSec: r.opsPerSec,
      latencyMs: r.latencyMs,
      read: r.read,
      write: r.write,
      prefilled: r.prefilled,
      config: { concurrency, durationS, keys, valueSize, reads, consistency },
      ...(r.lastError === "" ? {} : { lastError: r.lastError }),
    };
    if (ctx.json) printJson(summary);
    else {
      const line = (name: string, k: typeof r.read) =>
        `${name.padEnd(7)} ${String(k.ops).padStart(8)} ops  ${String(k.opsPerSec).padStart(7)} ops/s  ${String(k.errors).padStart(5)} errors  ` +
        `latency ms p50 ${k.latencyMs.p50}  p95 ${k.latencyMs.p95}  p99 ${k.latencyMs.p99}  max ${k.latencyMs.max}\n`;
      process.stdout.write(
        `${summary.ops} ops in ${summary.seconds}s: ${summary.opsPerSec} ops/s (${concurrency} workers, ${keys} keys, ${consistency} reads)\n` +
          line("reads", r.read) +
          line("writes", r.write) +
          (r.lastError === "" ? "" : `last error: ${r.lastError}\n`),
      );
    }
    return r.errors > 0 && r.ops === 0 ? EXIT.unavailable : EXIT.ok;
  });
}
