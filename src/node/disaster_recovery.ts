// Building data dirs outside Raft, for an operator who has lost something: `snapshot restore`
// (a new cluster from a backup file) and `recover --force-new-cluster` (one surviving node's
// data as a one-voter cluster). Both build a complete data file in a scratch dir inside the
// data dir and rename it into place (one atomic rename on one filesystem, also when the data
// dir is a mounted volume), so a crash at any point leaves the old state or the whole new one;
// neither ever deletes data: restore refuses a data dir with data, recover keeps the old file.
import { randomBytes } from "node:crypto";
import { copyFileSync, existsSync, linkSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import type { BackupHeader } from "../kv/backup_file.ts";
import { decodeMemberContext } from "../kv/member.ts";
import { KvStore, type Member } from "../kv/store.ts";
import { decodeConfEntry } from "../raft/conf_change.ts";
import type { ConfState, Entry, HardState, NodeId } from "../raft/types.ts";
import { DB_FILE, openDataDir, syncPath, type DataDir } from "../storage/data_dir.ts";
import { STATE_FILE } from "../storage/state_record.ts";
import { readClusterId, writeClusterId } from "./membership/formation.ts";

/** The operator asked for something that would lose or confuse data: refused, nothing changed. */
export class RecoveryRefused extends Error {
  override name = "RecoveryRefused";
}

/** Entries read per page while applying a survivor's log. */
const APPLY_PAGE_BYTES = 4 << 20;

/**
 * The id of a cluster restored from a backup: derived from the image's checksum and the new
 * member list, so every node restored with the same file and --peers gets the same id, and it
 * is never the id of the cluster the backup came from.
 */
export function restoredClusterId(header: BackupHeader, peers: ReadonlyMap<NodeId, string>): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(`restore\n${header.dataSha256}\n${[...peers].sort(([a], [b]) => (a < b ? -1 : 1)).map(([id, a]) => `${id}=${a}`).join(",")}`);
  return `c:r-${h.digest("hex").slice(0, 16)}`;
}

/** A restore leaves these in its target only when it crashed before its commit point. */
const SCRATCH = /^\.(restore|recover)-\d+$/;
const CLUSTER_FILE = "CLUSTER_ID";

/**
 * Holds no data: missing, empty, or only what a filesystem root (lost+found) or a crashed
 * restore (its scratch dir, a CLUSTER_ID without a phalanx.db) leaves. A Fly volume mounted as
 * the data dir has lost+found, and must still be restorable.
 */
function holdsNoData(dir: string): boolean {
  if (!existsSync(dir)) return true;
  return readdirSync(dir).every((f) => f === "lost+found" || SCRATCH.test(f) || f === CLUSTER_FILE);
}


/**
 * A scratch dir INSIDE the target: the finished file is renamed from there into place, which
 * stays one atomic rename on one filesystem even when the target is a mount point (a volume).
 */
function scratchDir(target: string, what: "restore" | "recover"): string {
  mkdirSync(target, { recursive: true });
  const tmp = join(target, `.${what}-${process.pid}`);
  // Ours alone (the pid is in the name): a leftover is a run of ours that crashed, never data.
  rmSync(tmp, { recursive: true, force: true });
  return tmp;
}

/** The data file built in `tmp` (closed cleanly: no WAL) becomes `target`'s in one rename. */
function commitDataFile(tmp: string, target: string): void {
  for (const suffix of ["-wal", "-shm"]) {
    const f = join(tmp, DB_FILE + suffix);
    if (existsSync(f) && suffix === "-wal" && statSync(f).size > 0) throw new Error(`${f} is not empty after a clean close`);
    rmSync(f, { force: true });
  }
  syncPath(join(tmp, DB_FILE));
  renameSync(join(tmp, DB_FILE), join(target, DB_FILE));
  syncPath(target);
  // Then the durable-state record that describes the new file (storage/state_record.ts). In this
  // order a crash between the two leaves the new file with the old record, which never claims
  // more than the new file holds (recovery only raises the term and keeps every entry); the other
  // order would leave a record ahead of the old file, which refuses to start as rolled back.
  if (existsSync(join(tmp, STATE_FILE))) {
    syncPath(join(tmp, STATE_FILE));
    renameSync(join(tmp, STATE_FILE), join(target, STATE_FILE));
    syncPath(target);
  }
  rmSync(tmp, { recursive: true, force: true });
}

export interface RestoreOptions {
  header: BackupHeader;
  data: Uint8Array;
  dataDir: string;
  self: NodeId;
  /** Every voter of the new cluster with its address, this node included. */
  peers: ReadonlyMap<NodeId, string>;
  clusterId: string;
}

/**
 * Builds the data dir of one member of a NEW cluster from a backup: the state machine at the
 * backup's index, the given voters as its configuration (both in the member rows and in the
 * Raft snapshot a new leader sends to followers), and a new cluster id.
 */
export function restoreDataDir(o: RestoreOptions): void {
  if (!o.peers.has(o.self)) throw new RecoveryRefused(`--peers must include this node (${o.self})`);
  if (!holdsNoData(o.dataDir)) {
    throw new RecoveryRefused(`${o.dataDir} exists and is not empty: restore builds a new data dir and never overwrites one`);
  }
  const voters = [...o.peers.keys()].sort();
  const conf: ConfState = { voters, learners: [] };
  // Regions unknown: the new cluster's servers may run anywhere; its leader records them.
  const members: Member[] = voters.map((id) => ({ id, address: o.peers.get(id)!, region: "", role: "voter" }));
  const tmp = scratchDir(o.dataDir, "restore");
  try {
    const dd = openDataDir(tmp, { bootstrap: conf, addresses: Object.fromEntries(o.peers) });
    try {
      const kv = new KvStore(dd);
      // The image is checked against the header's index before anything is replaced (restoreImage).
      dd.transaction(() => {
        kv.restore(o.data, { index: o.header.index, term: o.header.term, conf: o.header.conf });
        kv.replaceMembers(members);
      });
      installSnapshot(dd, kv, conf, { term: o.header.term, vote: null, commit: o.header.index });
    } finally {
      dd.close();
    }
    // The cluster id first: phalanx.db appearing is the commit point, and it must find its id.
    writeClusterId(o.dataDir, o.clusterId);
    commitDataFile(tmp, o.dataDir);
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}

/**
 * Replaces the Raft log with a snapshot of the state machine as it now is (after its last
 * committed transaction), with `conf` as the configuration, and the given hard state.
 */
function installSnapshot(dd: DataDir, kv: KvStore, conf: ConfState, hs: HardState): void {
  const image = kv.snapshot();
  if (image.index !== kv.appliedIndex()) throw new Error(`image at ${image.index}, applied index ${kv.appliedIndex()}`);
  if (hs.commit !== image.index) throw new Error(`commit ${hs.commit} is not the image's index ${image.index}`);
  const term = dd.log.lastIndex() >= image.index ? dd.log.term(image.index) : hs.term;
  dd.transaction(() => dd.log.save({ meta: { index: image.index, term, conf }, data: image.data }, [], hs));
}

/** What a stopped node's data dir holds, for `recover` to decide and to tell the operator. */
export interface SurvivorState {
  /** The latest configuration in the log (committed or not: Raft acts on the latest). */
  conf: ConfState;
  addresses: Map<NodeId, string>;
  hardState: HardState;
  applied: number;
  lastIndex: number;
  lastTerm: number;
  clusterId: string | null;
}

export function inspectSurvivor(dd: DataDir, kv: KvStore): SurvivorState {
  const log = dd.log;
  const addresses = new Map(kv.members().map((m) => [m.id, m.address]));
  const confs = log.confEntries(log.firstIndex(), log.lastIndex() + 1).map((e) => decodeConfEntry(e.data));
  for (const c of confs) {
    const { address } = decodeMemberContext(c.change.context);
    if (address !== "") addresses.set(c.change.node, address);
  }
  const conf = confs.length > 0 ? confs[confs.length - 1]!.conf : log.snapshotMeta().conf;
  return {
    conf,
    addresses,
    hardState: log.hardState(),
    applied: kv.appliedIndex(),
    lastIndex: log.lastIndex(),
    lastTerm: log.term(log.lastIndex()),
    clusterId: readClusterId(dd.dir),
  };
}

export interface ForceNewClusterResult {
  /** Where the data dir as it was before is kept. */
  keptAt: string;
  clusterId: string;
  /** The index every entry up to which is now committed and applied. */
  index: number;
  /** Entries past the old commit index that became committed. */
  promoted: number;
}

/**
 * Turns a stopped survivor's data dir into a one-voter cluster of `self`. Every entry in its
 * log is committed and applied (see docs/operations.md, "Losing a majority", for why entries past
 * the commit index are kept rather than dropped), the configuration becomes {self}, the term is
 * raised by one, and the cluster gets a new id so the old members' data cannot rejoin by gossip.
 * The caller holds `dd` open (the data-dir lock) and has checked that no quorum is running.
 * The old data file is kept (hard-linked) in <data dir>/before-recovery-<time>/, never deleted.
 */
export function forceNewCluster(dd: DataDir, kv: KvStore, self: NodeId): ForceNewClusterResult {
  const state = inspectSurvivor(dd, kv);
  if (!state.conf.voters.includes(self)) {
    throw new RecoveryRefused(
      `${self} is not a voter of this data dir's configuration (voters ${state.conf.voters.join(",") || "none"}): ` +
        "a learner may lack committed entries; recover from a voter",
    );
  }
  const target = dd.dir;
  const tmp = scratchDir(target, "recover");
  const clusterId = `c:f-${randomBytes(8).toString("hex")}`;
  const address = state.addresses.get(self) ?? "";
  try {
    mkdirSync(tmp, { recursive: true });
    // VACUUM INTO writes one consistent copy of the whole database (WAL included) elsewhere.
    dd.db.run(`VACUUM INTO '${join(tmp, DB_FILE).replace(/'/g, "''")}'`);
    // The copy names the same durable-state record as the original: it goes along.
    if (existsSync(join(target, STATE_FILE))) copyFileSync(join(target, STATE_FILE), join(tmp, STATE_FILE));
    const copy = openDataDir(tmp, { bootstrap: { voters: [self], learners: [] } });
    try {
      const ckv = new KvStore(copy);
      copy.transaction(() => {
        for (let next = ckv.appliedIndex() + 1; next <= state.lastIndex; ) {
          const page: Entry[] = copy.log.entries(next, state.lastIndex + 1, APPLY_PAGE_BYTES);
          for (const e of page) ckv.apply(e);
          next += page.length;
        }
        // The same server in the same place: keep the region the log recorded for it.
        const region = ckv.members().find((m) => m.id === self)?.region ?? "";
        ckv.replaceMembers([{ id: self, address, region, role: "voter" }]);
      });
      installSnapshot(copy, ckv, { voters: [self], learners: [] }, { term: state.hardState.term + 1, vote: null, commit: state.lastIndex });
    } finally {
      copy.close();
    }
    // Keep the data as it was: the old file made self-contained (its WAL checkpointed into it),
    // then hard-linked into a directory beside it. Nothing of it is ever deleted.
    const row = dd.db.query("PRAGMA wal_checkpoint(TRUNCATE)").values()[0] as [number, number, number] | undefined;
    if (row === undefined || row[0] !== 0) throw new Error(`${dd.file}: could not checkpoint its write-ahead log before recovery`);
    const keptAt = join(target, `before-recovery-${new Date().toISOString().replace(/[:.]/g, "-")}`);
    mkdirSync(keptAt);
    linkSync(dd.file, join(keptAt, DB_FILE));
    if (existsSync(join(target, CLUSTER_FILE))) copyFileSync(join(target, CLUSTER_FILE), join(keptAt, CLUSTER_FILE));
    if (existsSync(join(target, STATE_FILE))) copyFileSync(join(target, STATE_FILE), join(keptAt, STATE_FILE));
    syncPath(keptAt);
    // New cluster id, then the new file replaces the old in one rename (the commit point). We hold
    // the data dir's lock throughout, so no node starts in between.
    writeClusterId(target, clusterId);
    commitDataFile(tmp, target);
    return { keptAt, clusterId, index: state.lastIndex, promoted: Math.max(0, state.lastIndex - state.hardState.commit) };
  } catch (err) {
    rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
