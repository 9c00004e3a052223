// The data dir's LOCK against real `phalanx serve` processes: a lock is what the kernel holds for
// a live process, never what a pid in a file suggests. Each case here blocked or broke the old
// pid-file lock: a zombie holder, a reused pid, and two containers (PID namespaces) on one volume.
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, GiveUp, MAIN, TestCluster, freePort, waitFor } from "../integration/harness.ts";

let cluster: TestCluster | null = null;
/** Server pids started outside TestCluster's own tracking (behind a wrapper): killed after each test. */
const strays: number[] = [];
afterEach(async () => {
  for (const pid of strays.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  await cluster?.stopAll();
  cluster = null;
});

const procState = (pid: number): string | null => {
  try {
    // "pid (comm) S ...": the state letter follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  } catch {
    return null;
  }
};

async function exitCode(c: TestCluster, id: string): Promise<number> {
  const p = c.procs.get(id);
  if (p === undefined) throw new Error(`${id} not started`);
  return p.exited;
}

async function putAndGet(c: TestCluster, id: string, key: string): Promise<void> {
  const put = await c.request(id, "PUT", `/v1/kv/${key}`, { body: new TextEncoder().encode("v") });
  expect(put.status).toBe(200);
  const got = await c.request(id, "GET", `/v1/kv/${key}`);
  expect(got.status).toBe(200);
}

const canUnshare = Bun.spawnSync(["unshare", "--pid", "--fork", "--mount-proc", "true"]).exitCode === 0;

describe("data dir lock (real processes)", () => {
  test("a LOCK naming a zombie (killed, never reaped) does not block the restart", async () => {
    // The server runs under a parent that never waits for it (`exec sleep`), as under a container
    // init that reaps late: after kill -9 it stays a zombie, and kill(pid, 0) still succeeds.
    cluster = await TestCluster.create(1, { command: ["sh", "-c", '"$@" & echo "server-pid $!"; exec sleep 600', "sh", BUN, MAIN] });
    const c = cluster;
    const serverPid = async () => {
      const pid = await waitFor("the server's pid", () => Number(/server-pid (\d+)/.exec(c.logs.get("n1") ?? "")?.[1] ?? 0) || undefined);
      strays.push(pid);
      return pid;
    };
    const serving = () =>
      waitFor("the server to lead", async () => {
        if (/phalanx: .*in use/.test(c.logs.get("n1") ?? "")) throw new GiveUp(c.logs.get("n1"));
        return (await c.status("n1")).role === "leader";
      });
    c.start("n1");
    const pid = await serverPid();
    await serving();
    await putAndGet(c, "n1", "before");
    expect(readFileSync(join(c.node("n1").dataDir, "LOCK"), "utf8").trim()).toBe(String(pid));
    const parent = c.procs.get("n1")!;
    process.kill(pid, "SIGKILL");
    await waitFor("the killed server to be a zombie", () => procState(pid) === "Z");
    // Restart beside the zombie (its parent, sleep, still runs and never reaps it).
    c.start("n1");
    const again = await serverPid();
    expect(again).not.toBe(pid);
    await serving();
    expect(procState(pid)).toBe("Z");
    await putAndGet(c, "n1", "after");
    parent.kill("SIGKILL");
  }, 60_000);

  test("a LOCK naming a live unrelated process does not block the start", async () => {
    cluster = await TestCluster.create(1);
    const c = cluster;
    const dir = c.node("n1").dataDir;
    mkdirSync(dir, { recursive: true });
    // This test runner is alive and is not a phalanx server: a pid reused after a crash.
    writeFileSync(join(dir, "LOCK"), `${process.pid}\n`);
    c.start("n1");
    await c.waitForLeader(["n1"]);
    await putAndGet(c, "n1", "k");
  }, 30_000);

  test("a data dir in use by a running server is refused with an error naming the LOCK", async () => {
    cluster = await TestCluster.create(1);
    const c = cluster;
    c.start("n1");
    await c.waitForLeader(["n1"]);
    const second = Bun.spawn([BUN, MAIN, "serve"], {
      env: { ...process.env, NODE_ID: "n1", DATA_DIR: c.node("n1").dataDir, RPC_ADDR: `127.0.0.1:${await freePort()}`, CLUSTER_KEY: "integration-test-cluster-key" },
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(await second.exited).toBe(4);
    const err = await new Response(second.stderr).text();
    expect(err).toContain(join(c.node("n1").dataDir, "LOCK"));
    expect(err).toContain("in use by process");
    await putAndGet(c, "n1", "still-mine");
  }, 30_000);

  test.skipIf(!canUnshare)("two servers in separate PID namespaces (each PID 1): the second is refused, the first's exit frees nothing it does not hold", async () => {
    cluster = await TestCluster.create(1, { command: ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", BUN, MAIN] });
    const c = cluster;
    const dir = c.node("n1").dataDir;
    const lockPath = join(dir, "LOCK");
    const other = async (name: string) => {
      // Same node, same data dir, its own port: a second container on the same volume.
      const id = name;
      c.nodes.push({ id, addr: `127.0.0.1:${await freePort()}`, dataDir: dir });
      c.start(id, { NODE_ID: "n1", PEERS: `n1=${c.nodes.find((n) => n.id === id)!.addr}` });
      return id;
    };
    c.start("n1");
    await c.waitForLeader(["n1"]);
    expect(readFileSync(lockPath, "utf8").trim()).toBe("1"); // PID 1 in its namespace
    await putAndGet(c, "n1", "first");

    const b = await other("b");
    expect(await exitCode(c, b)).toBe(4);
    expect(c.logs.get(b)).toContain(lockPath);
    expect(c.logs.get(b)).toContain("in use by process 1");
    await putAndGet(c, "n1", "first-still");

    // The first server shuts down cleanly (SIGTERM to the server itself, inside its namespace).
    const unsharePid = c.procs.get("n1")!.pid;
    const inner = Number(readFileSync(`/proc/${unsharePid}/task/${unsharePid}/children`, "utf8").trim().split(/\s+/)[0]);
    process.kill(inner, "SIGTERM");
    expect(await exitCode(c, "n1")).toBe(0);
    expect(existsSync(lockPath)).toBe(true); // never deleted: a new inode would lock nothing

    // Now a second container takes it over and keeps it while a third is refused.
    const b2 = await other("b2");
    const b2Addr = c.node(b2).addr;
    await waitFor("the second container to serve", async () => {
      const code = c.procs.get(b2)?.exitCode;
      if (code !== null && code !== undefined) throw new GiveUp(`exited with ${code}: ${c.logs.get(b2)}`);
      const res = await c.client.request(c.client.originFor(b2Addr), { method: "GET", path: "/v1/status", timeoutMs: 1000 });
      return res.status === 200 && JSON.parse(new TextDecoder().decode(res.body)).role === "leader";
    });
    const b3 = await other("b3");
    expect(await exitCode(c, b3)).toBe(4);
    expect(c.logs.get(b3)).toContain("in use by process 1");
    const got = await c.client.request(c.client.originFor(b2Addr), { method: "GET", path: "/v1/kv/first-still", timeoutMs: 2000 });
    expect(got.status).toBe(200);
  }, 60_000);
});
