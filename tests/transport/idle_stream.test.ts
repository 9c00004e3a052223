// The idle-connection reset (server.ts) must spare a connection that carries an open stream (a
// watch whose client only listens), and still reset a connection with nothing open.
import { expect, test } from "bun:test";
import http2 from "node:http2";
import { Hono } from "hono";
import { serveApp } from "../../src/transport/server.ts";

test("a long response keeps its connection past the idle timeout; an idle connection is reset", async () => {
  const app = new Hono();
  app.get("/stream", () => {
    let timer: ReturnType<typeof setInterval>;
    const body = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new TextEncoder().encode("start\n"));
        let n = 0;
        timer = setInterval(() => {
          if (++n === 6) {
            clearInterval(timer);
            c.close();
          } else c.enqueue(new TextEncoder().encode(`tick ${n}\n`));
        }, 250);
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body);
  });
  const server = await serveApp(app, { listen: "127.0.0.1:0", idleTimeoutMs: 400 });
  try {
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => undefined);
    const text = await new Promise<string>((resolve, reject) => {
      let out = "";
      const r = session.request({ ":path": "/stream" });
      r.on("data", (d: Buffer) => (out += d.toString()));
      r.on("end", () => resolve(out));
      r.on("error", reject);
      r.on("close", () => (r.rstCode !== 0 ? reject(new Error(`stream reset (code ${r.rstCode}) after: ${JSON.stringify(out)}`)) : undefined));
    });
    // 1.5 s of streaming on a connection whose idle timeout is 0.4 s.
    expect(text.trim().split("\n")).toEqual(["start", "tick 1", "tick 2", "tick 3", "tick 4", "tick 5"]);
    // Nothing open any more: the connection is reset within a couple of idle periods.
    const closed = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), 3000);
      session.once("close", () => {
        clearTimeout(t);
        resolve(true);
      });
    });
    expect(closed).toBe(true);
  } finally {
    await server.close();
  }
}, 10_000);
