// The event-loop lag probe sees a blocked loop (what delays heartbeats), and the process sample
// reads real figures.
import { expect, test } from "bun:test";
import { EventLoopLag, sampleProcess } from "../../src/node/process_metrics.ts";
import { waitFor } from "../integration/harness.ts";

test("a loop blocked for 500 ms shows up as a lag of 400 to 500 ms (the probe was due within 100 ms)", async () => {
  const lag = new EventLoopLag();
  lag.start();
  try {
    await waitFor("the first probe", () => lag.histogram.count > 0, 2000, 10);
    const before = lag.histogram.sum;
    const blockedUntil = performance.now() + 500;
    while (performance.now() < blockedUntil) {
      // Busy: this is the stall being measured, not a wait.
    }
    const count = lag.histogram.count;
    await waitFor("the probe after the stall", () => lag.histogram.count > count, 2000, 10);
    const worst = lag.histogram.sum - before;
    expect(worst).toBeGreaterThan(0.39);
    expect(worst).toBeLessThan(1.5);
    // The 0.25 s bucket does not hold it all any more: the stall is in the histogram's tail.
    const le025 = lag.histogram.bounds.indexOf(0.25);
    expect(lag.histogram.counts[le025]!).toBeLessThan(lag.histogram.count);
  } finally {
    lag.stop();
  }
});

test("shared probe: it keeps running until its last user stops it", async () => {
  const lag = new EventLoopLag();
  lag.start();
  lag.start();
  lag.stop();
  const count = lag.histogram.count;
  await waitFor("a probe after one of two users stopped", () => lag.histogram.count > count, 2000, 10);
  lag.stop();
});

test("process figures are real", () => {
  const p = sampleProcess();
  expect(p.residentBytes).toBeGreaterThan(1e6);
  expect(p.cpuSeconds).toBeGreaterThan(0);
  expect(p.openFds).toBeGreaterThan(2);
  expect(Math.abs(p.startTimeSeconds - Date.now() / 1000)).toBeLessThan(3600);
});
