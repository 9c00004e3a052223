// Two or three real nodes on loopback exchanging messages through PeerTransport.

import { afterEach, describe, expect, test } from "bun:test";
import net from "node:net";
import type { Message } from "../../src/raft/types.ts";
import { H2Client, H2Error } from "../../src/transport/h2_client.ts";
import { backoffDelay, STARTUP_WINDOW_MS } from "../../src/transport/peers.ts";
import { RAFT_STREAM_PATH } from "../../src/transport/raft_stream.ts";
import { haveOpenssl, heartbeat, makePki, mesh, type NodeOptions, startNode, type TestNode, until } from "./helpers.ts";

const running: TestNode[] = [];
const start = async (id: string, opts?: NodeOptions) => {
  const n = await startNode(id, opts);
  running.push(n);
  return n;
};
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});

/** Both directions, many messages in one turn: they must arrive, in batches, without loss. */
async function exchange(a: TestNode, b: TestNode, count = 200): Promise<void> {
  for (let i = 0; i < count; i++) {
    a.transport.send(heartbeat(a.id, b.id, i));
    b.transport.send(heartbeat(b.id, a.id, i));
  }
  await Promise.all([a.inbox.waitFor(count), b.inbox.waitFor(count)]);
  expect(b.inbox.msgs.map((m) => (m.type === "heartbeat" ? m.seq : -1))).toEqual([...Array(count).keys()]);
  expect(new Set(b.inbox.senders)).toEqual(new Set([a.id]));
  // Delivery comes before the sender sees the answer.
  await until(() => a.transport.stats()[0]?.sent === count, "answers");
  const stats = a.transport.stats()[0];
  expect(stats).toMatchObject({ id: b.id, state: "up", sent: count, dropped: 0, errors: 0 });
  // Sent in one turn: far fewer requests than messages.
  expect(stats?.batches).toBeLessThan(count / 10);
  expect(stats?.rttMs).toBeGreaterThan(0);
}

describe("h2c", () => {
  test("127.0.0.1", async () => {
    const [a, b] = await Promise.all([start("a"), start("b")]);
    mesh([a, b]);
    await exchange(a, b);
  });

  test("::1", async () => {
    const [a, b] = await Promise.all([start("a", { listen: "[::1]:0" }), start("b", { listen: "[::1]:0" })]);
    mesh([a, b]);
    await exchange(a, b);
  });

  test("[::] accepts both families", async () => {
    const b = await start("b", { listen: "[::]:0" });
    const [a4, a6] = await Promise.all([start("a4"), start("a6", { listen: "[::1]:0" })]);
    a4.transport.setPeers(new Map([["b", `127.0.0.1:${b.server.port}`]]));
    a6.transport.setPeers(new Map([["b", `[::1]:${b.server.port}`]]));
    a4.transport.send(heartbeat("a4", "b", 1));
    a6.transport.send(heartbeat("a6", "b", 2));
    await b.inbox.waitFor(2);
    expect(new Set(b.inbox.senders)).toEqual(new Set(["a4", "a6"]));
  });

  test("every message type and a 2 MiB append cross the wire intact", async () => {
    const [a, b] = await Promise.all([start("a"), start("b")]);
    mesh([a, b]);
    const data = Uint8Array.from({ length: 2 << 20 }, (_, i) => i & 0xff);
    const msgs: Message[] = [
      { type: "append", from: "a", to: "b", term: 2, prevIndex: 1, prevTerm: 1, commit: 1, entries: [{ term: 2, index: 2, type: "normal", data }] },
      { type: "vote", from: "a", to: "b", term: 2, lastIndex: 1, lastTerm: 1, transfer: false },
      { type: "readIndex", from: "a", to: "b", term: 2, ctx: "r1" },
      { type: "timeoutNow", from: "a", to: "b", term: 2 },
    ];
    for (const m of msgs) a.transport.send(m);
    await b.inbox.waitFor(msgs.length);
    expect(new Set(b.inbox.msgs.map((m) => m.type))).toEqual(new Set(msgs.map((m) => m.type)));
    const got = b.inbox.msgs.find((m) => m.type === "append");
    expect(got?.type === "append" && got.entries[0]?.data).toEqual(data);
  });
});

describe.skipIf(!haveOpenssl)("TLS", async () => {
  const pki = haveOpenssl ? await makePki() : undefined;
  const tls = () => {
    if (pki === undefined) throw new Error("no PKI");
    return pki;
  };

  test("h2 over TLS with a cluster key", async () => {
    const p = tls();
    const opts: NodeOptions = { serverTls: p.server, clientTls: { ca: p.ca } };
    const [a, b] = await Promise.all([start("a", opts), start("b", { ...opts, listen: "[::1]:0" })]);
    mesh([a, b]);
    await exchange(a, b, 50);
  });

  test("mutual TLS: the handshake and a certificate naming the sender are the proof", async () => {
    const p = tls();
    const opts = (id: string): NodeOptions => ({
      auth: { mode: "mtls" },
      serverTls: { ...p.nodes[id]!, ca: p.ca },
      clientTls: { ca: p.ca, ...p.nodes[id]! },
    });
    const [a, b] = await Promise.all([start("a", opts("a")), start("b", opts("b"))]);
    mesh([a, b]);
    await exchange(a, b, 50);
  });

  // Issue 9 §4: a certificate the cluster CA issued to CN=app-client sent a timeoutNow as n1.
  test("mutual TLS refuses a CA-signed certificate that names another node (or none)", async () => {
    const p = tls();
    const b = await start("b", { auth: { mode: "mtls" }, serverTls: { ...p.nodes.b!, ca: p.ca } });
    for (const creds of [p.client, p.nodes.c!]) {
      const a = await start("a", { auth: { mode: "mtls" }, clientTls: { ca: p.ca, ...creds } });
      a.transport.setPeers(new Map([["b", b.address]]));
      a.transport.send({ type: "timeoutNow", from: "a", to: "b", term: 1 });
      await until(() => (a.transport.stats()[0]?.errors ?? 0) > 0, "a refused batch");
      expect(a.transport.stats()[0]?.lastError).toMatch(/HTTP 401: unauthorized: the client certificate \(CN=(client|c),.*\) does not name a/);
    }
    expect(b.inbox.msgs).toEqual([]);
  });

  test("mutual TLS refuses a client without a certificate, or with a foreign one", async () => {
    const p = tls();
    const b = await start("b", { auth: { mode: "mtls" }, serverTls: { ...p.server, ca: p.ca } });
    for (const creds of [{}, p.stranger]) {
      const client = new H2Client({ tls: { ca: p.ca, ...creds }, connectTimeoutMs: 2000 });
      const err = await client
        .request(client.originFor(b.address), { method: "POST", path: RAFT_STREAM_PATH, body: new Uint8Array(1), headers: { "x-phalanx-from": "a" } })
        .catch((e: unknown) => e);
      await client.close();
      expect(err).toBeInstanceOf(H2Error);
    }
    expect(b.inbox.msgs).toEqual([]);
  });

  test("with requireClientCert off, peer routes still demand a verified certificate", async () => {
    const p = tls();
    const b = await start("b", { auth: { mode: "mtls" }, serverTls: { ...p.server, ca: p.ca, requireClientCert: false } });
    const a = await start("a", { auth: { mode: "mtls" }, clientTls: { ca: p.ca } });
    a.transport.setPeers(new Map([["b", b.address]]));
    a.transport.send(heartbeat("a", "b", 1));
    await until(() => (a.transport.stats()[0]?.errors ?? 0) > 0, "a refused batch");
    expect(a.transport.stats()[0]?.lastError).toContain("HTTP 401");
    expect(b.inbox.msgs).toEqual([]);
  });

  test("the client refuses a server its CA did not sign", async () => {
    const p = tls();
    const b = await start("b", { serverTls: p.stranger });
    const a = await start("a", { clientTls: { ca: p.ca } });
    a.transport.setPeers(new Map([["b", b.address]]));
    a.transport.send(heartbeat("a", "b", 1));
    await until(() => a.unreachable.length > 0, "unreachable report");
    expect(b.inbox.msgs).toEqual([]);
  });
});

describe("failures", () => {
  test("reconnects after the peer restarts on the same port", async () => {
    const [a, b] = await Promise.all([start("a"), start("b")]);
    mesh([a, b]);
    a.transport.send(heartbeat("a", "b", 1));
    await b.inbox.waitFor(1);

    await b.server.close();
    a.transport.send(heartbeat("a", "b", 2));
    await until(() => a.unreachable.includes("b"), "unreachable report");
    expect(a.transport.stats()[0]?.state).toBe("backoff");

    const b2 = await start("b", { listen: b.address });
    expect(b2.server.port).toBe(b.server.port);
    // Raft keeps sending: each heartbeat is one attempt, delivered or failed; after a failure the
    // transport waits out its backoff before the next.
    const errors = () => a.transport.stats()[0]?.errors ?? 0;
    for (let seq = 3; b2.inbox.msgs.length === 0 && seq < 100; seq++) {
      const before = errors();
      a.transport.send(heartbeat("a", "b", seq));
      await until(() => b2.inbox.msgs.length > 0 || errors() > before, "delivery or failure");
      await until(() => a.transport.stats()[0]?.state !== "backoff", "backoff over");
    }
    await b2.inbox.waitFor(1);
    await until(() => a.transport.stats()[0]?.state === "up", "peer up again");
    expect(a.unreachable).toEqual(["b"]);
  });

  test("a peer still starting: a refused connection in the first second is retried within ms, the batch kept, nothing reported", async () => {
    // A port nobody listens on yet: bind one, note it, close it.
    const b = await start("b");
    await b.server.close();
    const a = await start("a", { transport: { startupWindowMs: STARTUP_WINDOW_MS } });
    a.transport.setPeers(new Map([["b", b.address]]));
    const vote: Message = { type: "preVote", from: "a", to: "b", term: 1, lastIndex: 0, lastTerm: 0, transfer: false, firstElection: true };
    a.transport.send(vote);
    await until(() => (a.transport.stats()[0]?.lastError ?? "").includes("ECONNREFUSED"), "a refused connection");
    const b2 = await start("b", { listen: b.address });
    const listening = performance.now();
    await b2.inbox.waitFor(1);
    const ms = performance.now() - listening;
    expect(b2.inbox.msgs).toEqual([vote]);
    // Retried every few ms, not after a backoff; generous for a loaded machine.
    expect(ms).toBeLessThan(250);
    expect(a.unreachable).toEqual([]);
    await until(() => a.transport.stats()[0]?.sent === 1, "answer");
    expect(a.transport.stats()[0]).toMatchObject({ errors: 0, dropped: 0, reachable: true });
  });

  test("after the first second, a refused connection is a failure as before: dropped, reported, backed off", async () => {
    const b = await start("b");
    await b.server.close();
    const a = await start("a", { transport: { startupWindowMs: 0 } });
    a.transport.setPeers(new Map([["b", b.address]]));
    a.transport.send(heartbeat("a", "b", 1));
    await until(() => a.unreachable.includes("b"), "unreachable report");
    expect(a.transport.stats()[0]).toMatchObject({ errors: 1, dropped: 1, state: "backoff" });
  });

  test("backoff doubles from the minimum to the cap, with jitter in the upper half", () => {
    const at = (attempt: number, r: number) => backoffDelay(attempt, 50, 5000, () => r);
    expect([0, 1, 2, 3].map((n) => at(n, 1))).toEqual([50, 100, 200, 400]);
    expect(at(7, 1)).toBe(5000);
    expect(at(1000, 1)).toBe(5000);
    expect(at(3, 0)).toBe(200);
    expect(at(3, 0.5)).toBe(300);
  });

  test("a dead peer is reported once across retries", async () => {
    const a = await start("a", { transport: { backoffMinMs: 20, backoffMaxMs: 80 } });
    // A port nobody listens on: bind one, note it, close it.
    const ghost = await start("ghost");
    const port = ghost.server.port;
    await ghost.server.close();
    a.transport.setPeers(new Map([["ghost", `127.0.0.1:${port}`]]));
    for (let i = 1; i <= 5; i++) {
      a.transport.send(heartbeat("a", "ghost", i));
      await until(() => a.transport.stats()[0]?.errors === i, `failed attempt ${i}`);
      await until(() => a.transport.stats()[0]?.state !== "backoff", "backoff over");
    }
    expect(a.unreachable).toEqual(["ghost"]);
    expect(a.transport.stats()[0]).toMatchObject({ errors: 5, dropped: 5, sent: 0 });
    expect(a.transport.stats()[0]?.lastError).toContain("connect");
  });

  test("a full queue drops the oldest non-essential message first", async () => {
    const a = await start("a", { transport: { maxQueue: 4 } });
    const b = await start("b");
    a.transport.setPeers(new Map([["b", b.address]]));
    const vote: Message = { type: "vote", from: "a", to: "b", term: 3, lastIndex: 0, lastTerm: 0, transfer: false };
    a.transport.send(vote);
    for (let i = 0; i < 10; i++) a.transport.send(heartbeat("a", "b", i));
    await b.inbox.waitFor(4);
    expect(b.inbox.msgs.map((m) => (m.type === "heartbeat" ? m.seq : m.type))).toEqual(["vote", 7, 8, 9]);
    await until(() => a.transport.stats()[0]?.sent === 4, "answer");
    expect(a.transport.stats()[0]?.dropped).toBe(7);
  });

  test("messages to unknown peers are counted, not thrown", async () => {
    const a = await start("a");
    a.transport.send(heartbeat("a", "nobody", 1));
    expect(a.transport.unroutable).toBe(1);
    expect(a.transport.setPeers(new Map([["x", "not an address"]]))).toEqual(["x"]);
  });

  test("a peer's new address gets a new session; a removed peer's queue is dropped", async () => {
    const [a, c] = await Promise.all([start("a"), start("c")]);
    // First "b" sits behind a listener that accepts and never speaks: the request stays in flight.
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const { port } = silent.address() as net.AddressInfo;
    try {
      a.transport.setPeers(new Map([["b", `127.0.0.1:${port}`]]));
      a.transport.send(heartbeat("a", "b", 1));
      expect(a.transport.stats()[0]?.queued).toBe(1);
      // "b" moves to c's server (which takes requests for "c" only): expect a 401 there.
      // The stream cut off by the move is lost, but it does not make the new address unreachable.
      a.transport.setPeers(new Map([["b", c.address]]));
      a.transport.send(heartbeat("a", "b", 2));
      await until(() => a.transport.stats()[0]?.lastError?.includes("HTTP 401") === true, "refusal from the new address");
      expect(a.unreachable).toEqual([]);
      expect(a.transport.stats()[0]?.state).toBe("up");
    } finally {
      silent.close();
    }
    a.transport.setPeers(new Map());
    expect(a.transport.stats()).toEqual([]);
    a.transport.send(heartbeat("a", "b", 3));
    expect(a.transport.unroutable).toBe(1);
  });
});

describe("no head-of-line blocking", () => {
  test("heartbeats overtake a large snapshot chunk", async () => {
    const [a, b] = await Promise.all([start("a"), start("b", { maxSnapshotBody: 128 << 20 })]);
    mesh([a, b]);
    a.transport.send(heartbeat("a", "b", 0));
    await b.inbox.waitFor(1);
    const size = 48 << 20;
    a.transport.send({
      type: "snapshot",
      from: "a",
      to: "b",
      term: 1,
      meta: { index: 10, term: 1, conf: { voters: ["a", "b"], learners: [] } },
      offset: 0,
      total: size,
      chunk: new Uint8Array(size),
    });
    // Heartbeats sent while the chunk is on the wire, each in its own turn.
    const hbs = 5;
    for (let i = 1; i <= hbs; i++) {
      a.transport.send(heartbeat("a", "b", i));
      await until(() => b.inbox.msgs.length > i || b.inbox.msgs.some((m) => m.type === "snapshot"), "progress", 20_000);
    }
    await b.inbox.waitFor(hbs + 2, 20_000);
    // hb 0 went before the chunk, hb 1 in the same turn; hb 2 was sent once the chunk was on the wire.
    const order = b.inbox.msgs.map((m) => (m.type === "heartbeat" ? m.seq : m.type));
    expect(order.indexOf("snapshot")).toBeGreaterThan(order.indexOf(2));
  }, 30_000);
});
