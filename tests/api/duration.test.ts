import { expect, test } from "bun:test";
import { parseDuration } from "../../src/api/duration.ts";

test("Go-style durations parse to milliseconds; anything else is refused", () => {
  const ok: Array<[string, number]> = [
    ["500ms", 500],
    ["5s", 5000],
    ["1m", 60_000],
    ["1h", 3_600_000],
    ["1h30m", 5_400_000],
    ["1m30.5s", 90_500],
    ["1.5s", 1500],
    [".5s", 500],
    ["1.s", 1000],
    ["250us", 0.25],
    ["250\u00b5s", 0.25],
    ["1000000ns", 1],
    ["0", 0],
    ["0s", 0],
  ];
  for (const [text, ms] of ok) expect([text, parseDuration(text)]).toEqual([text, ms]);
  for (const bad of ["", "5", "-5s", "+5s", "5 s", "5S", "5sec", "s", "1d", "1e3ms", "5s ", "ms5", ".s", "1..5s", "x".repeat(65), "9".repeat(400) + "h"]) {
    expect([bad, parseDuration(bad)]).toEqual([bad, null]);
  }
});
