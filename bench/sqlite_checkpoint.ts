// How often SQLite checkpoints the WAL, and what a busy node's Readies cost (not a test):
// `bun bench/sqlite_checkpoint.ts [entries, default 120000]`. Three data dirs opened as a node opens
// them (src/storage/data_dir.ts), then set to checkpoint every 1,000 WAL pages (SQLite's default),
// 4,000 and 10,000 (what data_dir.ts sets); on each, Readies of 16 puts (100 B values over 10k
// keys, the history pruning as it runs on a node) saved to the log and applied in one transaction
// with fsync, the log trimmed every 10k entries as snapshots trim it. The three take turns Ready by
// Ready, so they see the same machine load. Prints CPU µs per entry (process.cpuUsage) and the wall
// time of a Ready (mean, p50, p99, max: a checkpoint runs inside the commit that crosses the mark).
// The first third of the Readies is warm-up. Bounded by the entry count; temporary files removed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/kv/store.ts";
import { alternateReadies, benchDataDir, saveAndApply } from "./put_readies.ts";

const BATCH = 16;
const ENTRIES = Number(process.argv[2] ?? 120_000);
const root = mkdtempSync(join(tmpdir(), "phalanx-checkpoint-"));

try {
  const runs = [1000, 4000, 10_000].map((pages) => {
    const log = benchDataDir(join(root, String(pages)));
    log.db.run(`PRAGMA wal_autocheckpoint = ${pages}`);
    return { pages, log, kv: new KvStore(log), index: 0, cpuUs: 0, wallsUs: [] as number[], entries: 0 };
  });
  alternateReadies(
    runs,
    { entries: ENTRIES, batch: BATCH },
    (run, entries) => saveAndApply(run.log, run.kv, entries),
    (run, cpu, wallUs) => {
      run.cpuUs += cpu;
      run.wallsUs.push(wallUs);
      run.entries += BATCH;
    },
  );
  console.log(`Readies of ${BATCH} puts, fsync on, ${ENTRIES} entries each (the last two thirds counted)`);
  for (const run of runs) {
    const w = [...run.wallsUs].sort((a, b) => a - b);
    const ms = (us: number) => (us / 1000).toFixed(2);
    const mean = w.reduce((a, b) => a + b, 0) / w.length;
    console.log(
      `wal_autocheckpoint ${String(run.pages).padStart(5)}: ${(run.cpuUs / run.entries).toFixed(1)} µs CPU per entry; a Ready's wall time mean ${ms(mean)} ms, p50 ${ms(w[w.length >> 1]!)}, p99 ${ms(w[Math.floor(w.length * 0.99)]!)}, max ${ms(w[w.length - 1]!)}`,
    );
    run.log.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
