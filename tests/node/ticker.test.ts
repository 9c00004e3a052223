import { expect, test } from "bun:test";
import { Ticker } from "../../src/node/ticker.ts";

test("a stalled loop replays every missed tick on the next catch-up", () => {
  let now = 1000;
  let ticks = 0;
  const t = new Ticker(100, () => ticks++, { now: () => now, after: () => () => undefined });
  now += 99;
  expect(t.catchUp()).toBe(0);
  now += 1;
  expect(t.catchUp()).toBe(1);
  now += 5_000; // a 5 s stall (GC, SIGSTOP): 50 ticks are owed at once
  expect(t.catchUp()).toBe(50);
  expect(ticks).toBe(51);
  expect(t.catchUp()).toBe(0);
});
