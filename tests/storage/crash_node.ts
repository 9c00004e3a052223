// Crash-test harness, run as its own process and killed with SIGKILL at random points by
// crash.test.ts. It opens a data dir and drives writes the way the node will: a single-node
// RawNode, each Ready persisted and applied in one transaction, acknowledged on stdout only after
// that transaction committed. Every line it prints is therefore a durable fact the test checks.
//   bun crash_node.ts <dir> writes <seed>     puts w/<n> in batches, group-committed
//   bun crash_node.ts <dir> snapshots <seed>  the same, snapshotting + compacting every 25 entries
//   bun crash_node.ts <dir> install <seed>    installs snapshots of a second, source data dir
// First line: "state <json>" with the recovered state; then "ack <n> <revision>" per write of w/<n>, or
// "installed <index> <keys>" per installed snapshot.
import { decodeProposal, encodeProposal, isError } from "../../src/kv/command.ts";
import { KvStore } from "../../src/kv/store.ts";
import { RawNode, type Ready } from "../../src/raft/raw_node.ts";
import type { Entry } from "../../src/raft/types.ts";
import { openDataDir, type DataDir } from "../../src/storage/data_dir.ts";

const [dir, mode, seedArg] = process.argv.slice(2);
if (dir === undefined || (mode !== "writes" && mode !== "snapshots" && mode !== "install")) {
  throw new Error("usage: crash_node.ts <dir> writes|snapshots|install <seed>");
}
let seed = Number(seedArg ?? 1) >>> 0;
const random = () => {
  seed = (seed * 1664525 + 1013904223) >>> 0;
  return seed / 4294967296;
};
const CONF = { voters: ["n1"], learners: [] };
const MAX_ROUNDS = 20_000;
const key = (n: number) => `w/${String(n).padStart(8, "0")}`;
const out = (line: string) => process.stdout.write(`${line}\n`);

interface Node {
  dd: DataDir;
  kv: KvStore;
  raw: RawNode;
}

function openNode(path: string, snapshotEvery: number): Node {
  const dd = openDataDir(path, { bootstrap: CONF });
  const kv = new KvStore(dd);
  const raw = new RawNode({ id: "n1", storage: dd.log, random, applied: kv.appliedIndex(), snapshotEvery });
  return { dd, kv, raw };
}

/** One Ready, in the order RawNode prescribes; returns the committed entries with their results. */
function handleReady(n: Node): Array<{ entry: Entry; result: unknown }> {
  const rd: Ready = n.raw.ready();
  const applied = n.dd.transaction(() => {
    n.dd.log.save(rd.snapshot, rd.entries, rd.hardState);
    if (rd.snapshot !== null) n.kv.restore(rd.snapshot.data, rd.snapshot.meta);
    return rd.committed.map((entry) => ({ entry, result: n.kv.apply(entry) }));
  });
  if (rd.snapshotRequest !== null) {
    const snap = n.kv.snapshot();
    if (snap.index !== rd.snapshotRequest.index) {
      throw new Error(`snapshot at ${snap.index}, requested at ${rd.snapshotRequest.index}`);
    }
    const meta = { index: snap.index, term: n.dd.log.term(snap.index), conf: rd.snapshotRequest.conf };
    // Keep a margin of entries below the snapshot, as a leader would for slow followers.
    n.dd.log.createSnapshot({ meta, data: snap.data }, snap.index - 10);
  }
  n.raw.advance();
  return applied;
}

function decodeProposalValue(entry: Entry): Uint8Array {
  const { cmd } = decodeProposal(entry.data);
  if (cmd.op !== "put") throw new Error(`entry ${entry.index} is not a put`);
  return cmd.value;
}

function becomeLeader(n: Node): void {
  n.raw.campaign();
  for (let i = 0; i < 100 && n.raw.status().role !== "leader"; i++) if (n.raw.hasReady()) handleReady(n);
  if (n.raw.status().role !== "leader") throw new Error("a single node did not become leader");
}

function report(n: Node): void {
  const { dd, kv } = n;
  out(
    `state ${JSON.stringify({
      applied: kv.appliedIndex(),
      commit: dd.log.hardState().commit,
      first: dd.log.firstIndex(),
      last: dd.log.lastIndex(),
      snapshot: dd.log.snapshotMeta().index,
      revision: kv.revision(),
      keys: kv.count("w/").count,
    })}`,
  );
}

function runWrites(snapshotEvery: number): void {
  const n = openNode(dir!, snapshotEvery);
  report(n);
  becomeLeader(n);
  // Entries persisted before the kill but not yet committed commit now, under the new term's
  // no-op (a leader counts its own entries only once durable, so they commit a Ready later):
  // they were never acknowledged, and the next key follows them.
  for (let i = 0; i < 100 && n.raw.hasReady(); i++) handleReady(n);
  let next = n.kv.count("w/").count;
  for (let round = 0; round < MAX_ROUNDS; round++) {
    const batch = 1 + Math.floor(random() * 16);
    const data = Array.from({ length: batch }, (_, i) =>
      encodeProposal({ time: Date.now(), session: null, cmd: { op: "put", key: key(next + i), value: new TextEncoder().encode(String(next + i)) } }),
    );
    const proposed = n.raw.proposeBatch(data);
    if (!proposed.ok) throw new Error(`proposal refused: ${proposed.reason}`);
    next += batch;
    for (let i = 0; i < 10 && n.raw.hasReady(); i++) {
      for (const { entry, result } of handleReady(n)) {
        if (entry.type !== "normal") continue;
        if (result === null || typeof result !== "object" || isError(result as never) || (result as { op: string }).op !== "put") {
          throw new Error(`write at ${entry.index} failed: ${JSON.stringify(result)}`);
        }
        const n = Number(new TextDecoder().decode(decodeProposalValue(entry)));
        out(`ack ${n} ${(result as { revision: number }).revision}`);
      }
    }
  }
  n.dd.close();
}

function runInstall(): void {
  const target = openDataDir(dir!, { bootstrap: CONF });
  const targetKv = new KvStore(target);
  report({ dd: target, kv: targetKv } as Node);
  const source = openNode(`${dir}-source`, 0);
  becomeLeader(source);
  let next = source.kv.count("w/").count;
  for (let round = 0; round < MAX_ROUNDS / 10; round++) {
    const data = Array.from({ length: 50 }, (_, i) =>
      encodeProposal({ time: Date.now(), session: null, cmd: { op: "put", key: key(next + i), value: new Uint8Array(100) } }),
    );
    next += data.length;
    source.raw.proposeBatch(data);
    for (let i = 0; i < 10 && source.raw.hasReady(); i++) handleReady(source);
    const snap = source.kv.snapshot();
    if (snap.index <= target.log.snapshotMeta().index) continue;
    const meta = { index: snap.index, term: source.dd.log.term(snap.index), conf: snap.conf };
    target.transaction(() => {
      target.log.save({ meta, data: snap.data }, [], { term: meta.term, vote: null, commit: meta.index });
      targetKv.restore(snap.data, meta);
    });
    out(`installed ${meta.index} ${targetKv.count("w/").count}`);
  }
  target.close();
}

if (mode === "install") runInstall();
else runWrites(mode === "snapshots" ? 25 : 0);
