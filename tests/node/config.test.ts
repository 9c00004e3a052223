import { expect, test } from "bun:test";
import { ConfigError, parsePeers, resolveBindAddress, resolveConfig, settingsFromEnv } from "../../src/node/config.ts";

test("defaults give a single node in ./data on 127.0.0.1:9000", () => {
  const c = resolveConfig({});
  expect(c.id).toBe("n1");
  expect(c.dataDir).toBe("./data");
  expect(c.rpcAddr).toBe("127.0.0.1:9000");
  expect([...c.peers]).toEqual([["n1", "127.0.0.1:9000"]]);
  expect(c.tickMs).toBe(100);
  expect(c.electionTicks).toBe(10);
  expect(c.heartbeatTicks).toBe(1);
});

test("PEERS parses, and bad settings are refused with a message naming them", () => {
  expect([...parsePeers("a=127.0.0.1:1, b=[::1]:2")]).toEqual([
    ["a", "127.0.0.1:1"],
    ["b", "[::1]:2"],
  ]);
  const bad = (s: Record<string, string>, msg: string) => expect(() => resolveConfig(settingsFromEnv(s))).toThrow(msg);
  bad({ PEERS: "a=nohost" }, "PEERS");
  bad({ PEERS: "a=127.0.0.1:1,a=127.0.0.1:2", NODE_ID: "a" }, "twice");
  bad({ NODE_ID: "c", PEERS: "a=127.0.0.1:1" }, "include this node");
  bad({ NODE_ID: "a", PEERS: "a=127.0.0.1:1,b=127.0.0.1:2" }, "CLUSTER_KEY");
  bad({ TICK_MS: "0" }, "TICK_MS");
  bad({ TLS_CERT: "/x" }, "TLS_CERT and TLS_KEY");
  expect(() => resolveConfig({ logLevel: "loud" })).toThrow(ConfigError);
});

test("a gossip bind address may be a name (Fly's fly-local-6pn): it is resolved to an IP", async () => {
  expect(await resolveBindAddress("GOSSIP_ADDR", "[::1]:7946")).toBe("[::1]:7946");
  expect(["127.0.0.1:7946", "[::1]:7946"]).toContain(await resolveBindAddress("GOSSIP_ADDR", "localhost:7946"));
});
