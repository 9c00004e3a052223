// Request decoding limits and answer shapes, in process against a single-node PhalanxNode:
// invalid UTF-8 in JSON is refused (not replaced), deeply nested msgpack is refused before it is
// decoded, a value appears once in JSON, the previous value only with ?prev, and range pages
// stop at their byte budget with a continuation key.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import type { Hono } from "hono";
import { msgpackDepthWithin } from "../../src/api/wire.ts";
import { PhalanxNode } from "../../src/node/node.ts";
import { startSingleNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-limits-"));
let node: PhalanxNode;
let app: Hono;

beforeAll(async () => {
  ({ node, app } = await startSingleNode(dir));
  expect(node.leader()?.id).toBe("n1");
});

afterAll(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const put = (key: string, body: string | Uint8Array, type: string, query = "") => app.request(`/v1/kv/${key}${query}`, { method: "PUT", body, headers: { "content-type": type } });

test("JSON with invalid UTF-8 is refused with 400 and stores nothing", async () => {
  // {"value":"a\xffb"}: the old decoder replaced \xff by U+FFFD and stored other bytes.
  const body = new Uint8Array([...Buffer.from('{"value":"a'), 0xff, ...Buffer.from('b"}')]);
  const res = await put("utf", body, "application/json");
  expect(res.status).toBe(400);
  expect(((await res.json()) as { message: string }).message).toContain("UTF-8");
  expect((await app.request("/v1/kv/utf")).status).toBe(404);
});

test("deeply nested msgpack is refused before decoding; legitimate bodies pass the scan", async () => {
  // 1.5 MB of one-element arrays: 213 MiB with the unbounded decoder.
  const nested = new Uint8Array(1_500_000).fill(0x91);
  const before = process.memoryUsage().rss;
  const res = await put("deep", nested, "application/msgpack");
  expect(res.status).toBe(400);
  expect(((await res.json()) as { message: string }).message).toContain("nested deeper");
  expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
  // Nested maps, two bytes a level, are the same attack.
  const maps = new Uint8Array(200_000);
  for (let i = 0; i < maps.length; i += 2) maps.set([0x81, 0xa0], i);
  expect((await put("deep", maps, "application/msgpack")).status).toBe(400);
  // A long array is refused by the decoder's length limit.
  expect((await put("deep", encode({ value: "x", extra: Array.from({ length: 100 }, () => 0) }), "application/msgpack")).status).toBe(400);
  const ok = encode({ value: new Uint8Array([1, 2]), expect: { value: null }, session: undefined }, { ignoreUndefined: true });
  expect(msgpackDepthWithin(ok, 4)).toBeNull();
  expect((await put("deep", ok, "application/msgpack")).status).toBe(200);
  expect(msgpackDepthWithin(new Uint8Array([0x92, 0x01]), 4)).toBe("truncated");
});

test("a value appears once in JSON; ?encoding=base64 always base64; ?prev returns the replaced pair", async () => {
  expect((await put("one", "text", "application/octet-stream")).status).toBe(200);
  const got = (await (await app.request("/v1/kv/one")).json()) as { kv: Record<string, unknown> };
  expect(got.kv.value).toBe("text");
  expect(got.kv.valueBase64).toBeUndefined();
  const b64 = (await (await app.request("/v1/kv/one?encoding=base64")).json()) as { kv: Record<string, unknown> };
  expect(b64.kv.value).toBeUndefined();
  expect(b64.kv.valueBase64).toBe(Buffer.from("text").toString("base64"));
  const overwrite = (await (await put("one", "next", "application/octet-stream")).json()) as Record<string, unknown>;
  expect(overwrite.prev).toBeUndefined();
  const withPrev = (await (await put("one", "third", "application/octet-stream", "?prev")).json()) as { prev: { value: string } };
  expect(withPrev.prev.value).toBe("next");
  const del = (await (await app.request("/v1/kv/one?prev", { method: "DELETE" })).json()) as { prev: { value: string } };
  expect(del.prev.value).toBe("third");
});

test("range pages stop at maxBytes with `next`; following `next` reads every key exactly once", async () => {
  const value = "v".repeat(10_000);
  for (let i = 0; i < 12; i++) expect((await put(`page%2F${String(i).padStart(2, "0")}`, value, "application/octet-stream")).status).toBe(200);
  const seen: string[] = [];
  let after: string | undefined;
  for (let pages = 0; pages < 20; pages++) {
    const q = new URLSearchParams({ prefix: "page/", maxBytes: "25000", ...(after === undefined ? {} : { after }) });
    const page = (await (await app.request(`/v1/kv?${q}`)).json()) as { kvs: Array<{ key: string; value: string }>; more: boolean; next?: string };
    expect(page.kvs.length).toBeLessThanOrEqual(2);
    seen.push(...page.kvs.map((k) => k.key));
    if (!page.more) break;
    after = page.next;
  }
  expect(seen).toEqual(Array.from({ length: 12 }, (_, i) => `page/${String(i).padStart(2, "0")}`));
  const keys = (await (await app.request("/v1/kv?prefix=page/&keys")).json()) as { kvs: Array<Record<string, unknown>> };
  expect(keys.kvs).toHaveLength(12);
  expect(keys.kvs[0]!.value).toBeUndefined();
  expect((await app.request("/v1/kv?maxBytes=0")).status).toBe(400);
  expect((await app.request("/v1/kv?maxBytes=999999999")).status).toBe(400);
});
