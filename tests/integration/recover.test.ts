// Losing a majority for good, on real processes: `phalanx recover --force-new-cluster` refuses
// while the node runs and while a quorum of the old voters answers; once two of three nodes are
// killed for good, it turns the survivor into a one-voter cluster that serves every write
// acknowledged before the kill, and takes new writes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, TestCluster, waitFor } from "./harness.ts";

const ids = ["n1", "n2", "n3"];
let cluster: TestCluster;

beforeAll(async () => {
  cluster = await TestCluster.create(3, { env: { SNAPSHOT_EVERY: "100", CATCHUP_ENTRIES: "20" } });
  cluster.startAll();
});

afterAll(async () => {
  await cluster.stopAll();
});

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([BUN, MAIN, ...args], { stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

const recoverN1 = (...extra: string[]) => cli(["recover", "--data-dir", cluster.node("n1").dataDir, "--id", "n1", "--probe-timeout-ms", "1000", ...extra]);

test("recover refuses while the node runs, and while a quorum of the old voters answers", async () => {
  try {
    await cluster.waitForLeader(ids);
    const running = await recoverN1("--force-new-cluster");
    expect(running.code).toBe(4);
    expect(running.err).toContain("is in use by process");
    // n1 stopped, n2 and n3 still up: they are a quorum of three, so no new cluster may be forced.
    await cluster.kill("n1");
    const quorum = await recoverN1("--force-new-cluster");
    expect(quorum.code).toBe(4);
    expect(quorum.err).toContain("refusing: 2 of the other voters (n2,n3) answer");
    expect(readdirSync(cluster.node("n1").dataDir).some((f) => f.includes("before-recovery"))).toBe(false);
    cluster.start("n1");
    await cluster.waitForLeader(ids);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 40_000);

test("two of three killed for good: the recovered survivor serves every acknowledged write", async () => {
  try {
    let leader = await cluster.waitForLeader(ids);
    // The survivor must be the node with the longest log (the operator's rule, see the guide):
    // here the leader, so every write acknowledged is in its log.
    if (leader !== "n1") {
      const t = await cluster.request(leader, "POST", "/v1/leader/transfer?to=n1");
      expect(t.status).toBe(200);
      leader = await cluster.waitForLeader(ids);
    }
    expect(leader).toBe("n1");
    const acked = new Map<string, string>();
    let killed = false;
    let next = 0;
    const total = 2000;
    // Bounded writer: at most `total` writes; a worker stops at its first failure (after the kill).
    const worker = async (w: number) => {
      while (next < total) {
        const i = next++;
        const key = `acked/${String(i).padStart(5, "0")}`;
        const res = await cluster.request("n1", "PUT", `/v1/kv/${key}`, { json: { value: `v${i}.${w}` }, headers: { "x-phalanx-timeout-ms": "1500" }, timeoutMs: 3000 });
        if (res.status === 200) acked.set(key, `v${i}.${w}`);
        else if (killed) return;
        else throw new Error(`write ${key} failed before the kill: HTTP ${res.status}`);
      }
    };
    const writers = Promise.all([0, 1, 2, 3].map(worker));
    await waitFor("writes to be acknowledged", () => acked.size >= 150, 20_000);
    killed = true;
    await Promise.all([cluster.kill("n2"), cluster.kill("n3")]);
    await writers;
    await cluster.kill("n1");
    console.log(`${acked.size} writes acknowledged before n2 and n3 were killed`);

    const dry = await recoverN1("--dry-run");
    expect(dry.code).toBe(0);
    expect(dry.err).toContain("dry run: nothing changed");
    const r = await recoverN1("--force-new-cluster");
    expect(r.err).toContain("WARNING: forcing a new cluster");
    expect(r.code).toBe(0);
    expect(r.out).toContain("with n1 as its only voter");
    // The data file as it was is kept, whole: it still opens as the old 3-voter node's data.
    const kept = readdirSync(cluster.node("n1").dataDir).filter((f) => f.startsWith("before-recovery-"));
    expect(kept.length).toBe(1);
    const old = await cli(["recover", "--data-dir", join(cluster.node("n1").dataDir, kept[0]!), "--id", "n1", "--dry-run", "--probe-timeout-ms", "300"]);
    expect(old.err).toContain("voters n1,n2,n3");

    cluster.start("n1");
    await cluster.waitForLeader(["n1"]);
    const s = await cluster.status("n1");
    expect(s.leader).toBe("n1");
    const members = await cluster.request("n1", "GET", "/v1/members");
    expect(members.json.members.map((m: { id: string }) => m.id)).toEqual(["n1"]);
    // Every acknowledged write is there, read linearizably from the new one-voter cluster.
    const list = await cluster.request("n1", "GET", `/v1/kv?prefix=acked/&limit=10000`);
    expect(list.status).toBe(200);
    const got = new Map<string, string>((list.json.kvs as Array<{ key: string; value: string }>).map((kv) => [kv.key, kv.value]));
    for (const [k, v] of acked) expect(got.get(k)).toBe(v);
    // Nothing that was never written appears.
    for (const [k, v] of got) expect(v).toMatch(new RegExp(`^v${Number(k.slice(6))}\\.[0-3]$`));
    const put = await cluster.request("n1", "PUT", "/v1/kv/after-recovery", { json: { value: "ok" } });
    expect(put.status).toBe(200);
    expect(existsSync(cluster.node("n1").dataDir)).toBe(true);
    console.log(`recovered n1 serves all ${acked.size} acknowledged writes (${got.size} present, ${got.size - acked.size} whose outcome was unknown)`);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);
