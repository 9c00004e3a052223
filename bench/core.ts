// `bun run bench:core`: a 3-node cluster driven through the core only (no I/O): proposals in
// batches, every Ready persisted to MemoryStorage and every message delivered in memory.
// Prints committed entries/s and heap behaviour. Usage: bun bench/core.ts [entries] [batch]
import { heapStats } from "bun:jsc";
import { MemoryStorage } from "../src/raft/memory_storage.ts";
import { RawNode } from "../src/raft/raw_node.ts";
import type { Message } from "../src/raft/types.ts";

const total = Number(process.argv[2] ?? 5_000_000);
const batch = Number(process.argv[3] ?? 1024);
const ids = ["a", "b", "c"];
let seed = 7;
const random = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 4294967296);

const nodes = new Map(
  ids.map((id) => {
    const storage = new MemoryStorage({ voters: ids, learners: [] });
    return [id, { storage, raw: new RawNode({ id, storage, random, snapshotEvery: 200_000, maxMsgBytes: 4 << 20 }), applied: 0 }];
  }),
);

const inbox: Message[] = [];
function pump(): void {
  for (let round = 0; round < 1_000_000; round++) {
    let busy = false;
    for (const n of nodes.values()) {
      if (!n.raw.hasReady()) continue;
      busy = true;
      const rd = n.raw.ready();
      n.storage.save(rd.snapshot, rd.entries, rd.hardState);
      n.applied += rd.committed.length;
      if (rd.snapshotRequest !== null) {
        const { index, conf } = rd.snapshotRequest;
        // Keep a margin of entries so followers catch up from the log, as a real node does.
        n.storage.createSnapshot({ meta: { index, term: n.storage.term(index), conf }, data: new Uint8Array(0) }, index - 50_000);
      }
      n.raw.advance();
      for (const m of rd.messages) inbox.push(m);
    }
    while (inbox.length > 0) {
      const m = inbox.shift()!;
      nodes.get(m.to)!.raw.step(m);
    }
    if (!busy) return;
  }
}

for (let t = 0; t < 1000 && ![...nodes.values()].some((n) => n.raw.status().role === "leader"); t++) {
  for (const n of nodes.values()) n.raw.tick();
  pump();
}
const a = [...nodes.values()].find((n) => n.raw.status().role === "leader");
if (a === undefined) throw new Error("no leader elected");

const payload = new Uint8Array(16);
const datas = Array.from({ length: batch }, () => payload);
const heapBefore = heapStats().heapSize;
let peakHeap = heapBefore;
const t0 = performance.now();
let proposed = 0;
while (proposed < total) {
  const r = a.raw.proposeBatch(datas);
  if (!r.ok) throw new Error(r.reason);
  proposed += batch;
  pump();
  if ((proposed / batch) % 256 === 0) peakHeap = Math.max(peakHeap, heapStats().heapSize);
}
const secs = (performance.now() - t0) / 1000;
const minApplied = Math.min(...[...nodes.values()].map((n) => n.applied));
console.log(`core bench: 3 nodes, ${proposed.toLocaleString()} entries of ${payload.length} B in batches of ${batch}`);
console.log(`  committed on all nodes: ${minApplied.toLocaleString()} in ${secs.toFixed(2)} s = ${Math.round(proposed / secs).toLocaleString()} entries/s`);
console.log(`  heap: ${(heapBefore / 2 ** 20).toFixed(0)} MiB before, peak ${(peakHeap / 2 ** 20).toFixed(0)} MiB, ${(heapStats().heapSize / 2 ** 20).toFixed(0)} MiB after`);
