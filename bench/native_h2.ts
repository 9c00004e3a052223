// What Bun's native HTTP/2 server (Bun.serve with `http2: true`, experimental in Bun 1.4) would
// buy over serveApp (node:http2 + @hono/node-server, src/transport/server.ts), and what it would
// cost (not a test): `bun bench/native_h2.ts [--requests 30000] [--rounds 3] [--idle 2000]`.
//
// 1. CPU: one Hono app with a stale-read-like GET (100 bytes) and a raw PUT (100 bytes in, JSON
//    out), served each way in a process of its own; a client in this process keeps 64 streams in
//    flight on one h2c session. Prints the server's CPU µs per request (/proc/<pid>/stat), rounds
//    alternated.
// 2. The limits serveApp enforces because a node must survive whoever reaches its port (issue 9
//    §2): `--idle` connections that open TCP and send nothing, and as many that send the HTTP/2
//    preface and open no stream, against each server with a 2 s idle timeout; prints how many
//    each server closed within 5 s, and whether a fresh request is still answered.
// Bounded: fixed request counts, one wait of 5 s per server; every process it starts is stopped.
import http2 from "node:http2";
import net from "node:net";
import { parseArgs } from "node:util";
import { Hono } from "hono";
import { serveApp } from "../src/transport/server.ts";
import { freePort } from "../tests/integration/harness.ts";
import { processCpuMicros } from "./proc_cpu.ts";

type Mode = "serveApp" | "native";
const MODES: readonly Mode[] = ["serveApp", "native"];
const IDLE_TIMEOUT_S = 2;

const { values: args } = parseArgs({
  options: {
    requests: { type: "string", default: "30000" },
    rounds: { type: "string", default: "3" },
    idle: { type: "string", default: "2000" },
    serve: { type: "string" },
    port: { type: "string" },
  },
});

if (args.serve !== undefined) {
  await serve(args.serve as Mode, Number(args.port));
} else {
  await main();
}

async function serve(mode: Mode, port: number): Promise<void> {
  const value = new Uint8Array(100).fill(97);
  const app = new Hono();
  app.get("/v1/kv/:key", (c) => c.body(value, 200, { "content-type": "application/octet-stream" }));
  app.put("/v1/kv/:key", async (c) => {
    const body = new Uint8Array(await c.req.arrayBuffer());
    return c.json({ key: c.req.param("key"), bytes: body.byteLength, revision: 1 });
  });
  if (mode === "native") {
    Bun.serve({ port, hostname: "127.0.0.1", http2: true, idleTimeout: IDLE_TIMEOUT_S, fetch: app.fetch });
  } else {
    await serveApp(app, { listen: `127.0.0.1:${port}`, idleTimeoutMs: IDLE_TIMEOUT_S * 1000, idleNoStreamMs: IDLE_TIMEOUT_S * 1000 });
  }
  console.log("ready");
}


async function drive(port: number, n: number, method: "GET" | "PUT"): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on("error", () => undefined);
  const payload = new Uint8Array(100).fill(98);
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = session.request({ ":method": method, ":path": "/v1/kv/bench", ...(method === "PUT" ? { "content-type": "application/octet-stream" } : {}) });
      s.on("data", () => undefined);
      s.on("end", resolve);
      s.on("error", reject);
      s.end(method === "PUT" ? payload : undefined);
    });
  let left = n;
  await Promise.all(
    Array.from({ length: 64 }, async () => {
      while (left-- > 0) await one();
    }),
  );
  session.close();
}

async function withServer<T>(mode: Mode, fn: (port: number, pid: number) => Promise<T>): Promise<T> {
  const port = await freePort();
  const proc = Bun.spawn([process.execPath, import.meta.path, "--serve", mode, "--port", String(port)], { stdout: "pipe", stderr: "inherit" });
  try {
    const { value } = await proc.stdout.getReader().read();
    if (!new TextDecoder().decode(value).includes("ready")) throw new Error(`the ${mode} server did not start`);
    return await fn(port, proc.pid);
  } finally {
    proc.kill();
    await proc.exited;
  }
}

async function cpuPerRequest(mode: Mode, method: "GET" | "PUT", requests: number): Promise<number> {
  return withServer(mode, async (port, pid) => {
    await drive(port, 3_000, method);
    const before = processCpuMicros(pid);
    await drive(port, requests, method);
    return (processCpuMicros(pid) - before) / requests;
  });
}

/** Opens `n` silent connections and `n` that send only the preface; counts what the server closed. */
async function idleConnections(mode: Mode, n: number): Promise<string> {
  return withServer(mode, async (port) => {
    const sockets: net.Socket[] = [];
    let closed = 0;
    const opened = await Promise.all(
      Array.from({ length: 2 * n }, (_, i) =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(port, "127.0.0.1");
          sockets.push(s);
          s.once("connect", () => {
            if (i % 2 === 1) s.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
            resolve(true);
          });
          s.once("error", () => resolve(false));
          s.once("close", () => closed++);
        }),
      ),
    );
    await Bun.sleep(IDLE_TIMEOUT_S * 1000 + 3_000);
    const answered = await drive(port, 1, "GET").then(
      () => "answered",
      (err) => `failed (${String(err)})`,
    );
    for (const s of sockets) s.destroy();
    return `${opened.filter(Boolean).length} of ${2 * n} connected, ${closed} closed by the server (refused at a cap, or reaped idle) within ${IDLE_TIMEOUT_S + 3} s; a fresh request ${answered}`;
  });
}

async function main(): Promise<void> {
  const requests = Number(args.requests);
  const rounds = Number(args.rounds);
  for (let r = 1; r <= rounds; r++) {
    for (const method of ["GET", "PUT"] as const) {
      for (const mode of MODES) console.log(`round ${r} ${method} ${mode.padEnd(8)} ${(await cpuPerRequest(mode, method, requests)).toFixed(1)} µs CPU/request`);
    }
  }
  const idle = Number(args.idle);
  for (const mode of MODES) console.log(`idle connections ${mode.padEnd(8)} (${idle} silent, ${idle} preface only, idle timeout ${IDLE_TIMEOUT_S} s): ${await idleConnections(mode, idle)}`);
}
