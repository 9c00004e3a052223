import { expect, test } from "bun:test";
import type { ProposalOutcome } from "../../src/node/outcome.ts";
import { realScheduler } from "../../src/node/scheduler.ts";
import { ProposalWaiters, ReadWaiters, type ReadOutcome } from "../../src/node/waiters.ts";

const put = { op: "put" as const, revision: 5, prev: null };

const waitFor = (w: ProposalWaiters, index: number, term: number, timeoutMs: number) =>
  new Promise<ProposalOutcome>((resolve) => w.wait(index, term, timeoutMs, resolve));
const readFor = (r: ReadWaiters, timeoutMs: number, start: (ctx: string) => void) =>
  new Promise<ReadOutcome>((resolve) => r.wait(timeoutMs, start, resolve));

test("a proposal succeeds only if its index is applied with its term; another term there is definite", async () => {
  const w = new ProposalWaiters(realScheduler);
  const same = waitFor(w, 5, 2, 1000);
  const other = waitFor(w, 6, 2, 1000);
  w.applied(5, 2, put);
  w.applied(6, 3, put);
  expect(await same).toEqual({ kind: "applied", result: put });
  // Index 6 committed another entry: ours can never commit there (outcome.ts).
  expect(await other).toMatchObject({ kind: "not_applied", reason: "overwritten" });
  expect(w.size).toBe(0);
});

test("proposals covered by an installed snapshot have an unknown outcome, never 'not applied'; deadlines fire", async () => {
  const w = new ProposalWaiters(realScheduler);
  const covered = waitFor(w, 3, 1, 1000);
  const later = waitFor(w, 9, 1, 10);
  w.coveredBySnapshot(5);
  // The snapshot may contain the entry (a new leader committed it): nobody here can tell.
  expect(await covered).toMatchObject({ kind: "unknown", reason: "snapshot" });
  expect(await later).toMatchObject({ kind: "unknown", reason: "timeout" });
  expect(w.size).toBe(0);
});

test("a proposal displaced by a newer one at its index is unknown: a follower may still commit it", async () => {
  const w = new ProposalWaiters(realScheduler);
  const old = waitFor(w, 7, 2, 1000);
  const fresh = waitFor(w, 7, 4, 1000);
  expect(await old).toMatchObject({ kind: "unknown", reason: "displaced" });
  w.applied(7, 4, put);
  expect(await fresh).toEqual({ kind: "applied", result: put });
});

test("a read is served only once the state machine reached its index", async () => {
  const r = new ReadWaiters(realScheduler);
  let ctx = "";
  let served = false;
  const p = readFor(r, 1000, (c) => (ctx = c)).then((o) => {
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
  const failed = readFor(r, 1000, (c) => (ctx2 = c));
  r.failed(ctx2, "no leader");
  expect(await failed).toEqual({ kind: "failed", reason: "no leader" });
  const closed = readFor(r, 1000, () => undefined);
  r.closeAll();
  expect(await closed).toEqual({ kind: "closed" });
  expect(r.size).toBe(0);
});

test("an answer meant for an earlier incarnation's read never releases a read of this one", async () => {
  // The same node restarted: its first reads must not share contexts with the last process's.
  const before = new ReadWaiters({ ...realScheduler, random: () => 0.25 });
  const after = new ReadWaiters({ ...realScheduler, random: () => 0.75 });
  const asked: string[] = [];
  void readFor(before, 50, (c) => asked.push(c));
  let served = false;
  const p = readFor(after, 50, (c) => asked.push(c)).then((o) => {
    served = o.kind === "ready";
    return o;
  });
  expect(asked[0]).not.toBe(asked[1]);
  // The leader's answer to the old process's read arrives at the new one.
  after.answered(asked[0]!, 3, 10);
  await Promise.resolve();
  expect(served).toBe(false);
  expect(await p).toEqual({ kind: "timeout" });
});
