// forceNewCluster and restoreDataDir on real data dirs, deterministically: a survivor whose log
// runs past its commit index keeps those entries (committed and applied), the configuration
// becomes {self}, the old file is kept whole, and a restored dir is a node of a new cluster.
import { afterEach, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { decodeBackup, encodeBackup } from "../../src/kv/backup_file.ts";
import { KvStore } from "../../src/kv/store.ts";
import { readClusterId } from "../../src/node/membership/formation.ts";
import { forceNewCluster, RecoveryRefused, restoreDataDir, restoredClusterId } from "../../src/node/disaster_recovery.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { bytes, conf, proposal } from "../kv/fixtures.ts";
import { TempDirs } from "../storage/temp_dir.ts";

const temp = new TempDirs();
const open: DataDir[] = [];
afterEach(() => {
  for (const d of open.splice(0)) d.close();
  temp.cleanup();
});

const three = { voters: ["n1", "n2", "n3"], learners: [] as string[] };
const addresses = { n1: "127.0.0.1:7001", n2: "127.0.0.1:7002", n3: "127.0.0.1:7003" };

function openDir(dir: string): { dd: DataDir; kv: KvStore } {
  const dd = openDataDir(dir, { bootstrap: three, addresses });
  open.push(dd);
  return { dd, kv: new KvStore(dd) };
}

/** A survivor: 10 puts in its log (term 2), the last 4 not known committed, then a learner added. */
function survivor(): { dir: string; dd: DataDir; kv: KvStore } {
  const dir = temp.make("phalanx-dr");
  const { dd, kv } = openDir(dir);
  const entries: Entry[] = [];
  for (let i = 1; i <= 10; i++) entries.push({ ...proposal(i, { op: "put", key: `k${i}`, value: bytes(`v${i}`) }), term: 2 });
  entries.push({ ...conf(11, { op: "addLearner", node: "n4", context: "127.0.0.1:7004" }, three), term: 2 });
  dd.transaction(() => {
    dd.log.save(null, entries, { term: 3, vote: "n2", commit: 6 });
    for (const e of entries.slice(0, 6)) kv.apply(e);
  });
  return { dir, dd, kv };
}

test("force-new-cluster commits and applies the whole log, leaves {self} as the configuration, keeps the old file", () => {
  const { dir, dd, kv } = survivor();
  const r = forceNewCluster(dd, kv, "n1");
  expect(r).toMatchObject({ index: 11, promoted: 5 });
  expect(r.clusterId).toMatch(/^c:f-[0-9a-f]{16}$/);
  open.splice(0).forEach((d) => d.close());

  const { dd: again, kv: kv2 } = openDir(dir);
  expect(kv2.appliedIndex()).toBe(11);
  for (let i = 1; i <= 10; i++) expect(new TextDecoder().decode(kv2.get(`k${i}`).kv!.value)).toBe(`v${i}`);
  expect(kv2.members()).toEqual([{ id: "n1", address: "127.0.0.1:7001", region: "", role: "voter" }]);
  expect(again.log.snapshotMeta()).toEqual({ index: 11, term: 2, conf: { voters: ["n1"], learners: [] } });
  expect(again.log.hardState()).toEqual({ term: 4, vote: null, commit: 11 });
  expect(again.log.lastIndex()).toBe(11);
  // The Raft snapshot a new follower would receive carries the new membership, not the old one.
  const image = again.log.snapshot().data;
  expect(image.byteLength).toBeGreaterThan(0);
  expect(readClusterId(dir)).toBe(r.clusterId);
  // The old file is kept whole: it opens as it was (commit 6, three voters).
  const kept = readdirSync(dir).filter((f) => f.startsWith("before-recovery-"));
  expect(kept.length).toBe(1);
  const { dd: old, kv: oldKv } = openDir(join(dir, kept[0]!));
  expect(old.log.hardState().commit).toBe(6);
  expect(oldKv.appliedIndex()).toBe(6);
  expect(oldKv.members().map((m) => m.id)).toEqual(["n1", "n2", "n3"]);
});

test("force-new-cluster refuses a node that is not a voter and changes nothing", () => {
  const { dir, dd, kv } = survivor();
  expect(() => forceNewCluster(dd, kv, "n4")).toThrow(RecoveryRefused);
  expect(readdirSync(dir).some((f) => f.startsWith("before-recovery-") || f.startsWith(".recover-"))).toBe(false);
  expect(dd.log.hardState().commit).toBe(6);
});

test("restore builds a member of a new cluster; refuses a data dir with data in it", () => {
  const { dd, kv } = survivor();
  const snap = kv.snapshot();
  const file = Buffer.concat(encodeBackup({ clusterId: "c:old", node: "n1", index: snap.index, term: 2, conf: snap.conf, createdAt: new Date() }, snap.data).parts);
  const { header, data } = decodeBackup(file);
  const peers = new Map([["a", "127.0.0.1:8001"], ["b", "127.0.0.1:8002"]]);
  const target = join(temp.make("phalanx-restore"), "a");
  const clusterId = restoredClusterId(header, peers);
  restoreDataDir({ header, data, dataDir: target, self: "a", peers, clusterId });
  expect(readdirSync(target).sort()).toEqual(["CLUSTER_ID", "phalanx.db", "phalanx.state"]);
  expect(readFileSync(join(target, "CLUSTER_ID"), "utf8").trim()).toBe(clusterId);
  const { dd: r, kv: rkv } = openDir(target);
  expect(rkv.appliedIndex()).toBe(6);
  expect(rkv.count("").count).toBe(6);
  expect(rkv.members()).toEqual([
    { id: "a", address: "127.0.0.1:8001", region: "", role: "voter" },
    { id: "b", address: "127.0.0.1:8002", region: "", role: "voter" },
  ]);
  expect(r.log.snapshotMeta()).toEqual({ index: 6, term: 2, conf: { voters: ["a", "b"], learners: [] } });
  expect(r.log.hardState()).toEqual({ term: 2, vote: null, commit: 6 });
  expect(() => restoreDataDir({ header, data, dataDir: dd.dir, self: "a", peers, clusterId })).toThrow("never overwrites");
  expect(existsSync(join(dd.dir, "CLUSTER_ID"))).toBe(false);
});
