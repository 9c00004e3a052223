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
import { benchDataDir, cpuUs, putReady, trimLog } from "./put_readies.ts";

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
  ready(entries: Entry[], r: number): void;
}

function layout(name: string, ready: (l: Layout, entries: Entry[], r: number) => void, separateState = false): Layout {
  const log = open(name);
  const state = separateState ? open(`${name}-state`) : log;
  const l: Layout = { name, log, state, kv: new KvStore(state), ready: (entries, r) => ready(l, entries, r) };
  return l;
}

const saveLog = (l: Layout, entries: Entry[]) => l.log.transaction(() => l.log.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index }), { sync: true });
const pending = new Map<string, Entry[]>();

try {
  const layouts = [
    layout("today", (l, entries) =>
      l.log.transaction(
        () => {
          l.log.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index });
          for (const e of entries) l.kv.apply(e);
        },
        { sync: true },
      ),
    ),
    layout(
      "split",
      (l, entries) => {
        saveLog(l, entries);
        l.state.transaction(() => entries.forEach((e) => l.kv.apply(e)), { sync: false });
      },
      true,
    ),
    layout("batched", (l, entries, r) => {
      saveLog(l, entries);
      const p = [...(pending.get(l.name) ?? []), ...entries];
      if (r % APPLY_EVERY !== APPLY_EVERY - 1) return void pending.set(l.name, p);
      pending.set(l.name, []);
      l.state.transaction(() => p.forEach((e) => l.kv.apply(e)), { sync: false });
    }),
    layout("log only", (l, entries) => saveLog(l, entries)),
  ];
  const stats = new Map(layouts.map((l) => [l.name, { cpuUs: 0, wallUs: 0, entries: 0, index: 0 }]));
  const readies = Math.ceil(ENTRIES / BATCH);
  for (let r = 0; r < readies; r++) {
    for (const l of r % 2 === 0 ? layouts : [...layouts].reverse()) {
      const st = stats.get(l.name)!;
      const entries = putReady(r, BATCH, st.index);
      st.index += BATCH;
      const c0 = cpuUs();
      const t0 = performance.now();
      l.ready(entries, r);
      if (r > readies / 3) {
        st.cpuUs += cpuUs() - c0;
        st.wallUs += (performance.now() - t0) * 1000;
        st.entries += BATCH;
      }
      trimLog(l.log, st.index, BATCH);
    }
  }
  console.log(`Readies of ${BATCH} puts, ${ENTRIES} entries per layout (the last two thirds counted)`);
  for (const l of layouts) {
    const st = stats.get(l.name)!;
    console.log(`${l.name.padEnd(9)} ${(st.cpuUs / st.entries).toFixed(1).padStart(5)} µs CPU, ${(st.wallUs / st.entries).toFixed(1).padStart(5)} µs wall per entry`);
    l.log.close();
    if (l.state !== l.log) l.state.close();
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
