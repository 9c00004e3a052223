// The SQLite log must behave exactly like MemoryStorage, the reference: the same random sequence
// of operations runs against both and every observable result (values and errors) is compared,
// including after reopening the SQLite file.
import { afterAll, describe, expect, test } from "bun:test";
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import type { WritableLogStorage } from "../../src/raft/storage.ts";
import type { ConfState, Entry, EntryType, HardState } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";
import { TempDirs } from "./temp_dir.ts";

const temp = new TempDirs();
afterAll(() => temp.cleanup());

const CONF: ConfState = { voters: ["a", "b", "c"], learners: ["d"] };

/** Deterministic PRNG (mulberry32) so a failing seed can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Runs `f` and reports its value or the error's class and message, for comparison. */
function outcome(f: () => unknown): unknown {
  try {
    return { ok: f() };
  } catch (err) {
    return { error: (err as Error).constructor.name, message: (err as Error).message };
  }
}

function observe(s: WritableLogStorage): unknown {
  const first = s.firstIndex();
  const last = s.lastIndex();
  const terms: unknown[] = [];
  for (let i = Math.max(0, first - 3); i <= last + 2; i++) terms.push(outcome(() => s.term(i)));
  return {
    hs: s.hardState(),
    meta: s.snapshotMeta(),
    snap: s.snapshot(),
    first,
    last,
    terms,
    all: outcome(() => s.entries(first, last + 1, Infinity)),
    conf: s.confEntries(0, last + 5),
  };
}

function runSequence(seed: number, steps: number): void {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const dir = temp.make();
  const mem = new MemoryStorage(CONF);
  let dd: DataDir = openDataDir(dir, { bootstrap: CONF });
  let term = 1;
  for (let step = 0; step < steps; step++) {
    const op = int(100);
    let exec: (s: WritableLogStorage) => unknown;
    if (op < 40) {
      // Append, sometimes overwriting a suffix (conflict) or with a new term.
      if (r() < 0.2) term += 1;
      const last = mem.lastIndex();
      const from = r() < 0.25 ? Math.max(mem.firstIndex(), last - int(5)) : last + 1;
      const n = 1 + int(20);
      const types: EntryType[] = ["normal", "normal", "normal", "noop", "conf"];
      const entries: Entry[] = [];
      for (let i = 0; i < n; i++) {
        entries.push({ index: from + i, term, type: types[int(types.length)]!, data: new Uint8Array([step & 255, i]) });
      }
      const hs: HardState | null = r() < 0.5 ? { term, vote: r() < 0.5 ? "b" : null, commit: int(last + 1) } : null;
      exec = (s) => s.save(null, entries, hs);
    } else if (op < 50) {
      const hs: HardState = { term, vote: "a", commit: int(mem.lastIndex() + 1) };
      exec = (s) => s.save(null, [], hs);
    } else if (op < 60) {
      const index = mem.snapshotMeta().index + int(mem.lastIndex() - mem.snapshotMeta().index + 3);
      const compactTo = index - int(4);
      const conf: ConfState = { voters: ["a", "b"], learners: [] };
      exec = (s) => s.createSnapshot({ meta: { index, term: index <= mem.lastIndex() ? mem.term(index) : 0, conf }, data: new Uint8Array([index & 255]) }, compactTo);
    } else if (op < 65) {
      // A snapshot from the leader, possibly ahead of our log, with entries following it.
      const index = mem.lastIndex() + int(10) - 3;
      term += 1;
      const snap = { meta: { index, term, conf: { voters: ["x"], learners: ["y"] } }, data: new Uint8Array([1, 2, 3]) };
      const entries: Entry[] = r() < 0.5 ? [{ index: index + 1, term, type: "noop", data: new Uint8Array(0) }] : [];
      exec = (s) => s.save(snap, entries, { term, vote: null, commit: index });
    } else if (op < 85) {
      const lo = mem.firstIndex() - 2 + int(mem.lastIndex() - mem.firstIndex() + 4);
      const hi = lo + int(30);
      const maxBytes = int(300);
      exec = (s) => s.entries(lo, hi, maxBytes);
    } else if (op < 90) {
      // Out-of-range appends must fail identically.
      const from = r() < 0.5 ? mem.lastIndex() + 2 + int(3) : mem.firstIndex() - 1 - int(2);
      exec = (s) => s.save(null, [{ index: from, term, type: "normal", data: new Uint8Array(0) }], null);
    } else if (op < 97) {
      const lo = int(mem.lastIndex() + 3);
      const hi = lo + int(40);
      exec = (s) => s.confEntries(lo, hi);
    } else {
      dd.close();
      dd = openDataDir(dir, { bootstrap: { voters: ["ignored"], learners: [] } });
      exec = () => null;
    }
    expect(outcome(() => exec(dd.log))).toEqual(outcome(() => exec(mem)));
    expect(observe(dd.log)).toEqual(observe(mem));
  }
  dd.close();
  const reopened = openDataDir(dir, { bootstrap: CONF });
  expect(observe(reopened.log)).toEqual(observe(mem));
  reopened.close();
}

describe("SqliteLogStorage conforms to MemoryStorage", () => {
  for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
    test(`random sequence, seed ${seed}`, () => runSequence(seed, 300));
  }
});
