// Issue 9's attacks on the gossip core, performed on the code that runs (the pure SWIM core, in
// the simulator or driven directly). Each fails on the code before the fix: a forged `dead` at an
// incarnation nobody can outbid, a bad message sinking its packet, one packet of pings returning
// a thousand acks to a spoofed source, and a ping-req aiming our UDP at any address.

import { describe, expect, test } from "bun:test";
import { encode } from "@msgpack/msgpack";
import { MAX_INCARNATION, assemblePacket, decodePacket, encodeMessage, encodePushPull } from "../../src/gossip/codec.ts";
import { gossipConfig } from "../../src/gossip/config.ts";
import { ENCRYPTION_OVERHEAD } from "../../src/gossip/keyring.ts";
import type { PeerMeta } from "../../src/gossip/peer.ts";
import type { Message } from "../../src/gossip/messages.ts";
import { seededRng } from "../../src/gossip/rng.ts";
import { MAX_INCARNATION_STEP, MAX_REPLIES_PER_PACKET, Swim } from "../../src/gossip/swim.ts";
import { Sim } from "./sim.ts";

const packet = (...msgs: (Message | Uint8Array)[]) => assemblePacket(msgs.map((m) => (m instanceof Uint8Array ? m : encodeMessage(m))));
const meta = (id: string): PeerMeta => ({ gossipAddr: `${id}:7946`, rpcAddr: `${id}:8000`, region: "sim", role: "voter", cluster: "" });
const ATTACKER = "203.0.113.9:53";

function converged3(): Sim {
  const sim = new Sim({ seed: 9 });
  const ids = sim.addMany(3);
  expect(sim.runUntil(() => sim.converged(ids), 10_000)).toBe(true);
  return sim;
}

describe("forged dead (issue 9: `dead n3 from n3 at 2^53-1` removed a voter)", () => {
  test("an incarnation beyond the wire's range is refused: nobody believes the member left", () => {
    const sim = converged3();
    // The attack's exact message, raw: [T_DEAD, node, incarnation, from].
    const forged = encode([6, "n2", Number.MAX_SAFE_INTEGER, "n2"]);
    for (const to of ["n0", "n1"]) sim.inject(to, ATTACKER, assemblePacket([forged]));
    expect(sim.stateOf("n0", "n2")).toBe("alive");
    expect(sim.stateOf("n1", "n2")).toBe("alive");
    sim.run(5_000);
    expect(sim.allSee("n2", "alive")).toBe(true);
  });

  test("claims at the top of the range or far above what we know are ignored: they could never be refuted", () => {
    const sim = converged3();
    const known = sim.node("n0").swim.member("n2")!.incarnation;
    sim.inject("n0", ATTACKER, packet({ type: "dead", node: "n2", incarnation: MAX_INCARNATION, from: "n2" }));
    sim.inject("n0", ATTACKER, packet({ type: "dead", node: "n2", incarnation: known + MAX_INCARNATION_STEP + 1, from: "n1" }));
    sim.inject("n0", ATTACKER, packet({ type: "suspect", node: "n2", incarnation: MAX_INCARNATION - 1, from: "n1" }));
    expect(sim.stateOf("n0", "n2")).toBe("alive");
    expect(sim.node("n0").swim.member("n2")!.incarnation).toBe(known);
    // Aimed at the member itself: it does not bid itself to the end of the range either.
    sim.inject("n2", ATTACKER, packet({ type: "dead", node: "n2", incarnation: MAX_INCARNATION - 1, from: "n0" }));
    expect(sim.node("n2").swim.member("n2")!.incarnation).toBe(known);
  });

  test("a plausible third-party death is refuted by the member, within the range", () => {
    const sim = converged3();
    const known = sim.node("n1").swim.member("n2")!.incarnation;
    sim.inject("n1", ATTACKER, packet({ type: "dead", node: "n2", incarnation: known + 5, from: "n0" }));
    expect(sim.stateOf("n1", "n2")).toBe("dead");
    expect(sim.runUntil(() => sim.allSee("n2", "alive"), 10_000)).toBe(true);
    expect(sim.node("n1").swim.member("n2")!.incarnation).toBe(known + 6);
  });

  test("a malformed message drops itself, not the news riding with it", () => {
    const sim = converged3();
    const bad = encode([6, "n2", Number.MAX_SAFE_INTEGER, "n2"]);
    const junk = encode([99, "junk"]);
    const ok = sim.inject("n0", ATTACKER, packet(bad, { type: "alive", node: "n9", incarnation: 1, meta: meta("n9") }, junk));
    expect(sim.stateOf("n0", "n9")).toBe("alive");
    expect(ok).toBe(false); // counted as malformed by the agent
  });
});

describe("amplification (issue 9: one ping packet returned ~1,000 packets; ping-req sent UDP anywhere)", () => {
  const cfg = gossipConfig("lan");
  const swim = (id: string) => new Swim({ id, meta: meta(id), config: cfg, rng: seededRng(1), now: 0, packetOverhead: ENCRYPTION_OVERHEAD });
  /** `a` knowing members b and c. */
  const withMembers = () => {
    const a = swim("a");
    a.receive(0, "b:7946", packet({ type: "alive", node: "b", incarnation: 1, meta: meta("b") }, { type: "alive", node: "c", incarnation: 1, meta: meta("c") }));
    a.drain();
    return a;
  };

  test("a packet of 1,000 pings gets at most MAX_REPLIES_PER_PACKET answers, sent to the member, not the spoofed source", () => {
    const a = withMembers();
    const pings: Message[] = Array.from({ length: 1000 }, (_, i) => ({ type: "ping", seq: i + 1, from: "b", target: "a" }));
    a.receive(10, ATTACKER, packet(...pings));
    const out = a.drain().packets;
    expect(out.length).toBeGreaterThan(0);
    expect(out.length).toBeLessThanOrEqual(MAX_REPLIES_PER_PACKET);
    expect(out.every((p) => p.addr === "b:7946")).toBe(true);
  });

  test("answers per source address are a token bucket: a replayed ping loop gets a handful, then a trickle", () => {
    const a = withMembers();
    let sent = 0;
    for (let i = 0; i < 200; i++) {
      a.receive(10, ATTACKER, packet({ type: "ping", seq: i + 1, from: "b", target: "a" }));
      sent += a.drain().packets.length;
    }
    expect(sent).toBeLessThanOrEqual(8);
    for (let i = 0; i < 200; i++) {
      a.receive(1010, ATTACKER, packet({ type: "ping", seq: 1000 + i, from: "b", target: "a" }));
      sent += a.drain().packets.length;
    }
    expect(sent).toBeLessThanOrEqual(8 + 4);
    // Another source (the member's real address) has its own budget.
    a.receive(1010, "b:7946", packet({ type: "ping", seq: 5000, from: "b", target: "a" }));
    expect(a.drain().packets.length).toBe(1);
  });

  test("probes from strangers are ignored: no ack, no join ping back to the source", () => {
    const a = withMembers();
    a.receive(10, ATTACKER, packet({ type: "ping", seq: 1, from: "stranger", target: "a" }));
    a.receive(10, ATTACKER, packet({ type: "pingReq", seq: 2, from: "stranger", target: "b", targetAddr: "b:7946" }));
    expect(a.drain().packets).toEqual([]);
  });

  test("a ping-req probes only a known member at its known address, never the address it names", () => {
    const a = withMembers();
    a.receive(10, "b:7946", packet({ type: "pingReq", seq: 1, from: "b", target: "nobody", targetAddr: "198.51.100.7:53" }));
    expect(a.drain().packets).toEqual([]);
    a.receive(20, "b:7946", packet({ type: "pingReq", seq: 2, from: "b", target: "c", targetAddr: "198.51.100.7:53" }));
    const out = a.drain().packets;
    expect(out.map((p) => p.addr)).toEqual(["c:7946"]);
  });

  test("a newcomer's join ping is answered at the address its own alive names (a restart on a new address works)", () => {
    const a = withMembers();
    const moved = { ...meta("b"), gossipAddr: "b2:7946" };
    a.receive(10, "b2:7946", packet({ type: "ping", seq: 1, from: "b", target: "" }, { type: "alive", node: "b", incarnation: 0, meta: moved }));
    expect(a.drain().packets.map((p) => p.addr)).toEqual(["b2:7946"]);
  });

  test("a push-pull state claiming another sender than the authenticated one is refused", () => {
    const a = withMembers();
    const state = encodePushPull({ from: "c", members: [{ id: "c", incarnation: 9, state: "left", meta: meta("c") }] });
    expect(a.handlePushPull(10, state, "b")).toBeNull();
    expect(a.member("c")?.state).toBe("alive");
    expect(a.handlePushPull(10, state, "c")).not.toBeNull();
  });
});

describe("join", () => {
  test("a join ping carries the joiner's own alive once, not a second copy from its broadcast queue", () => {
    const a = new Swim({ id: "a", meta: meta("a"), config: gossipConfig("lan"), rng: seededRng(1), now: 0, packetOverhead: ENCRYPTION_OVERHEAD });
    a.drain();
    a.join(0, ["seed:7946"]);
    const packets = a.drain().packets.filter((p) => p.addr === "seed:7946");
    expect(packets.length).toBe(1);
    const decoded = decodePacket(packets[0]!.bytes);
    const aboutSelf = decoded!.messages.filter((m) => m.type === "alive" && m.node === "a");
    expect(aboutSelf.length).toBe(1);
    expect(decoded!.messages.some((m) => m.type === "ping")).toBe(true);
  });
});
