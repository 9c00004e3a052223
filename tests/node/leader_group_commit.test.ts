// The leader's group commit with its fsync off the event loop (node.ts writeWaitsForFsync): while
// a background fsync runs, new proposals wait in the core, and when it ends they are written in one
// Ready and covered by one more fsync. The real node loop on the simulator's disk and clock, with
// each background fsync held until the test lets it end.
import { expect, test } from "bun:test";
import { PhalanxNode, type NodeStorage, type ProposeOutcome } from "../../src/node/node.ts";
import { Prng } from "../sim/prng.ts";
import { SimClock, SimDisk, simConfig, simLogger, simTransport, UNCHECKED } from "../sim/sim_node.ts";
import { ManualHost } from "./manual_host.ts";

function singleVoter(): { node: PhalanxNode<NodeStorage>; host: ManualHost; disk: SimDisk } {
  const host = new ManualHost("held");
  const clock = new SimClock(host, 1, new Prng(3));
  const disk = new SimDisk({ voters: ["n1"], learners: [] });
  const { storage, kv } = disk.open("n1", UNCHECKED, clock);
  const node = new PhalanxNode(simConfig("n1", ["n1"], { snapshotEvery: 0, requestTimeoutMs: 5000 }), {
    storage,
    kv,
    log: simLogger(null),
    scheduler: clock,
    transport: () => simTransport(() => undefined),
  });
  node.run();
  host.runDue();
  // The lone voter elected itself: its new term and no-op in one synced write, no background fsync.
  expect(node.isLeader()).toBe(true);
  expect(host.fsyncs).toHaveLength(0);
  return { node, host, disk };
}

const put = (node: PhalanxNode<NodeStorage>, key: string, outcomes: ProposeOutcome[]) =>
  node.submit({ op: "put", key, value: new TextEncoder().encode(key) }, null, 5000, (o) => outcomes.push(o));

test("a leader's proposals that arrive while its background fsync runs are written together when it ends", () => {
  const { node, host, disk } = singleVoter();
  const outcomes: ProposeOutcome[] = [];
  const before = disk.durable().lastIndex;
  put(node, "a", outcomes);
  host.runDue();
  expect(disk.durable().lastIndex).toBe(before + 1); // written, its fsync running
  expect(host.fsyncs).toHaveLength(1);
  put(node, "b", outcomes);
  put(node, "c", outcomes);
  host.runDue();
  // Not written yet: they wait for the running fsync rather than take a write and an fsync each.
  expect(disk.durable().lastIndex).toBe(before + 1);
  expect(outcomes).toEqual([]);
  host.endFsync(); // "a" is durable: applied; "b" and "c" written in one Ready, one fsync for both
  expect(outcomes.map((o) => o.kind)).toEqual(["applied"]);
  expect(disk.durable().lastIndex).toBe(before + 3);
  expect(host.fsyncs).toHaveLength(1);
  host.endFsync();
  expect(outcomes.map((o) => o.kind)).toEqual(["applied", "applied", "applied"]);
  expect(host.fsyncs).toHaveLength(0);
});

test("reads and other Readies without new entries do not wait for the background fsync", async () => {
  const { node, host } = singleVoter();
  const outcomes: ProposeOutcome[] = [];
  put(node, "a", outcomes);
  host.runDue();
  expect(host.fsyncs).toHaveLength(1);
  // A linearizable read of what is applied: the single voter confirms at once.
  const reads: string[] = [];
  node.awaitReadBarrier(5000, (o) => reads.push(o.kind));
  host.runDue();
  expect(reads).toEqual(["ready"]);
  expect(outcomes).toEqual([]);
  host.endFsync();
  expect(outcomes.map((o) => o.kind)).toEqual(["applied"]);
});
