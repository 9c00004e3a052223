// A full disk on a running node (simulated with PRAGMA max_page_count, which SQLite reports as
// SQLITE_FULL like a full filesystem): writes are refused with a clear answer, stale reads keep
// working, nothing is lost, and once there is room again the node recovers without a restart.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { nodeApp } from "../../src/api/app.ts";
import { resolveConfig } from "../../src/node/config.ts";
import { createLogger } from "../../src/node/log.ts";
import { PhalanxNode } from "../../src/node/node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-diskfull-"));
let node: PhalanxNode;
let app: Hono;

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 15_000): Promise<T> {
  const deadline = performance.now() + ms;
  while (performance.now() < deadline) {
    const v = await f();
    if (v !== undefined) return v;
    await Bun.sleep(20);
  }
  throw new Error(`timed out waiting for ${what}`);
}

const put = (key: string, value: string) =>
  app.request(`/v1/kv/${key}?timeout=2000`, { method: "PUT", body: JSON.stringify({ value }), headers: { "content-type": "application/json" } });

beforeAll(async () => {
  const log = createLogger("n1", { minLevel: "error" });
  node = PhalanxNode.open(resolveConfig({ id: "n1", dataDir: dir, rpcAddr: "127.0.0.1:0", tickMs: "20" }), log);
  node.run();
  app = nodeApp(node, log);
  await until("a leader", async () => (node.leader() === null ? undefined : true));
});

afterAll(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("a full disk refuses writes, keeps stale reads, loses nothing, and recovers by itself", async () => {
  expect((await put("before", "ok")).status).toBe(200);
  const pages = node.dd.db.query("PRAGMA page_count").values()[0]![0] as number;
  node.dd.db.run(`PRAGMA max_page_count = ${pages + 2}`);

  // Fill until a write is refused; every acknowledged one is remembered.
  const acked: string[] = [];
  let refused: Response | null = null;
  const big = "x".repeat(3000);
  for (let i = 0; i < 200 && refused === null; i++) {
    const r = await put(`k${i}`, big);
    if (r.status === 200) acked.push(`k${i}`);
    else refused = r;
  }
  expect(refused).not.toBeNull();
  expect([503, 507]).toContain(refused!.status);
  const body = (await refused!.json()) as { message: string; outcome: string };
  expect(body.message).toMatch(/disk is full|write refused|no leader/);
  // A write this node could not persist may still commit elsewhere: unknown, never "not applied"
  // (src/node/outcome.ts); a write refused before it reached the log is definitely not applied.
  expect(body.outcome).toBe(refused!.status === 507 ? "unknown" : "not_applied");
  expect(node.diskFull() || node.metrics.diskFullErrors > 0).toBe(true);

  // Stale reads still answer from the state machine.
  const stale = await app.request("/v1/kv/before?consistency=stale");
  expect(stale.status).toBe(200);
  expect(((await stale.json()) as { kv: { value: string } }).kv.value).toBe("ok");
  expect(node.isStopped).toBe(false);

  // Room again: the node re-elects itself and writes go through, without a restart.
  node.dd.db.run("PRAGMA max_page_count = 1073741823");
  await until("writes to resume", async () => ((await put("after", "room")).status === 200 ? true : undefined), 20_000);
  for (const k of ["before", ...acked, "after"]) {
    const r = await app.request(`/v1/kv/${k}`);
    expect(r.status).toBe(200);
  }
  expect(node.metrics.diskFullErrors).toBeGreaterThan(0);
}, 60_000);
