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

test("on Fly.io the machine id, its stable .vm.<app>.internal name and the region are the defaults", () => {
  const env = { FLY_MACHINE_ID: "148e4d2b", FLY_APP_NAME: "phalanx", FLY_REGION: "jnb", FLY_PRIVATE_IP: "fdaa:0:1::3", RPC_ADDR: "fly-local-6pn:9000", GOSSIP_ADDR: "fly-local-6pn:7946", CLUSTER_KEY: "0123456789abcdef0123", CLIENT_TOKENS: "app write 0123456789abcdef0123" };
  const c = resolveConfig(settingsFromEnv(env));
  expect(c.id).toBe("148e4d2b");
  expect(c.advertiseAddr).toBe("148e4d2b.vm.phalanx.internal:9000");
  expect(c.region).toBe("jnb");
  expect(c.discovery?.gossipEnv.GOSSIP_ADVERTISE).toBe("[fdaa:0:1::3]:7946");
  // Explicit settings still win over the platform's.
  expect(resolveConfig(settingsFromEnv({ ...env, NODE_ID: "lhr-1", REGION: "lhr" })).id).toBe("lhr-1");
});

test("a wildcard listen address needs ADVERTISE_ADDR: peers cannot dial [::]", () => {
  expect(() => resolveConfig(settingsFromEnv({ RPC_ADDR: "[::]:9000" }))).toThrow("set ADVERTISE_ADDR");
  // Off loopback a node needs client credentials (or INSECURE_CLIENTS); see tests/api/client_auth.test.ts.
  expect(resolveConfig(settingsFromEnv({ RPC_ADDR: "[::]:9000", ADVERTISE_ADDR: "[::1]:9000", INSECURE_CLIENTS: "1" })).advertiseAddr).toBe("[::1]:9000");
});

test("gossip is never unauthenticated: its key is GOSSIP_KEY or derived from CLUSTER_KEY; mTLS-only clusters must set GOSSIP_KEY", () => {
  const gossip = { GOSSIP_ADDR: "127.0.0.1:7946", JOIN: "127.0.0.1:7947" };
  // CLUSTER_KEY alone: the agent derives the gossip key from it.
  const c = resolveConfig(settingsFromEnv({ ...gossip, CLUSTER_KEY: "0123456789abcdef0123" }));
  expect(c.discovery?.gossipEnv.CLUSTER_KEY).toBe("0123456789abcdef0123");
  expect(c.discovery?.gossipEnv.GOSSIP_KEY).toBeUndefined();
  // Mutual TLS without CLUSTER_KEY: nothing to derive a gossip key from.
  const mtls = { ...gossip, TLS_CERT: "/dev/null", TLS_KEY: "/dev/null", TLS_CA: "/dev/null" };
  expect(() => resolveConfig(settingsFromEnv(mtls))).toThrow(ConfigError);
  expect(() => resolveConfig(settingsFromEnv(mtls))).toThrow("set GOSSIP_KEY");
  const key = Buffer.alloc(32, 1).toString("base64");
  expect(resolveConfig(settingsFromEnv({ ...mtls, GOSSIP_KEY: key })).discovery?.gossipEnv.GOSSIP_KEY).toBe(key);
  // A malformed GOSSIP_KEY is a startup error naming it, not a plaintext fallback.
  expect(() => resolveConfig(settingsFromEnv({ ...gossip, CLUSTER_KEY: "0123456789abcdef0123", GOSSIP_KEY: "c2hvcnQ=" }))).toThrow("GOSSIP_KEY");
  expect(() => resolveConfig(settingsFromEnv({ ...gossip, CLUSTER_KEY: "0123456789abcdef0123", GOSSIP_KEY: "not base64!" }))).toThrow("GOSSIP_KEY");
});

test("VOTER_REGIONS is a list of region names for the autopilot; leadership prefers those regions unless LEADER_PREFER says otherwise", () => {
  const gossip = { GOSSIP_ADDR: "127.0.0.1:7946", CLUSTER_KEY: "0123456789abcdef0123" };
  const c = resolveConfig(settingsFromEnv({ ...gossip, VOTER_REGIONS: "lhr, fra,ord,lhr", REGION: "jnb" }));
  expect(c.region).toBe("jnb");
  expect(c.discovery?.voterRegions).toEqual(["lhr", "fra", "ord"]);
  expect(c.placement.prefer).toEqual(["lhr", "fra", "ord"]);
  expect(resolveConfig(settingsFromEnv({ ...gossip, VOTER_REGIONS: "lhr,fra", LEADER_PREFER: "fra" })).placement.prefer).toEqual(["fra"]);
  // A region that never leads is left out of the default preference, not a contradiction.
  expect(resolveConfig(settingsFromEnv({ ...gossip, VOTER_REGIONS: "lhr,fra", LEADER_NEVER: "fra" })).placement.prefer).toEqual(["lhr"]);
  expect(resolveConfig(settingsFromEnv(gossip)).discovery?.voterRegions).toEqual([]);
  expect(() => resolveConfig(settingsFromEnv({ ...gossip, VOTER_REGIONS: "lhr,Frankfurt" }))).toThrow('VOTER_REGIONS: "Frankfurt" is not a region name');
  // The region is recorded in the replicated members table: it must be a region name too.
  expect(() => resolveConfig(settingsFromEnv({ REGION: "us east" }))).toThrow("REGION:");
  expect(() => resolveConfig(settingsFromEnv({ FLY_REGION: "LHR" }))).toThrow("REGION:");
});
