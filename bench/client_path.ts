// `bun bench/client_path.ts [--n 10000] [--rounds 5] [--conc 16] [--only fetch|h2] [--routes "lin GET,PUT"]`: the CPU that
// one node spends per client request, measured in process (steadier than a load generator on a
// shared 2-core machine). One real node (n1, a lone voter, production tick) on a temp data dir,
// fsync on, 1,000 keys of 100 bytes, then for each route a bounded number of requests:
//   - stale GET    GET /v1/kv/<key>?raw&consistency=stale
//   - lin GET      GET /v1/kv/<key>?raw              (linearizable: the leader's lease)
//   - PUT          PUT /v1/kv/<key>, 100 raw bytes   (propose + persist + apply + answer)
// Two ways in:
//   fetch  app.fetch(new Request(...)) on the node's Hono app: no sockets, no HTTP/2. The client's
//          work (building Requests, reading answers) is in the figure too, so it is an upper bound
//          on the app's cost; it moves with every change to our code and little else.
//   h2     the node served by serveApp on loopback h2c, driven by a child process (node:http2,
//          `conc` streams on one session): only the server process's CPU is counted, as with the
//          Go load generator (tools/one.sh), without its ±20% swings.
// Prints CPU µs per request (user + system, process.cpuUsage) for each route and round, then the
// median over rounds. Every loop is bounded by --n; the child exits when its requests are done.
import http2 from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nodeApp, nodeStreams } from "../src/api/app.ts";
import { resolveConfig } from "../src/node/config.ts";
import { createLogger } from "../src/node/log.ts";
import { PhalanxNode } from "../src/node/node.ts";
import { serveApp } from "../src/transport/server.ts";
import { freePort, waitFor } from "../tests/integration/harness.ts";

const KEYS = 1000;
const VALUE = new Uint8Array(100).fill(0x61);

interface Route {
  name: string;
  method: "GET" | "PUT";
  path: (i: number) => string;
}

const ALL_ROUTES: Route[] = [
  { name: "stale GET", method: "GET", path: (i) => `/v1/kv/bench-${i % KEYS}?raw&consistency=stale` },
  { name: "lin GET", method: "GET", path: (i) => `/v1/kv/bench-${i % KEYS}?raw` },
  { name: "PUT", method: "PUT", path: (i) => `/v1/kv/bench-${i % KEYS}` },
];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : process.argv[i + 1]!;
}

/** `--routes "lin GET,PUT"`: which routes, in which order (default: all three). */
const ROUTES = arg("routes", ALL_ROUTES.map((r) => r.name).join(",")).split(",").map((name) => {
  const r = ALL_ROUTES.find((x) => x.name === name.trim());
  if (r === undefined) throw new Error(`no route ${name}; routes: ${ALL_ROUTES.map((x) => x.name).join(", ")}`);
  return r;
});
const PUT = ALL_ROUTES.find((r) => r.method === "PUT")!;

/** Runs `n` requests, `conc` at a time; each `one(i)` must resolve when its answer is read. */
async function closedLoop(n: number, conc: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < n) await one(next++);
  };
  await Promise.all(Array.from({ length: conc }, worker));
}

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

function sysUs(): number {
  return process.cpuUsage().system;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// ---- the child: an h2c client that sends `n` requests of one route and exits ----
if (process.argv[2] === "--client") {
  const [port, routeName, n, conc] = [Number(process.argv[3]), process.argv[4]!, Number(process.argv[5]), Number(process.argv[6])];
  const route = ALL_ROUTES.find((r) => r.name === routeName)!;
  const session = http2.connect(`http://127.0.0.1:${port}`);
  let failed = 0;
  await closedLoop(n, conc, (i) =>
    new Promise<void>((resolve) => {
      const headers: http2.OutgoingHttpHeaders = { ":method": route.method, ":path": route.path(i) };
      if (route.method === "PUT") headers["content-type"] = "application/octet-stream";
      const s = session.request(headers, { endStream: route.method !== "PUT" });
      s.on("response", (h) => {
        if (h[":status"] !== 200) failed++;
      });
      s.on("data", () => undefined);
      s.on("close", () => resolve());
      s.on("error", () => undefined);
      if (route.method === "PUT") s.end(VALUE);
    }),
  );
  session.close();
  process.stdout.write(`${failed}\n`);
  process.exit(0);
}

// ---- the server side ----
const n = Number(arg("n", "10000"));
const rounds = Number(arg("rounds", "5"));
const conc = Number(arg("conc", "16"));
const only = arg("only", "");
const dir = mkdtempSync(join(tmpdir(), "phalanx-client-path-"));
const port = await freePort();
const log = createLogger("n1", { minLevel: "warn" });
const node = PhalanxNode.open(resolveConfig({ id: "n1", dataDir: join(dir, "d"), rpcAddr: `127.0.0.1:${port}` }), log);
const app = nodeApp(node, log);
const server = await serveApp(app, { listen: `127.0.0.1:${port}`, streamRoutes: nodeStreams(node, log) });
node.run();
await waitFor("n1 to lead", () => node.leader()?.id === "n1", 10_000, 5);
await waitFor("n1 to hold its lease", () => node.holdsLease(), 10_000, 5);

async function fetchOne(route: Route, i: number): Promise<void> {
  const init: RequestInit = route.method === "PUT" ? { method: "PUT", body: VALUE, headers: { "content-type": "application/octet-stream" } } : {};
  const res = await app.fetch(new Request(`http://127.0.0.1:${port}${route.path(i)}`, init));
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${route.name}: status ${res.status}`);
}

async function fetchRound(route: Route): Promise<number> {
  const c0 = cpuUs();
  await closedLoop(n, conc, (i) => fetchOne(route, i));
  return (cpuUs() - c0) / n;
}

async function h2Round(route: Route): Promise<number> {
  const [c0, s0] = [cpuUs(), sysUs()];
  const child = Bun.spawn([process.execPath, import.meta.path, "--client", String(port), route.name, String(n), String(conc)], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(child.stdout).text();
  await child.exited;
  const us = (cpuUs() - c0) / n;
  // BENCH_SYS=1: how much of it is the kernel's (socket writes, fsync).
  if (process.env.BENCH_SYS === "1") console.log(`  ${route.name}: ${us.toFixed(1)} µs, of which system ${((sysUs() - s0) / n).toFixed(1)}`);
  if (out.trim() !== "0") throw new Error(`${route.name} over h2: ${out.trim()} requests failed`);
  return us;
}

try {
  // The keys the reads find; also the JIT's warm-up for the write path.
  await closedLoop(KEYS, conc, (i) => fetchOne(PUT, i));
  const ways: [string, (r: Route) => Promise<number>][] = [
    ["fetch", fetchRound],
    ["h2", h2Round],
  ];
  console.log(`client path: 1 node, ${n} requests per route and round, ${conc} in flight, ${rounds} rounds (CPU µs per request)`);
  for (const [way, round] of ways) {
    if (only !== "" && only !== way) continue;
    for (const route of ROUTES) await round(route); // warm-up round, not counted
    const results = new Map<string, number[]>(ROUTES.map((r) => [r.name, []]));
    for (let k = 0; k < rounds; k++) for (const route of ROUTES) results.get(route.name)!.push(await round(route));
    for (const route of ROUTES) {
      const xs = results.get(route.name)!;
      console.log(`${way.padEnd(5)} ${route.name.padEnd(9)} median ${median(xs).toFixed(1).padStart(6)} µs  (rounds: ${xs.map((x) => x.toFixed(1)).join(", ")})`);
    }
  }
} finally {
  await server.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
}
