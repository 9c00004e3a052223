// Losing a majority for good, on real processes: `phalanx recover --force-new-cluster` refuses
// while the node runs and while a quorum of the old voters answers; once two of three nodes are
// killed for good, it turns the survivor into a one-voter cluster that serves every write
// acknowledged before the kill, and takes new writes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
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
    await cluster.waitForLeader(ids);
    const acked = new Map<string, string>();
    let killed = false;
    let next = 0;
    const total = 2000;
    // Bounded writer: at most `total` writes, round robin over the nodes (followers forward to the
    // leader). A write without a 2xx has an unknown outcome and is not counted; after the kill a
    // worker stops at its first failure.
    const worker = async (w: number) => {
      while (next < total) {
        const i = next++;
        const key = `acked/${String(i).padStart(5, "0")}`;
        const ok = await cluster
          .request(ids[i % 3]!, "PUT", `/v1/kv/${key}`, { json: { value: `v${i}.${w}` }, headers: { "x-phalanx-timeout-ms": "1500" }, timeoutMs: 3000 })
          .then((res) => res.status === 200, () => false);
        if (ok) acked.set(key, `v${i}.${w}`);
        else if (killed) return;
      }
    };
    const writers = Promise.all([0, 1, 2, 3].map(worker));
    await waitFor("writes to be acknowledged", () => acked.size >= 150, 20_000);
    // The survivor must be the node with the longest log (the operator's rule, see the guide):
    // the leader, which appended every write it acknowledged. The other two die for good.
    const survivor = await cluster.waitForLeader(ids);
    const lost = ids.filter((id) => id !== survivor);
    killed = true;
    await Promise.all(lost.map((id) => cluster.kill(id)));
    await writers;
    const survivorDir = cluster.node(survivor).dataDir;
    const addr = cluster.node(survivor).addr;
    // Without a quorum a backup cannot be proven complete: once the leader's lease has run out
    // (within it, no other leader can exist and the barrier rightly passes), a save is refused
    // (3, unavailable); --stale takes what the survivor has applied.
    await waitFor("the survivor's lease to run out", async () => !(await cluster.status(survivor)).leaseValid);
    const snapFile = join(cluster.dir, "no-quorum.snap");
    const refused = await cli(["snapshot", "save", snapFile, "--addr", addr, "--timeout", "2500"]);
    expect(refused.code).toBe(3);
    expect(refused.err).toContain("cannot take a linearizable snapshot");
    const stale = await cli(["snapshot", "save", snapFile, "--stale", "--addr", addr, "--timeout", "5000"]);
    expect(stale.code).toBe(0);
    expect(stale.out).toContain(`from ${survivor}`);
    await cluster.kill(survivor);
    console.log(`${acked.size} writes acknowledged before ${lost.join(" and ")} were killed; ${survivor} survives`);

    const recover = (...extra: string[]) => cli(["recover", "--data-dir", survivorDir, "--id", survivor, "--probe-timeout-ms", "1000", ...extra]);
    const dry = await recover("--dry-run");
    expect(dry.code).toBe(0);
    expect(dry.err).toContain("dry run: nothing changed");
    const r = await recover("--force-new-cluster");
    expect(r.err).toContain("WARNING: forcing a new cluster");
    expect(r.code).toBe(0);
    expect(r.out).toContain(`with ${survivor} as its only voter`);
    // The data file as it was is kept, whole: it still opens as the old 3-voter node's data.
    const kept = readdirSync(survivorDir).filter((f) => f.startsWith("before-recovery-"));
    expect(kept.length).toBe(1);
    const old = await cli(["recover", "--data-dir", join(survivorDir, kept[0]!), "--id", survivor, "--dry-run", "--probe-timeout-ms", "300"]);
    expect(old.err).toContain("voters n1,n2,n3");

    cluster.start(survivor);
    await cluster.waitForLeader([survivor]);
    const members = await cluster.request(survivor, "GET", "/v1/members");
    expect(members.json.members.map((m: { id: string }) => m.id)).toEqual([survivor]);
    // Every acknowledged write is there, read linearizably from the new one-voter cluster.
    const list = await cluster.request(survivor, "GET", `/v1/kv?prefix=acked/&limit=10000`);
    expect(list.status).toBe(200);
    const got = new Map<string, string>((list.json.kvs as Array<{ key: string; value: string }>).map((kv) => [kv.key, kv.value]));
    for (const [k, v] of acked) expect(got.get(k)).toBe(v);
    // Nothing that was never written appears.
    for (const [k, v] of got) expect(v).toMatch(new RegExp(`^v${Number(k.slice(6))}\\.[0-3]$`));
    const put = await cluster.request(survivor, "PUT", "/v1/kv/after-recovery", { json: { value: "ok" } });
    expect(put.status).toBe(200);
    console.log(`recovered ${survivor} serves all ${acked.size} acknowledged writes (${got.size} present, ${got.size - acked.size} whose outcome was unknown)`);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);
