import { expect, test } from "bun:test";
import { ProposalWaiters, ReadWaiters } from "../../src/node/waiters.ts";

const put = { op: "put" as const, revision: 5, prev: null };

test("a proposal succeeds only if its index is applied with its term", async () => {
  const w = new ProposalWaiters();
  const same = w.wait(5, 2, 1000);
  const other = w.wait(6, 2, 1000);
  w.applied(5, 2, put);
  w.applied(6, 3, put);
  expect(await same).toEqual({ kind: "applied", result: put });
  expect(await other).toEqual({ kind: "lost" });
  expect(w.size).toBe(0);
});

test("proposals covered by an installed snapshot are reported lost; deadlines fire", async () => {
  const w = new ProposalWaiters();
  const covered = w.wait(3, 1, 1000);
  const later = w.wait(9, 1, 10);
  w.coveredBySnapshot(5);
  expect(await covered).toEqual({ kind: "lost" });
  expect(await later).toEqual({ kind: "timeout" });
  expect(w.size).toBe(0);
});

test("a read is served only once the state machine reached its index", async () => {
  const r = new ReadWaiters();
  let ctx = "";
  let served = false;
  const p = r.wait(1000, (c) => (ctx = c)).then((o) => {
    served = true;
    return o;
  });
  r.answered(ctx, 10, 8);
  r.served(9);
  await Promise.resolve();
  expect(served).toBe(false);
  r.served(10);
  expect(await p).toEqual({ kind: "ready", index: 10 });
  let ctx2 = "";
  const failed = r.wait(1000, (c) => (ctx2 = c));
  r.failed(ctx2, "no leader");
  expect(await failed).toEqual({ kind: "failed", reason: "no leader" });
  const closed = r.wait(1000, () => undefined);
  r.closeAll();
  expect(await closed).toEqual({ kind: "closed" });
  expect(r.size).toBe(0);
});
