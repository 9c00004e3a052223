// When a node handles a peer's batch (node.ts receive()): an idle node at once, as soon as the
// code that read the batch is done (Scheduler.soon), not a turn later; a node with a turn already
// coming (proposals or reads gathering for it) in that turn. The real node loop, on the
// simulator's clock, with events run only when the test says so.
import { expect, test } from "bun:test";
import { type NodeStorage, PhalanxNode } from "../../src/node/node.ts";
import type { Message } from "../../src/raft/types.ts";
import { Prng } from "../sim/prng.ts";
import { SimClock, SimDisk, simConfig, simLogger, simTransport, UNCHECKED } from "../sim/sim_node.ts";
import { ManualHost } from "./manual_host.ts";

const VOTERS = ["n1", "n2", "n3"];

function follower(): { node: PhalanxNode<NodeStorage>; clock: SimClock; host: ManualHost; sent: Message[] } {
  const host = new ManualHost("due now");
  const clock = new SimClock(host, 1, new Prng(7));
  const { storage, kv } = new SimDisk({ voters: VOTERS, learners: [] }).open("n1", UNCHECKED, clock);
  const sent: Message[] = [];
  const node = new PhalanxNode(simConfig("n1", VOTERS, { snapshotEvery: 0, requestTimeoutMs: 5000 }), {
    storage,
    kv,
    log: simLogger(null),
    scheduler: clock,
    transport: () => simTransport((m) => sent.push(m)),
  });
  node.run();
  return { node, clock, host, sent };
}

const append: Message = {
  type: "append",
  from: "n2",
  to: "n1",
  term: 1,
  prevIndex: 0,
  prevTerm: 0,
  entries: [{ term: 1, index: 1, type: "noop", data: new Uint8Array() }],
  commit: 0,
};
const acks = (sent: Message[]) => sent.filter((m) => m.type === "appendResp" && m.to === "n2" && !m.reject && m.index === 1);

test("an idle follower persists and answers an append as soon as it is read, not a turn later", () => {
  const { node, clock, host, sent } = follower();
  host.runDue(); // the start-up turn: now nothing waits for a turn
  node.receive([append]);
  expect(acks(sent)).toHaveLength(0); // nothing runs inside receive() itself
  clock.runSoon(); // what a microtask would run: before any other input, in the same turn
  expect(acks(sent)).toHaveLength(1);
});

test("a follower with a turn already coming handles the append in that turn", () => {
  const { node, clock, host, sent } = follower();
  // run() scheduled the start-up turn, not yet run: the batch joins it.
  node.receive([append]);
  clock.runSoon();
  expect(acks(sent)).toHaveLength(0);
  host.runDue();
  expect(acks(sent)).toHaveLength(1);
});
