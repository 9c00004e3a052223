// CPU per written entry on one node (not a test): `bun bench/apply_cpu.ts`. Each Ready is what a
// busy node does: encode the proposals (the leader's part), then one transaction that saves the
// entries to the log and applies them through the real KvStore on the real DataDir. Readies of 1,
// 20 and 256 put entries (100 B values, 10k keys, with and without a client id), fsync on and off.
// Prints µs of process CPU (user + system) per entry, the median of 3 runs, and wall µs per entry.
// Bounded: a fixed number of entries per run. Uses a temporary directory, removed at the end.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeProposal, type Proposal } from "../src/kv/command.ts";
import { KvStore } from "../src/kv/store.ts";
import type { Entry } from "../src/raft/types.ts";
import { openDataDir } from "../src/storage/data_dir.ts";

const CONF = { voters: ["n1"], learners: [] };
const KEYS = 10_000;
const CLIENTS = 64;
const RUNS = 3;
const root = mkdtempSync(join(tmpdir(), "phalanx-apply-"));
const only = process.argv[2];

type Kind = "plain" | "session";

function cpuUs(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** One run: `entries` puts in Readies of `batch`; returns [encode µs/entry, transaction µs/entry, wall µs/entry]. */
function run(batch: number, sync: boolean, kind: Kind, entries: number, tag: string): [number, number, number] {
  const dd = openDataDir(join(root, tag), { bootstrap: CONF, integrityCheck: false });
  const kv = new KvStore(dd);
  let index = 0;
  const clients: number[] = [];
  const seqs: number[] = [];
  const time = 1_700_000_000_000;
  if (kind === "session") {
    dd.transaction(() => {
      for (let c = 0; c < CLIENTS; c++) {
        const e: Entry = { index: ++index, term: 1, type: "normal", data: encodeProposal({ time, session: null, cmd: { op: "register" } }) };
        dd.log.save(null, [e], { term: 1, vote: "n1", commit: index });
        kv.apply(e);
        clients.push(e.index);
        seqs.push(0);
      }
    });
  }
  const value = new Uint8Array(100).fill(7);
  let encodeCpu = 0;
  let txCpu = 0;
  const w0 = performance.now();
  for (let done = 0; done < entries; done += batch) {
    const e0 = cpuUs();
    const ready: Entry[] = [];
    for (let i = 0; i < batch; i++) {
      const n = done + i;
      const c = n % CLIENTS;
      const session: Proposal["session"] = kind === "session" ? { client: clients[c]!, seq: ++seqs[c]! } : null;
      const data = encodeProposal({ time: time + (n >> 4), session, cmd: { op: "put", key: `bench/key/${(n * 7919) % KEYS}`, value } });
      ready.push({ index: ++index, term: 1, type: "normal", data });
    }
    const t0 = cpuUs();
    dd.transaction(
      () => {
        dd.log.save(null, ready, { term: 1, vote: "n1", commit: index });
        for (const e of ready) kv.apply(e);
      },
      { sync },
    );
    const t1 = cpuUs();
    encodeCpu += t0 - e0;
    txCpu += t1 - t0;
  }
  const wall = ((performance.now() - w0) * 1000) / entries;
  dd.close();
  rmSync(join(root, tag), { recursive: true, force: true });
  return [encodeCpu / entries, txCpu / entries, wall];
}

const median = (xs: number[]) => xs.slice().sort((a, b) => a - b)[xs.length >> 1]!;
console.log("| Ready | fsync | client id | encode µs CPU/entry | save+apply µs CPU/entry | total µs CPU/entry | wall µs/entry |\n|---|---|---|---|---|---|---|");
let tag = 0;
for (const kind of ["plain", "session"] as const) {
  if (only !== undefined && only !== kind) continue;
  for (const sync of [true, false]) {
    for (const batch of [1, 20, 256]) {
      // Enough entries for a steady figure, few enough that fsync-on Readies of 1 stay under a second or two.
      const entries = batch === 1 ? (sync ? 1_000 : 5_000) : batch === 20 ? 10_000 : 25_600;
      run(batch, sync, kind, Math.min(entries, 2_560), `warm${tag++}`);
      const rs = Array.from({ length: RUNS }, () => run(batch, sync, kind, entries, `r${tag++}`));
      const [enc, tx, wall] = [0, 1, 2].map((i) => median(rs.map((r) => r[i]!)));
      console.log(`| ${batch} | ${sync ? "on" : "off"} | ${kind === "session" ? "yes" : "no"} | ${enc!.toFixed(1)} | ${tx!.toFixed(1)} | ${(enc! + tx!).toFixed(1)} | ${wall!.toFixed(1)} |`);
    }
  }
}
rmSync(root, { recursive: true, force: true });
