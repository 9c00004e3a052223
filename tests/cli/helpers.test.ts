// Pure helpers of the CLI and the API: typo suggestions and plain validation messages.
import { expect, test } from "bun:test";
import { z } from "zod";
import { closest, editDistance } from "../../src/cli/suggest.ts";
import { plainZodMessage } from "../../src/transport/zod_message.ts";

test("edit distance counts inserts, deletes, substitutions and neighbour swaps as one edit each", () => {
  expect(editDistance("", "")).toBe(0);
  expect(editDistance("status", "status")).toBe(0);
  expect(editDistance("staus", "status")).toBe(1);
  expect(editDistance("stauts", "status")).toBe(1);
  expect(editDistance("kv", "bench")).toBe(5);
});

test("a typo suggests the closest command; unrelated words suggest nothing", () => {
  const commands = ["serve", "kv", "status", "members", "leader", "bench", "endpoint", "member", "version"];
  expect(closest("stauts", commands)).toBe("status");
  expect(closest("memebrs", commands)).toBe("members");
  expect(closest("serv", commands)).toBe("serve");
  expect(closest("endpoitn", commands)).toBe("endpoint");
  expect(closest("frobnicate", commands)).toBeUndefined();
  expect(closest("x", commands)).toBeUndefined();
  expect(closest("--jsno", ["--json", "--addr", "--timeout"])).toBe("--json");
});

test("validation messages are one plain line with the path of each issue", () => {
  const schema = z.object({ value: z.string(), expect: z.object({ modRevision: z.number() }).optional() }).strict();
  const r = schema.safeParse({ value: 3, expect: { modRevision: "x" }, extra: 1 });
  expect(r.success).toBe(false);
  const msg = plainZodMessage(r.error!);
  expect(msg).toBe('value: expected string, received number; expect.modRevision: expected number, received string; Unrecognized key: "extra"');
  expect(msg).not.toMatch(/[✖→\n]/);
});

test("serve --help describes every setting with its flag, variable and default, from the one table", async () => {
  const { SERVE_HELP } = await import("../../src/cli/serve.ts");
  const { SETTINGS, resolveConfig } = await import("../../src/node/config.ts");
  for (const d of Object.values(SETTINGS) as { env: string; flag: string; default?: string; help: string }[]) {
    const at = SERVE_HELP.indexOf(`--${d.flag} `);
    expect(at).toBeGreaterThan(0);
    const entry = SERVE_HELP.slice(at, SERVE_HELP.indexOf("\n  --", at + 1) >>> 0);
    expect(entry).toContain(d.env);
    if (d.default !== undefined) expect(entry.replace(/\s+/g, " ")).toContain(`(default ${d.default})`);
  }
  // The defaults shown are the ones a node uses.
  const c = resolveConfig({});
  expect([c.id, c.dataDir, c.rpcAddr, String(c.tickMs), String(c.electionTicks), c.region]).toEqual([
    SETTINGS.id.default, SETTINGS.dataDir.default, SETTINGS.rpcAddr.default, SETTINGS.tickMs.default, SETTINGS.electionTicks.default, SETTINGS.region.default,
  ]);
});

test("the latency histogram keeps percentiles within 1% in fixed memory", async () => {
  const { LatencyHistogram } = await import("../../src/cli/latency_histogram.ts");
  const h = new LatencyHistogram();
  for (let i = 1; i <= 100_000; i++) h.observe(i / 100); // 0.01 .. 1000 ms, uniform
  for (const [p, exact] of [[50, 500], [95, 950], [99, 990]] as const) {
    expect(h.percentile(p)).toBeGreaterThanOrEqual(exact);
    expect(h.percentile(p)).toBeLessThanOrEqual(exact * 1.01);
  }
  expect(h.max).toBe(1000);
  expect(h.count).toBe(100_000);
  expect(LatencyHistogram.buckets).toBeLessThan(2000);
  expect(new LatencyHistogram().percentile(99)).toBe(0);
});

test("runLoad prefills every key once, then counts reads and writes apart", async () => {
  const { runLoad } = await import("../../src/cli/load.ts");
  const store = new Map<string, number>();
  let readsOfMissing = 0;
  const r = await runLoad({
    concurrency: 4,
    durationS: 0.2,
    keys: 50,
    reads: 0.7,
    prefill: true,
    op: async ({ key, read }) => {
      await Promise.resolve();
      if (read) {
        if (!store.has(key)) readsOfMissing++;
        return key === "bench/7" ? { ok: false, error: "boom" } : { ok: true };
      }
      store.set(key, (store.get(key) ?? 0) + 1);
      return { ok: true };
    },
  });
  expect(r.prefilled).toBe(50);
  expect(store.size).toBe(50);
  expect(readsOfMissing).toBe(0);
  expect(r.read.ops).toBe(r.reads);
  expect(r.write.ops).toBe(r.writes);
  expect(r.reads).toBeGreaterThan(r.writes); // 70% reads
  expect(r.read.errors).toBeGreaterThan(0);
  expect(r.write.errors).toBe(0);
  expect(r.errors).toBe(r.read.errors);
  // Writes in the timed run only: the prefill's 50 are not in the counts.
  expect([...store.values()].reduce((a, b) => a + b, 0)).toBe(50 + r.writes);
});
