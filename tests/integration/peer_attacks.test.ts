// Attacks on the peer transport of real `phalanx serve` processes over loopback (issue 9 §2-4).
// Each test performs the attack against the leader while a well-behaved client keeps writing,
// then checks that the attack got nowhere, the writes went through and the leader kept its term.
//
// Bounds stated here: under 16 concurrent fake-signature streams offering 32 MiB each (512 MiB),
// the leader's VmRSS grows by less than 150 MiB; of 2,000 idle connections, everything over the
// caps (1,024 in total, 128 per remote address) is reset at once; never-finished signed streams
// are reset within the 15 s body timeout (+ slack); a replayed signed request is refused every
// time; a CA-signed certificate that does not name the claimed node is refused; of 2,000 forwarded
// requests written at once on one stream, 128 run and the rest are refused at once, unrun.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Message } from "../../src/raft/types.ts";
import { NONCE_HEADER, type PeerAuth, peerRequestHeaders } from "../../src/transport/auth.ts";
import { decodeMessages, encodeMessages } from "../../src/transport/codec.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { RAFT_SNAPSHOT_PATH } from "../../src/transport/raft_routes.ts";
import { FRAMES_CONTENT_TYPE, RAFT_STREAM_PATH } from "../../src/transport/raft_stream.ts";
import { Direction, FrameKind, FrameReader, FrameWriter, streamKey } from "../../src/transport/stream_frame.ts";
import { decodeForwardReply, encodeForward, type ForwardReply } from "../../src/transport/forward_frame.ts";
import { haveOpenssl, makePki } from "../transport/helpers.ts";
import { freePort, TestCluster, waitFor } from "./harness.ts";

/** The harness's default CLUSTER_KEY: the tests below hold the key, as a peer (or a thief of it) would. */
const KEY: PeerAuth = { mode: "hmac", key: "integration-test-cluster-key" };
const WRONG_KEY: PeerAuth = { mode: "hmac", key: "not-the-cluster-key-at-all" };
const MiB = 1 << 20;
const TIMING = { TICK_MS: "100", ELECTION_TICKS: "20" };

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (m === null) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) / 1024;
}

/** A polite client writing to the leader, one PUT at a time, until stop(); counts what was applied. */
function politeWriter(cluster: TestCluster, leader: string, prefix: string): { stop: () => Promise<{ ok: number; tried: number }> } {
  let running = true;
  let ok = 0;
  let tried = 0;
  const loop = (async () => {
    // Bounded: stops on stop(), and never more than 2,000 writes.
    while (running && tried < 2000) {
      tried++;
      const res = await cluster.request(leader, "PUT", `/v1/kv/${prefix}${tried}`, { json: { value: "v" }, timeoutMs: 3000 }).catch(() => null);
      if (res?.status === 200) ok++;
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { ok, tried };
    },
  };
}

async function expectLeaderKept(cluster: TestCluster, leader: string, term: number): Promise<void> {
  try {
    for (const n of cluster.nodes) {
      const st = await cluster.status(n.id);
      expect({ id: n.id, leader: st.leader, term: st.term }).toEqual({ id: n.id, leader, term });
    }
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}

describe("HMAC cluster", () => {
  let cluster: TestCluster;
  const debugAddrs = new Map<string, string>();
  let leader = "";
  let term = 0;

  beforeAll(async () => {
    // Election timeout 2-4 s: long enough that a loaded 2-core test machine does not elect by
    // accident, short enough that an attack stalling the leader would cost it its leadership.
    cluster = await TestCluster.create(3, { env: TIMING });
    for (const n of cluster.nodes) {
      debugAddrs.set(n.id, `127.0.0.1:${await freePort()}`);
      cluster.start(n.id, { DEBUG_ADDR: debugAddrs.get(n.id)! });
    }
    leader = await cluster.waitForLeader(cluster.nodes.map((n) => n.id));
    term = (await cluster.status(leader)).term;
  }, 40_000);

  afterAll(async () => {
    await cluster?.stopAll();
  });

  const follower = () => cluster.nodes.find((n) => n.id !== leader)!.id;
  const origin = () => `http://${cluster.node(leader).addr}`;

  test("§2: fake-signature streams with large declared bodies are refused unread; RSS stays bounded", async () => {
    const pid = cluster.procs.get(leader)!.pid;
    const before = rssMiB(pid);
    let peak = before;
    let died = false;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssMiB(pid));
      } catch {
        died = true;
      }
    }, 25);
    const writer = politeWriter(cluster, leader, "mem");
    const declared = 32 * MiB;
    const fake = peerRequestHeaders(WRONG_KEY, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: follower(), to: leader, body: new Uint8Array(0) });
    const slice = new Uint8Array(64 * 1024);
    const statuses: number[] = [];
    /** One stream: headers claiming `declared` bytes, then the body as fast as flow control lets. */
    let cutoffReached: () => void = () => undefined;
    const cutoffPromise = new Promise<void>((r) => (cutoffReached = r));
    const attack = (session: http2.ClientHttp2Session) =>
      new Promise<void>((resolve) => {
        void cutoffPromise.then(resolve);
        const s = session.request({ ":method": "POST", ":path": RAFT_SNAPSHOT_PATH, ...fake, "content-length": String(declared) }, { endStream: false });
        let sent = 0;
        s.on("response", (h) => statuses.push(Number(h[":status"])));
        s.on("error", () => undefined);
        s.on("close", () => resolve());
        const pump = () => {
          while (sent < declared && !s.closed && !s.destroyed) {
            sent += slice.byteLength;
            if (!s.write(slice)) return void s.once("drain", pump);
          }
          if (!s.closed) s.end();
        };
        pump();
      });
    const sessions = Array.from({ length: 4 }, () => {
      const s = http2.connect(origin());
      s.on("error", () => undefined);
      return s;
    });
    // 16 streams at a time (4 per session), 48 in all: 1.5 GiB offered; the whole attack is cut
    // off after 20 s (destroying the sessions closes whatever is still open).
    const cutoff = setTimeout(() => {
      cutoffReached();
      for (const s of sessions) s.destroy();
    }, 20_000);
    try {
      for (let round = 0; round < 3; round++) await Promise.all(sessions.flatMap((s) => Array.from({ length: 4 }, () => attack(s))));
    } finally {
      clearTimeout(cutoff);
      for (const s of sessions) s.destroy();
      clearInterval(sampler);
    }
    const { ok } = await writer.stop();
    console.log(`fake-signature streams: leader VmRSS ${before.toFixed(0)} MiB before, peak ${peak.toFixed(0)} MiB; ${statuses.length} answers`);
    expect(died).toBe(false);
    expect(peak - before).toBeLessThan(150);
    expect(statuses.length).toBe(48);
    expect(statuses.every((s) => s === 401)).toBe(true);
    expect(ok).toBeGreaterThan(0);
    await expectLeaderKept(cluster, leader, term);
  }, 60_000);

  test("§2: 2,000 idle connections: those over the caps are reset at once, /readyz and writes keep working", async () => {
    const [host, port] = [cluster.node(leader).addr.split(":")[0]!, Number(cluster.node(leader).addr.split(":")[1])];
    const open = (localAddress: string) =>
      new Promise<{ socket: net.Socket; closed: Promise<void> }>((resolve) => {
        const socket = net.connect({ host, port, localAddress });
        socket.on("error", () => undefined);
        const closed = new Promise<void>((r) => socket.once("close", () => r()));
        socket.once("connect", () => resolve({ socket, closed }));
        // A connection refused outright also counts as closed.
        socket.once("close", () => resolve({ socket, closed }));
      });
    const writer = politeWriter(cluster, leader, "idle");
    // 200 from one address (per-address cap 128), then 1,800 from 18 others (total cap 1,024).
    const one = await Promise.all(Array.from({ length: 200 }, () => open("127.0.0.2")));
    const many: { socket: net.Socket; closed: Promise<void> }[] = [];
    for (let a = 0; a < 18; a++) many.push(...(await Promise.all(Array.from({ length: 100 }, () => open(`127.0.0.${10 + a}`)))));
    const all = [...one, ...many];
    try {
      const closedOne = await waitFor("per-address cap resets", () => {
        const n = one.filter((c) => c.socket.destroyed || c.socket.readyState === "closed").length;
        return n >= 72 ? n : undefined;
      });
      expect(closedOne).toBe(72);
      const closedAll = await waitFor("total cap resets", () => {
        const n = all.filter((c) => c.socket.destroyed || c.socket.readyState === "closed").length;
        return n >= 2000 - 1024 ? n : undefined;
      });
      // The cluster's own connections to the leader also count against the total.
      expect(closedAll).toBeLessThanOrEqual(2000 - 1024 + 8);
      const ready = await fetch(`http://${debugAddrs.get(leader)}/readyz`);
      expect(ready.status).toBe(200);
      const { ok } = await writer.stop();
      expect(ok).toBeGreaterThan(0);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      await writer.stop();
      for (const c of all) c.socket.destroy();
    }
  }, 60_000);

  test("§2: signed streams whose bodies never finish are reset by the body timeout", async () => {
    const writer = politeWriter(cluster, leader, "slow");
    const session = http2.connect(origin());
    session.on("error", () => undefined);
    const announced = new Uint8Array(MiB);
    const codes = await Promise.all(
      Array.from({ length: 20 }, () => {
        const headers = peerRequestHeaders(KEY, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: follower(), to: leader, body: announced });
        const s = session.request({ ":method": "POST", ":path": RAFT_SNAPSHOT_PATH, ...headers }, { endStream: false });
        s.on("error", () => undefined);
        s.write(announced.subarray(0, 1024));
        return new Promise<number>((r) => s.once("close", () => r(s.rstCode)));
      }),
    ).finally(() => session.destroy());
    // 8 = CANCEL: reset by the server's body timeout (15 s), not by us.
    expect(codes).toEqual(Array.from({ length: 20 }, () => http2.constants.NGHTTP2_CANCEL));
    const { ok } = await writer.stop();
    expect(ok).toBeGreaterThan(0);
    await expectLeaderKept(cluster, leader, term);
  }, 40_000);

  // The reply-stealing half of §3 (a replayed `x-phalanx-reply` request got the victim's appends)
  // now concerns the stream's open, whose replay the stream tests below refuse.
  test("§3: a replayed request is refused every time and receives nothing", async () => {
    const victim = follower();
    // A chunk of a stale term: accepted by the route, ignored by the core.
    const chunk: Message = { type: "snapshot", from: victim, to: leader, term: 0, meta: { index: 1, term: 0, conf: { voters: [victim], learners: [] } }, offset: 0, total: 16, chunk: new Uint8Array(16) };
    const body = encodeMessages([chunk]);
    const headers = { "content-type": "application/msgpack", ...peerRequestHeaders(KEY, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: victim, to: leader, body }) };
    const client = new H2Client();
    const writer = politeWriter(cluster, leader, "replay");
    try {
      // The first use is the "captured" request reaching its destination as it would have anyway.
      const first = await client.request(origin(), { method: "POST", path: RAFT_SNAPSHOT_PATH, headers, body, timeoutMs: 3000 });
      expect([200, 204]).toContain(first.status);
      const statuses: number[] = [];
      let stolen = 0;
      // Replays for 3 s (bounded to 5,000 sends).
      const until = performance.now() + 3000;
      while (performance.now() < until && statuses.length < 5000) {
        const res = await client.request(origin(), { method: "POST", path: RAFT_SNAPSHOT_PATH, headers, body, timeoutMs: 3000 });
        statuses.push(res.status);
        if (res.status === 200 && res.body.byteLength > 0) stolen += (decodeMessages(res.body) as Message[]).length;
      }
      expect(statuses.length).toBeGreaterThan(10);
      expect(stolen).toBe(0);
      expect(new Set(statuses)).toEqual(new Set([401]));
      const { ok } = await writer.stop();
      expect(ok).toBeGreaterThan(0);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      await writer.stop();
      await client.close();
    }
  }, 30_000);

  /** Opens a peer stream to the leader as `from`, signed with `auth`: its status, and frames both ways. */
  const openStream = (session: http2.ClientHttp2Session, auth: PeerAuth, from: string, replayOf?: Record<string, string>) => {
    const headers = replayOf ?? { "content-type": FRAMES_CONTENT_TYPE, ...peerRequestHeaders(auth, { method: "POST", path: RAFT_STREAM_PATH, from, to: leader, body: new Uint8Array(0) }) };
    const id = { nonce: headers[NONCE_HEADER] ?? "", opener: from, acceptor: leader };
    const s = session.request({ ":method": "POST", ":path": RAFT_STREAM_PATH, ...headers }, { endStream: false });
    s.on("error", () => undefined);
    const status = new Promise<number>((r) => {
      s.once("response", (h) => r(Number(h[":status"])));
      s.once("close", () => r(0));
    });
    const answers: Uint8Array[] = [];
    s.on("data", (c: Buffer) => answers.push(c));
    const closed = new Promise<number>((r) => s.once("close", () => r(s.rstCode)));
    return { s, headers, status, answers, closed, writer: new FrameWriter(streamKey(auth, id, Direction.FromOpener)) };
  };

  test("stream: an open signed with the wrong key, or replayed, is refused; frames replayed onto another stream reset it", async () => {
    const writer = politeWriter(cluster, leader, "streamreplay");
    const session = http2.connect(origin());
    session.on("error", () => undefined);
    try {
      const victim = follower();
      expect(await openStream(session, WRONG_KEY, victim).status).toBe(401);
      // A "captured" stream: its open and its first frame, as an eavesdropper on h2c would see them.
      const captured = openStream(session, KEY, victim);
      expect(await captured.status).toBe(200);
      const frame = captured.writer.encode(FrameKind.Batch, encodeMessages([{ type: "heartbeatResp", from: victim, to: leader, term, seq: 0 }]));
      captured.s.write(frame);
      await waitFor("the answer to the captured frame", () => captured.answers.length > 0, 5000, 5);
      // The open replayed: refused (the nonce is spent), nothing read.
      expect(await openStream(session, KEY, victim, captured.headers).status).toBe(401);
      // The frame replayed onto a fresh stream (another nonce, so another key): reset, no answer.
      const fresh = openStream(session, KEY, victim);
      expect(await fresh.status).toBe(200);
      fresh.s.write(frame);
      expect(await fresh.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(fresh.answers).toEqual([]);
      // And onto its own stream again (sequence number 1 now): reset too.
      captured.s.write(frame);
      expect(await captured.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      const { ok } = await writer.stop();
      expect(ok).toBeGreaterThan(0);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      await writer.stop();
      session.destroy();
    }
  }, 30_000);

  test("stream: forged frames and 4 GiB lengths reset the stream at once; RSS stays bounded", async () => {
    const pid = cluster.procs.get(leader)!.pid;
    const before = rssMiB(pid);
    const writer = politeWriter(cluster, leader, "streamforge");
    const session = http2.connect(origin());
    session.on("error", () => undefined);
    try {
      const victim = follower();
      const forged = openStream(session, KEY, victim);
      expect(await forged.status).toBe(200);
      // A frame as one without the key would make it: right shape, wrong tag.
      const timeoutNow = encodeMessages([{ type: "timeoutNow", from: victim, to: leader, term }]);
      forged.s.write(new FrameWriter(streamKey(WRONG_KEY, { nonce: "0".repeat(32), opener: victim, acceptor: leader }, Direction.FromOpener)).encode(FrameKind.Batch, timeoutNow));
      expect(await forged.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(forged.answers).toEqual([]);
      // 32 streams, each announcing a 4 GiB frame and then pushing bytes: each is reset from its
      // header, before a byte of it is kept (well within the body timeout).
      const started = performance.now();
      const codes = await Promise.all(
        Array.from({ length: 32 }, async () => {
          const big = openStream(session, KEY, victim);
          if ((await big.status) !== 200) return -1;
          const head = Buffer.alloc(5 + 64 * 1024);
          head.writeUInt32BE(0xffffffff, 0);
          big.s.write(head);
          return big.closed;
        }),
      );
      expect(codes).toEqual(Array.from({ length: 32 }, () => http2.constants.NGHTTP2_CANCEL));
      expect(performance.now() - started).toBeLessThan(5000);
      expect(rssMiB(pid) - before).toBeLessThan(100);
      const { ok } = await writer.stop();
      expect(ok).toBeGreaterThan(0);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      await writer.stop();
      session.destroy();
    }
  }, 30_000);

  /** Forward replies on an opened stream, by kind, as the follower's transport would read them. */
  const forwardReplies = (opened: ReturnType<typeof openStream>, from: string) => {
    const reader = new FrameReader({ key: streamKey(KEY, { nonce: opened.headers[NONCE_HEADER] ?? "", opener: from, acceptor: leader }, Direction.FromAcceptor), maxPayload: 4 * MiB, maxForwardPayload: 16 * MiB });
    const replies: ForwardReply[] = [];
    const take = (c: Uint8Array) => {
      for (const f of reader.push(c)) if (f.kind === FrameKind.ForwardReply) replies.push(decodeForwardReply(f.payload).reply);
    };
    // Chunks that came before this listener, then the rest.
    for (const c of opened.answers) take(c);
    opened.s.on("data", take);
    return replies;
  };

  test("stream: a forward frame forged or replayed is refused unrun; the genuine one is applied once", async () => {
    const session = http2.connect(origin());
    session.on("error", () => undefined);
    try {
      const victim = follower();
      const put = encodeForward(0, { method: "PUT", path: "/v1/kv/fwd-once", headers: { "content-type": "application/octet-stream" }, body: new TextEncoder().encode("v"), timeoutMs: 3000 });
      // Without the key: the frame's tag is wrong, the stream is reset, nothing is written.
      const forged = openStream(session, KEY, victim);
      expect(await forged.status).toBe(200);
      forged.s.write(new FrameWriter(streamKey(WRONG_KEY, { nonce: "0".repeat(32), opener: victim, acceptor: leader }, Direction.FromOpener)).encode(FrameKind.Forward, put));
      expect(await forged.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      expect((await cluster.request(leader, "GET", "/v1/kv/fwd-once")).status).toBe(404);
      // The genuine frame (as the victim would send it): run through the leader's app, answered.
      const genuine = openStream(session, KEY, victim);
      expect(await genuine.status).toBe(200);
      const replies = forwardReplies(genuine, victim);
      const frame = genuine.writer.encode(FrameKind.Forward, put);
      genuine.s.write(frame);
      await waitFor("the forward's reply", () => replies.length > 0, 5000, 5);
      expect(replies[0]).toMatchObject({ kind: "answer", status: 200 });
      // Captured and replayed: onto its own stream (the next sequence number) and onto a fresh one.
      genuine.s.write(frame);
      expect(await genuine.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      const fresh = openStream(session, KEY, victim);
      expect(await fresh.status).toBe(200);
      fresh.s.write(frame);
      expect(await fresh.closed).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(fresh.answers).toEqual([]);
      const got = await cluster.request(leader, "GET", "/v1/kv/fwd-once");
      expect(got.json.kv.version).toBe(1);
      expect(replies.length).toBe(1);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      session.destroy();
    }
  }, 30_000);

  test("stream: 2,000 forwards at once from one peer: past the cap of 128 running they are refused unrun, at once; RSS stays bounded", async () => {
    const pid = cluster.procs.get(leader)!.pid;
    const before = rssMiB(pid);
    const writer = politeWriter(cluster, leader, "fwdflood");
    const session = http2.connect(origin());
    session.on("error", () => undefined);
    try {
      const victim = follower();
      const flood = openStream(session, KEY, victim);
      expect(await flood.status).toBe(200);
      const replies = forwardReplies(flood, victim);
      // Blocking reads that wait out their 3 s: each holds its slot on the leader while it waits.
      const wait = encodeForward(0, { method: "GET", path: "/v1/kv/fwd-flood?index=999999999&wait=3s", headers: {}, body: null, timeoutMs: 3000 });
      const started = performance.now();
      for (let i = 0; i < 2000; i++) flood.s.write(flood.writer.encode(FrameKind.Forward, wait));
      await waitFor("1,872 refusals", () => replies.filter((r) => r.kind === "refused").length === 1872, 10_000, 10);
      expect(performance.now() - started).toBeLessThan(2500);
      expect(replies.length).toBe(1872);
      expect(replies[0]).toEqual({ kind: "refused", reason: `128 forwards from ${victim} are running (the cap)` });
      // The 128 that ran answer when their wait ends, as the route answers a blocking read.
      await waitFor("the 128 answers", () => replies.length === 2000, 15_000, 20);
      expect(replies.filter((r) => r.kind === "answer").length).toBe(128);
      expect(rssMiB(pid) - before).toBeLessThan(100);
      const { ok } = await writer.stop();
      expect(ok).toBeGreaterThan(0);
      await expectLeaderKept(cluster, leader, term);
    } finally {
      await writer.stop();
      session.destroy();
    }
  }, 40_000);
});

describe.skipIf(!haveOpenssl)("mutual TLS cluster", () => {
  let cluster: TestCluster;
  let pki: Awaited<ReturnType<typeof makePki>>;
  const dir = mkdtempSync(join(tmpdir(), "phalanx-attack-pki-"));

  beforeAll(async () => {
    pki = await makePki();
    const ca = join(dir, "ca.crt");
    writeFileSync(ca, pki.ca);
    cluster = await TestCluster.create(3, { env: { ...TIMING, TLS_CA: ca, CLUSTER_KEY: "" }, tls: { ca: pki.ca } });
    for (const n of cluster.nodes) {
      writeFileSync(join(dir, `${n.id}.crt`), pki.nodes[n.id]!.cert);
      writeFileSync(join(dir, `${n.id}.key`), pki.nodes[n.id]!.key);
      cluster.start(n.id, { TLS_CERT: join(dir, `${n.id}.crt`), TLS_KEY: join(dir, `${n.id}.key`) });
    }
  }, 30_000);

  afterAll(async () => {
    await cluster?.stopAll();
    rmSync(dir, { recursive: true, force: true });
  });

  test("§4: a CA-signed certificate that does not name the claimed node cannot send a timeoutNow as the leader", async () => {
    const ids = cluster.nodes.map((n) => n.id);
    const leader = await cluster.waitForLeader(ids);
    const { term } = await cluster.status(leader);
    const target = ids.find((id) => id !== leader)!;
    const forged = encodeMessages([{ type: "timeoutNow", from: leader, to: target, term }]);
    // CN=client (an application's certificate), and another node's certificate.
    for (const creds of [pki.client, pki.nodes[ids.find((id) => id !== leader && id !== target)!]!]) {
      const attacker = new H2Client({ tls: { ca: pki.ca, ...creds } });
      try {
        // The stream a timeoutNow would travel on is refused at its open, before a frame is read.
        const headers = peerRequestHeaders({ mode: "mtls" }, { method: "POST", path: RAFT_STREAM_PATH, from: leader, to: target, body: new Uint8Array(0) });
        const res = await attacker.request(attacker.originFor(cluster.node(target).addr), { method: "POST", path: RAFT_STREAM_PATH, headers, body: new FrameWriter(null).encode(FrameKind.Batch, forged), timeoutMs: 3000 });
        expect(res.status).toBe(401);
        expect(new TextDecoder().decode(res.body)).toContain(`does not name ${leader}`);
        // And so is the snapshot route's request.
        const chunk = encodeMessages([{ type: "snapshot", from: leader, to: target, term, meta: { index: 1, term, conf: { voters: [leader], learners: [] } }, offset: 0, total: 16, chunk: new Uint8Array(16) }]);
        const snap = peerRequestHeaders({ mode: "mtls" }, { method: "POST", path: RAFT_SNAPSHOT_PATH, from: leader, to: target, body: chunk });
        const res2 = await attacker.request(attacker.originFor(cluster.node(target).addr), { method: "POST", path: RAFT_SNAPSHOT_PATH, headers: snap, body: chunk, timeoutMs: 3000 });
        expect(res2.status).toBe(401);
      } finally {
        await attacker.close();
      }
    }
    // A write commits through the same leader, in the same term: nobody campaigned.
    const put = await cluster.request(leader, "PUT", "/v1/kv/after-forgery", { json: { value: "x" } });
    expect(put.status).toBe(200);
    await expectLeaderKept(cluster, leader, term);
  }, 30_000);
});
