// The leader's group commit with its fsync off the event loop (node.ts writeWaitsForFsync): while
// a background fsync runs, new proposals wait in the core, and when it ends they are written in one
// Ready and covered by one more fsync. The real node loop on the simulator's disk and clock, with
// each background fsync held until the test lets it end.
import { expect, test } from "bun:test";
import { PhalanxNode, type NodeStorage, type ProposeOutcome } from "../../src/node/node.ts";
import { Prng } from "../sim/prng.ts";
import { type ClockHost, type Observer, SimClock, SimDisk, simConfig, simLogger, simTransport } from "../sim/sim_node.ts";

const IGNORE: Observer = { persisting: () => undefined, applying: () => undefined, executed: () => undefined };

/** Turns wait in a list until runDue(); background fsyncs wait until endFsync(); time stands still. */
class HeldFsyncHost implements ClockHost {
  private readonly due: (() => void)[] = [];
  readonly fsyncs: (() => void)[] = [];
  now(): number {
    return 0;
  }
  at(clock: SimClock, time: number, fn: () => void): void {
    if (time <= 0) this.due.push(() => clock.dead || fn());
  }
  writeAfterSend(clock: SimClock, fn: () => void): void {
    this.at(clock, 0, fn);
  }
  backgroundFsync(clock: SimClock, fn: () => void): void {
    this.fsyncs.push(() => clock.dead || fn());
  }
  runDue(): void {
    for (let fn = this.due.shift(); fn !== undefined; fn = this.due.shift()) fn();
  }
  endFsync(): void {
    const fn = this.fsyncs.shift();
    if (fn === undefined) throw new Error("no background fsync is running");
    fn();
    this.runDue();
  }
}

function singleVoter(): { node: PhalanxNode<NodeStorage>; host: HeldFsyncHost; disk: SimDisk } {
  const host = new HeldFsyncHost();
  const clock = new SimClock(host, 1, new Prng(3));
  const disk = new SimDisk({ voters: ["n1"], learners: [] });
  const { storage, kv } = disk.open("n1", IGNORE, clock);
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
