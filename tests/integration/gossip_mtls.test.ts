// Gossip on a mutual-TLS cluster (no CLUSTER_KEY): it refuses to start without GOSSIP_KEY, and
// with one, push-pull and the leader's identity check run over TLS with the nodes' certificates,
// so a fourth server found by gossip is proven and added. Over [::1], real processes.
import { afterAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makePki } from "../transport/helpers.ts";
import { BUN, MAIN, freePort, TestCluster, waitFor } from "./harness.ts";

const HOST = "::1";
const pkiDir = mkdtempSync(join(tmpdir(), "phalanx-gossip-tls-"));
let cluster: TestCluster | null = null;

afterAll(async () => {
  await cluster?.stopAll();
  rmSync(pkiDir, { recursive: true, force: true });
});

test("mTLS-only gossip needs GOSSIP_KEY; with it, a server found by gossip proves itself over TLS and joins", async () => {
  const pki = await makePki();
  const caFile = join(pkiDir, "ca.crt");
  writeFileSync(caFile, pki.ca);
  // Each node presents a certificate naming its own id (a peer may only speak as the node its
  // certificate names).
  const certOf = (id: string) => {
    const cert = join(pkiDir, `${id}.crt`);
    const key = join(pkiDir, `${id}.key`);
    writeFileSync(cert, pki.nodes[id]!.cert);
    writeFileSync(key, pki.nodes[id]!.key);
    return { TLS_CERT: cert, TLS_KEY: key };
  };
  const tlsEnv = { ...certOf("n1"), TLS_CA: caFile, CLUSTER_KEY: "" };

  // No CLUSTER_KEY to derive a gossip key from, and no GOSSIP_KEY: refused at startup, with the fix.
  const refused = Bun.spawnSync([BUN, MAIN, "serve"], {
    env: { ...process.env, ...tlsEnv, NODE_ID: "x", DATA_DIR: join(pkiDir, "x"), RPC_ADDR: `[${HOST}]:${await freePort(HOST)}`, JOIN: `[${HOST}]:1` },
    stdout: "pipe",
    stderr: "pipe",
  });
  expect(refused.exitCode).not.toBe(0);
  expect(refused.stderr.toString()).toContain("set GOSSIP_KEY");

  const c = await TestCluster.create(4, {
    host: HOST,
    env: { ...tlsEnv, PEERS: "", BOOTSTRAP_EXPECT: "3", GOSSIP_PRESET: "local", GOSSIP_KEY: Buffer.alloc(32, 3).toString("base64"), STABILIZATION_MS: "1000" },
    tls: { ca: pki.ca },
  });
  cluster = c;
  const gossip = new Map<string, string>();
  for (const n of c.nodes) gossip.set(n.id, `[${HOST}]:${await freePort(HOST)}`);
  const start = (id: string) => c.start(id, { ...certOf(id), GOSSIP_ADDR: gossip.get(id)!, JOIN: gossip.get("n1")! });
  try {
    for (const id of ["n1", "n2", "n3"]) start(id);
    const leader = await c.waitForLeader(["n1", "n2", "n3"], 30_000);
    start("n4");
    const m = await waitFor("n4 added by the autopilot", async () => {
      const res = await c.request(leader, "GET", "/v1/members");
      const members = res.json as { members: { id: string }[]; automatic: { decisions: { change: string }[] } };
      return members.members.some((x) => x.id === "n4") ? members : undefined;
    }, 40_000, 200);
    expect(m.automatic.decisions.map((d) => d.change)).toContain("addLearner n4");
    expect(c.logs.get(leader)).toContain("server proved its identity");
  } catch (err) {
    console.log(c.dumpLogs());
    throw err;
  }
}, 90_000);
