// Backup and restore on real processes: `phalanx snapshot save` from a 3-node cluster under a
// bounded write load, `snapshot status` on good, corrupt and truncated files, and `snapshot
// restore` into a fresh 3-node cluster (new cluster id) that holds every key of the snapshot,
// with the same values and revisions, and every write acknowledged before the save started.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUN, MAIN, TestCluster, waitFor } from "./harness.ts";

const ids = ["n1", "n2", "n3"];
let source: TestCluster;
let restored: TestCluster | null = null;

beforeAll(async () => {
  // Frequent compaction: the save must be consistent while the log is being snapshotted too.
  source = await TestCluster.create(3, { env: { SNAPSHOT_EVERY: "50", CATCHUP_ENTRIES: "10" } });
  source.startAll();
});

afterAll(async () => {
  await source.stopAll();
  await restored?.stopAll();
});

/** Runs the CLI (asynchronously: the cluster's log pipes keep draining meanwhile). */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const p = Bun.spawn([BUN, MAIN, ...args], { stdout: "pipe", stderr: "pipe", env: { ...process.env, PHALANX_ADDR: "" } });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return { code, out, err };
}

interface Kv {
  key: string;
  value: string;
  createRevision: number;
  modRevision: number;
  version: number;
}

async function allKeys(c: TestCluster, id: string): Promise<Map<string, Kv>> {
  const out = new Map<string, Kv>();
  let after: string | null = null;
  // Bounded: each page advances `after`; the key space is finite.
  for (let page = 0; page < 1000; page++) {
    const q: string = `/v1/kv?prefix=&limit=500${after === null ? "" : `&after=${encodeURIComponent(after)}`}`;
    const res = await c.request(id, "GET", q);
    if (res.status !== 200) throw new Error(`list on ${id}: HTTP ${res.status} ${JSON.stringify(res.json)}`);
    for (const kv of res.json.kvs as Kv[]) out.set(kv.key, { key: kv.key, value: kv.value, createRevision: kv.createRevision, modRevision: kv.modRevision, version: kv.version });
    if (!res.json.more) return out;
    after = (res.json.kvs as Kv[]).at(-1)!.key;
  }
  throw new Error("too many pages");
}

const file = () => join(source.dir, "backup.snap");
let index = 0;
const ackedBeforeSave = new Map<string, string>();

test("snapshot save under write load, then status describes and verifies it", async () => {
  try {
    const leader = await source.waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    // Bounded writer: 4 workers, 600 distinct keys each written once, then it stops.
    const total = 600;
    const acked = new Map<string, string>();
    let next = 0;
    const worker = async (w: number) => {
      while (next < total) {
        const i = next++;
        const key = `load/${String(i).padStart(4, "0")}`;
        const value = `v${i}-w${w}`;
        // Sent again while refused during an election (a slow disk cost one once): each key is
        // written by one worker with one value.
        await source.putAcknowledged(ids[i % 3]!, `/v1/kv/${encodeURIComponent(key)}`, { json: { value } });
        acked.set(key, value);
      }
    };
    const writers = Promise.all([0, 1, 2, 3].map(worker));
    await waitFor("some writes to be acknowledged", () => acked.size >= 200, 20_000);
    for (const [k, v] of acked) ackedBeforeSave.set(k, v);
    const saved = await cli(["snapshot", "save", file(), "--addr", source.node(follower).addr]);
    await writers;
    expect(saved.err).toBe("");
    expect(saved.code).toBe(0);
    expect(saved.out).toContain(`saved ${file()}`);
    expect(acked.size).toBe(total);

    const status = await cli(["snapshot", "status", file(), "--json"]);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.out);
    index = s.index;
    expect(s.ok).toBe(true);
    expect(s.node).toBe(follower);
    expect(s.conf.voters).toEqual(ids);
    // The save ran while writes went on: it holds at least those acknowledged before it started.
    expect(s.keys).toBeGreaterThanOrEqual(ackedBeforeSave.size);
    expect(s.keys).toBeLessThanOrEqual(total);
    console.log(`saved under load: index ${s.index}, ${s.keys} keys (${ackedBeforeSave.size} acknowledged before the save), ${s.dataBytes} bytes`);
    const text = await cli(["snapshot", "status", file()]);
    expect(text.out).toContain("ok (checksums and image verified)");
    expect(text.out).toContain(`index       ${s.index}`);
  } catch (err) {
    console.log(source.dumpLogs());
    throw err;
  }
}, 60_000);

test("status and restore refuse a corrupt or truncated file with exit 4 and the reason", async () => {
  const good = readFileSync(file());
  const corrupt = join(source.dir, "corrupt.snap");
  const bad = Buffer.from(good);
  const mid = Math.floor(bad.byteLength / 2);
  bad[mid] = bad[mid]! ^ 0x10;
  writeFileSync(corrupt, bad);
  const c = await cli(["snapshot", "status", corrupt]);
  expect(c.code).toBe(4);
  expect(c.err).toContain("checksum mismatch");
  const truncated = join(source.dir, "truncated.snap");
  writeFileSync(truncated, good.subarray(0, good.byteLength - 100));
  const t = await cli(["snapshot", "status", truncated]);
  expect(t.code).toBe(4);
  expect(t.err).toContain("truncated");
  const target = join(source.dir, "never-created");
  const r = await cli(["snapshot", "restore", corrupt, "--data-dir", target, "--id", "n1", "--peers", "n1=127.0.0.1:1"]);
  expect(r.code).toBe(4);
  expect(existsSync(target)).toBe(false);
});

test("restore builds a new 3-node cluster that holds every key of the snapshot", async () => {
  restored = await TestCluster.create(3);
  const r = restored;
  try {
    const peers = r.nodes.map((n) => `${n.id}=${n.addr}`).join(",");
    // A volume mounted as the data dir (Fly.io's /data) has lost+found: it holds no data.
    mkdirSync(join(r.nodes[0]!.dataDir, "lost+found"), { recursive: true });
    for (const n of r.nodes) {
      const res = await cli(["snapshot", "restore", file(), "--data-dir", n.dataDir, "--id", n.id, "--peers", peers]);
      expect(res.err).toBe("");
      expect(res.code).toBe(0);
    }
    // Restoring over an existing data dir is refused and changes nothing.
    const before = readFileSync(join(r.nodes[0]!.dataDir, "phalanx.db"));
    const again = await cli(["snapshot", "restore", file(), "--data-dir", r.nodes[0]!.dataDir, "--id", "n1", "--peers", peers]);
    expect(again.code).toBe(4);
    expect(again.err).toContain("never overwrites");
    expect(Buffer.compare(readFileSync(join(r.nodes[0]!.dataDir, "phalanx.db")), before)).toBe(0);
    // One new cluster id on every member, not the source's.
    const clusterIds = r.nodes.map((n) => readFileSync(join(n.dataDir, "CLUSTER_ID"), "utf8").trim());
    expect(new Set(clusterIds).size).toBe(1);
    expect(clusterIds[0]).toMatch(/^c:r-[0-9a-f]{16}$/);

    r.startAll();
    const leader = await r.waitForLeader(ids);
    const got = await allKeys(r, leader);
    const sourceLeader = await source.waitForLeader(ids);
    const all = await allKeys(source, sourceLeader);
    // Exactly the source's keys as of the snapshot's index: each with the same value and revisions.
    const expected = new Map([...all].filter(([, kv]) => kv.modRevision <= index));
    expect(got.size).toBe(expected.size);
    for (const [k, kv] of expected) expect(got.get(k)).toEqual(kv);
    for (const [k, v] of ackedBeforeSave) expect(got.get(k)?.value).toBe(v);
    // Every node of the new cluster has it all, and it takes new writes after the snapshot's index.
    for (const id of ids) {
      await waitFor(`${id} to apply the snapshot`, async () => (await r.status(id)).applied >= index);
    }
    const put = await r.request(leader, "PUT", "/v1/kv/after-restore", { json: { value: "new" } });
    expect(put.status).toBe(200);
    expect(put.json.revision).toBeGreaterThan(index);
    console.log(`restored ${got.size} keys at index ${index} into a new cluster (${clusterIds[0]})`);
  } catch (err) {
    console.log(r.dumpLogs());
    throw err;
  }
}, 60_000);
