// Buffered HTTP/2 answers are ended on their stream (h2_answer.ts), everything else goes through
// the compatibility response: either way a client over h2 gets exactly what the app answered
// (status, headers, body), as the app's own in-process answer shows.
import { afterAll, beforeAll, expect, test } from "bun:test";
import http2 from "node:http2";
import { Hono } from "hono";
import { serveApp, type RunningServer } from "../../src/transport/server.ts";
import { freePort } from "../integration/harness.ts";

const big = Uint8Array.from({ length: 1024 * 1024 + 3 }, (_, i) => (i * 7) & 0xff);
const app = new Hono();
app.get("/json", (c) => c.json({ ok: true, n: 1 }));
app.get("/text", (c) => c.text("hello"));
app.get("/bytes", (c) => c.body(big, 200, { "content-type": "application/octet-stream", "x-phalanx-index": "42" }));
app.get("/empty", (c) => c.body(null, 200));
app.get("/no-content", (c) => c.body(null, 204));
app.get("/refused", (c) => c.json({ error: "nope" }, 409, { "retry-after": "1" }));
app.get("/cookies", (c) => {
  c.header("set-cookie", "a=1", { append: true });
  c.header("set-cookie", "b=2", { append: true });
  return c.text("two cookies");
});
app.get("/streamed", () => {
  // Parts with a pause between them: the answer cannot be buffered whole.
  const parts = ["one ", "two ", "three"];
  return new Response(
    new ReadableStream({
      async pull(ctl) {
        const part = parts.shift();
        if (part === undefined) return ctl.close();
        await Bun.sleep(5);
        ctl.enqueue(new TextEncoder().encode(part));
      },
    }),
    { headers: { "content-type": "text/plain" } },
  );
});
app.get("/thrown", () => {
  throw new Error("handler failed");
});
app.onError((err, c) => c.json({ error: err.message }, 500));

let server: RunningServer;
let session: http2.ClientHttp2Session;
// Counts the answers that went through the compatibility response's end().
const compatEnd = http2.Http2ServerResponse.prototype.end;
let compatEnds = 0;

beforeAll(async () => {
  http2.Http2ServerResponse.prototype.end = function (this: http2.Http2ServerResponse, ...args: unknown[]) {
    compatEnds++;
    return (compatEnd as (...a: unknown[]) => http2.Http2ServerResponse).apply(this, args);
  } as typeof compatEnd;
  server = await serveApp(app, { listen: `127.0.0.1:${await freePort()}` });
  session = http2.connect(`http://127.0.0.1:${server.port}`);
});

afterAll(async () => {
  http2.Http2ServerResponse.prototype.end = compatEnd;
  session.close();
  await server.close();
});

interface Answer {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

function overH2(method: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const s = session.request({ ":method": method, ":path": path });
    let status = 0;
    const headers: Record<string, string | string[]> = {};
    const chunks: Buffer[] = [];
    s.on("response", (h) => {
      status = Number(h[":status"]);
      for (const [k, v] of Object.entries(h)) if (!k.startsWith(":") && v !== undefined) headers[k] = v as string | string[];
    });
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("error", reject);
    s.on("close", () => resolve({ status, headers, body: Buffer.concat(chunks) }));
  });
}

async function inProcess(path: string): Promise<Answer> {
  const r = await app.request(path);
  const headers: Record<string, string | string[]> = {};
  r.headers.forEach((v, k) => (headers[k] = v));
  const cookies = r.headers.getSetCookie();
  if (cookies.length > 0) headers["set-cookie"] = cookies;
  return { status: r.status, headers, body: Buffer.from(await r.arrayBuffer()) };
}

test("buffered answers reach an h2 client as the app gave them, none through the compatibility end()", async () => {
  const paths = ["/json", "/text", "/bytes", "/empty", "/refused", "/cookies", "/thrown"];
  compatEnds = 0;
  // At once on one session: the answers of one turn leave together.
  const got = await Promise.all(paths.map((p) => overH2("GET", p)));
  expect(compatEnds).toBe(0);
  for (const [i, path] of paths.entries()) {
    const want = await inProcess(path);
    expect({ path, status: got[i]!.status }).toEqual({ path, status: want.status });
    expect(Buffer.compare(got[i]!.body, want.body)).toBe(0);
    for (const [name, value] of Object.entries(want.headers)) expect({ path, name, value: got[i]!.headers[name] }).toEqual({ path, name, value });
    if (want.body.byteLength > 0) expect(Number(got[i]!.headers["content-length"])).toBe(want.body.byteLength);
    expect(got[i]!.headers.date).toBeString();
  }
});

test("a streamed answer, a status without a body and HEAD go the compatibility way, whole", async () => {
  compatEnds = 0;
  const streamed = await overH2("GET", "/streamed");
  expect(streamed.status).toBe(200);
  expect(streamed.body.toString()).toBe("one two three");
  const noContent = await overH2("GET", "/no-content");
  expect(noContent.status).toBe(204);
  expect(noContent.body.byteLength).toBe(0);
  const head = await overH2("HEAD", "/bytes");
  expect(head.status).toBe(200);
  expect(head.body.byteLength).toBe(0);
  expect(compatEnds).toBeGreaterThanOrEqual(3);
  // The session still serves buffered answers on the stream afterwards.
  compatEnds = 0;
  expect((await overH2("GET", "/json")).status).toBe(200);
  expect(compatEnds).toBe(0);
});

test("an answer to a stream the client already reset is dropped without harm", async () => {
  const s = session.request({ ":path": "/bytes" });
  s.close(http2.constants.NGHTTP2_CANCEL);
  await new Promise((r) => s.on("close", r));
  expect((await overH2("GET", "/text")).body.toString()).toBe("hello");
});
