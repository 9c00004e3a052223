// Answers in the response body: a peer's messages for the sender ride back on the sender's own
// request, pass the same checks as a request (signature, schema, sender, recipient), and are
// only used when the sender asked for them.

import { afterEach, expect, test } from "bun:test";
import { Hono } from "hono";
import type { Message, NodeId } from "../../src/raft/types.ts";
import { NONCE_HEADER, peerReplyHeaders } from "../../src/transport/auth.ts";
import { encodeMessages } from "../../src/transport/codec.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { PeerTransport } from "../../src/transport/peers.ts";
import { raftRoutes } from "../../src/transport/raft_routes.ts";
import { type RunningServer, serveApp } from "../../src/transport/server.ts";
import { HMAC, haveOpenssl, heartbeat, Inbox, makePki, until } from "./helpers.ts";

const cleanup: Array<() => Promise<void>> = [];
afterEach(async () => {
  await Promise.all(cleanup.splice(0).map((f) => f()));
});

const resp = (from: NodeId, to: NodeId, seq: number): Message => ({ type: "heartbeatResp", from, to, term: 1, seq });

/** Node "b": answers each batch from `from` with whatever `answer` returns. */
async function answering(answer: (from: NodeId) => Message[]): Promise<{ inbox: Inbox; server: RunningServer }> {
  const inbox = new Inbox();
  const app = new Hono();
  app.route("/", raftRoutes({ self: "b", auth: HMAC, onMessages: inbox.push, awaitReplies: async (from) => answer(from) }));
  const server = await serveApp(app, { listen: "127.0.0.1:0" });
  cleanup.push(() => server.close());
  return { inbox, server };
}

/** Node "a": sends to b; `deliver` (when given) takes answers from response bodies. */
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

test("a peer's answer comes back in the response body and is delivered", async () => {
  const { inbox, server } = await answering((from) => [resp("b", from, 7)]);
  const got: Message[] = [];
  const a = sender(server.port, (msgs) => got.push(...msgs));
  a.send(heartbeat("a", "b", 7));
  await inbox.waitFor(1);
  await until(() => got.length === 1, "the answer");
  expect(got[0]).toEqual(resp("b", "a", 7));
  expect(a.stats()[0]).toMatchObject({ errors: 0, dropped: 0 });
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

test("a sender that does not take answers gets none (204)", async () => {
  let asked = 0;
  const { inbox, server } = await answering((from) => {
    asked++;
    return [resp("b", from, 1)];
  });
  const a = sender(server.port);
  a.send(heartbeat("a", "b", 1));
  await inbox.waitFor(1);
  await until(() => a.stats()[0]?.sent === 1, "the 204");
  expect(asked).toBe(0);
});

test("an answer whose body was altered fails the signature check", async () => {
  // A proxy-free way to alter the answer: a route that signs one body and sends another.
  const app = new Hono();
  app.post("/raft/v1/messages", (c) => {
    const signed = encodeMessages([resp("b", "a", 1)]);
    const sent = encodeMessages([resp("b", "a", 2)]) as Uint8Array<ArrayBuffer>;
    const headers = { "content-type": "application/msgpack", ...peerReplyHeaders(HMAC, { path: "/raft/v1/messages", from: "b", to: "a", nonce: c.req.header(NONCE_HEADER) ?? "", body: signed }) };
    return c.body(sent, 200, headers);
  });
  const server = await serveApp(app, { listen: "127.0.0.1:0" });
  cleanup.push(() => server.close());
  const got: Message[] = [];
  const a = sender(server.port, (msgs) => got.push(...msgs));
  a.send(heartbeat("a", "b", 1));
  await until(() => (a.stats()[0]?.errors ?? 0) > 0, "the refusal");
  expect(got).toEqual([]);
  expect(a.stats()[0]?.lastError).toContain("digest mismatch");
});

// With mTLS, the answer's messages claim to be from the peer: the server's certificate must name
// it, as the server demands of our requests (a CA-signed certificate for the address is not enough).
test.skipIf(!haveOpenssl)("mTLS: an answer is delivered only when the server's certificate names the peer", async () => {
  const pki = await makePki();
  for (const [serverCert, delivered] of [["b", true], ["c", false]] as const) {
    const inbox = new Inbox();
    const app = new Hono();
    app.route("/", raftRoutes({ self: "b", auth: { mode: "mtls" }, onMessages: inbox.push, awaitReplies: async (from) => [resp("b", from, 1)] }));
    const server = await serveApp(app, { listen: "127.0.0.1:0", tls: { ...pki.nodes[serverCert]!, ca: pki.ca } });
    const client = new H2Client({ tls: { ca: pki.ca, ...pki.nodes.a! }, connectTimeoutMs: 2000 });
    const got: Message[] = [];
    const a = new PeerTransport({ self: "a", client, auth: { mode: "mtls" }, reportUnreachable: () => undefined, deliver: (m) => got.push(...m) });
    a.setPeers(new Map([["b", `127.0.0.1:${server.port}`]]));
    try {
      a.send(heartbeat("a", "b", 1));
      await inbox.waitFor(1);
      if (delivered) {
        await until(() => got.length === 1, "the answer");
      } else {
        await until(() => (a.stats()[0]?.errors ?? 0) > 0, "the refusal");
        expect(a.stats()[0]?.lastError).toBe("reply refused: the server certificate does not name b");
        expect(got).toEqual([]);
      }
    } finally {
      await a.close();
      await client.close();
      await server.close();
    }
  }
});
