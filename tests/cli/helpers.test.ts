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
