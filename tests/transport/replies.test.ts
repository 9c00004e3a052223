// Answers on the peer stream: each frame is answered, in order, by a frame in the response body
// that carries the peer's messages for the sender. They pass the same checks as a request's
// (stream tag, schema, sender, recipient) and are delivered only when the sender takes them.

import { afterEach, expect, test } from "bun:test";
import type http2 from "node:http2";
import type { Message, NodeId } from "../../src/raft/types.ts";
import { PeerGate } from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { PeerTransport } from "../../src/transport/peers.ts";
import { RAFT_STREAM_PATH, RaftStreamRoute } from "../../src/transport/raft_stream.ts";
import { type RunningServer, serveApp, type StreamRoute } from "../../src/transport/server.ts";
import { Direction, FrameKind, FrameWriter, streamKey } from "../../src/transport/stream_frame.ts";
import { Hono } from "hono";
import { HMAC, haveOpenssl, heartbeat, Inbox, makePki, until } from "./helpers.ts";

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((f) => f()));
});

const resp = (from: NodeId, to: NodeId, seq: number): Message => ({ type: "heartbeatResp", from, to, term: 1, seq });

async function serveStream(route: StreamRoute, tls?: Parameters<typeof serveApp>[1]["tls"]): Promise<RunningServer> {
  const server = await serveApp(new Hono(), { listen: "127.0.0.1:0", tls, streamRoutes: new Map([[RAFT_STREAM_PATH, route]]) });
  cleanup.push(() => server.close());
  return server;
}

/** Node "b": answers each batch from `from` with whatever `answer` returns. */
async function answering(answer: (from: NodeId) => Message[]): Promise<{ inbox: Inbox; server: RunningServer }> {
  const inbox = new Inbox();
  const server = await serveStream(new RaftStreamRoute({ self: "b", auth: HMAC, onMessages: inbox.push, awaitReplies: async (from) => answer(from) }));
  return { inbox, server };
}

/** Node "a": sends to b; `deliver` (when given) takes the messages in answers. */
function sender(port: number, deliver?: (msgs: Message[]) => void): PeerTransport {
  const client = new H2Client({ connectTimeoutMs: 2000 });
  const transport = new PeerTransport({ self: "a", client, auth: HMAC, reportUnreachable: () => undefined, ...(deliver ? { deliver } : {}) });
  transport.setPeers(new Map([["b", `127.0.0.1:${port}`]]));
  cleanup.push(async () => {
    await transport.close();
    await client.close();
  });
  return transport;
}

test("a peer's answer comes back on the stream and is delivered", async () => {
  const { inbox, server } = await answering((from) => [resp("b", from, 7)]);
  const got: Message[] = [];
  const a = sender(server.port, (msgs) => got.push(...msgs));
  a.send(heartbeat("a", "b", 7));
  await inbox.waitFor(1);
  await until(() => got.length === 1, "the answer");
  expect(got[0]).toEqual(resp("b", "a", 7));
  expect(a.stats()[0]).toMatchObject({ errors: 0, dropped: 0, sent: 1, batches: 1, inflight: 0 });
});

test("an answer with a message not from the peer or not for us is refused whole", async () => {
  const { server } = await answering(() => [resp("b", "a", 1), resp("c", "a", 2)]);
  const got: Message[] = [];
  const a = sender(server.port, (msgs) => got.push(...msgs));
  a.send(heartbeat("a", "b", 1));
  await until(() => (a.stats()[0]?.errors ?? 0) > 0, "the refusal");
  expect(got).toEqual([]);
  expect(a.stats()[0]?.lastError).toContain("reply refused");
});

test("a sender that does not take answers ignores their messages", async () => {
  const { inbox, server } = await answering((from) => [resp("b", from, 1)]);
  const a = sender(server.port);
  a.send(heartbeat("a", "b", 1));
  await inbox.waitFor(1);
  await until(() => a.stats()[0]?.sent === 1, "the answer");
  expect(a.stats()[0]).toMatchObject({ errors: 0, dropped: 0 });
});

/** A server that accepts any stream and answers with frames `forge` makes (no checks of its own). */
function forging(forge: (identity: { nonce: string }) => Uint8Array[]): StreamRoute {
  return {
    handle: (req, res) => {
      const r = req as http2.Http2ServerRequest;
      const w = res as http2.Http2ServerResponse;
      w.writeHead(200, { "content-type": "application/x-phalanx-frames" });
      r.once("data", () => {
        for (const f of forge({ nonce: String(r.headers["x-phalanx-nonce"]) })) w.write(f);
      });
    },
    closeAll: () => undefined,
  };
}

test("an answer with a bad tag, or one made for another stream, ends the stream and delivers nothing", async () => {
  const body = encodeMessages([resp("b", "a", 1)]);
  const cases: Array<[string, (id: { nonce: string }) => Uint8Array[]]> = [
    ["no key", () => [new FrameWriter(Buffer.alloc(32)).encode(FrameKind.Batch, body)]],
    ["another stream's nonce", () => [new FrameWriter(streamKey(HMAC, { nonce: "0".repeat(32), opener: "a", acceptor: "b" }, Direction.FromAcceptor)).encode(FrameKind.Batch, body)]],
    ["the opener's direction", (id) => [new FrameWriter(streamKey(HMAC, { nonce: id.nonce, opener: "a", acceptor: "b" }, Direction.FromOpener)).encode(FrameKind.Batch, body)]],
    [
      "a body altered after tagging",
      (id) => {
        const f = new FrameWriter(streamKey(HMAC, { nonce: id.nonce, opener: "a", acceptor: "b" }, Direction.FromAcceptor)).encode(FrameKind.Batch, body);
        f[f.length - 40]! ^= 1;
        return [f];
      },
    ],
  ];
  for (const [what, forge] of cases) {
    const server = await serveStream(forging(forge));
    const got: Message[] = [];
    const a = sender(server.port, (msgs) => got.push(...msgs));
    a.send(heartbeat("a", "b", 1));
    await until(() => (a.stats()[0]?.errors ?? 0) > 0, `the refusal (${what})`);
    expect(a.stats()[0]?.lastError).toContain("bad tag");
    expect(got).toEqual([]);
  }
});

test("the correctly tagged answer passes (the forging server above is otherwise right)", async () => {
  const body = encodeMessages([resp("b", "a", 1)]);
  const server = await serveStream(forging((id) => [new FrameWriter(streamKey(HMAC, { nonce: id.nonce, opener: "a", acceptor: "b" }, Direction.FromAcceptor)).encode(FrameKind.Batch, body)]));
  const got: Message[] = [];
  const a = sender(server.port, (msgs) => got.push(...msgs));
  a.send(heartbeat("a", "b", 1));
  await until(() => got.length === 1, "the answer");
  expect(a.stats()[0]?.errors).toBe(0);
});

// With mTLS, the answer's messages claim to be from the peer: the server's certificate must name
// it, as the server demands of our requests (a CA-signed certificate for the address is not enough).
test.skipIf(!haveOpenssl)("mTLS: the stream is used only when the server's certificate names the peer", async () => {
  const pki = await makePki();
  for (const [serverCert, delivered] of [["b", true], ["c", false]] as const) {
    const inbox = new Inbox();
    const auth = { mode: "mtls" } as const;
    const route = new RaftStreamRoute({ self: "b", auth, gate: new PeerGate(auth, "b"), onMessages: inbox.push, awaitReplies: async (from) => [resp("b", from, 1)] });
    const server = await serveApp(new Hono(), { listen: "127.0.0.1:0", tls: { ...pki.nodes[serverCert]!, ca: pki.ca }, streamRoutes: new Map([[RAFT_STREAM_PATH, route]]) });
    const client = new H2Client({ tls: { ca: pki.ca, ...pki.nodes.a! }, connectTimeoutMs: 2000 });
    const got: Message[] = [];
    const a = new PeerTransport({ self: "a", client, auth, reportUnreachable: () => undefined, deliver: (m) => got.push(...m) });
    a.setPeers(new Map([["b", `127.0.0.1:${server.port}`]]));
    try {
      a.send(heartbeat("a", "b", 1));
      if (delivered) {
        await inbox.waitFor(1);
        await until(() => got.length === 1, "the answer");
      } else {
        await until(() => (a.stats()[0]?.errors ?? 0) > 0, "the refusal");
        expect(a.stats()[0]?.lastError).toBe("the server certificate does not name b");
        expect(got).toEqual([]);
        expect(inbox.msgs).toEqual([]);
      }
    } finally {
      await a.close();
      await client.close();
      await server.close();
    }
  }
}, 30_000);
