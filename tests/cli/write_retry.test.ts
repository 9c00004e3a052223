// A write whose answer never came back may have been applied: the CLI must not send it again to
// another endpoint (a second apply, or a compare-and-swap that "fails" after the first swapped).
// Performed against servers that take the request and never answer.
import { afterAll, expect, test } from "bun:test";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { BUN, MAIN } from "../integration/harness.ts";

const servers: http2.Http2Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

/** The CLI as a child; async, so the servers in this process can take its requests meanwhile. */
async function cli(args: string[]): Promise<{ code: number; err: string }> {
  const p = Bun.spawn([BUN, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, PHALANX_ADDR: "" } });
  const [code, err] = await Promise.all([p.exited, new Response(p.stderr).text()]);
  return { code, err };
}

/** An h2c server that counts requests by method and answers GETs with 503, writes never. */
async function silentServer(counts: { writes: number; reads: number }): Promise<string> {
  const srv = http2.createServer();
  srv.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    if (headers[":method"] === "GET") {
      counts.reads++;
      stream.respond({ ":status": 503, "content-type": "application/json" });
      stream.end(JSON.stringify({ error: "unavailable", message: "no leader" }));
      return;
    }
    counts.writes++;
    stream.on("error", () => undefined);
  });
  servers.push(srv);
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

test("a write with no answer is sent once and reported as outcome unknown, never retried elsewhere", async () => {
  const counts = { writes: 0, reads: 0 };
  const a = await silentServer(counts);
  const b = await silentServer(counts);
  const r = await cli(["kv", "put", "k", "v", "--addr", `${a},${b}`, "--timeout", "1500"]);
  expect(r.code).toBe(4);
  expect(r.err).toContain("outcome is unknown");
  expect(counts.writes).toBe(1);
});

test("a read with no useful answer is retried across endpoints until the deadline", async () => {
  const counts = { writes: 0, reads: 0 };
  const a = await silentServer(counts);
  const b = await silentServer(counts);
  const r = await cli(["kv", "get", "k", "--addr", `${a},${b}`, "--timeout", "800"]);
  expect(r.code).toBe(3);
  expect(counts.reads).toBeGreaterThan(2);
});
