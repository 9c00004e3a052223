// serveApp hands requests to the app from a batch after Bun's HTTP/2 parser returns (server.ts):
// by then a body's DATA frames may already have arrived. They must wait in the request stream, not
// be lost: values of every size, sent at once on one session, are stored byte for byte.
import { afterAll, beforeAll, expect, test } from "bun:test";
import http2 from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { serveSingleNode, type ServedNode } from "./single_node.ts";

const dir = mkdtempSync(join(tmpdir(), "phalanx-h2-bodies-"));
let served: ServedNode;
let session: http2.ClientHttp2Session;

beforeAll(async () => {
  served = await serveSingleNode(join(dir, "data"));
  session = served.session;
});

afterAll(async () => {
  await served.close();
  rmSync(dir, { recursive: true, force: true });
});

function send(method: string, path: string, body?: Uint8Array): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = { ":method": method, ":path": path };
    if (body !== undefined) headers["content-type"] = "application/octet-stream";
    const s = session.request(headers, { endStream: body === undefined });
    let status = 0;
    const chunks: Buffer[] = [];
    s.on("response", (h) => (status = Number(h[":status"])));
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("close", () => resolve({ status, body: Buffer.concat(chunks) }));
    if (body !== undefined) s.end(body);
  });
}

test("bodies sent together with their headers, small and in many frames, are stored byte for byte", async () => {
  const sizes = [1, 100, 16 * 1024, 64 * 1024 + 7, 1024 * 1024];
  const values = sizes.map((n, i) => Uint8Array.from({ length: n }, (_, k) => (k * 31 + i) & 0xff));
  // All at once on one session: headers and data of several requests arrive in the same reads.
  const puts = await Promise.all(values.map((v, i) => send("PUT", `/v1/kv/body-${i}`, v)));
  expect(puts.map((p) => p.status)).toEqual(sizes.map(() => 200));
  const gets = await Promise.all(values.map((_, i) => send("GET", `/v1/kv/body-${i}?raw`)));
  for (let i = 0; i < values.length; i++) {
    expect(gets[i]!.status).toBe(200);
    expect(Buffer.compare(gets[i]!.body, Buffer.from(values[i]!))).toBe(0);
  }
});
