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
  const serveHelp = run(["serve", "--help"]).out;
  expect(serveHelp).toContain("--rpc-addr <v>");
  expect(serveHelp.replace(/\s+/g, " ")).toContain("RPC_ADDR listen address for peers and clients");
  expect(serveHelp).toContain("(default 127.0.0.1:9000)");
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
    expect(got.out).toBe("one"); // stdout is a pipe: the value's bytes exactly
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
    expect(run(["kv", "get", "bin/a", "--addr", `127.0.0.1:${closed},${addrs}`]).out).toBe("two");
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
    // endpoint status --cluster: every member asked on its own, one row each. All three name the
    // same leader, the one row whose role is leader: the transfer's target, unless the leader
    // stepped down meanwhile (a loaded CI disk once took 883 ms for an fsync, and check-quorum
    // let another node take over), so the rows are read again until the members agree.
    type Row = { id: string; version: string; role: string; leader: string; dbSizeBytes: number; error: null };
    const rows = await waitFor("every member to name one leader", () => {
      const r = JSON.parse(run(["endpoint", "status", "--cluster", "--json", "--addr", follower.addr]).out) as Row[];
      const leaders = r.filter((x) => x.role === "leader").map((x) => x.id);
      return leaders.length === 1 && r.every((x) => x.leader === leaders[0]) ? r : undefined;
    });
    expect(rows.map((r) => r.id).sort()).toEqual(["n1", "n2", "n3"]);
    expect(rows.every((r) => r.version === pkg.version && r.error === null && r.dbSizeBytes > 0)).toBe(true);
    expect(rows.filter((r) => r.role === "leader").length).toBe(1);
    const healthy = run(["endpoint", "health", "--cluster", "--addr", follower.addr]);
    expect(healthy.code).toBe(0);
    expect(healthy.out.trim().split("\n").filter((l) => l.includes("is healthy")).length).toBe(3);
    // Graceful stop: SIGTERM exits 0 and logs a clean shutdown.
    const proc = cluster.procs.get("n1")!;
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    await waitFor("the shutdown log line", () => cluster!.logs.get("n1")!.includes("stopped applied="));
    // One member down: its row says why, and the exit code says not every endpoint answered.
    const down = run(["endpoint", "status", "--cluster", "--addr", cluster.nodes.filter((n) => n.id !== "n1").map((n) => n.addr).join(",")]);
    expect(down.code).toBe(3);
    expect(down.out).toMatch(/n1.*connection refused|127\.0\.0\.1:\d+ +- +- .*connection refused/);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);

function runWith(args: string[], stdin: Uint8Array | string): { code: number; out: Buffer; err: string } {
  const r = Bun.spawnSync([bin, ...args], { cwd: dir, stdin: Buffer.from(stdin), stdout: "pipe", stderr: "pipe", env: { ...process.env, PHALANX_ADDR: "" } });
  return { code: r.exitCode ?? -1, out: r.stdout, err: r.stderr.toString() };
}

test("CLI habits: version, typos, fast failure, http:// endpoints, stdin values, exact bytes, list cells, idempotent del", async () => {
  expect(run(["version"]).out).toBe(`phalanx ${pkg.version} (bun ${Bun.version})\n`);
  expect(run(["--version"]).out).toBe(run(["version"]).out);
  const typo = run(["stauts"]);
  expect(typo.code).toBe(2);
  expect(typo.err).toBe('phalanx: unknown command "stauts"; did you mean "status"? (phalanx --help lists them)\n');
  const flag = run(["kv", "get", "x", "--jsno"]);
  expect(flag.code).toBe(2);
  expect(flag.err.split("\n")[0]).toBe('phalanx: unknown option --jsno; did you mean "--json"?');
  expect(flag.err.trim().split("\n").length).toBe(2); // the message and the usage line, not the whole help
  // A refused connection or an unknown name fails at once, not after the 10 s default timeout.
  const closed = await freePort();
  const t0 = performance.now();
  const refused = run(["kv", "get", "x", "--addr", `http://127.0.0.1:${closed}`]);
  expect(performance.now() - t0).toBeLessThan(3000);
  expect(refused.code).toBe(3);
  expect(refused.err).toBe(`phalanx: cannot reach any server: 127.0.0.1:${closed}: connection refused (is phalanx running there?)\n`);
  const t1 = performance.now();
  const both = run(["kv", "get", "x", "--addr", `127.0.0.1:${closed},no-such-host.invalid:9000`]);
  expect(performance.now() - t1).toBeLessThan(5000);
  expect(both.code).toBe(3);
  expect(both.err).toContain("no-such-host.invalid:9000: unknown host name (DNS lookup failed)");

  const one = await TestCluster.create(1, { command: [bin] });
  one.startAll();
  try {
    await one.waitForLeader(["n1"]);
    const addr = `http://${one.node("n1").addr}`;
    const bytes = new Uint8Array([0x61, 0x0a, 0x00, 0xff, 0x62]);
    expect(runWith(["kv", "put", "blob", "--addr", addr], bytes).code).toBe(0);
    expect(new Uint8Array(runWith(["kv", "get", "blob", "--addr", addr], "").out)).toEqual(bytes);
    expect(runWith(["kv", "put", "dash", "-", "--addr", addr], "from stdin\n").code).toBe(0);
    expect(runWith(["kv", "get", "dash", "--raw", "--addr", addr], "").out.toString()).toBe("from stdin\n");
    expect(run(["kv", "put", "forged", `x\nfake-row 99 evil ${"y".repeat(200)}`, "--addr", addr]).code).toBe(0);
    const list = run(["kv", "list", "--addr", addr]).out.split("\n").filter((l) => l !== "");
    expect(list.length).toBe(4); // header + three keys: no row forged by a newline
    const forged = list.find((l) => l.startsWith("forged"))!;
    expect(forged).toContain("x\\nfake-row 99 evil");
    expect(forged.endsWith("…")).toBe(true);
    expect(run(["kv", "del", "absent", "--addr", addr]).code).toBe(1);
    expect(run(["kv", "del", "absent", "--ignore-missing", "--addr", addr]).code).toBe(0);
    // Plain HTTP/1.1 on the binary's port.
    const plain = Bun.spawnSync(["curl", "-sS", "--http1.1", `${addr}/v1/kv/dash?raw`], { stdout: "pipe", stderr: "pipe" });
    expect(plain.stdout.toString()).toBe("from stdin\n");
  } catch (err) {
    console.log(one.dumpLogs());
    throw err;
  } finally {
    await one.stopAll();
  }
}, 40_000);

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
