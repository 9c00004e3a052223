// The client API in process (Hono's app.request, no sockets) against a single-node PhalanxNode:
// content negotiation (JSON, msgpack, raw bytes), revisions, CAS, range paging, sessions, typed errors.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { decode, encode } from "@msgpack/msgpack";
import type { Hono } from "hono";
import { PhalanxNode } from "../../src/node/node.ts";
import { waitFor } from "../integration/harness.ts";
import { startSingleNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-api-"));
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

const put = (key: string, body: string | Uint8Array, headers: Record<string, string> = {}, query = "") =>
  app.request(`/v1/kv/${key}${query}`, { method: "PUT", body, headers });
const json = (v: unknown) => ({ body: JSON.stringify(v), headers: { "content-type": "application/json" } });

test("raw bytes in, JSON, msgpack and raw out, with revision metadata", async () => {
  const bytes = new Uint8Array([0, 255, 1, 2]);
  const res = await put("bin", bytes, { "content-type": "application/octet-stream" });
  expect(res.status).toBe(200);
  const { revision } = (await res.json()) as { revision: number };
  expect(res.headers.get("x-phalanx-revision")).toBe(String(revision));
  const asJson = (await (await app.request("/v1/kv/bin")).json()) as { kv: { value?: string; valueBase64: string; modRevision: number; version: number } };
  // One representation per value: bytes that are not UTF-8 come as base64 only.
  expect(asJson.kv.value).toBeUndefined();
  expect(Buffer.from(asJson.kv.valueBase64, "base64")).toEqual(Buffer.from(bytes));
  expect(asJson.kv.modRevision).toBe(revision);
  expect(asJson.kv.version).toBe(1);
  const packed = await app.request("/v1/kv/bin", { headers: { accept: "application/msgpack" } });
  expect(packed.headers.get("content-type")).toBe("application/msgpack");
  const m = decode(new Uint8Array(await packed.arrayBuffer())) as { kv: { value: Uint8Array } };
  expect(m.kv.value).toEqual(bytes);
  const raw = await app.request("/v1/kv/bin?raw");
  expect(new Uint8Array(await raw.arrayBuffer())).toEqual(bytes);
});

test("msgpack and JSON request bodies; CAS by revision and by value", async () => {
  const res = await put("m", encode({ value: new Uint8Array([7]) }), { "content-type": "application/msgpack" });
  expect(res.status).toBe(200);
  const rev = ((await res.json()) as { revision: number }).revision;
  const { body, headers } = json({ value: "x", expect: { modRevision: rev + 100 } });
  expect((await put("m", body, headers)).status).toBe(409);
  const ok = json({ value: "x", expect: { modRevision: rev } });
  expect((await put("m", ok.body, ok.headers)).status).toBe(200);
  const byValue = json({ value: "y", expect: { value: "x" } });
  expect((await put("m", byValue.body, byValue.headers)).status).toBe(200);
  const absent = json({ value: "z", expect: { value: null } });
  expect((await put("m", absent.body, absent.headers)).status).toBe(409);
  expect((await put("fresh", "v", {}, "?prevRevision=0")).status).toBe(200);
  expect((await app.request("/v1/kv/fresh?prevRevision=1", { method: "DELETE" })).status).toBe(409);
  expect((await app.request("/v1/kv/fresh", { method: "DELETE" })).status).toBe(200);
  expect((await app.request("/v1/kv/fresh", { method: "DELETE" })).status).toBe(404);
  expect((await app.request("/v1/kv/fresh")).status).toBe(404);
});

test("range by prefix with limit and start-after pages through every key once", async () => {
  for (let i = 0; i < 25; i++) expect((await put(`page%2F${String(i).padStart(2, "0")}`, `v${i}`)).status).toBe(200);
  const seen: string[] = [];
  let after: string | undefined;
  for (let pageNo = 0; pageNo < 10; pageNo++) {
    const q = new URLSearchParams({ prefix: "page/", limit: "10", ...(after === undefined ? {} : { after }) });
    const page = (await (await app.request(`/v1/kv?${q}`)).json()) as { kvs: Array<{ key: string }>; more: boolean };
    seen.push(...page.kvs.map((k) => k.key));
    if (!page.more) break;
    after = page.kvs[page.kvs.length - 1]!.key;
  }
  expect(seen.length).toBe(25);
  expect(new Set(seen).size).toBe(25);
  expect((await app.request("/v1/kv?limit=0")).status).toBe(400);
});

test("sessions make a retried write apply once", async () => {
  const reg = (await (await app.request("/v1/session", { method: "POST" })).json()) as { client: number };
  const h = { "x-phalanx-session": `${reg.client}:1` };
  const a = (await (await put("counter", "1", h)).json()) as { revision: number };
  const b = (await (await put("counter", "2", h)).json()) as { revision: number };
  expect(b.revision).toBe(a.revision);
  const v = (await (await app.request("/v1/kv/counter")).json()) as { kv: { value: string; version: number } };
  expect(v.kv.value).toBe("1");
  expect(v.kv.version).toBe(1);
  expect((await put("counter", "3", { "x-phalanx-session": "999999:1" })).status).toBe(410);
  expect((await put("counter", "3", { "x-phalanx-session": "nope" })).status).toBe(400);
});

test("bad input is a typed 4xx, never a crash", async () => {
  const cases: Array<[string, RequestInit, number]> = [
    ["/v1/kv/k", { method: "PUT", body: "{not json", headers: { "content-type": "application/json" } }, 400],
    ["/v1/kv/k", { method: "PUT", body: JSON.stringify({ value: "a", extra: 1 }), headers: { "content-type": "application/json" } }, 400],
    ["/v1/kv/k", { method: "PUT", body: new Uint8Array([0xc1]), headers: { "content-type": "application/msgpack" } }, 400],
    ["/v1/kv/%E0%A4%A", { method: "GET" }, 400],
    ["/v1/kv/k?consistency=eventual", { method: "GET" }, 400],
    ["/v1/kv/" + "k".repeat(5000), { method: "PUT", body: "v" }, 400],
    ["/v1/kv/big", { method: "PUT", body: new Uint8Array(1024 * 1024 + 1) }, 413],
    ["/v1/leader/transfer?to=n9", { method: "POST" }, 400],
    ["/raft/v1/snapshot", { method: "POST", body: new Uint8Array([1, 2, 3]) }, 401],
    ["/nowhere", { method: "GET" }, 404],
  ];
  for (const [path, init, status] of cases) {
    const res = await app.request(path, init);
    expect({ path, status: res.status }).toEqual({ path, status });
  }
  expect(node.isStopped).toBe(false);
});

test("status and members describe the node", async () => {
  const s = (await (await app.request("/v1/status")).json()) as { id: string; role: string; applied: number; members: Array<{ id: string }> };
  expect(s.id).toBe("n1");
  expect(s.role).toBe("leader");
  expect(s.applied).toBeGreaterThan(0);
  expect(s.members.map((m) => m.id)).toEqual(["n1"]);
  // The leader records its own REGION ("local" by default) in the replicated members table.
  const m = await waitFor("n1's region recorded", async () => {
    const body = (await (await app.request("/v1/members")).json()) as { members: Array<{ id: string; region: string }> };
    return body.members[0]?.region === "local" ? body : undefined;
  }, 5000, 10);
  expect(m.members).toEqual([{ id: "n1", address: "127.0.0.1:0", region: "local", role: "voter" } as never]);
});
