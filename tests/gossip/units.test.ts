// Unit tests of the gossip core's parts: suspicion timeout math, awareness, the broadcast queue,
// the codec's refusal of garbage, the keyring, and address parsing.

import { describe, expect, test } from "bun:test";
import { gossipKeyring, gossipOptionsFromEnv } from "../../src/gossip/agent.ts";
import { parseHostPort, formatHostPort, normalizeHost } from "../../src/gossip/address.ts";
import { Awareness } from "../../src/gossip/awareness.ts";
import { BroadcastQueue } from "../../src/gossip/broadcast_queue.ts";
import { encode } from "@msgpack/msgpack";
import { MAX_INCARNATION, assemblePacket, decodePacket, decodePushPull, encodeMessage } from "../../src/gossip/codec.ts";
import { PRESETS, gossipConfig, retransmitLimit, type GossipConfig } from "../../src/gossip/config.ts";
import { discoverSeeds, parseJoin } from "../../src/gossip/discovery.ts";
import { ENCRYPTION_OVERHEAD, EPOCH_MS, Keyring } from "../../src/gossip/keyring.ts";
import { seededRng } from "../../src/gossip/rng.ts";
import { Suspicion, expectedConfirmations, suspicionBounds, suspicionTimeoutMs } from "../../src/gossip/suspicion.ts";

describe("suspicion timeout", () => {
  const lan = gossipConfig("lan");

  test("bounds follow min = mult × max(1, log10 n) × interval, max = maxMult × min", () => {
    expect(suspicionBounds(lan, 5)).toEqual({ minMs: 4000, maxMs: 24000 });
    const b = suspicionBounds(lan, 100);
    expect(b.minMs).toBeCloseTo(8000);
    expect(b.maxMs).toBeCloseTo(48000);
  });

  test("starts at max and falls to min as k confirmations arrive", () => {
    const b = { minMs: 4000, maxMs: 24000 };
    expect(suspicionTimeoutMs(b, 2, 0)).toBe(24000);
    // max − log(2)/log(3) × (max − min)
    expect(suspicionTimeoutMs(b, 2, 1)).toBe(Math.floor(24000 - (Math.log(2) / Math.log(3)) * 20000));
    expect(suspicionTimeoutMs(b, 2, 2)).toBe(4000);
    expect(suspicionTimeoutMs(b, 2, 5)).toBe(4000);
    expect(suspicionTimeoutMs(b, 0, 0)).toBe(4000);
  });

  test("k is suspicionMult − 2, or 0 in a cluster too small to confirm", () => {
    expect(expectedConfirmations(lan, 10)).toBe(2);
    expect(expectedConfirmations(lan, 3)).toBe(0);
  });

  test("only distinct members other than the first accuser confirm", () => {
    const s = new Suspicion(1000, 2, { minMs: 4000, maxMs: 24000 }, "a");
    expect(s.deadline()).toBe(25000);
    expect(s.confirm("a")).toBe(false);
    expect(s.confirm("b")).toBe(true);
    expect(s.confirm("b")).toBe(false);
    expect(s.confirm("c")).toBe(true);
    expect(s.confirm("d")).toBe(false);
    expect(s.deadline()).toBe(5000);
  });
});

describe("awareness", () => {
  test("scales timeouts by score + 1, capped at the max multiplier", () => {
    const a = new Awareness(8);
    expect(a.scale(500)).toBe(500);
    a.apply(3);
    expect(a.scale(500)).toBe(2000);
    a.apply(100);
    expect(a.health()).toBe(7);
    expect(a.scale(500)).toBe(4000);
    a.apply(-100);
    expect(a.health()).toBe(0);
  });
});

describe("broadcast queue", () => {
  const msg = (n: number) => new Uint8Array(n);

  test("each update is sent at most `limit` times", () => {
    const q = new BroadcastQueue();
    q.enqueue("a", "alive", msg(10));
    let sent = 0;
    for (let i = 0; i < 10; i++) sent += q.take(1000, 3, "z").length;
    expect(sent).toBe(3);
    expect(q.size()).toBe(0);
  });

  test("the limit grows as retransmitMult × ceil(log10(n+1))", () => {
    const lan = gossipConfig("lan");
    expect(retransmitLimit(lan, 1)).toBe(4);
    expect(retransmitLimit(lan, 9)).toBe(4);
    expect(retransmitLimit(lan, 10)).toBe(8);
    expect(retransmitLimit(lan, 100)).toBe(12);
  });

  test("a newer update about the same member replaces the older", () => {
    const q = new BroadcastQueue();
    q.enqueue("a", "alive", msg(10));
    q.enqueue("a", "alive", msg(20));
    expect(q.take(1000, 5, "z").map((b) => b.length)).toEqual([20]);
  });

  test("takes only what fits the byte budget, least-sent first", () => {
    const q = new BroadcastQueue();
    q.enqueue("a", "alive", msg(400));
    q.take(1000, 5, "z");
    q.enqueue("b", "alive", msg(400));
    q.enqueue("c", "alive", msg(400));
    q.enqueue("d", "alive", msg(100));
    const got = q.take(1000, 5, "z");
    expect(got.reduce((s, b) => s + b.length, 0)).toBeLessThanOrEqual(1000);
    expect(got.map((b) => b.length)).toEqual([100, 400, 400]);
    expect(q.take(0, 5, "z")).toEqual([]);
  });

  test("an alive update is not spent on the member it is about; a suspect or dead one is", () => {
    const q = new BroadcastQueue();
    q.enqueue("a", "alive", msg(10));
    q.enqueue("b", "suspect", msg(20));
    q.enqueue("c", "dead", msg(30));
    // "a" learns nothing from its own alive: none of its 2 transmits goes to it.
    expect(q.take(1000, 2, "a").map((b) => b.length)).toEqual([30, 20]);
    expect(q.take(1000, 2, "a").map((b) => b.length)).toEqual([30, 20]);
    expect(q.size()).toBe(1);
    expect(q.take(1000, 2, "z")).toEqual([msg(10)]);
    expect(q.take(1000, 2, null)).toEqual([msg(10)]);
    expect(q.size()).toBe(0);
    // An accusation goes to the accused, who must refute it.
    q.enqueue("b", "suspect", msg(20));
    q.enqueue("c", "dead", msg(30));
    expect(q.take(1000, 1, "b").map((b) => b.length)).toEqual([30, 20]);
    expect(q.size()).toBe(0);
  });
});

describe("codec", () => {
  test("round-trips every message type inside one packet", () => {
    const meta = { gossipAddr: "[::1]:7946", rpcAddr: "[::1]:8000", region: "lhr", role: "voter" as const, cluster: "c:0123abcd" };
    const msgs = [
      { type: "ping" as const, seq: 1, from: "a", target: "" },
      { type: "pingReq" as const, seq: 2, from: "a", target: "b", targetAddr: "127.0.0.1:1" },
      { type: "ack" as const, seq: 3, from: "b" },
      { type: "nack" as const, seq: 4, from: "c" },
      { type: "alive" as const, node: "a", incarnation: 9, meta },
      { type: "suspect" as const, node: "b", incarnation: 1, from: "a" },
      { type: "dead" as const, node: "b", incarnation: 1, from: "b" },
    ];
    expect(decodePacket(assemblePacket(msgs.map(encodeMessage)))).toEqual({ messages: msgs, malformed: 0 });
  });

  test("a malformed message drops itself, not the packet it rides in (issue 9)", () => {
    // The attack's message: an incarnation beyond the wire's uint32 range (2^53 - 1).
    const bad = encode([6, "n3", Number.MAX_SAFE_INTEGER, "n3"]);
    const ack = { type: "ack" as const, seq: 7, from: "n1" };
    const got = decodePacket(assemblePacket([bad, encodeMessage(ack), encode([99, "junk"])]));
    expect(got).toEqual({ messages: [ack], malformed: 2 });
    // The largest incarnation the wire carries, and the first it does not.
    const at = (inc: number) => decodePacket(assemblePacket([encode([6, "n3", inc, "n3"])]))?.messages.length;
    expect(at(MAX_INCARNATION)).toBe(1);
    expect(at(MAX_INCARNATION + 1)).toBe(0);
  });

  test("random bytes never throw", () => {
    const rng = seededRng(42);
    for (let i = 0; i < 2000; i++) {
      const b = new Uint8Array(1 + Math.floor(rng.next() * 200));
      for (let j = 0; j < b.length; j++) b[j] = Math.floor(rng.next() * 256);
      expect(() => decodePacket(b)).not.toThrow();
      expect(() => decodePushPull(b)).not.toThrow();
    }
    expect(decodePacket(new Uint8Array([0x91, 0x94, 0x00, 0x01, 0xa1, 0x61]))).toBeNull();
  });
});

describe("keyring", () => {
  const key = (b: number) => new Uint8Array(32).fill(b);

  test("round-trips and adds the fixed overhead", () => {
    const k = new Keyring([key(1)]);
    const sealed = k.encrypt(new Uint8Array([1, 2, 3]));
    expect(sealed.length).toBe(3 + ENCRYPTION_OVERHEAD);
    expect(k.decrypt(sealed)).toEqual(new Uint8Array([1, 2, 3]));
  });

  test("rotation: any key in the ring decrypts, the first encrypts", () => {
    const old = new Keyring([key(1)]);
    const both = new Keyring([key(2), key(1)]);
    const fresh = new Keyring([key(2)]);
    expect(both.decrypt(old.encrypt(new Uint8Array([7])))).toEqual(new Uint8Array([7]));
    expect(fresh.decrypt(both.encrypt(new Uint8Array([8])))).toEqual(new Uint8Array([8]));
    expect(old.decrypt(both.encrypt(new Uint8Array([9])))).toBeNull();
  });

  test("wrong key, tampering and garbage give null, never a throw", () => {
    const k = new Keyring([key(1)]);
    const sealed = k.encrypt(new Uint8Array([1, 2, 3]));
    expect(new Keyring([key(3)]).decrypt(sealed)).toBeNull();
    const tampered = sealed.slice();
    tampered[15] = (tampered[15] as number) ^ 1;
    expect(k.decrypt(tampered)).toBeNull();
    expect(k.decrypt(new Uint8Array(0))).toBeNull();
    expect(k.decrypt(new Uint8Array(100).fill(1))).toBeNull();
  });

  test("parses GOSSIP_KEY and rejects bad keys", () => {
    const a = Buffer.from(key(1)).toString("base64");
    const b = Buffer.from(new Uint8Array(16).fill(2)).toString("base64");
    const k = Keyring.fromEnv(`${a}, ${b}`);
    expect(new Keyring([key(1)]).decrypt(k.encrypt(new Uint8Array([5])))).toEqual(new Uint8Array([5]));
    expect(() => Keyring.fromEnv("c2hvcnQ=")).toThrow();
    expect(() => Keyring.fromEnv("")).toThrow();
  });

  test("replay: a sealed packet opens in its own and the adjacent epochs, never later (issue 9)", () => {
    let now = 1_000 * EPOCH_MS + 5;
    const clock = { now: () => now };
    const sender = new Keyring([key(1)], clock);
    const receiver = new Keyring([key(1)], clock);
    const sealed = sender.encrypt(new Uint8Array([4, 2]));
    expect(receiver.decrypt(sealed)).toEqual(new Uint8Array([4, 2]));
    now += EPOCH_MS; // the next epoch: a sender whose clock runs up to 30 s behind
    expect(receiver.decrypt(sealed)).toEqual(new Uint8Array([4, 2]));
    now += EPOCH_MS; // two epochs on: a replay
    expect(receiver.open(sealed)).toEqual({ plain: null, refused: "stale" });
    // A sender up to one epoch ahead is accepted too; two ahead is not.
    now = 1_000 * EPOCH_MS + 5;
    const ahead = new Keyring([key(1)], { now: () => now + EPOCH_MS });
    expect(receiver.decrypt(ahead.encrypt(new Uint8Array([1])))).toEqual(new Uint8Array([1]));
    const far = new Keyring([key(1)], { now: () => now + 2 * EPOCH_MS });
    expect(receiver.decrypt(far.encrypt(new Uint8Array([1])))).toBeNull();
    // The epoch is authenticated: moving a stale packet's epoch forward breaks the tag.
    now = 1_000 * EPOCH_MS + 5;
    const old = new Keyring([key(1)], { now: () => now - 5 * EPOCH_MS }).encrypt(new Uint8Array([3]));
    const moved = old.slice();
    new DataView(moved.buffer).setUint32(1, Math.floor(now / EPOCH_MS));
    expect(receiver.open(old).refused).toBe("stale");
    expect(receiver.open(moved).refused).toBe("garbage");
  });

  test("the gossip key is derived from CLUSTER_KEY (HKDF) when GOSSIP_KEY is not set, and required otherwise", () => {
    const a = gossipKeyring({ CLUSTER_KEY: "integration-test-cluster-key" });
    const b = Keyring.fromClusterKey("integration-test-cluster-key");
    expect(b.decrypt(a.encrypt(new Uint8Array([9])))).toEqual(new Uint8Array([9]));
    expect(Keyring.fromClusterKey("another-cluster-key-0123").decrypt(a.encrypt(new Uint8Array([9])))).toBeNull();
    // GOSSIP_KEY wins over the derived key.
    const explicit = gossipKeyring({ CLUSTER_KEY: "integration-test-cluster-key", GOSSIP_KEY: Buffer.from(key(5)).toString("base64") });
    expect(new Keyring([key(5)]).decrypt(explicit.encrypt(new Uint8Array([1])))).toEqual(new Uint8Array([1]));
    expect(() => gossipKeyring({})).toThrow("set GOSSIP_KEY");
    expect(() => gossipKeyring({ GOSSIP_KEY: "", CLUSTER_KEY: "" })).toThrow("gossip needs a key");
  });
});

describe("addresses", () => {
  test("parses IPv4, bracketed IPv6 and names, with default ports", () => {
    expect(parseHostPort("127.0.0.1:7946")).toEqual({ host: "127.0.0.1", port: 7946 });
    expect(parseHostPort("[::1]:7946")).toEqual({ host: "::1", port: 7946 });
    expect(parseHostPort("::1", 7946)).toEqual({ host: "::1", port: 7946 });
    expect(parseHostPort("app.internal", 7946)).toEqual({ host: "app.internal", port: 7946 });
    expect(parseHostPort("a:99999")).toBeNull();
    expect(parseHostPort("[::1")).toBeNull();
    expect(formatHostPort("::1", 1)).toBe("[::1]:1");
    expect(normalizeHost("::ffff:127.0.0.1")).toBe("127.0.0.1");
  });
});

describe("seed discovery", () => {
  const resolver = {
    resolve4: async (name: string) => (name === "both.internal" ? ["10.0.0.1"] : []),
    resolve6: async (name: string) => {
      if (name === "missing.internal") throw new Error("ENOTFOUND");
      return name.endsWith(".internal") ? ["fdaa::1", "fdaa::2"] : [];
    },
  };

  test("JOIN literals pass through, names and DISCOVERY_DNS resolve to every A/AAAA record", async () => {
    expect(await discoverSeeds(["127.0.0.1:9000", "[::1]:9001"], undefined, 7946, resolver)).toEqual(["127.0.0.1:9000", "[::1]:9001"]);
    expect(await discoverSeeds([], "both.internal", 7946, resolver)).toEqual(["[fdaa::1]:7946", "[fdaa::2]:7946", "10.0.0.1:7946"]);
    expect(await discoverSeeds(["app.internal:8000"], "missing.internal", 7946, resolver)).toEqual(["[fdaa::1]:8000", "[fdaa::2]:8000"]);
    expect(parseJoin(" a:1, ,b:2 ")).toEqual(["a:1", "b:2"]);
  });
});

describe("gossip settings from the environment", () => {
  test("tuning variables override single parameters of the preset", () => {
    const o = gossipOptionsFromEnv({ CLUSTER_KEY: "0123456789abcdef", GOSSIP_PRESET: "wan", GOSSIP_PROBE_INTERVAL_MS: "8000", GOSSIP_SUSPICION_MULT: "5" });
    expect(typeof o.config).toBe("object");
    const cfg = o.config as GossipConfig;
    expect(cfg.probeIntervalMs).toBe(8000);
    expect(cfg.suspicionMult).toBe(5);
    expect(cfg.probeTimeoutMs).toBe(PRESETS.wan.probeTimeoutMs);
  });

  test("a bad value or combination is refused at startup with its name", () => {
    expect(() => gossipOptionsFromEnv({ CLUSTER_KEY: "0123456789abcdef", GOSSIP_INDIRECT_CHECKS: "lots" })).toThrow("GOSSIP_INDIRECT_CHECKS must be a positive integer");
    expect(() => gossipOptionsFromEnv({ CLUSTER_KEY: "0123456789abcdef", GOSSIP_PROBE_INTERVAL_MS: "100", GOSSIP_PROBE_TIMEOUT_MS: "500" })).toThrow("probeTimeoutMs must be below probeIntervalMs");
  });
});
