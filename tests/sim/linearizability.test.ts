import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseJepsenHistory } from "./jepsen_history.ts";
import {
  checkLinearizable,
  kvModel,
  registerModel,
  type KvInput,
  type KvOutput,
  type Operation,
} from "./linearizability.ts";

type KvOp = Operation<KvInput, KvOutput>;

const get = (client: number, call: number, ret: number, value: number | null | undefined, key = "a"): KvOp => ({
  client,
  input: { op: "get", key },
  call,
  ret,
  output: value === undefined ? null : { value },
});
const put = (client: number, call: number, ret: number, value: number, key = "a"): KvOp => ({
  client,
  input: { op: "put", key, value },
  call,
  ret,
  output: ret === Infinity ? null : {},
});
const cas = (
  client: number,
  call: number,
  ret: number,
  expect: number | null,
  value: number,
  succeeded?: boolean,
  key = "a",
): KvOp => ({
  client,
  input: { op: "cas", key, expect, value },
  call,
  ret,
  output: succeeded === undefined ? null : { succeeded },
});

describe("kvModel", () => {
  test("a stale read after a completed write is rejected", () => {
    const r = checkLinearizable(kvModel, [put(1, 0, 1, 1), put(1, 2, 3, 2), get(2, 4, 5, 1)]);
    expect(r.ok).toBe(false);
    if (r.ok !== false) return;
    expect(r.explanation).toContain(`{"op":"get","key":"a"} -> {"value":1}   (impossible in this state)`);
    expect(r.explanation).toContain("state after the prefix: 2");
  });

  test("concurrent ops can be reordered", () => {
    // Both reads overlap the write: each may see the old or the new value, but not new then old.
    const w = put(1, 0, 10, 1);
    expect(checkLinearizable(kvModel, [w, get(2, 1, 2, null), get(3, 3, 4, 1)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [w, get(2, 1, 2, 1), get(3, 3, 4, null)]).ok).toBe(false);
    // Two overlapping writes: later reads settle which went last.
    const w1 = put(1, 0, 10, 1);
    const w2 = put(2, 0, 10, 2);
    expect(checkLinearizable(kvModel, [w1, w2, get(3, 11, 12, 1)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [w1, w2, get(3, 11, 12, 2)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [w1, w2, get(3, 5, 6, 2), get(3, 7, 8, 1), get(3, 11, 12, 2)]).ok).toBe(false);
    // Touching ops (ret of one = call of the other) are concurrent.
    expect(checkLinearizable(kvModel, [put(1, 0, 5, 1), get(2, 5, 6, null)]).ok).toBe(true);
  });

  test("an unknown-outcome write may take effect later, or never", () => {
    const w = put(1, 0, Infinity, 1);
    expect(checkLinearizable(kvModel, [w, get(2, 1, 2, null), get(2, 100, 101, 1)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [w, get(2, 1, 2, null), get(2, 100, 101, null)]).ok).toBe(true);
    // Once seen, it cannot be undone.
    expect(checkLinearizable(kvModel, [w, get(2, 1, 2, 1), get(2, 100, 101, null)]).ok).toBe(false);
    // But it cannot take effect before it was called.
    expect(checkLinearizable(kvModel, [get(2, 1, 2, 1), put(1, 3, Infinity, 1)]).ok).toBe(false);
  });

  test("cas: failures constrain, unknown outcomes may go either way", () => {
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), cas(1, 2, 3, 1, 2, false)]).ok).toBe(false);
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), cas(1, 2, 3, 1, 2, true), get(1, 4, 5, 2)]).ok).toBe(true);
    const unknown = cas(2, 2, Infinity, 1, 2);
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), unknown, get(1, 4, 5, 2)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), unknown, get(1, 4, 5, 1)]).ok).toBe(true);
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), cas(2, 2, Infinity, 7, 2), get(1, 4, 5, 2)]).ok).toBe(false);
  });

  test("an unknown get constrains nothing", () => {
    expect(checkLinearizable(kvModel, [put(1, 0, 1, 1), get(2, 2, Infinity, undefined), get(2, 3, 4, 1)]).ok).toBe(true);
  });

  test("keys are checked independently; the smallest failing key is reported", () => {
    const ops = [
      put(1, 0, 1, 1, "a"),
      get(1, 2, 3, 1, "a"),
      put(1, 0, 1, 5, "b"),
      get(2, 2, 3, null, "b"),
      put(1, 4, 5, 6, "b"),
      get(2, 6, 7, 6, "b"),
      put(1, 0, 1, 9, "c"),
      get(2, 2, 3, 8, "c"),
    ];
    const r = checkLinearizable(kvModel, ops);
    expect(r.ok).toBe(false);
    if (r.ok !== false) return;
    expect(r.explanation).toContain("partition 3 of 3 (the smallest failing one), 2 ops");
    expect(r.explanation).toContain(`"key":"c"`);
    expect(r.explanation).not.toContain(`"key":"b"`);
  });

  test("an exhausted step budget gives unknown, not a verdict", () => {
    const ops = [put(1, 0, 10, 1), put(2, 0, 10, 2), put(3, 0, 10, 3), get(4, 11, 12, 3)];
    const r = checkLinearizable(kvModel, ops, { maxSteps: 2 });
    expect(r.ok).toBe("unknown");
    expect(checkLinearizable(kvModel, ops).ok).toBe(true);
  });
});

describe("registerModel on Jepsen etcd histories", () => {
  const dir = join(import.meta.dir, "data/jepsen-etcd-histories");
  const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8")) as Record<string, boolean>;
  let checkMs = 0;

  test("the verdict file covers the corpus", () => {
    const verdicts = Object.values(expected);
    expect(verdicts.length).toBe(102);
    expect(verdicts.filter((v) => v).length).toBe(23);
  });

  for (const [file, linearizable] of Object.entries(expected)) {
    test(`${file} is ${linearizable ? "" : "not "}linearizable`, () => {
      const ops = parseJepsenHistory(readFileSync(join(dir, file), "utf8"));
      const start = performance.now();
      const r = checkLinearizable(registerModel, ops);
      checkMs += performance.now() - start;
      expect(r.ok).toBe(linearizable);
    });
  }

  afterAll(() => {
    console.log(`checked ${Object.keys(expected).length} etcd histories in ${checkMs.toFixed(0)} ms`);
  });
});
