import { describe, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import {
  DEFAULT_LIMITS,
  MalformedError,
  decodeProposal,
  decodeResult,
  encodeProposal,
  encodeResult,
  validateCommand,
  type Proposal,
  type Result,
} from "../../src/kv/command.ts";
import { bytes } from "./fixtures.ts";

describe("command encoding", () => {
  test("every command round-trips", () => {
    const proposals: Proposal[] = [
      { time: 5, session: null, cmd: { op: "put", key: "a", value: bytes("1") } },
      { time: 6, session: { client: 3, seq: 9 }, cmd: { op: "del", key: "a" } },
      { time: 7, session: null, cmd: { op: "cas", key: "a", value: bytes("2"), expect: { value: null } } },
      { time: 7, session: null, cmd: { op: "cas", key: "a", value: bytes("2"), expect: { value: bytes("1") } } },
      { time: 8, session: null, cmd: { op: "delIf", key: "a", expect: { modRevision: 4 } } },
      { time: 9, session: null, cmd: { op: "register" } },
    ];
    for (const p of proposals) expect(decodeProposal(encodeProposal(p))).toEqual(p);
  });

  test("results round-trip", () => {
    const kv = { key: "k", value: bytes("v"), createRevision: 1, modRevision: 2, version: 2 };
    const results: Result[] = [
      { op: "put", revision: 2, prev: kv },
      { op: "del", revision: 2, deleted: false, prev: null },
      { op: "cas", revision: 3, succeeded: false, current: kv },
      { op: "delIf", revision: 3, succeeded: true, current: null },
      { op: "register", client: 12 },
      { error: "stale_sequence", message: "old" },
    ];
    for (const r of results) expect(decodeResult(encodeResult(r))).toEqual(r);
  });

  test("malformed data is rejected with a clear error", () => {
    expect(() => decodeProposal(new Uint8Array([0xc1]))).toThrow(MalformedError);
    expect(() => decodeProposal(encode({ time: 1, session: null, cmd: { op: "put", key: "a" } }))).toThrow(/malformed proposal/);
    expect(() => decodeProposal(encode({ time: 1, session: null, cmd: { op: "frob", key: "a" } }))).toThrow(MalformedError);
    expect(() => decodeProposal(encode({ time: -1, session: null, cmd: { op: "del", key: "a" } }))).toThrow(MalformedError);
    expect(() => decodeResult(encode({ op: "put", revision: "x", prev: null }))).toThrow(/malformed result/);
  });

  test("validation of keys and values", () => {
    const v = (key: string, size = 1) => validateCommand({ op: "put", key, value: new Uint8Array(size) }, DEFAULT_LIMITS);
    expect(v("a")).toBeNull();
    expect(v("")?.error).toBe("invalid_key");
    expect(v("\ud800")?.error).toBe("invalid_key");
    expect(v("é".repeat(2048))).toBeNull(); // 4096 bytes
    expect(v("é".repeat(2048) + "x")?.error).toBe("key_too_large");
    expect(v("a", 1024 * 1024)).toBeNull();
    expect(v("a", 1024 * 1024 + 1)?.error).toBe("value_too_large");
    expect(validateCommand({ op: "register" }, DEFAULT_LIMITS)).toBeNull();
  });
});
