// Crash recovery with real processes: crash_node.ts is killed with SIGKILL at random points
// (after a random number of its output lines, while it keeps writing) and restarted. Every write
// or snapshot install it acknowledged must survive exactly once, and the recovered log and state
// must be consistent: snapshot <= applied <= commit <= lastIndex, revisions never going back.
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { KvStore } from "../../src/kv/store.ts";
import { openDataDir } from "../../src/storage/data_dir.ts";
import { TempDirs } from "./temp_dir.ts";

const temp = new TempDirs();
afterAll(() => temp.cleanup());

const BUN = process.execPath;
const HARNESS = join(import.meta.dir, "crash_node.ts");
const ROUNDS = 20;
const LINE_DEADLINE_MS = 15_000;

interface RecoveredState {
  applied: number;
  commit: number;
  first: number;
  last: number;
  snapshot: number;
  revision: number;
  keys: number;
}

/** Reads stdout line by line; each line must arrive before a deadline, or the test fails. */
class Lines {
  private buffered = "";
  private readonly reader: { read(): Promise<{ done: boolean; value?: Uint8Array }> };
  private readonly decoder = new TextDecoder();
  private done = false;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.reader = stream.getReader();
  }

  /** The next complete line, or null at the end of the stream. */
  async next(): Promise<string | null> {
    const deadline = Date.now() + LINE_DEADLINE_MS;
    for (;;) {
      const nl = this.buffered.indexOf("\n");
      if (nl >= 0) {
        const line = this.buffered.slice(0, nl);
        this.buffered = this.buffered.slice(nl + 1);
        return line;
      }
      // A partial last line was cut by the kill: it was never fully acknowledged.
      if (this.done) return null;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error("no output from the harness before the deadline");
      let timer: Timer | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error("no output from the harness before the deadline")), left);
      });
      try {
        const chunk = await Promise.race([this.reader.read(), timeout]);
        if (chunk.done || chunk.value === undefined) this.done = true;
        else this.buffered += this.decoder.decode(chunk.value, { stream: true });
      } finally {
        clearTimeout(timer);
      }
    }
  }
}

/** Runs the harness until its k-th line, kills it, and returns the recovered state and every line. */
async function crashOnce(dir: string, mode: string, seed: number, k: number): Promise<{ state: RecoveredState; lines: string[] }> {
  const proc = Bun.spawn([BUN, HARNESS, dir, mode, String(seed)], { stdout: "pipe", stderr: "pipe" });
  const lines = new Lines(proc.stdout);
  const first = await lines.next();
  if (first === null || !first.startsWith("state ")) {
    proc.kill(9);
    throw new Error(`harness did not start: ${first} ${await new Response(proc.stderr).text()}`);
  }
  const out: string[] = [];
  for (let line = await lines.next(); line !== null; line = await lines.next()) {
    out.push(line);
    if (out.length === k) proc.kill(9);
  }
  const code = await proc.exited;
  if (out.length < k) throw new Error(`harness exited (${code}) early: ${await new Response(proc.stderr).text()}`);
  expect(proc.signalCode).toBe("SIGKILL");
  return { state: JSON.parse(first.slice(6)) as RecoveredState, lines: out };
}

function checkConsistent(s: RecoveredState, prev: RecoveredState | null): void {
  expect(s.snapshot).toBeGreaterThanOrEqual(s.first - 1);
  expect(s.snapshot).toBeLessThanOrEqual(s.applied);
  expect(s.applied).toBeLessThanOrEqual(s.commit);
  expect(s.commit).toBeLessThanOrEqual(s.last);
  expect(s.revision).toBeLessThanOrEqual(s.applied);
  if (prev !== null) {
    expect(s.revision).toBeGreaterThanOrEqual(prev.revision);
    expect(s.applied).toBeGreaterThanOrEqual(prev.applied);
    expect(s.keys).toBeGreaterThanOrEqual(prev.keys);
  }
}

/** Final check in this process: the keys are exactly w/0..w/(n-1), each written once. */
function checkKeys(dir: string, acked: Map<number, number>): void {
  const dd = openDataDir(dir, { bootstrap: { voters: ["n1"], learners: [] } });
  try {
    const kv = new KvStore(dd);
    const total = kv.count("w/").count;
    expect(total).toBeGreaterThanOrEqual(acked.size);
    let seen = 0;
    let after: string | undefined;
    let lastRevision = 0;
    // Pages of 1,000 over a finite key set: bounded by total / 1000 + 1 iterations.
    for (let page = 0; page <= total / 1000 + 1; page++) {
      const r = kv.range({ prefix: "w/", after, limit: 1000 });
      for (const x of r.kvs) {
        const n = Number(x.key.slice(2));
        expect(n).toBe(seen);
        expect(new TextDecoder().decode(x.value)).toBe(String(n));
        expect(x.version).toBe(1);
        expect(x.createRevision).toBe(x.modRevision);
        // Later writes got later log indexes: revisions increase with the key number.
        expect(x.modRevision).toBeGreaterThan(lastRevision);
        lastRevision = x.modRevision;
        const ackedRevision = acked.get(n);
        if (ackedRevision !== undefined) expect(x.modRevision).toBe(ackedRevision);
        seen++;
      }
      if (!r.more) break;
      after = r.kvs[r.kvs.length - 1]!.key;
    }
    expect(seen).toBe(total);
  } finally {
    dd.close();
  }
}

async function crashLoop(mode: "writes" | "snapshots"): Promise<void> {
  const dir = join(temp.make("phalanx-crash"), "data");
  const acked = new Map<number, number>();
  let prev: RecoveredState | null = null;
  let maxAckedRevision = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const k = 1 + Math.floor(Math.random() * 400);
    const { state, lines } = await crashOnce(dir, mode, round + 1, k);
    checkConsistent(state, prev);
    expect(state.applied).toBeGreaterThanOrEqual(maxAckedRevision);
    expect(state.keys).toBeGreaterThanOrEqual(acked.size);
    for (const line of lines) {
      const [tag, n, revision] = line.split(" ");
      expect(tag).toBe("ack");
      expect(acked.has(Number(n))).toBe(false);
      acked.set(Number(n), Number(revision));
      expect(Number(revision)).toBeGreaterThan(maxAckedRevision);
      maxAckedRevision = Number(revision);
    }
    prev = state;
  }
  expect(acked.size).toBeGreaterThan(ROUNDS);
  checkKeys(dir, acked);
}

describe("crash recovery (kill -9)", () => {
  test(`acknowledged writes survive ${ROUNDS} crashes exactly once`, () => crashLoop("writes"), 60_000);

  test(`with snapshots and compaction every 25 entries, across ${ROUNDS} crashes`, () => crashLoop("snapshots"), 60_000);

  test(`snapshot installs are atomic across ${ROUNDS} crashes`, async () => {
    const dir = join(temp.make("phalanx-crash"), "target");
    let installed = { index: 0, keys: 0 };
    let prev: RecoveredState | null = null;
    for (let round = 0; round < ROUNDS; round++) {
      const { state, lines } = await crashOnce(dir, "install", round + 1, 1 + Math.floor(Math.random() * 20));
      checkConsistent(state, prev);
      // The state is exactly one installed snapshot: never a mix, never older than acknowledged.
      expect(state.applied).toBe(state.snapshot);
      expect(state.applied).toBeGreaterThanOrEqual(installed.index);
      expect(state.keys).toBeGreaterThanOrEqual(installed.keys);
      for (const line of lines) {
        const [tag, index, keys] = line.split(" ");
        expect(tag).toBe("installed");
        installed = { index: Number(index), keys: Number(keys) };
      }
      prev = state;
    }
    expect(installed.index).toBeGreaterThan(0);
  }, 60_000);
});
