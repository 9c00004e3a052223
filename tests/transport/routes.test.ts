// The peer routes in process (Hono's app.request): authentication, limits and batch checks, on the
// snapshot route (Raft messages travel on the peer stream, raft_stream.ts; its open is checked by
// the same PeerGate). Every refusal must leave the core callback untouched.

import { beforeEach, describe, expect, test } from "bun:test";
import type { Message, NodeId } from "../../src/raft/types.ts";
import {
  ByteBudget,
  DIGEST_HEADER,
  FROM_HEADER,
  LENGTH_HEADER,
  NONCE_HEADER,
  type PeerAuth,
  PeerGate,
  peerRequestHeaders,
  SIG_HEADER,
  TO_HEADER,
  TS_HEADER,
} from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { RAFT_SNAPSHOT_PATH, raftRoutes } from "../../src/transport/raft_routes.ts";
import { RAFT_STREAM_PATH } from "../../src/transport/raft_stream.ts";
import { HMAC, heartbeat, KEY } from "./helpers.ts";

let calls: { msgs: Message[]; from: NodeId }[] = [];
const app = raftRoutes({
  self: "b",
  auth: HMAC,
  onMessages: (msgs, from) => calls.push({ msgs, from }),
  maxSnapshotBody: 64 * 1024,
});
beforeEach(() => {
  calls = [];
});

const post = (body: Uint8Array, headers: Record<string, string>, path = RAFT_SNAPSHOT_PATH) =>
  app.request(path, { method: "POST", body, headers });
const signed = (body: Uint8Array, auth: PeerAuth = HMAC, path = RAFT_SNAPSHOT_PATH, from = "a", to = "b") =>
  peerRequestHeaders(auth, { method: "POST", path, from, to, body });

/** A small snapshot chunk: what the route takes. */
const chunk = (from: NodeId = "a", to: NodeId = "b", offset = 0): Message => ({
  type: "snapshot",
  from,
  to,
  term: 1,
  meta: { index: 5, term: 1, conf: { voters: ["a", "b"], learners: [] } },
  offset,
  total: 32,
  chunk: new Uint8Array(16),
});
const hb = encodeMessages([chunk()]);

test("a signed batch reaches the callback with its sender", async () => {
  const res = await post(hb, signed(hb));
  expect(res.status).toBe(204);
  expect(calls).toEqual([{ msgs: [chunk()], from: "a" }]);
});

describe("401 and no delivery", () => {
  const cases: [string, () => Record<string, string>][] = [
    ["no headers", () => ({})],
    ["no signature", () => ({ ...signed(hb), [SIG_HEADER]: "" })],
    ["wrong key", () => signed(hb, { mode: "hmac", key: `${KEY}-other` })],
    ["stale timestamp (window ±10 s)", () => signed(hb, { mode: "hmac", key: KEY, now: () => Date.now() - 11_000 })],
    ["timestamp from the future", () => signed(hb, { mode: "hmac", key: KEY, now: () => Date.now() + 11_000 })],
    ["signature for another path", () => signed(hb, HMAC, RAFT_STREAM_PATH)],
    ["signed for another recipient", () => signed(hb, HMAC, RAFT_SNAPSHOT_PATH, "a", "c")],
    ["recipient swapped after signing", () => ({ ...signed(hb, HMAC, RAFT_SNAPSHOT_PATH, "a", "c"), [TO_HEADER]: "b" })],
    ["sender swapped after signing", () => ({ ...signed(hb), [FROM_HEADER]: "c" })],
    ["timestamp swapped after signing", () => ({ ...signed(hb), [TS_HEADER]: String(Date.now() + 1) })],
    ["nonce swapped after signing", () => ({ ...signed(hb), [NONCE_HEADER]: "0".repeat(32) })],
    ["no nonce", () => ({ ...signed(hb), [NONCE_HEADER]: "" })],
    ["digest swapped after signing", () => ({ ...signed(hb), [DIGEST_HEADER]: "0".repeat(64) })],
    ["no content-length", () => ({ ...signed(hb), [LENGTH_HEADER]: "" })],
    ["signature not hex", () => ({ ...signed(hb), [SIG_HEADER]: "z".repeat(64) })],
  ];
  for (const [name, headers] of cases) {
    test(name, async () => {
      const res = await post(hb, headers());
      expect(res.status).toBe(401);
      expect(await res.text()).toStartWith("unauthorized:");
      expect(calls).toEqual([]);
    });
  }

  test("tampered body", async () => {
    const other = encodeMessages([chunk("a", "b", 16)]);
    const res = await post(other, signed(hb));
    expect(res.status).toBe(401);
    expect(await res.text()).toContain("digest mismatch");
    expect(calls).toEqual([]);
  });

  test("a replayed request is refused: the nonce is used up by its first verified use", async () => {
    const headers = signed(hb);
    expect((await post(hb, headers)).status).toBe(204);
    const again = await post(hb, headers);
    expect(again.status).toBe(401);
    expect(await again.text()).toContain("replayed");
    expect(calls.length).toBe(1);
  });

  test("mTLS mode refuses a request that did not come over verified TLS", async () => {
    const mtlsApp = raftRoutes({ self: "b", auth: { mode: "mtls" }, onMessages: (m, f) => calls.push({ msgs: m, from: f }) });
    const res = await mtlsApp.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: hb, headers: { [FROM_HEADER]: "a" } });
    expect(res.status).toBe(401);
    expect(calls).toEqual([]);
  });

  test("mTLS mode refuses a request without content-length or recipient before anything else", async () => {
    const mtlsApp = raftRoutes({ self: "b", auth: { mode: "mtls" }, onMessages: (m, f) => calls.push({ msgs: m, from: f }) });
    const res = await mtlsApp.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: hb, headers: { [FROM_HEADER]: "a", [LENGTH_HEADER]: String(hb.length) } });
    expect(res.status).toBe(401);
    expect(await res.text()).toContain(TO_HEADER);
  });

  test("a short cluster key is refused at startup", () => {
    expect(() => raftRoutes({ self: "b", auth: { mode: "hmac", key: "short" }, onMessages: () => undefined })).toThrow(/at least 16/);
  });
});

describe("400, 413, 500", () => {
  test("garbage body → 400 with the reason", async () => {
    const junk = new Uint8Array([0xc1, 0xc1, 0xc1]);
    const res = await post(junk, signed(junk));
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("malformed msgpack");
    expect(calls).toEqual([]);
  });

  test("schema failure → 400 with the zod message", async () => {
    const body = encodeMessages([{ ...chunk(), term: -3 }]);
    const res = await post(body, signed(body));
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("term");
    expect(calls).toEqual([]);
  });

  test("a chunk for another node is refused", async () => {
    const body = encodeMessages([chunk("a", "c")]);
    const res = await post(body, signed(body));
    expect(res.status).toBe(400);
    expect(await res.text()).toContain("addressed to c");
    expect(calls).toEqual([]);
  });

  test("a message claiming another sender is refused", async () => {
    const body = encodeMessages([chunk("z", "b")]);
    const res = await post(body, signed(body));
    expect(res.status).toBe(400);
    expect(calls).toEqual([]);
  });

  test("over the body limit → 413, declared or streamed", async () => {
    const big = new Uint8Array(64 * 1024 + 1);
    const res = await post(big, signed(big));
    expect(res.status).toBe(413);
    const stream = new ReadableStream<Uint8Array>({
      start(c) {
        for (let i = 0; i < 20; i++) c.enqueue(new Uint8Array(8192));
        c.close();
      },
    });
    const streamed = await app.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: stream, headers: signed(big) });
    expect(streamed.status).toBe(413);
    expect(calls).toEqual([]);
  });

  test("a body longer than its signed content-length is refused (400) and not delivered", async () => {
    const headers = signed(hb);
    const longer = new Uint8Array([...hb, 0x90]);
    const res = await app.request(RAFT_SNAPSHOT_PATH, {
      method: "POST",
      body: new ReadableStream({ start: (c) => (c.enqueue(longer), c.close()) }),
      headers,
    });
    expect(res.status).toBe(400);
    expect(calls).toEqual([]);
  });

  test("past the peer body budget → 503 before reading, and the budget comes back after each request", async () => {
    const budget = new ByteBudget(hb.length * 2);
    const gate = new PeerGate(HMAC, "b", { budget });
    const small = raftRoutes({ self: "b", auth: HMAC, gate, onMessages: (msgs, from) => calls.push({ msgs, from }) });
    const big = new Uint8Array(hb.length * 3);
    const over = await small.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: big, headers: signed(big) });
    expect(over.status).toBe(503);
    expect(budget.inUse).toBe(0);
    for (let i = 0; i < 3; i++) {
      expect((await small.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: hb, headers: signed(hb) })).status).toBe(204);
    }
    expect(budget.inUse).toBe(0);
    expect(calls.length).toBe(3);
  });

  test("the snapshot route takes exactly one chunk", async () => {
    const beat = encodeMessages([heartbeat("a", "b", 1)]);
    expect((await post(beat, signed(beat))).status).toBe(400);
    const two = encodeMessages([chunk(), chunk("a", "b", 16)]);
    expect((await post(two, signed(two))).status).toBe(400);
    expect((await post(hb, signed(hb))).status).toBe(204);
    expect(calls.length).toBe(1);
  });

  test("a throwing core → 500, and the next batch still goes through", async () => {
    let fail = true;
    const fragile = raftRoutes({
      self: "b",
      auth: HMAC,
      onMessages: (msgs, from) => {
        if (fail) throw new Error("boom");
        calls.push({ msgs, from });
      },
    });
    const first = await fragile.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: hb, headers: signed(hb) });
    expect(first.status).toBe(500);
    expect(await first.text()).toContain("boom");
    fail = false;
    const second = await fragile.request(RAFT_SNAPSHOT_PATH, { method: "POST", body: hb, headers: signed(hb) });
    expect(second.status).toBe(204);
    expect(calls.length).toBe(1);
  });
});

describe("replay cache", () => {
  const headersAt = (clock: { t: number }, auth: PeerAuth) => {
    const h = peerRequestHeaders(auth, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: "a", to: "b", body: hb });
    return new Headers(h);
  };
  const check = (gate: PeerGate, headers: Headers) =>
    gate.admitHeaders({ method: "POST", path: RAFT_SNAPSHOT_PATH, headers, peerCert: null, maxBodyBytes: 1 << 20 });

  test("a nonce stays used for as long as its timestamp is in the window, through rotations", () => {
    const clock = { t: 1_000_000 };
    const auth: PeerAuth = { mode: "hmac", key: KEY, now: () => clock.t };
    const gate = new PeerGate(auth, "b");
    // Signed 10 s in the future (the edge of the window): must stay refused until it is 10 s old.
    clock.t += 10_000;
    const future = headersAt(clock, auth);
    clock.t -= 10_000;
    expect(check(gate, future).ok).toBe(true);
    // Its timestamp stays within ±10 s for 20 s: the cache (rotating every 20 s) must remember it.
    for (let dt = 1000; dt <= 20_000; dt += 1000) {
      clock.t += 1000;
      const again = check(gate, future);
      expect(again.ok === false && again.reason).toBe("replayed request (nonce already used)");
    }
    clock.t += 1;
    const late = check(gate, future);
    expect(!late.ok && late.reason).toContain("outside the ±10000 ms window");
  });

  test("a full cache refuses with 503 instead of forgetting, and empties as the window moves", () => {
    const clock = { t: 5_000_000 };
    const auth: PeerAuth = { mode: "hmac", key: KEY, now: () => clock.t };
    const gate = new PeerGate(auth, "b", { maxNonces: 3 });
    for (let i = 0; i < 3; i++) expect(check(gate, headersAt(clock, auth)).ok).toBe(true);
    const full = check(gate, headersAt(clock, auth));
    expect(full.ok === false && full.status).toBe(503);
    clock.t += 40_000;
    expect(check(gate, headersAt(clock, auth)).ok).toBe(true);
  });
});
