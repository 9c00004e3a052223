import { expect, test } from "bun:test";
import { Freshness } from "../../src/node/freshness.ts";

test("a node without a proof cannot bound its staleness", () => {
  const f = new Freshness({ probeEveryMs: 100, probeIdleMs: 30_000 });
  expect(f.stalenessAt(1000)).toBeNull();
  expect(f.judge(1000, 3_600_000)).toEqual({ kind: "unproven", provableStalenessMs: null });
});

test("staleness is measured from the start of the newest proving round, on the local clock", () => {
  const f = new Freshness({ probeEveryMs: 100, probeIdleMs: 30_000 });
  f.proved(1000);
  expect(f.stalenessAt(1000)).toBe(0);
  expect(f.stalenessAt(1250)).toBe(250);
  expect(f.judge(1250, 250)).toEqual({ kind: "within", stalenessMs: 250 });
  expect(f.judge(1250.5, 250)).toEqual({ kind: "unproven", provableStalenessMs: 250.5 });
  // A round that started earlier but finished later proves less, not more: the proof never goes back.
  f.proved(900);
  expect(f.stalenessAt(1300)).toBe(300);
  f.proved(1200);
  expect(f.stalenessAt(1300)).toBe(100);
});

test("a proof from the future is a bug, not a bound", () => {
  const f = new Freshness({ probeEveryMs: 100, probeIdleMs: 30_000 });
  f.proved(2000);
  expect(() => f.stalenessAt(1999)).toThrow(/later than now/);
});

test("background probes run one at a time, once per interval, only while bounded reads come in", () => {
  const f = new Freshness({ probeEveryMs: 100, probeIdleMs: 1000 });
  // Nobody asked for a bounded read: nothing to keep fresh.
  expect(f.shouldProbe(0)).toBe(false);
  f.boundedReadAt(10);
  expect(f.shouldProbe(10)).toBe(true);
  f.probeStarted(10);
  // One in flight: no second one, however long it takes.
  expect(f.shouldProbe(500)).toBe(false);
  f.probeEnded();
  expect(f.shouldProbe(500)).toBe(true);
  f.probeStarted(500);
  f.probeEnded();
  expect(f.shouldProbe(599)).toBe(false);
  expect(f.shouldProbe(600)).toBe(true);
  // The last bounded read was at 10: after the idle window the node stops probing.
  expect(f.shouldProbe(1010)).toBe(true);
  expect(f.shouldProbe(1011)).toBe(false);
  f.boundedReadAt(1011);
  expect(f.shouldProbe(1011)).toBe(true);
});
