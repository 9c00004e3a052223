// How long a brand-new 3-node cluster takes from process start to a write visible on every node
// (issue 10's "a cluster that is up in under 200 ms"), over several starts, phalanx and, for
// context, etcd 3.4 measured the same way. Each start: fresh data dirs and ports, the 3 processes
// spawned together, then a write is tried (on every node in turn, 5 ms apart) until one is
// accepted, then each node is read locally (stale read: what it has applied) until all 3 return
// the value. The cluster is then killed and the next start begins.
//
// Usage: bun bench/startup.ts [--starts 10] [--systems phalanx,etcd] [--binary ./phalanx] [--token <t>]
//          [--phalanx-env KEY=VALUE ...]      (npm run bench:startup -- <flags>)
import { join } from "node:path";
import { parseArgs } from "node:util";
import { GiveUp, timeFirstWrite } from "../tests/integration/harness.ts";
import { H2Client } from "../src/transport/h2_client.ts";
import { type Cluster, ETCD_BIN, ensureDebian, exited, median, parseEnvPairs, percentile, phalanxHeaders, startEtcd, startPhalanx, stopChildren, workDir } from "./cluster.ts";

const { values: args } = parseArgs({
  args: Bun.argv.slice(2),
  options: {
    starts: { type: "string", default: "10" },
    systems: { type: "string", default: "phalanx,etcd" },
    binary: { type: "string" },
    token: { type: "string" },
    "phalanx-env": { type: "string", multiple: true, default: [] },
  },
  strict: true,
});
const STARTS = Number(args.starts);
if (!Number.isInteger(STARTS) || STARTS < 1 || STARTS > 100) throw new Error("--starts must be an integer in [1, 100]");
const SYSTEMS = args.systems.split(",");
for (const s of SYSTEMS) if (s !== "phalanx" && s !== "etcd") throw new Error(`--systems: unknown system ${s}`);
const POLL_MS = 5;
const GIVE_UP_MS = 30_000;
const KEY = "bench-startup-probe";
const VALUE = new TextEncoder().encode("up");

interface Probe {
  /** Tries the write once on member i; true when it was applied. */
  write(i: number): Promise<boolean>;
  /** Member i's local (stale) read of the probe key; true when it holds the value. */
  sees(i: number): Promise<boolean>;
  close(): Promise<void>;
}

function phalanxProbe(c: Cluster): Probe {
  const h2 = new H2Client({ connectTimeoutMs: 200 });
  const headers = phalanxHeaders(args.token);
  const req = (i: number, method: string, path: string, body?: Uint8Array) =>
    h2.request(h2.originFor(c.addrs[i]!), {
      method,
      path,
      headers: body === undefined ? headers : { ...headers, "content-type": "application/octet-stream" },
      ...(body === undefined ? {} : { body }),
      timeoutMs: 1000,
    });
  return {
    write: async (i) => (await req(i, "PUT", `/v1/kv/${KEY}`, VALUE)).status === 200,
    sees: async (i) => {
      const r = await req(i, "GET", `/v1/kv/${KEY}?raw&consistency=stale`);
      return r.status === 200 && Buffer.from(r.body).equals(VALUE);
    },
    close: () => h2.close(),
  };
}

/** etcd through its HTTP/1.1 JSON gateway: fine for a readiness probe, which measures no throughput. */
function etcdProbe(c: Cluster): Probe {
  const b64 = (b: Uint8Array | string) => Buffer.from(b).toString("base64");
  const post = (i: number, path: string, body: unknown) =>
    fetch(`http://${c.addrs[i]}${path}`, { method: "POST", body: JSON.stringify(body), signal: AbortSignal.timeout(1000) });
  return {
    write: async (i) => (await post(i, "/v3/kv/put", { key: b64(KEY), value: b64(VALUE) })).ok,
    sees: async (i) => {
      const r = await post(i, "/v3/kv/range", { key: b64(KEY), serializable: true });
      const j = (await r.json()) as { kvs?: { value?: string }[] };
      return r.ok && j.kvs?.[0]?.value === b64(VALUE);
    },
    close: async () => {},
  };
}

interface Timing {
  writeMs: number;
  allMs: number;
}

async function once(system: string, root: string): Promise<Timing> {
  const c =
    system === "etcd"
      ? await startEtcd(root)
      : await startPhalanx(root, { ...(args.binary === undefined ? {} : { binary: args.binary }), env: parseEnvPairs(args["phalanx-env"]) });
  const probe = system === "etcd" ? etcdProbe(c) : phalanxProbe(c);
  const alive = () => {
    const down = exited(c);
    if (down !== null) throw new GiveUp(down);
  };
  try {
    return await timeFirstWrite({ nodes: c.addrs.length, write: probe.write, sees: probe.sees, alive }, c.startedAt, { everyMs: POLL_MS, timeoutMs: GIVE_UP_MS });
  } finally {
    await probe.close();
    // The data is thrown away: no graceful shutdown needed.
    await stopChildren(c.procs, 0);
  }
}

const summary = (xs: number[]) =>
  `min ${Math.min(...xs).toFixed(0)} · median ${median(xs).toFixed(0)} · p90 ${percentile(xs, 90).toFixed(0)} · max ${Math.max(...xs).toFixed(0)} ms`;

const { root, keep, interrupted } = workDir("phalanx-startup-");
try {
  if (SYSTEMS.includes("etcd")) ensureDebian([{ pkg: "etcd-server", file: ETCD_BIN }]);
  const results = new Map<string, Timing[]>(SYSTEMS.map((s) => [s, []]));
  // Alternated start by start, so that both systems see the same machine.
  for (let n = 1; n <= STARTS; n++) {
    for (const system of SYSTEMS) {
      const t = await once(system, join(root, `${system}-${n}`));
      results.get(system)!.push(t);
      process.stderr.write(`${system} start ${n}: write accepted ${t.writeMs.toFixed(0)} ms, on all 3 nodes ${t.allMs.toFixed(0)} ms\n`);
    }
  }
  const lines = [
    `3 nodes on loopback, fresh data dirs, ${STARTS} starts each, from spawning the 3 processes:`,
    "",
    "| system | write accepted | write visible on all 3 nodes |",
    "|---|---|---|",
    ...SYSTEMS.map((s) => {
      const r = results.get(s)!;
      return `| ${s === "etcd" ? "etcd 3.4" : `phalanx (${args.binary ?? "bun main.ts"})`} | ${summary(r.map((t) => t.writeMs))} | ${summary(r.map((t) => t.allMs))} |`;
    }),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
} catch (err) {
  keep();
  // After Ctrl-C the children were killed under the run: that failure is ours, not news.
  if (!interrupted()) process.stderr.write(`startup: ${err instanceof Error ? err.message : String(err)} (logs kept in ${root})\n`);
  await stopChildren();
  process.exitCode = 1;
}
