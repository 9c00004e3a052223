// freePort() hands out ports that are free now but bound only later, when a node starts: within
// one process it must never hand out the same port twice (a cluster's RPC ports are picked before
// its nodes start, then gossip and debug ports; a repeat made a debug server fail to bind).
import { expect, test } from "bun:test";
import { freePort } from "./harness.ts";

test("freePort never gives the same port twice in one process, even when the random pick repeats", async () => {
  const random = Math.random;
  // The first pick, then the same pick again (still free: nothing bound it), then another.
  const picks = [0.123456, 0.123456, 0.654321];
  Math.random = () => picks.shift() ?? random();
  try {
    const a = await freePort();
    const b = await freePort();
    expect(b).not.toBe(a);
  } finally {
    Math.random = random;
  }
});
