// The startup timeline: each phase marked once, at its first time; one debug line, only once the
// first client write was applied, with the phases and the CPU used.
import { expect, test } from "bun:test";
import { createLogger } from "../../src/node/log.ts";
import { StartupTimeline } from "../../src/node/startup_timeline.ts";

test("phases are marked once, and reported once, after the first write", () => {
  let now = 10;
  const t = new StartupTimeline(() => now);
  const lines: string[] = [];
  const log = createLogger("n1", { minLevel: "debug", write: (l) => lines.push(l) });
  t.mark("serving");
  now = 25.04;
  t.mark("dataDir");
  now = 40;
  t.mark("serving"); // a second time: ignored
  t.mark("leader");
  t.report(log); // no write yet: nothing
  expect(lines).toEqual([]);
  expect(t.snapshot()).toEqual({ serving: 10, dataDir: 25, leader: 40 });
  now = 55;
  t.mark("firstWrite");
  t.report(log);
  t.report(log);
  expect(lines.length).toBe(1);
  expect(lines[0]).toContain('msg="startup timeline"');
  expect(lines[0]).toContain("serving=10 dataDir=25 leader=40 firstWrite=55 cpuMs=");
  // After the report nothing more is recorded.
  now = 70;
  t.mark("firstCommit");
  expect(t.snapshot().firstCommit).toBeUndefined();
});

test("at info level the line is not written", () => {
  const t = new StartupTimeline(() => 1);
  const lines: string[] = [];
  t.mark("firstWrite");
  t.report(createLogger("n1", { minLevel: "info", write: (l) => lines.push(l) }));
  expect(lines).toEqual([]);
});
