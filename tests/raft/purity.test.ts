// The core must stay a pure, deterministic state machine: no clock, randomness, timers or I/O,
// and nothing imported from outside src/raft/.
import { expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const dir = join(import.meta.dir, "..", "..", "src", "raft");
const forbidden: [RegExp, string][] = [
  [/\bDate\b/, "Date"],
  [/Math\.random/, "Math.random"],
  [/\bperformance\b/, "performance"],
  [/\b(setTimeout|setInterval|setImmediate|queueMicrotask|process)\b/, "timers or process"],
  [/\bfrom\s+["'](node|bun):/, "node:/bun: import"],
  [/\brequire\(|\bimport\(/, "dynamic import or require"],
  [/\bfetch\(|\bBun\./, "I/O"],
];

function withoutComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/.*$/gm, "");
}

test("src/raft uses no clock, randomness, timers or I/O", () => {
  const files = readdirSync(dir).filter((f) => f.endsWith(".ts"));
  expect(files.length).toBeGreaterThan(5);
  const problems: string[] = [];
  for (const f of files) {
    const src = withoutComments(readFileSync(join(dir, f), "utf8"));
    for (const [re, what] of forbidden) if (re.test(src)) problems.push(`${f}: ${what}`);
    for (const m of src.matchAll(/\bfrom\s+["']([^"']+)["']/g)) {
      const spec = m[1]!;
      if (!spec.startsWith("./") || spec.includes("/", 2)) problems.push(`${f}: imports ${spec} from outside src/raft`);
    }
  }
  expect(problems).toEqual([]);
});
