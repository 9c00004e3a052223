import { expect, test } from "bun:test";
import { decideBootstrap, founderDigest } from "../../src/node/membership/bootstrap.ts";
import type { ServerHealth } from "../../src/node/membership/server_view.ts";

const sv = (id: string, cluster = "", alive = true, region = "local"): ServerHealth => ({ id, rpcAddr: `${id}:9000`, region, cluster, state: alive ? "alive" : "dead", since: 0 });

test("waits until BOOTSTRAP_EXPECT servers see each other", () => {
  const d = decideBootstrap("a", 3, [sv("a"), sv("b")], null);
  expect(d).toEqual({ kind: "wait", advertise: "", proposal: null, reason: "waiting for 3 servers, see 2" });
});

test("proposes the founder set, and bootstraps only once every founder proposes the same", () => {
  const digest = founderDigest(["a", "b", "c"]);
  const first = decideBootstrap("a", 3, [sv("a"), sv("b"), sv("c")], null);
  expect(first.kind).toBe("wait");
  expect(first.kind === "wait" && first.advertise).toBe(`p:${digest}`);
  expect(first.kind === "wait" && first.proposal?.map((f) => f.id)).toEqual(["a", "b", "c"]);
  const partly = decideBootstrap("a", 3, [sv("a", `p:${digest}`), sv("b", `p:${digest}`), sv("c")], null);
  expect(partly.kind).toBe("wait");
  const all = decideBootstrap("a", 3, [sv("c", `p:${digest}`), sv("a", `p:${digest}`), sv("b", `p:${digest}`)], null);
  expect(all).toMatchObject({ kind: "bootstrap", clusterId: digest, founders: [{ id: "a" }, { id: "b" }, { id: "c" }] });
});

test("more servers than expected: refuse to guess", () => {
  const d = decideBootstrap("a", 3, [sv("a"), sv("b"), sv("c"), sv("d")], null);
  expect(d.kind).toBe("wait");
  expect(d.kind === "wait" && d.reason).toContain("refusing to guess");
});

test("a founder that missed the last round still forms the same cluster", () => {
  const founders = [{ id: "a", rpcAddr: "a:9000" }, { id: "b", rpcAddr: "b:9000" }, { id: "c", rpcAddr: "c:9000" }];
  const digest = founderDigest(["a", "b", "c"]);
  const d = decideBootstrap("c", 3, [sv("a", `c:${digest}`), sv("b", `c:${digest}`), sv("c"), sv("d")], founders);
  expect(d).toMatchObject({ kind: "bootstrap", clusterId: digest });
});

test("a latecomer joins the formed cluster instead of founding another", () => {
  const digest = founderDigest(["a", "b", "c"]);
  const d = decideBootstrap("d", 3, [sv("a", `c:${digest}`), sv("d"), sv("e"), sv("f")], null);
  expect(d.kind).toBe("join");
});

test("never proposes a second, different founder set", () => {
  const earlier = [{ id: "a", rpcAddr: "a:9000" }, { id: "b", rpcAddr: "b:9000" }, { id: "c", rpcAddr: "c:9000" }];
  // b and c vanished from our view and d, e appeared: forming {a, d, e} could split the brain.
  const d = decideBootstrap("a", 3, [sv("a"), sv("d"), sv("e")], earlier);
  expect(d.kind).toBe("wait");
  expect(d.kind === "wait" && d.advertise).toBe("");
});

test("dead servers do not count", () => {
  const d = decideBootstrap("a", 3, [sv("a"), sv("b"), sv("c", "", false)], null);
  expect(d.kind === "wait" && d.reason).toBe("waiting for 3 servers, see 2");
});

test("with VOTER_REGIONS only servers in those regions found the cluster; the others join it later", () => {
  const placement = { voterRegions: ["lhr", "fra", "ord"] };
  const view = [sv("l", "", true, "lhr"), sv("f", "", true, "fra"), sv("o", "", true, "ord"), sv("j", "", true, "jnb"), sv("s", "", true, "sin")];
  // Five unformed servers but three in voter regions: exactly BOOTSTRAP_EXPECT=3, no guessing.
  const first = decideBootstrap("l", 3, view, null, placement);
  expect(first.kind === "wait" && first.proposal?.map((f) => f.id)).toEqual(["f", "l", "o"]);
  const far = decideBootstrap("j", 3, view, null, placement);
  expect(far).toMatchObject({ kind: "wait", advertise: "", proposal: null });
  expect(far.kind === "wait" && far.reason).toContain("jnb is not in VOTER_REGIONS");
  const digest = founderDigest(["f", "l", "o"]);
  const formed = view.map((s) => (s.region === "lhr" || s.region === "fra" || s.region === "ord" ? { ...s, cluster: `c:${digest}` } : s));
  expect(decideBootstrap("j", 3, formed, null, placement)).toMatchObject({ kind: "join", clusterId: digest });
  // Without the list the same five refuse to guess which three form it.
  expect(decideBootstrap("l", 3, view, null).kind === "wait" && (decideBootstrap("l", 3, view, null) as { reason: string }).reason).toContain("refusing to guess");
});
