// What the storage benchmarks (sqlite_checkpoint.ts, apply_layout.ts) feed a data dir: Readies of
// puts shaped like a busy node's (100-byte values over 10,000 keys, proposal time advancing), the
// loop that hands them to each contender in turn, and the process's CPU time.

import { encodeProposal } from "../src/kv/command.ts";
import type { KvStore } from "../src/kv/store.ts";
import type { Entry } from "../src/raft/types.ts";
import { type DataDir, openDataDir } from "../src/storage/data_dir.ts";

const KEYS = 10_000;
const VALUE = new Uint8Array(100).fill(7);

/** Ready number `r` of `batch` puts, its entries numbered on from `lastIndex`. */
export function putReady(r: number, batch: number, lastIndex: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 0; i < batch; i++) {
    const n = r * batch + i;
    const data = encodeProposal({ time: 1_700_000_000_000 + n, session: null, cmd: { op: "put", key: `bench/key/${(n * 7919) % KEYS}`, value: VALUE } });
    entries.push({ index: lastIndex + i + 1, term: 1, type: "normal", data });
  }
  return entries;
}

/** The Ready's entries saved to the log with fsync, not applied. */
export function saveLog(dd: DataDir, entries: Entry[]): void {
  dd.transaction(() => dd.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index }), { sync: true });
}

/** What a node does with a Ready today: the log save and the apply in one transaction, with fsync. */
export function saveAndApply(dd: DataDir, kv: KvStore, entries: Entry[]): void {
  dd.transaction(
    () => {
      dd.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index });
      for (const e of entries) kv.apply(e);
    },
    { sync: true },
  );
}

/** A one-voter data dir opened as a node opens it, without the integrity check. */
export function benchDataDir(dir: string): DataDir {
  return openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] }, integrityCheck: false });
}

/** The log a node keeps after its snapshots: everything but the last 10,000 entries trimmed, every 10,000. */
export function trimLog(dd: DataDir, lastIndex: number, batch: number): void {
  if (lastIndex % 10_000 < batch && lastIndex > 20_000) dd.db.run(`DELETE FROM raft_log WHERE idx < ${lastIndex - 10_000}`);
}

/** User + system CPU time of this process, µs. */
export function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/**
 * Readies of `batch` puts, `entries` in all, handed to every run in turn (the order reversed every
 * other Ready, so that all see the same machine load and none always goes first), each run's log
 * trimmed as snapshots trim it. `measured` gets the CPU and wall µs of every Ready in the last two
 * thirds (the first third is warm-up).
 */
export function alternateReadies<R extends { index: number; log: DataDir }>(
  runs: R[],
  opts: { entries: number; batch: number },
  ready: (run: R, entries: Entry[], r: number) => void,
  measured: (run: R, cpu: number, wallUs: number) => void,
): void {
  const readies = Math.ceil(opts.entries / opts.batch);
  for (let r = 0; r < readies; r++) {
    for (const run of r % 2 === 0 ? runs : [...runs].reverse()) {
      const entries = putReady(r, opts.batch, run.index);
      run.index += opts.batch;
      const c0 = cpuUs();
      const t0 = performance.now();
      ready(run, entries, r);
      if (r > readies / 3) measured(run, cpuUs() - c0, (performance.now() - t0) * 1000);
      trimLog(run.log, run.index, opts.batch);
    }
  }
}
