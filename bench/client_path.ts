// `bun bench/client_path.ts [--n 10000] [--rounds 5] [--conc 16] [--only fetch|forwarded|propose|h2] [--routes "lin GET,PUT"]`: the CPU that
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
//   forwarded  node.runForwarded(...) as the leader runs a Forward frame from a follower (n2): the
//          leader's side of a forwarded request without the peer stream (bench/forward_hop.ts
//          measures the hop itself).
//   propose  node.propose() of the same put, no HTTP at all (PUT only): with "forwarded", the app's
//          share of a forward.
//   h2     the node served by serveApp on loopback h2c, driven by a child process (node:http2,
//          `conc` streams on one session): only the server process's CPU is counted, as with the
//          Go load generator (bench/loadgen against one node), without its ±20% swings.
// Prints CPU µs per request (user + system, process.cpuUsage) for each route and round, then the
// median over rounds. `--against <checkout>` serves a second node from that tree's src/ in the
// same process and alternates the two round by round: a before/after that sees the same machine
// load (e.g. `git worktree add /tmp/base main`, or `git archive main | tar -x -C /tmp/base`
// with node_modules linked). Every loop is bounded by --n; the child exits when its requests are done.
import http2 from "node:http2";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitFor } from "../tests/integration/harness.ts";
import { median } from "./cluster.ts";

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
/** `--against <checkout>`: a second node built from that tree's src/, alternated round by round. */
const against = arg("against", "");

interface Served {
  label: string;
  port: number;
  fetch: (req: Request) => Response | Promise<Response>;
  node: import("../src/node/node.ts").PhalanxNode;
  stop: () => Promise<void>;
}

/** One node from the src/ of `root` (this checkout, or --against's), served on loopback h2c. */
async function serveNode(root: string, label: string, dir: string): Promise<Served> {
  const api = (await import(join(root, "src/api/app.ts"))) as typeof import("../src/api/app.ts");
  const config = (await import(join(root, "src/node/config.ts"))) as typeof import("../src/node/config.ts");
  const logs = (await import(join(root, "src/node/log.ts"))) as typeof import("../src/node/log.ts");
  const nodes = (await import(join(root, "src/node/node.ts"))) as typeof import("../src/node/node.ts");
  const transport = (await import(join(root, "src/transport/server.ts"))) as typeof import("../src/transport/server.ts");
  const port = await freePort();
  const log = logs.createLogger("n1", { minLevel: "warn" });
  const node = nodes.PhalanxNode.open(config.resolveConfig({ id: "n1", dataDir: join(dir, label), rpcAddr: `127.0.0.1:${port}` }), log);
  const app = api.nodeApp(node, log);
  const server = await transport.serveApp(app, { listen: `127.0.0.1:${port}`, streamRoutes: api.nodeStreams(node, log) });
  node.run();
  await waitFor(`${label} to lead`, () => node.leader()?.id === "n1", 10_000, 5);
  await waitFor(`${label} to hold its lease`, () => node.holdsLease(), 10_000, 5);
  return {
    label,
    port,
    fetch: (req) => app.fetch(req),
    node,
    stop: async () => {
      await server.close();
      await node.stop();
    },
  };
}

async function fetchOne(s: Served, route: Route, i: number): Promise<void> {
  const init: RequestInit = route.method === "PUT" ? { method: "PUT", body: VALUE, headers: { "content-type": "application/octet-stream" } } : {};
  const res = await s.fetch(new Request(`http://127.0.0.1:${s.port}${route.path(i)}`, init));
  await res.arrayBuffer();
  if (res.status !== 200) throw new Error(`${route.name}: status ${res.status}`);
}

async function forwardedOne(s: Served, route: Route, i: number): Promise<void> {
  const put = route.method === "PUT";
  const headers: Record<string, string> = put ? { "content-type": "application/octet-stream" } : {};
  const req = { method: route.method, path: route.path(i), headers, body: put ? VALUE : null, timeoutMs: 5000 };
  const a = await s.node.runForwarded(req, "n2");
  if (a.status !== 200) throw new Error(`${route.name} forwarded: status ${a.status}`);
}

async function forwardedRound(s: Served, route: Route): Promise<number> {
  const c0 = cpuUs();
  await closedLoop(n, conc, (i) => forwardedOne(s, route, i));
  return (cpuUs() - c0) / n;
}

async function proposeRound(s: Served, route: Route): Promise<number> {
  if (route.method !== "PUT") return 0;
  const c0 = cpuUs();
  await closedLoop(n, conc, async (i) => {
    const o = await s.node.propose({ op: "put", key: `bench-${i % KEYS}`, value: VALUE }, null, 5000);
    if (o.kind !== "applied") throw new Error(`propose: ${o.kind}`);
  });
  return (cpuUs() - c0) / n;
}

async function fetchRound(s: Served, route: Route): Promise<number> {
  const c0 = cpuUs();
  await closedLoop(n, conc, (i) => fetchOne(s, route, i));
  return (cpuUs() - c0) / n;
}

async function h2Round(s: Served, route: Route): Promise<number> {
  const [c0, s0] = [cpuUs(), sysUs()];
  const child = Bun.spawn([process.execPath, import.meta.path, "--client", String(s.port), route.name, String(n), String(conc)], { stdout: "pipe", stderr: "inherit" });
  const out = await new Response(child.stdout).text();
  await child.exited;
  const us = (cpuUs() - c0) / n;
  // BENCH_SYS=1: how much of it is the kernel's (socket writes, fsync).
  if (process.env.BENCH_SYS === "1") console.log(`  ${s.label} ${route.name}: ${us.toFixed(1)} µs, of which system ${((sysUs() - s0) / n).toFixed(1)}`);
  if (out.trim() !== "0") throw new Error(`${route.name} over h2: ${out.trim()} requests failed`);
  return us;
}

const dir = mkdtempSync(join(tmpdir(), "phalanx-client-path-"));
const served: Served[] = [];
try {
  served.push(await serveNode(join(import.meta.dir, ".."), "this", dir));
  if (against !== "") served.push(await serveNode(against, "against", dir));
  // The keys the reads find; also the JIT's warm-up for the write path.
  for (const s of served) await closedLoop(KEYS, conc, (i) => fetchOne(s, PUT, i));
  const ways: [string, (s: Served, r: Route) => Promise<number>][] = [
    ["fetch", fetchRound],
    ["forwarded", forwardedRound],
    ["propose", proposeRound],
    ["h2", h2Round],
  ];
  console.log(`client path: 1 node, ${n} requests per route and round, ${conc} in flight, ${rounds} rounds (CPU µs per request)`);
  for (const [way, round] of ways) {
    if (only !== "" && only !== way) continue;
    for (const s of served) for (const route of ROUTES) await round(s, route); // warm-up round, not counted
    const results = new Map<string, number[]>();
    // Round by round, each node in turn: both see the same machine load (it swings on 2 shared cores).
    for (let k = 0; k < rounds; k++) {
      for (const s of k % 2 === 0 ? served : [...served].reverse()) {
        for (const route of ROUTES) {
          const key = `${s.label} ${route.name}`;
          results.set(key, [...(results.get(key) ?? []), await round(s, route)]);
        }
      }
    }
    for (const route of ROUTES) {
      for (const s of served) {
        const xs = results.get(`${s.label} ${route.name}`)!;
        const who = served.length > 1 ? `${s.label.padEnd(8)}` : "";
        console.log(`${way.padEnd(9)} ${who}${route.name.padEnd(9)} median ${median(xs).toFixed(1).padStart(6)} µs  (rounds: ${xs.map((x) => x.toFixed(1)).join(", ")})`);
      }
    }
  }
} finally {
  for (const s of served) await s.stop();
  rmSync(dir, { recursive: true, force: true });
}
