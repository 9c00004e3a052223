// Storage benchmark (not a test): `bun bench/storage.ts`. Prints a Markdown table for
// BENCHMARKS.md. Uses a temporary directory under os.tmpdir(), removed at the end.
import { Database } from "bun:sqlite";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeProposal } from "../src/kv/command.ts";
import { KvStore } from "../src/kv/store.ts";
import type { Entry } from "../src/raft/types.ts";
import { openDataDir, type DataDir } from "../src/storage/data_dir.ts";

const KEYS = Number(process.env.BENCH_KEYS ?? 1_000_000);
const CONF = { voters: ["n1"], learners: [] };
const root = mkdtempSync(join(tmpdir(), "phalanx-bench-"));
const rows: Array<[string, string]> = [];

function record(what: string, value: string): void {
  rows.push([what, value]);
  console.error(`${what}: ${value}`);
}

function time<T>(fn: () => T): [T, number] {
  const t0 = performance.now();
  const r = fn();
  return [r, (performance.now() - t0) / 1000];
}

const fmt = (n: number) => Math.round(n).toLocaleString("en-US");
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const fileSize = (dd: DataDir) => statSync(dd.file).size + statSync(`${dd.file}-wal`, { throwIfNoEntry: false })?.size!;

function putEntry(index: number, n: number): Entry {
  const value = new Uint8Array(64).fill(n & 255);
  return { index, term: 1, type: "normal", data: encodeProposal({ time: 1_700_000_000_000, session: null, cmd: { op: "put", key: `key/${String(n).padStart(8, "0")}`, value } }) };
}

function appendRate(batch: number, seconds: number): number {
  const dd = openDataDir(join(root, `append-${batch}`), { bootstrap: CONF });
  const data = new Uint8Array(100);
  let next = 1;
  const t0 = performance.now();
  // Bounded by time: at most `seconds` of work plus one batch.
  while (performance.now() - t0 < seconds * 1000) {
    const entries: Entry[] = [];
    for (let i = 0; i < batch; i++) entries.push({ index: next + i, term: 1, type: "normal", data });
    dd.log.save(null, entries, { term: 1, vote: "n1", commit: next - 1 });
    next += batch;
  }
  const rate = (next - 1) / ((performance.now() - t0) / 1000);
  dd.close();
  return rate;
}

// Baseline in the same run (the disk is shared, so absolute numbers drift between runs): plain
// bun:sqlite, one prepared INSERT of a 100 B row per transaction, WAL, synchronous=FULL.
{
  const db = new Database(join(root, "baseline.db"), { create: true, strict: true });
  db.run("PRAGMA journal_mode = WAL");
  db.run("PRAGMA synchronous = FULL");
  db.run("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB NOT NULL)");
  const insert = db.prepare("INSERT INTO t VALUES (?, ?)");
  const [begin, commit] = [db.prepare("BEGIN IMMEDIATE"), db.prepare("COMMIT")];
  const data = new Uint8Array(100);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < 3000) {
    begin.run();
    insert.run(++n, data);
    commit.run();
  }
  record("baseline: plain bun:sqlite, one 100 B row per commit", `${fmt(n / ((performance.now() - t0) / 1000))} commits/s`);
  db.close();
}

for (const batch of [1, 16, 256]) record(`append, batches of ${batch} entries of 100 B (one fsync each)`, `${fmt(appendRate(batch, 3))} entries/s`);

// Applied puts: one transaction per Ready = save the entries + apply them, as the node does.
function applyRate(batch: number, count: number, dd: DataDir, kv: KvStore, start: number): number {
  const [, secs] = time(() => {
    for (let base = start; base < start + count; base += batch) {
      const entries: Entry[] = [];
      for (let i = 0; i < batch && base + i < start + count; i++) entries.push(putEntry(base + i, base + i));
      dd.transaction(() => {
        dd.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index });
        for (const e of entries) kv.apply(e);
      });
    }
  });
  return count / secs;
}

{
  const dd = openDataDir(join(root, "apply-1"), { bootstrap: CONF });
  const kv = new KvStore(dd);
  record("put, Ready of 1 (save + apply, one transaction)", `${fmt(applyRate(1, 20_000, dd, kv, 1))} puts/s`);
  dd.close();
}

const bigDir = join(root, "big");
{
  const dd = openDataDir(bigDir, { bootstrap: CONF });
  const kv = new KvStore(dd);
  const rate = applyRate(256, KEYS, dd, kv, 1);
  record(`put, Readies of 256 (save + apply), ${fmt(KEYS)} new keys of 64 B`, `${fmt(rate)} puts/s`);
  record(`data file with ${fmt(KEYS)} log entries and ${fmt(KEYS)} keys`, mb(fileSize(dd)));
  dd.close();
}

for (const integrityCheck of [true, false]) {
  const [dd, secs] = time(() => {
    const d = openDataDir(bigDir, { bootstrap: CONF, integrityCheck });
    new KvStore(d);
    return d;
  });
  record(`reopen, ${fmt(KEYS)}-entry log, no snapshot${integrityCheck ? ", with quick_check" : ", without quick_check"}`, `${secs.toFixed(2)} s`);
  dd.close();
}

{
  const dd = openDataDir(bigDir, { bootstrap: CONF });
  const kv = new KvStore(dd);
  const [snap, secs] = time(() => kv.snapshot());
  record(`snapshot of ${fmt(KEYS)} keys (take)`, `${secs.toFixed(2)} s, ${mb(snap.data.byteLength)}`);
  const meta = { index: snap.index, term: dd.log.term(snap.index), conf: snap.conf };
  const [, compactSecs] = time(() => dd.log.createSnapshot({ meta, data: snap.data }, snap.index));
  record(`createSnapshot: store it + compact ${fmt(KEYS)} entries`, `${compactSecs.toFixed(2)} s`);
  dd.close();

  const other = openDataDir(join(root, "restore"), { bootstrap: CONF });
  const otherKv = new KvStore(other);
  const [, restoreSecs] = time(() =>
    other.transaction(() => {
      other.log.save({ meta, data: snap.data }, [], { term: 1, vote: null, commit: meta.index });
      otherKv.restore(snap.data, meta);
    }),
  );
  record(`install a snapshot of ${fmt(KEYS)} keys (save + restore)`, `${restoreSecs.toFixed(2)} s`);
  other.close();
}

for (const integrityCheck of [true, false]) {
  const [dd, secs] = time(() => {
    const d = openDataDir(bigDir, { bootstrap: CONF, integrityCheck });
    new KvStore(d);
    return d;
  });
  record(`reopen after snapshot + compaction${integrityCheck ? ", with quick_check" : ", without quick_check"}`, `${secs.toFixed(2)} s`);
  dd.close();
}

rmSync(root, { recursive: true, force: true });
console.log("| measurement | result |\n|---|---|");
for (const [what, value] of rows) console.log(`| ${what} | ${value} |`);
