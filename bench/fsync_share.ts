// What an fsync costs on this machine's disk alone and when three processes fsync at once, as
// the three nodes of a one-machine cluster do for every write (not a test):
// `bun bench/fsync_share.ts [--dir <on the data disk>] [--syncs 400] [--rounds 2]`.
// Each process overwrites 4 KiB pages of its own 8 MiB file (as a WAL past its first checkpoint
// does) and fsyncs after each; prints the fsync latency p50 and p90 of one process, then of each
// of three at once. A follower's fsync on a write's critical path is one of those three.
// Bounded: a fixed number of fsyncs per process; every process it starts is waited for.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({
  options: {
    dir: { type: "string" },
    syncs: { type: "string", default: "400" },
    rounds: { type: "string", default: "2" },
    child: { type: "string" },
  },
});
const SYNCS = Number(args.syncs);
const FILE_BYTES = 8 << 20;
const PAGE = new Uint8Array(4096 + 24).fill(1);

if (args.child !== undefined) {
  console.log(JSON.stringify(syncLatencies(args.child)));
} else {
  const dir = fs.mkdtempSync(path.join(args.dir ?? os.tmpdir(), "phalanx-fsync-"));
  try {
    for (let r = 1; r <= Number(args.rounds); r++) {
      for (const n of [1, 3]) {
        const runs = await Promise.all(Array.from({ length: n }, (_, i) => child(path.join(dir, `f${i}`))));
        console.log(`round ${r} ${n} at once: ${runs.map(summary).join(" · ")}`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Microseconds of each fsync after a 4 KiB overwrite, sorted. */
function syncLatencies(file: string): number[] {
  const fd = fs.openSync(file, "w+");
  try {
    fs.writeSync(fd, new Uint8Array(FILE_BYTES));
    fs.fsyncSync(fd);
    const out: number[] = [];
    let pos = 0;
    for (let i = 0; i < SYNCS; i++) {
      fs.writeSync(fd, PAGE, 0, PAGE.length, pos);
      pos = (pos + PAGE.length) % (FILE_BYTES - PAGE.length);
      const t0 = performance.now();
      fs.fsyncSync(fd);
      out.push((performance.now() - t0) * 1000);
    }
    return out.sort((a, b) => a - b);
  } finally {
    fs.closeSync(fd);
  }
}

async function child(file: string): Promise<number[]> {
  const proc = Bun.spawn([process.execPath, import.meta.path, "--child", file, "--syncs", String(SYNCS)], { stdout: "pipe", stderr: "inherit" });
  const text = await new Response(proc.stdout).text();
  if ((await proc.exited) !== 0) throw new Error(`the fsync process for ${file} failed`);
  return JSON.parse(text) as number[];
}

function summary(sorted: number[]): string {
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(0);
  return `p50 ${at(0.5)} µs, p90 ${at(0.9)} µs`;
}
