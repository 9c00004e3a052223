import { expect, test } from "bun:test";
import { createLogger, rateLimited } from "../../src/node/log.ts";

test("a rate-limited logger writes one line per interval and counts what it held back", () => {
  const lines: string[] = [];
  let now = 0;
  const log = rateLimited(createLogger("n1", "info", (l) => lines.push(l)), 1000, () => now);
  for (let i = 0; i < 50; i++) log.warn("refused a peer message", { why: `w${i}` });
  now = 1500;
  log.warn("refused a peer message", { why: "later" });
  expect(lines.length).toBe(2);
  expect(lines[0]).toContain("why=w0");
  expect(lines[1]).toContain("why=later suppressed=49");
});
