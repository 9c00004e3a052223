// Where a Ready's SQLite work could go, measured (not a test): `bun bench/apply_layout.ts [entries,
// default 100000]`. Four layouts of the same work, on data dirs opened as a node opens them
// (src/storage/data_dir.ts), taking turns Ready by Ready so that they see the same machine load:
//   today        the Ready's log entries and their apply in one transaction, with fsync;
//   split        the log in one data dir (fsync), the state machine in a second one (no fsync):
//                the log's fsync then covers only log pages;
//   batched      the log per Ready (fsync), the applies of 8 Readies in one transaction (no fsync);
//   log only     the log per Ready (fsync), no apply: the floor, what the apply costs above it.
// Readies of 16 puts (100 B values over 10k keys, the history pruning as it runs on a node), the
// log trimmed every 10k entries as snapshots trim it. Prints CPU µs (process.cpuUsage) and wall
// µs per entry over the last two thirds. Bounded by the entry count; temporary files removed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { KvStore } from "../src/kv/store.ts";
import type { Entry } from "../src/raft/types.ts";
import type { DataDir } from "../src/storage/data_dir.ts";
import { alternateReadies, benchDataDir, saveAndApply, saveLog } from "./put_readies.ts";

const BATCH = 16;
const APPLY_EVERY = 8;
const ENTRIES = Number(process.argv[2] ?? 100_000);
const root = mkdtempSync(join(tmpdir(), "phalanx-apply-layout-"));
const open = (name: string) => benchDataDir(join(root, name));

interface Layout {
  name: string;
  /** Where the log lives; the state machine is on `state` (the same data dir but for "split"). */
  log: DataDir;
  state: DataDir;
  kv: KvStore;
  /** Handles Ready number `r`. */
  ready: (entries: Entry[], r: number) => void;
  /** Entries saved and not applied yet ("batched"). */
  pending: Entry[];
  index: number;
  cpuUs: number;
  wallUs: number;
  counted: number;
}

function layout(name: string, state: "same data dir" | "own data dir", ready: (l: Layout, entries: Entry[], r: number) => void): Layout {
  const log = open(name);
  const st = state === "own data dir" ? open(`${name}-state`) : log;
  const l: Layout = { name, log, state: st, kv: new KvStore(st), ready: (entries, r) => ready(l, entries, r), pending: [], index: 0, cpuUs: 0, wallUs: 0, counted: 0 };
  return l;
}

const applyUnsynced = (l: Layout, entries: Entry[]) => l.state.transaction(() => entries.forEach((e) => l.kv.apply(e)), { sync: false });

try {
  const layouts = [
    layout("today", "same data dir", (l, entries) => saveAndApply(l.log, l.kv, entries)),
    layout("split", "own data dir", (l, entries) => {
      saveLog(l.log, entries);
      applyUnsynced(l, entries);
    }),
    layout("batched", "same data dir", (l, entries, r) => {
      saveLog(l.log, entries);
      l.pending.push(...entries);
      if (r % APPLY_EVERY !== APPLY_EVERY - 1) return;
      applyUnsynced(l, l.pending);
      l.pending = [];
    }),
    layout("log only", "same data dir", (l, entries) => saveLog(l.log, entries)),
  ];
  alternateReadies(
    layouts,
    { entries: ENTRIES, batch: BATCH },
    (l, entries, r) => l.ready(entries, r),
    (l, cpu, wallUs) => {
      l.cpuUs += cpu;
      l.wallUs += wallUs;
      l.counted += BATCH;
    },
  );
  console.log(`Readies of ${BATCH} puts, ${ENTRIES} entries per layout (the last two thirds counted)`);
  for (const l of layouts) {
    console.log(`${l.name.padEnd(9)} ${(l.cpuUs / l.counted).toFixed(1).padStart(5)} µs CPU, ${(l.wallUs / l.counted).toFixed(1).padStart(5)} µs wall per entry`);
    l.log.close();
    if (l.state !== l.log) l.state.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
