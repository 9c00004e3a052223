// A rolled-back log never comes back silently, with real `phalanx serve` processes: after kill -9
// of a node that acknowledged writes, its WAL is deleted, damaged or its database truncated. The
// node must refuse to start (exit 4, an error naming the files and the way out) and leave the
// files as they were; a follower restored from an old copy, which its own check cannot tell, is
// found by the leader and caught up.
import { afterEach, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { cpSync, existsSync, openSync, closeSync, readFileSync, rmSync, statSync, truncateSync, writeSync } from "node:fs";
import { join } from "node:path";
import { STATE_FILE, readStateRecord } from "../../src/storage/state_record.ts";
import { TestCluster, freePort, waitFor } from "../integration/harness.ts";

let cluster: TestCluster | null = null;
afterEach(async () => {
  await cluster?.stopAll();
  cluster = null;
});

const WRITES = 200;
const FILES = ["phalanx.db", "phalanx.db-wal", STATE_FILE];
const enc = (s: string) => new TextEncoder().encode(s);

function hashes(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of FILES) {
    const p = join(dir, f);
    out[f] = existsSync(p) ? createHash("sha256").update(readFileSync(p)).digest("hex") : "absent";
  }
  return out;
}

/** `count` acknowledged writes (20 at a time), returning the commit index once all are applied. */
async function write(c: TestCluster, id: string, prefix: string, count: number): Promise<void> {
  for (let base = 0; base < count; base += 20) {
    await Promise.all(Array.from({ length: Math.min(20, count - base) }, (_, i) => c.putAcknowledged(id, `/v1/kv/${prefix}${base + i}`, { body: enc(String(base + i)) })));
  }
}

/** The record (outside the WAL) has caught up with what the node acknowledged: no sleeps, an event. */
async function recorded(dir: string, commit: number): Promise<void> {
  await waitFor(`${STATE_FILE} to record commit ${commit}`, () => {
    const r = readStateRecord(join(dir, STATE_FILE));
    return r.kind === "valid" && r.record.commit >= commit;
  });
}

/**
 * Frames of the WAL's current generation (SQLite's format: a 32-byte header with the salts, then
 * frames of a 24-byte header carrying the same salts plus one page). Frames beyond them are left
 * from before a checkpoint and already ignored, so the damage must land among these.
 */
function currentWalFrames(wal: Buffer): number {
  const pageSize = wal.readUInt32BE(8);
  const [salt1, salt2] = [wal.readUInt32BE(16), wal.readUInt32BE(20)];
  let n = 0;
  for (let off = 32; off + 24 + pageSize <= wal.length; off += 24 + pageSize, n++) {
    if (wal.readUInt32BE(off + 8) !== salt1 || wal.readUInt32BE(off + 12) !== salt2) break;
  }
  return n;
}

async function ackedThenKilled(): Promise<{ c: TestCluster; dir: string }> {
  cluster = await TestCluster.create(1);
  const c = cluster;
  c.start("n1");
  await c.waitForLeader(["n1"]);
  await write(c, "n1", "w/", WRITES);
  const commit = (await c.status("n1")).commit;
  const dir = c.node("n1").dataDir;
  await recorded(dir, commit);
  await c.kill("n1");
  return { c, dir };
}

async function expectRefusal(c: TestCluster, dir: string, mentions: string[]): Promise<void> {
  const before = hashes(dir);
  c.start("n1");
  expect(await c.procs.get("n1")!.exited).toBe(4);
  const log = c.logs.get("n1") ?? "";
  for (const m of mentions) expect(log).toContain(m);
  expect(log).toContain("rejoins as a new, empty member");
  expect(hashes(dir)).toEqual(before);
}

describe("a rolled-back data dir is refused (real processes)", () => {
  test("the WAL deleted after kill -9", async () => {
    const { c, dir } = await ackedThenKilled();
    expect(statSync(join(dir, "phalanx.db-wal")).size).toBeGreaterThan(0);
    rmSync(join(dir, "phalanx.db-wal"));
    await expectRefusal(c, dir, ["went back in time", join(dir, "phalanx.db"), join(dir, STATE_FILE), "term 0 < "]);
  }, 60_000);

  test("64 bytes zeroed in the middle of the WAL after kill -9", async () => {
    const { c, dir } = await ackedThenKilled();
    const wal = join(dir, "phalanx.db-wal");
    const frames = currentWalFrames(readFileSync(wal));
    expect(frames).toBeGreaterThan(4);
    const pageSize = readFileSync(wal).readUInt32BE(8);
    // The middle frame's header and the start of its page: bytes that are never all zero already.
    const at = 32 + Math.floor(frames / 2) * (pageSize + 24);
    expect(readFileSync(wal).subarray(at, at + 64).some((b) => b !== 0)).toBe(true);
    const fd = openSync(wal, "r+");
    writeSync(fd, new Uint8Array(64), 0, 64, at);
    closeSync(fd);
    await expectRefusal(c, dir, ["went back in time", join(dir, "phalanx.db"), join(dir, STATE_FILE)]);
  }, 60_000);

  test("the database truncated after kill -9", async () => {
    const { c, dir } = await ackedThenKilled();
    const db = join(dir, "phalanx.db");
    truncateSync(db, Math.floor(statSync(db).size / 2));
    await expectRefusal(c, dir, [db, "truncated"]);
  }, 60_000);

  test("the state record deleted after kill -9 (it cannot vouch any more)", async () => {
    const { c, dir } = await ackedThenKilled();
    rmSync(join(dir, STATE_FILE));
    await expectRefusal(c, dir, [`${join(dir, STATE_FILE)} is missing`]);
  }, 60_000);

  test("an intact data dir restarts after kill -9 with every acknowledged write", async () => {
    const { c } = await ackedThenKilled();
    c.start("n1");
    await c.waitForLeader(["n1"]);
    const res = await c.request("n1", "GET", `/v1/kv/w/${WRITES - 1}`);
    expect(res.status).toBe(200);
  }, 60_000);
});

describe("a follower restored from an old copy (its own check cannot tell)", () => {
  test("the leader finds it holding fewer entries than it acknowledged, counts it and catches it up", async () => {
    cluster = await TestCluster.create(3);
    const c = cluster;
    const debug = new Map<string, string>();
    for (const n of c.nodes) {
      debug.set(n.id, `127.0.0.1:${await freePort()}`);
      c.start(n.id, { DEBUG_ADDR: debug.get(n.id)! });
    }
    const leader = await c.waitForLeader(["n1", "n2", "n3"]);
    const f = c.nodes.find((n) => n.id !== leader)!;
    await write(c, leader, "a/", 50);
    const statusOf = async () => (await c.request(leader, "GET", "/v1/status")).json as { lastIndex: number; members: Array<{ id: string; progress: { match: number; regressions: number; regressedFrom: number } | null }> };
    const progress = async () => (await statusOf()).members.find((m) => m.id === f.id)!.progress!;
    // An old but consistent copy of the follower's data dir (taken while it is stopped).
    await waitFor("the follower to have everything", async () => (await progress()).match === (await statusOf()).lastIndex);
    const copied = (await statusOf()).lastIndex;
    await c.kill(f.id);
    const backup = `${f.dataDir}.backup`;
    cpSync(f.dataDir, backup, { recursive: true });
    c.start(f.id, { DEBUG_ADDR: debug.get(f.id)! });
    await write(c, leader, "b/", 50);
    await waitFor("the follower to acknowledge the new writes", async () => (await progress()).match === (await statusOf()).lastIndex);
    const acknowledged = (await progress()).match;
    await c.kill(f.id);
    rmSync(f.dataDir, { recursive: true });
    cpSync(backup, f.dataDir, { recursive: true });
    c.start(f.id, { DEBUG_ADDR: debug.get(f.id)! });
    await waitFor("the restored follower to serve", async () => (await c.status(f.id)).leader === leader);
    expect(copied).toBeLessThan(acknowledged);
    try {
      await write(c, leader, "c/", 1);
    } catch (err) {
      // A 503 for this write was seen once in a loop of the suite (before writes were sent again):
      // should it fail for good, the nodes' logs say why.
      console.log(c.dumpLogs());
      throw err;
    }
    await waitFor("the leader to count the regression", async () => (await progress()).regressions >= 1);
    await waitFor("the follower to catch up", async () => {
      const s = (await c.status(f.id)) as unknown as { lastIndex: number };
      return s.lastIndex === (await statusOf()).lastIndex;
    });
    await waitFor("the leader to see it caught up", async () => {
      const p = await progress();
      return p.match === (await statusOf()).lastIndex && p.regressedFrom === 0;
    });
    const metrics = await (await fetch(`http://${debug.get(leader)}/metrics`)).text();
    expect(metrics).toMatch(/^phalanx_follower_regressions_total [1-9]/m);
    expect(metrics).toMatch(/^phalanx_followers_regressed 0$/m);
    const readyz = await fetch(`http://${debug.get(leader)}/readyz`);
    expect(readyz.status).toBe(200);
    expect(c.logs.get(leader)).toContain("follower holds fewer entries than it acknowledged");
  }, 120_000);
});
