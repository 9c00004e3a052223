import { describe, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import type { Message, MessageType } from "../../src/raft/types.ts";
import { CodecError, decodeMessages, encodeMessages, MAX_CTX_LENGTH, MAX_NODE_ID_LENGTH } from "../../src/transport/codec.ts";

const env = { from: "n1", to: "n2", term: 7 };
const bytes = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

const samples: { [K in MessageType]: Message & { type: K } } = {
  append: {
    ...env,
    type: "append",
    prevIndex: 41,
    prevTerm: 6,
    commit: 40,
    entries: [
      { term: 7, index: 42, type: "normal", data: bytes(10) },
      { term: 7, index: 43, type: "noop", data: new Uint8Array(0) },
      { term: 7, index: 44, type: "conf", data: bytes(3, 9) },
    ],
  },
  appendResp: { ...env, type: "appendResp", index: 44, reject: true, hintIndex: 30, hintTerm: 5 },
  heartbeat: { ...env, type: "heartbeat", commit: 44, seq: 12 },
  heartbeatResp: { ...env, type: "heartbeatResp", seq: 12 },
  vote: { ...env, type: "vote", lastIndex: 44, lastTerm: 7, transfer: false },
  preVote: { ...env, type: "preVote", lastIndex: 44, lastTerm: 7, transfer: true },
  voteResp: { ...env, type: "voteResp", reject: false },
  preVoteResp: { ...env, type: "preVoteResp", reject: true },
  snapshot: {
    ...env,
    type: "snapshot",
    meta: { index: 100, term: 6, conf: { voters: ["n1", "n2", "n3"], learners: ["n4"] } },
    offset: 0,
    total: 300,
    chunk: bytes(300),
  },
  snapshotResp: { ...env, type: "snapshotResp", index: 100, received: 300, reject: false },
  timeoutNow: { ...env, type: "timeoutNow" },
  readIndex: { ...env, type: "readIndex", ctx: "req-1" },
  readIndexResp: { ...env, type: "readIndexResp", ctx: "req-1", index: 44, reject: false },
};

/** Encodes arbitrary values as a batch, bypassing the typed encoder, to feed the decoder bad input. */
const raw = (batch: unknown) => encode(batch);
const rejects = (batch: unknown, pattern: RegExp) => {
  expect(() => decodeMessages(raw(batch))).toThrow(CodecError);
  expect(() => decodeMessages(raw(batch))).toThrow(pattern);
};

describe("codec round trips", () => {
  for (const [type, msg] of Object.entries(samples)) {
    test(type, () => {
      expect(decodeMessages(encodeMessages([msg]))).toEqual([msg]);
    });
  }

  test("a batch of every type, in order", () => {
    const all = Object.values(samples);
    expect(decodeMessages(encodeMessages(all))).toEqual(all);
  });

  test("large entries and chunks keep every byte", () => {
    const big = bytes(3 << 20, 5);
    const append: Message = { ...samples.append, entries: [{ term: 7, index: 42, type: "normal", data: big }] };
    const chunk: Message = { ...samples.snapshot, total: big.length, chunk: big };
    const [a, s] = decodeMessages(encodeMessages([append, chunk]));
    expect(a?.type === "append" && a.entries[0]?.data).toEqual(big);
    expect(s?.type === "snapshot" && s.chunk).toEqual(big);
  });

  test("the largest safe integer survives", () => {
    const msg: Message = { ...samples.heartbeat, term: Number.MAX_SAFE_INTEGER, seq: Number.MAX_SAFE_INTEGER };
    expect(decodeMessages(encodeMessages([msg]))).toEqual([msg]);
  });

  test("a first election's flag travels; a request without it (an older node) decodes without it", () => {
    const flagged: Message = { ...samples.preVote, firstElection: true };
    expect(decodeMessages(encodeMessages([flagged]))).toEqual([flagged]);
    const [plain] = decodeMessages(encodeMessages([samples.vote]));
    expect(plain).toEqual(samples.vote);
    expect(plain !== undefined && "firstElection" in plain).toBe(false);
  });

  test("unknown fields are stripped, not passed to the core", () => {
    const [m] = decodeMessages(raw([{ ...samples.heartbeat, extra: "x" }]));
    expect(m).toEqual(samples.heartbeat);
  });
});

describe("codec rejections", () => {
  test("not msgpack, truncated, trailing bytes", () => {
    expect(() => decodeMessages(new Uint8Array([0xc1]))).toThrow(/malformed msgpack/);
    const good = encodeMessages([samples.append]);
    expect(() => decodeMessages(good.subarray(0, good.length - 5))).toThrow(CodecError);
    expect(() => decodeMessages(new Uint8Array([...good, 0x00]))).toThrow(CodecError);
    expect(() => decodeMessages(new Uint8Array(0))).toThrow(CodecError);
  });

  test("a batch must be an array of objects", () => {
    rejects({ ...samples.heartbeat }, /expected array/);
    rejects(["heartbeat"], /expected object/);
  });

  test("unknown or missing type", () => {
    rejects([{ ...samples.heartbeat, type: "installSnapshot" }], /discriminator/);
    const { type: _, ...untyped } = samples.heartbeat;
    rejects([untyped], /discriminator/);
  });

  test("missing fields", () => {
    const { seq: _, ...noSeq } = samples.heartbeat;
    rejects([noSeq], /seq/);
    const { to: __, ...noTo } = samples.voteResp;
    rejects([noTo], /to/);
  });

  test("wrong types", () => {
    rejects([{ ...samples.heartbeat, term: "7" }], /term/);
    rejects([{ ...samples.voteResp, reject: 1 }], /reject/);
    rejects([{ ...samples.vote, firstElection: false }], /firstElection/);
    rejects([{ ...samples.preVote, firstElection: "yes" }], /firstElection/);
    rejects([{ ...samples.append, entries: [{ term: 1, index: 1, type: "normal", data: "not bytes" }] }], /Uint8Array/);
    rejects([{ ...samples.append, entries: [{ term: 1, index: 1, type: "weird", data: bytes(1) }] }], /type/);
    rejects([{ ...samples.snapshot, chunk: [1, 2, 3] }], /Uint8Array/);
  });

  test("negative, fractional and unsafe numbers", () => {
    rejects([{ ...samples.heartbeat, term: -1 }], />=0/);
    rejects([{ ...samples.appendResp, index: 1.5 }], /int/);
    rejects([{ ...samples.heartbeat, seq: 2 ** 60 }], /9007199254740991/);
    rejects([{ ...samples.heartbeat, commit: Number.NaN }], /commit/);
  });

  test("strings are bounded", () => {
    rejects([{ ...samples.readIndex, ctx: "x".repeat(MAX_CTX_LENGTH + 1) }], /ctx/);
    rejects([{ ...samples.heartbeat, from: "n".repeat(MAX_NODE_ID_LENGTH + 1) }], /from/);
    rejects([{ ...samples.heartbeat, to: "" }], /to/);
    rejects([{ ...samples.heartbeat, to: "bad id" }], /visible ASCII/);
    // Far over every bound: the msgpack decoder refuses before any schema runs.
    rejects([{ ...samples.readIndex, ctx: "x".repeat(1 << 20) }], /maxStrLength/);
  });

  test("the error text is bounded even for thousands of bad messages", () => {
    const bad = Array.from({ length: 5000 }, () => ({ ...samples.heartbeat, term: -1 }));
    try {
      decodeMessages(raw(bad));
      throw new Error("expected a CodecError");
    } catch (err) {
      expect(err).toBeInstanceOf(CodecError);
      expect((err as Error).message.length).toBeLessThan(2200);
    }
  });
});
