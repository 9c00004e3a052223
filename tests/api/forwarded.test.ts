// The leader's side of a forward (api/forward.ts runForwarded), in process against a single-node
// PhalanxNode: a forwarded request runs through the node's own app as the client's request would,
// a write session with it, and its answer is bounded in size and in time. A node that
// became leader while a forward waited to be sent again runs it itself (forwardTo its own id).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Hono } from "hono";
import { runForwarded } from "../../src/api/forward.ts";
import type { PhalanxNode } from "../../src/node/node.ts";
import type { ForwardRequest } from "../../src/transport/forward_frame.ts";
import { startSingleNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-forwarded-"));
let node: PhalanxNode;
let app: Hono;

beforeAll(async () => {
  ({ node, app } = await startSingleNode(dir));
});

afterAll(async () => {
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const req = (method: string, path: string, body: string | null, headers: Record<string, string> = {}): ForwardRequest => ({
  method,
  path,
  headers,
  body: body === null ? null : new TextEncoder().encode(body),
  timeoutMs: 2000,
});

test("a forward to this node's own id runs here, through its app, and is answered as that route answers", async () => {
  const o = await node.forwardTo("n1", req("PUT", "/v1/kv/self?prev=1", '{"value":"a"}', { "content-type": "application/json" }));
  if (o.kind !== "answered") throw new Error(`not answered: ${JSON.stringify(o)}`);
  expect(o.answer.status).toBe(200);
  const body = JSON.parse(new TextDecoder().decode(o.answer.body));
  expect(o.answer.headers["x-phalanx-revision"]).toBe(String(body.revision));
  expect(o.answer.headers["content-type"]).toContain("application/json");
  const got = await app.request("/v1/kv/self");
  expect(((await got.json()) as { kv: { value: string } }).kv.value).toBe("a");
});

test("a write session travels with a forward: the same write forwarded again gets the cached answer, applied once", async () => {
  const session = (await (await app.request("/v1/session", { method: "POST" })).json()) as { client: number };
  const put = req("PUT", "/v1/kv/once", "v", { "x-phalanx-session": `${session.client}:1`, "content-type": "application/octet-stream" });
  const run = runForwarded(app, 1 << 20);
  const first = await run(put, "n2");
  const again = await run(put, "n2");
  expect(first.status).toBe(200);
  expect(new TextDecoder().decode(again.body)).toBe(new TextDecoder().decode(first.body));
  expect(((await (await app.request("/v1/kv/once")).json()) as { kv: { version: number } }).kv.version).toBe(1);
});

test("a forwarded body is the frame's own bytes: a binary value is stored byte for byte, one over the route's cap is refused unproposed", async () => {
  const value = Uint8Array.from({ length: 1024 }, (_, i) => i % 256);
  const run = runForwarded(app, 1 << 20);
  const put = await run({ method: "PUT", path: "/v1/kv/bin", headers: { "content-type": "application/octet-stream" }, body: value, timeoutMs: 2000 }, "n2");
  expect(put.status).toBe(200);
  const got = await app.request("/v1/kv/bin?raw");
  expect(new Uint8Array(await got.arrayBuffer())).toEqual(value);
  const huge = await run({ method: "PUT", path: "/v1/kv/huge", headers: { "content-type": "application/octet-stream" }, body: new Uint8Array(2 << 20), timeoutMs: 2000 }, "n2");
  expect(huge.status).toBe(413);
  expect(JSON.parse(new TextDecoder().decode(huge.body)).error).toBe("too_large");
  expect((await app.request("/v1/kv/huge")).status).toBe(404);
});

test("an answer larger than the cap, or one that does not end within the deadline and a second, is a failure, not an answer", async () => {
  await app.request("/v1/kv/big", { method: "PUT", body: "x".repeat(1000), headers: { "content-type": "application/octet-stream" } });
  await expect(runForwarded(app, 100)(req("GET", "/v1/kv/big", null), "n2")).rejects.toThrow(/exceeds 100 bytes/);
  const t0 = performance.now();
  const watch = runForwarded(app, 1 << 20)({ ...req("GET", "/v1/watch?key=big", null), timeoutMs: 100 }, "n2");
  await expect(watch).rejects.toThrow(/did not end within 1100 ms/);
  expect(performance.now() - t0).toBeGreaterThanOrEqual(1000);
});
