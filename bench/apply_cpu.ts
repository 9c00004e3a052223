// CPU per written entry on one node (not a test): `bun bench/apply_cpu.ts [other checkout ...]`.
// Each Ready is what a busy node does: encode the proposals (the leader's part), then one
// transaction that saves the entries to the log and applies them through the real KvStore on the
// real DataDir. Readies of 1, 20 and 256 puts (100 B values, 10k keys, with and without a client
// id), fsync on and off. Prints µs of process CPU (user + system, getrusage around each phase)
// per entry: encode, save + apply, total.
//
// Given other checkouts (e.g. `git worktree add /tmp/base main`, or `git archive main | tar -x`
// with node_modules linked), their code runs in the same process on its own data dir, Ready by
// Ready in alternation with this one: on a shared machine that is the fair comparison, since
// both see the same load. Bounded: a fixed number of Readies per row. Temporary files are removed.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const checkouts = [resolve(import.meta.dir, ".."), ...process.argv.slice(2).map((p) => resolve(p))];
const versions = await Promise.all(
  checkouts.map(async (dir) => ({
    dir,
    command: (await import(join(dir, "src/kv/command.ts"))) as typeof import("../src/kv/command.ts"),
    store: (await import(join(dir, "src/kv/store.ts"))) as typeof import("../src/kv/store.ts"),
    dataDir: (await import(join(dir, "src/storage/data_dir.ts"))) as typeof import("../src/storage/data_dir.ts"),
  })),
);
type Entry = import("../src/raft/types.ts").Entry;

const KEYS = 10_000;
const CLIENTS = 64;
const VALUE = new Uint8Array(100).fill(7);
const TIME = 1_700_000_000_000;
const root = mkdtempSync(join(tmpdir(), "phalanx-apply-"));
const cpu = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

function row(batch: number, sync: boolean, withSession: boolean): string {
  // About 20k entries per row (fewer with fsync on small Readies), the first tenth as warm-up.
  const readies = batch === 1 ? (sync ? 600 : 2_000) : Math.ceil((sync ? 6_000 : 12_000) / batch);
  const runs = versions.map((v, i) => {
    const dd = v.dataDir.openDataDir(join(root, `${batch}-${sync}-${withSession}-${i}`), { bootstrap: { voters: ["n1"], learners: [] }, integrityCheck: false });
    const kv = new v.store.KvStore(dd);
    const run = { v, dd, kv, index: 0, clients: [] as number[], seqs: [] as number[], encode: 0, apply: 0 };
    if (withSession) {
      dd.transaction(() => {
        for (let c = 0; c < CLIENTS; c++) {
          const e: Entry = { index: ++run.index, term: 1, type: "normal", data: v.command.encodeProposal({ time: TIME, session: null, cmd: { op: "register" } }) };
          dd.log.save(null, [e], { term: 1, vote: "n1", commit: e.index });
          kv.apply(e);
          run.clients.push(e.index);
          run.seqs.push(0);
        }
      });
    }
    return run;
  });
  let entries = 0;
  for (let r = 0; r < readies; r++) {
    const counted = r >= readies / 10;
    for (const run of r % 2 === 0 ? runs : [...runs].reverse()) {
      const c0 = cpu();
      const ready: Entry[] = [];
      for (let i = 0; i < batch; i++) {
        const n = r * batch + i;
        const c = n % CLIENTS;
        const session = withSession ? { client: run.clients[c]!, seq: ++run.seqs[c]! } : null;
        const data = run.v.command.encodeProposal({ time: TIME + (n >> 4), session, cmd: { op: "put", key: `bench/key/${(n * 7919) % KEYS}`, value: VALUE } });
        ready.push({ index: ++run.index, term: 1, type: "normal", data });
      }
      const c1 = cpu();
      run.dd.transaction(
        () => {
          run.dd.log.save(null, ready, { term: 1, vote: "n1", commit: run.index });
          for (const e of ready) run.kv.apply(e);
        },
        { sync },
      );
      const c2 = cpu();
      if (counted) {
        run.encode += c1 - c0;
        run.apply += c2 - c1;
      }
    }
    if (counted) entries += batch;
  }
  for (const run of runs) run.dd.close();
  const cells = runs.map((run) => `${(run.encode / entries).toFixed(1)} + ${(run.apply / entries).toFixed(1)} = ${((run.encode + run.apply) / entries).toFixed(1)}`);
  return `| ${batch} | ${sync ? "on" : "off"} | ${withSession ? "yes" : "no"} | ${cells.join(" | ")} |`;
}

console.log(`| Ready | fsync | client id | ${checkouts.map((c) => `${c}: encode + save/apply = µs CPU/entry`).join(" | ")} |`);
console.log(`|---|---|---|${checkouts.map(() => "---|").join("")}`);
for (const sync of [true, false]) for (const batch of [1, 20, 256]) for (const withSession of [false, true]) console.log(row(batch, sync, withSession));
rmSync(root, { recursive: true, force: true });
