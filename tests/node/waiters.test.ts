import { expect, test } from "bun:test";
import type { ProposalOutcome } from "../../src/node/outcome.ts";
import { realScheduler } from "../../src/node/scheduler.ts";
import { ProposalWaiters, ReadWaiters, type ReadOutcome } from "../../src/node/waiters.ts";

const put = { op: "put" as const, revision: 5, prev: null };

const waitFor = (w: ProposalWaiters, index: number, term: number, timeoutMs: number) =>
  new Promise<ProposalOutcome>((resolve) => w.wait(index, term, timeoutMs, resolve));
/** One read, asked of the core at once (a batch of one). */
const readFor = (r: ReadWaiters, timeoutMs: number, start: (ctx: string) => void) =>
  new Promise<ReadOutcome>((resolve) => {
    r.wait(timeoutMs, resolve);
    r.issue(start);
  });

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

test("reads that arrive before the core is asked share one round; a read arriving after it is asked never does", async () => {
  const r = new ReadWaiters(realScheduler);
  const asked: string[] = [];
  const outcomes: string[] = [];
  const read = (name: string) =>
    new Promise<ReadOutcome>((resolve) =>
      r.wait(1000, (o) => {
        outcomes.push(name);
        resolve(o);
      }),
    );
  const a = read("a");
  const b = read("b");
  r.issue((c) => asked.push(c));
  // Asked after the round started: the index it will get was read before this read existed.
  const late = read("late");
  expect(asked.length).toBe(1);
  expect(r.size).toBe(3);
  r.answered(asked[0]!, 7, 7);
  expect(await a).toEqual({ kind: "ready", index: 7 });
  expect(await b).toEqual({ kind: "ready", index: 7 });
  expect(outcomes).toEqual(["a", "b"]);
  // The late read waits for a round of its own.
  expect(r.size).toBe(1);
  r.issue((c) => asked.push(c));
  expect(asked.length).toBe(2);
  expect(asked[1]).not.toBe(asked[0]);
  r.answered(asked[0]!, 9, 9);
  expect(r.size).toBe(1);
  r.answered(asked[1]!, 9, 9);
  expect(await late).toEqual({ kind: "ready", index: 9 });
  expect(r.size).toBe(0);
  // Nothing registered: nothing asked.
  r.issue((c) => asked.push(c));
  expect(asked.length).toBe(2);
});

test("a read of a batch that times out leaves the others waiting; a failure answers the whole batch", async () => {
  const r = new ReadWaiters(realScheduler);
  const asked: string[] = [];
  const short = new Promise<ReadOutcome>((resolve) => r.wait(10, resolve));
  const long = new Promise<ReadOutcome>((resolve) => r.wait(1000, resolve));
  r.issue((c) => asked.push(c));
  expect(await short).toEqual({ kind: "timeout" });
  expect(r.size).toBe(1);
  expect(r.rounds).toBe(1);
  r.failed(asked[0]!, "no leader");
  expect(await long).toEqual({ kind: "failed", reason: "no leader" });
  const pending = new Promise<ReadOutcome>((resolve) => r.wait(1000, resolve));
  r.closeAll();
  expect(await pending).toEqual({ kind: "closed" });
  expect(r.size).toBe(0);
});

test("a round whose reads all gave up is forgotten, answered or not", async () => {
  const r = new ReadWaiters(realScheduler);
  const asked: string[] = [];
  for (let i = 0; i < 3; i++) {
    const gone = new Promise<ReadOutcome>((resolve) => r.wait(5, resolve));
    r.issue((c) => asked.push(c));
    expect(await gone).toEqual({ kind: "timeout" });
  }
  // A follower's requests to a leader that died are never answered: nothing stays behind.
  expect(r.rounds).toBe(0);
  expect(r.size).toBe(0);
  r.answered(asked[0]!, 1, 1);
  expect(r.rounds).toBe(0);
});
