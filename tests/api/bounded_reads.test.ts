// ?max_staleness=<duration> on one node: its syntax and limits, and the staleness header every
// read answer carries (the rule: src/node/freshness.ts). The cluster behaviour, a follower
// answering locally and refusing once cut off, is tests/integration/bounded_reads.test.ts.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { PhalanxNode } from "../../src/node/node.ts";
import { STALENESS_HEADER } from "../../src/api/read_consistency.ts";
import { metricsText } from "../../src/api/metrics_text.ts";
import { waitFor } from "../integration/harness.ts";
import { startSingleNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-bounded-"));
let node: PhalanxNode;
let app: Hono;

beforeAll(async () => {
  ({ node, app } = await startSingleNode(dir));
});

afterAll(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

test("bad bounds are a 400 that says what a bound looks like", async () => {
  const cases: Array<[string, RegExp]> = [
    ["max_staleness=5", /duration like/],
    ["max_staleness=-5s", /duration like/],
    ["max_staleness=5sec", /duration like/],
    ["max_staleness=", /duration like/],
    ["max_staleness=0", /more than 0/],
    ["max_staleness=0s", /more than 0/],
    ["max_staleness=61m", /at most 1h/],
    ["max_staleness=5s&consistency=linearizable", /bounds a stale read/],
    ["consistency=bounded", /consistency must be/],
  ];
  for (const [q, why] of cases) {
    for (const path of [`/v1/kv/k?${q}`, `/v1/kv?prefix=&${q}`, `/v1/snapshot?${q}`]) {
      const res = await app.request(path);
      expect([path, res.status]).toEqual([path, 400]);
      expect((await res.json()) as { message: string }).toMatchObject({ error: "bad_request", message: expect.stringMatching(why) });
    }
  }
});

test("bounded reads are answered on the leader with the bound it proved, on every read route", async () => {
  const put = await app.request("/v1/kv/b/one", { method: "PUT", body: "1", headers: { "content-type": "application/octet-stream" } });
  expect(put.status).toBe(200);
  const revision = ((await put.json()) as { revision: number }).revision;
  for (const q of ["max_staleness=5s", "max_staleness=1h", "consistency=stale&max_staleness=500ms", "max_staleness=1m30s"]) {
    const got = await app.request(`/v1/kv/b/one?${q}`);
    expect(got.status).toBe(200);
    expect(((await got.json()) as { kv: { value: string } }).kv.value).toBe("1");
    const s = Number(got.headers.get(STALENESS_HEADER));
    expect(Number.isSafeInteger(s) && s >= 0 && s <= 500).toBe(true);
    expect(Number(got.headers.get("x-phalanx-revision"))).toBeGreaterThanOrEqual(revision);
  }
  // An absent key is an answer too, as stale as the proof says.
  const missing = await app.request("/v1/kv/b/none?max_staleness=5s");
  expect(missing.status).toBe(404);
  expect(missing.headers.get(STALENESS_HEADER)).not.toBeNull();
  const range = await app.request("/v1/kv?prefix=b/&max_staleness=5s");
  expect(range.status).toBe(200);
  expect(((await range.json()) as { kvs: unknown[] }).kvs).toHaveLength(1);
  expect(range.headers.get(STALENESS_HEADER)).not.toBeNull();
  const snap = await app.request("/v1/snapshot?max_staleness=5s");
  expect(snap.status).toBe(200);
  expect(snap.headers.get(STALENESS_HEADER)).not.toBeNull();
  await snap.arrayBuffer();
});

test("linearizable and stale answers say how stale they may be too", async () => {
  const lin = await app.request("/v1/kv/b/one");
  expect(lin.status).toBe(200);
  // The barrier's own round proves the node fresh as of when the read arrived.
  expect(Number(lin.headers.get(STALENESS_HEADER))).toBeLessThanOrEqual(500);
  const stale = await app.request("/v1/kv/b/one?consistency=stale");
  expect(stale.status).toBe(200);
  expect(stale.headers.get(STALENESS_HEADER)).not.toBeNull();
});

test("the background probe keeps a bounded read local; the metrics count both kinds", async () => {
  await app.request("/v1/kv/b/one?max_staleness=5s");
  const before = node.metrics.freshnessProbes;
  const local = node.metrics.readsBoundedLocal;
  // A lone leader proves itself from its lease each heartbeat while bounded reads come in.
  await waitFor("a background probe", () => node.metrics.freshnessProbes > before, 5000, 5);
  const got = await app.request("/v1/kv/b/one?max_staleness=5s");
  expect(got.status).toBe(200);
  expect(node.metrics.readsBoundedLocal).toBeGreaterThan(local);
  const text = metricsText(node);
  expect(text).toMatch(/phalanx_reads_total\{kind="bounded_local"\} [1-9]/);
  expect(text).toMatch(/phalanx_freshness_probes_total [1-9]/);
});
