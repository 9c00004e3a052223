// The compiled binary, built by compile.sh into a temp dir with no node_modules beside it:
// help and exit codes, a 3-node cluster of binary processes driven by the binary's own CLI,
// graceful SIGTERM, and `phalanx dev` started and stopped with Ctrl-C (SIGINT), serving the
// embedded cluster view.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import pkg from "../../package.json" with { type: "json" };
import { freePort, TestCluster, waitFor } from "./harness.ts";

const ROOT = join(import.meta.dir, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "phalanx-bin-"));
const bin = join(dir, "phalanx");
let cluster: TestCluster | null = null;
const extra: Subprocess[] = [];

beforeAll(() => {
  const built = Bun.spawnSync(["bash", join(ROOT, "compile.sh"), bin], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  if (built.exitCode !== 0) throw new Error(`compile.sh failed: ${built.stderr.toString()}`);
}, 120_000);

afterAll(async () => {
  for (const p of extra) p.kill("SIGKILL");
  await Promise.all(extra.map((p) => p.exited));
  await cluster?.stopAll();
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): { code: number; out: string; err: string } {
  const r = Bun.spawnSync([bin, ...args], { cwd: dir, stdout: "pipe", stderr: "pipe", env: { ...process.env, PHALANX_ADDR: "" } });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

test("help, usage errors and an unreachable server give one line and an exit code", async () => {
  expect(run(["--help"]).code).toBe(0);
  for (const sub of [["serve"], ["kv"], ["kv", "put"], ["kv", "txn"], ["kv", "watch"], ["lease"], ["lock"], ["elect"], ["status"], ["members"], ["leader"], ["dev"], ["bench"], ["snapshot"], ["recover"]]) {
    const r = run([...sub, "--help"]);
    expect(r.code).toBe(0);
    expect(r.out).toContain("usage: phalanx");
  }
  expect(run(["frobnicate"]).code).toBe(2);
  const closed = await freePort();
  const r = run(["kv", "get", "x", "--addr", `127.0.0.1:${closed}`, "--timeout", "800"]);
  expect(r.code).toBe(3);
  expect(r.err.trim().split("\n").length).toBe(1);
  expect(r.err).toContain("cannot reach any server");
}, 20_000);

test("a cluster of compiled binaries, used through the binary's CLI", async () => {
  cluster = await TestCluster.create(3, { command: [bin] });
  cluster.startAll();
  try {
    const leader = await cluster.waitForLeader(["n1", "n2", "n3"]);
    const follower = cluster.nodes.find((n) => n.id !== leader)!;
    const addrs = cluster.nodes.map((n) => n.addr).join(",");
    expect(run(["kv", "put", "bin/a", "one", "--addr", follower.addr]).out).toContain("OK revision=");
    const got = run(["kv", "get", "bin/a", "--addr", addrs]);
    expect(got.code).toBe(0);
    expect(got.out).toBe("one\n");
    const json = JSON.parse(run(["kv", "get", "bin/a", "--json", "--addr", follower.addr]).out);
    expect(json.kv.modRevision).toBeGreaterThan(0);
    expect(run(["kv", "cas", "bin/a", "two", "--prev-value", "nope", "--addr", addrs]).code).toBe(1);
    expect(run(["kv", "cas", "bin/a", "two", "--prev-value", "one", "--addr", addrs]).code).toBe(0);
    expect(run(["kv", "list", "bin/", "--addr", addrs]).out).toContain("two");
    expect(run(["kv", "get", "bin/missing", "--addr", addrs]).code).toBe(1);
    expect(run(["status", "--addr", follower.addr]).out).toContain(`leader ${leader}`);
    const target = cluster.nodes.find((n) => n.id !== leader && n.id !== follower.id)!.id;
    expect(run(["leader", "transfer", target, "--addr", follower.addr]).out).toContain(`leader is now ${target}`);
    // An unreachable first endpoint fails over to the next.
    const closed = await freePort();
    expect(run(["kv", "get", "bin/a", "--addr", `127.0.0.1:${closed},${addrs}`]).out).toBe("two\n");
    const bench = JSON.parse(run(["bench", "--duration", "1", "--concurrency", "4", "--json", "--addr", addrs]).out);
    expect(bench.ops).toBeGreaterThan(0);
    console.log(`binary bench (1 s, 4 workers, 50% reads): ${bench.opsPerSec} ops/s, p50 ${bench.latencyMs.p50} ms, p99 ${bench.latencyMs.p99} ms`);
    // kvfeatures through the binary: a lease, a lock running a command, a watch from a revision.
    const lease = JSON.parse(run(["lease", "grant", "30", "--json", "--addr", addrs]).out);
    expect(run(["kv", "put", "bin/leased", "x", "--lease", String(lease.id), "--addr", addrs]).code).toBe(0);
    const locked = run(["lock", "bin/lock", "--addr", addrs, "--", "sh", "-c", 'echo "rev=$PHALANX_LOCK_REVISION"']);
    expect(locked.code).toBe(0);
    expect(locked.out).toMatch(/^rev=\d+\n$/);
    const watched = Bun.spawn([bin, "kv", "watch", "bin/leased", "--rev", "1", "--json", "--addr", addrs], { stdout: "pipe", stderr: "pipe" });
    extra.push(watched);
    expect(run(["lease", "revoke", String(lease.id), "--addr", addrs]).code).toBe(0);
    const reader = watched.stdout.getReader();
    let seen = "";
    // Bounded: ends when the delete arrives or the stream ends.
    for (let r = await reader.read(); !r.done; r = await reader.read()) {
      seen += new TextDecoder().decode(r.value);
      if (seen.includes('"delete"')) break;
    }
    expect(seen).toContain('"delete"');
    watched.kill("SIGTERM");
    expect(await watched.exited).toBe(0);
    // Graceful stop: SIGTERM exits 0 and logs a clean shutdown.
    const proc = cluster.procs.get("n1")!;
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await waitFor("the shutdown log line", () => cluster!.logs.get("n1")!.includes("stopped applied="));
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);

async function freeBase(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = [base, base + 1, base + 2, base + 100, base + 101, base + 102];
    const ok = await Promise.all(ports.map((p) => isFree(p)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error("no free port range for phalanx dev");
}

async function isFree(port: number): Promise<boolean> {
  const { createServer } = await import("node:net");
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
}

test("phalanx dev starts a local cluster and Ctrl-C stops it", async () => {
  const base = await freeBase();
  const dev = Bun.spawn([bin, "dev", "--nodes", "3", "--base-port", String(base)], { cwd: dir, stdout: "pipe", stderr: "pipe" });
  extra.push(dev);
  const addrs = [0, 1, 2].map((i) => `127.0.0.1:${base + i}`).join(",");
  await waitFor("the dev cluster to serve a write", () => run(["kv", "put", "dev", "ok", "--addr", addrs, "--timeout", "1000"]).code === 0, 20_000, 100);
  const ready = await waitFor("readyz", async () => (await fetch(`http://127.0.0.1:${base + 100}/readyz`)).status === 200, 5000);
  expect(ready).toBe(true);
  // The version is embedded in the compiled binary (no package.json beside it).
  const metrics = await (await fetch(`http://127.0.0.1:${base + 100}/metrics`)).text();
  expect(metrics).toContain(`phalanx_build_info{version="${pkg.version}",`);
  // The cluster view is embedded in the binary, and its node-to-node route works there too.
  const page = await fetch(`http://127.0.0.1:${base + 100}/ui`);
  expect(page.status).toBe(200);
  expect(await page.text()).toContain("<title>phalanx");
  const view = await waitFor("the cluster view with all 3 members", async () => {
    const v = (await (await fetch(`http://127.0.0.1:${base + 100}/ui/cluster.json`)).json()) as { nodes: { ok: boolean }[]; leader: string | null };
    return v.nodes.length === 3 && v.nodes.every((x) => x.ok) && v.leader !== null ? v : undefined;
  }, 5000);
  expect(view.nodes.length).toBe(3);
  dev.kill("SIGINT");
  expect(await dev.exited).toBe(0);
  expect(await new Response(dev.stdout as ReadableStream).text()).toContain("phalanx kv put hello world");
  // Every node is gone: nothing answers on their ports.
  expect(run(["kv", "get", "dev", "--addr", addrs, "--timeout", "500"]).code).toBe(3);
}, 40_000);
