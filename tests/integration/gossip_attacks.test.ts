// Issue 9's gossip attacks on real `phalanx serve` processes over loopback UDP: a three-server
// cluster formed by gossip (BOOTSTRAP_EXPECT, CLUSTER_KEY only, so the gossip key is derived)
// receives, on every gossip port, the packets that used to rewrite its Raft membership:
//   - `dead <voter> from <voter> at incarnation 2^53-1` (removed the voter within a second), and
//   - `alive evil` advertising an rpc address of the attacker's choosing (got `addLearner evil`),
// sent in plaintext, as a replay sealed with the right key minutes ago, and sealed right now as
// an insider holding the key would. Nothing changes: no conf change is proposed, the leader stays,
// the attacker's rpc address never sees Raft traffic, and writes go on.
import { afterAll, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import { createSocket } from "node:dgram";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { assemblePacket, encodeMessage } from "../../src/gossip/codec.ts";
import { EPOCH_MS, Keyring } from "../../src/gossip/keyring.ts";
import { freePort, TestCluster, waitFor } from "./harness.ts";

const HOST = "127.0.0.1";
const CLUSTER_KEY = "gossip-attack-test-cluster-key";
const CLEANUP_DEAD_MS = 2000;
let cluster: TestCluster | null = null;
let evil: http2.Http2Server | null = null;

afterAll(async () => {
  await cluster?.stopAll();
  await new Promise<void>((r) => (evil === null ? r() : evil.close(() => r())));
});

interface Members {
  members: { id: string; role: string }[];
  automatic?: { decisions: { change: string }[]; identity: { id: string; state: string }[] };
}

/** Asserts `check` on every poll for `ms`: an attack that does nothing is shown by nothing happening over a window. */
async function holdsFor(ms: number, check: () => Promise<void>): Promise<void> {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    await check();
    await Bun.sleep(200);
  }
}

test("forged dead and forged alive gossip, plaintext, replayed or sealed by an insider, change no Raft membership", async () => {
  const c = await TestCluster.create(3, {
    env: { PEERS: "", CLUSTER_KEY, BOOTSTRAP_EXPECT: "3", GOSSIP_PRESET: "local", STABILIZATION_MS: "1000", CLEANUP_DEAD_MS: String(CLEANUP_DEAD_MS) },
  });
  cluster = c;
  const ids = ["n1", "n2", "n3"];
  const gossipPort = new Map<string, number>();
  for (const id of ids) gossipPort.set(id, await freePort(HOST));
  for (const id of ids) c.start(id, { GOSSIP_ADDR: `${HOST}:${gossipPort.get(id)}`, JOIN: `${HOST}:${gossipPort.get("n1")}` });

  // The attacker's "server": it accepts anything, and records every request it gets.
  const seen: string[] = [];
  evil = http2.createServer();
  evil.on("stream", (stream: http2.ServerHttp2Stream, headers) => {
    seen.push(String(headers[":path"]));
    stream.respond({ ":status": 200 });
    stream.end();
  });
  await new Promise<void>((r) => evil!.listen(0, HOST, () => r()));
  const evilRpc = `${HOST}:${(evil.address() as AddressInfo).port}`;

  try {
    const leader = await c.waitForLeader(ids, 30_000);
    const victim = ids.find((id) => id !== leader)!;
    const sock = createSocket("udp4");
    await new Promise<void>((r) => sock.bind(0, HOST, () => r()));
    const attackerAddr = `${HOST}:${sock.address().port}`;
    const sendAll = async (bytes: Uint8Array) => {
      for (const id of ids) await new Promise<void>((done) => sock.send(bytes, gossipPort.get(id)!, HOST, () => done()));
    };
    const forgedDead = (incarnation: number, from: string) => encode([6, victim, incarnation, from]);
    const forgedAlive = encodeMessage({
      type: "alive",
      node: "evil",
      incarnation: 1,
      meta: { gossipAddr: attackerAddr, rpcAddr: evilRpc, region: "evil", role: "candidate", cluster: "" },
    });

    // 1. Plaintext, the exact packets.
    for (let i = 0; i < 3; i++) {
      await sendAll(assemblePacket([forgedDead(Number.MAX_SAFE_INTEGER, victim)]));
      await sendAll(assemblePacket([forgedAlive]));
    }
    // 2. Replays: sealed with the cluster's real (derived) gossip key, five minutes ago.
    const past = Keyring.fromClusterKey(CLUSTER_KEY, { now: () => Date.now() - 10 * EPOCH_MS });
    for (let i = 0; i < 3; i++) {
      await sendAll(past.encrypt(assemblePacket([forgedDead(7, victim)])));
      await sendAll(past.encrypt(assemblePacket([forgedAlive])));
    }
    await waitFor("a node to log the replays as stale", () => [...c.logs.values()].some((l) => l.includes("authentic but stale")), 10_000, 100);
    // 3. An insider with the key, sealing now: gossip believes it, Raft membership must not.
    const now = Keyring.fromClusterKey(CLUSTER_KEY);
    for (let i = 0; i < 3; i++) {
      await sendAll(now.encrypt(assemblePacket([forgedDead(Number.MAX_SAFE_INTEGER, victim), forgedDead(2 ** 32 - 1, victim)])));
      await sendAll(now.encrypt(assemblePacket([forgedDead(40, "n-someone-else")])));
      await sendAll(now.encrypt(assemblePacket([forgedAlive])));
    }
    // The leader found `evil` by gossip and asked it to prove who it is; the proof failed.
    await waitFor("the leader to refuse evil for want of an identity proof", async () => {
      const m = (await c.request(leader, "GET", "/v1/members")).json as Members;
      return m.automatic?.identity.some((x) => x.id === "evil" && x.state === "refused") === true;
    }, 15_000, 200);

    // Over a window well past the cleanup time nothing changes.
    await holdsFor(3 * CLEANUP_DEAD_MS + 2000, async () => {
      const m = (await c.request(leader, "GET", "/v1/members")).json as Members;
      expect(m.members.map((x) => `${x.id}:${x.role}`).sort()).toEqual(["n1:voter", "n2:voter", "n3:voter"]);
      expect(m.automatic?.decisions ?? []).toEqual([]);
      expect((await c.status(victim)).leader).toBe(leader);
    });
    sock.close();
    expect(await c.waitForLeader(ids, 5_000)).toBe(leader);
    // The attacker's address got the identity challenge (and, as a gossip member the insider
    // planted, sealed push-pulls) but no Raft traffic: no appends, no heartbeats, no snapshots.
    console.log(`gossip attacks: requests to the attacker's rpc address: ${[...new Set(seen)].join(", ")}`);
    expect(seen).toContain("/peer/v1/identity");
    expect(seen.filter((p) => p.startsWith("/raft/"))).toEqual([]);
    for (const id of ids) expect(c.logs.get(id)).not.toContain("autopilot: membership change");
    const put = await c.request(victim, "PUT", "/v1/kv/after-attack", { json: { value: "fine" } });
    expect(put.status).toBe(200);
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }
}, 120_000);
