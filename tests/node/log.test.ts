import { expect, test } from "bun:test";
import { createLogger, formatLine, rateLimited } from "../../src/node/log.ts";

/** A logfmt line back into its pairs (quoted values are JSON strings). */
function parseLogfmt(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)/g;
  for (const m of line.trimEnd().matchAll(re)) out[m[1]!] = m[2]!.startsWith('"') ? (JSON.parse(m[2]!) as string) : m[2]!;
  return out;
}

test("a rate-limited logger writes one line per interval and counts what it held back", () => {
  const lines: string[] = [];
  let now = 0;
  const log = rateLimited(createLogger("n1", { write: (l) => lines.push(l) }), 1000, () => now);
  for (let i = 0; i < 50; i++) log.warn("refused a peer message", { why: `w${i}` });
  now = 1500;
  log.warn("refused a peer message", { why: "later" });
  expect(lines.length).toBe(2);
  expect(lines[0]).toContain("why=w0");
  expect(lines[1]).toContain("why=later suppressed=49");
});

test("text lines are logfmt: the message is quoted and every line splits back into its fields", () => {
  const tricky = { plain: "abc", spaced: "a b", quote: 'say "hi"', eq: "k=v", nl: "line1\nline2", empty: "", n: 42, obj: { a: 1 }, err: new Error("boom now") };
  const line = formatLine("text", "2026-12-01T00:00:00.000Z", "info", "n1", "became leader", tricky);
  expect(line.endsWith("\n")).toBe(true);
  expect(line.split("\n").length).toBe(2);
  expect(line.startsWith('ts=2026-12-01T00:00:00.000Z level=info node=n1 msg="became leader" plain=abc spaced="a b"')).toBe(true);
  expect(parseLogfmt(line)).toEqual({
    ts: "2026-12-01T00:00:00.000Z",
    level: "info",
    node: "n1",
    msg: "became leader",
    plain: "abc",
    spaced: "a b",
    quote: 'say "hi"',
    eq: "k=v",
    nl: "line1\nline2",
    empty: "",
    n: "42",
    obj: '{"a":1}',
    err: "boom now",
  });
});

test("a key cannot break a line apart", () => {
  const line = formatLine("text", "t", "warn", "n1", "m", { "bad key=x": 1 });
  expect(parseLogfmt(line)).toMatchObject({ bad_key_x: "1" });
});

test("LOG_FORMAT=json gives one JSON object per line with the same keys", () => {
  const lines: string[] = [];
  const log = createLogger("n2", { format: "json", minLevel: "debug", write: (l) => lines.push(l) });
  log.debug("vote refused", { from: "n3", why: "in lease", err: new Error("x") });
  expect(lines.length).toBe(1);
  const obj = JSON.parse(lines[0]!) as Record<string, unknown>;
  expect(obj).toMatchObject({ level: "debug", node: "n2", msg: "vote refused", from: "n3", why: "in lease", err: "x" });
  expect(typeof obj.ts).toBe("string");
});

test("lines below the minimum level are not written", () => {
  const lines: string[] = [];
  const log = createLogger("n1", { minLevel: "warn", write: (l) => lines.push(l) });
  log.info("quiet");
  log.warn("loud");
  expect(lines.length).toBe(1);
  expect(lines[0]).toContain('msg=loud');
});
