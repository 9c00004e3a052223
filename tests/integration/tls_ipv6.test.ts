// A 3-node cluster on IPv6 loopback with mutual TLS between peers (no cluster key): election,
// a write through a follower, and the CLI talking TLS with only the CA. Skipped nowhere: openssl
// is needed to mint the throwaway CA, as in the transport tests.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makePki } from "../transport/helpers.ts";
import { BUN, MAIN, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;
let caFile = "";
const pkiDir = mkdtempSync(join(tmpdir(), "phalanx-tls-"));

beforeAll(async () => {
  const pki = await makePki();
  caFile = join(pkiDir, "ca.crt");
  writeFileSync(caFile, pki.ca);
  cluster = await TestCluster.create(3, {
    host: "::1",
    // An empty CLUSTER_KEY counts as unset: peers authenticate with their certificates.
    env: { TLS_CA: caFile, CLUSTER_KEY: "" },
    tls: { ca: pki.ca },
  });
  // Each node has a certificate naming it (CN and DNS SAN = its id): a peer must prove who it is.
  for (const n of cluster.nodes) {
    const cert = join(pkiDir, `${n.id}.crt`);
    const key = join(pkiDir, `${n.id}.key`);
    writeFileSync(cert, pki.nodes[n.id]!.cert);
    writeFileSync(key, pki.nodes[n.id]!.key);
    cluster.start(n.id, { TLS_CERT: cert, TLS_KEY: key });
  }
}, 30_000);

afterAll(async () => {
  await cluster?.stopAll();
  rmSync(pkiDir, { recursive: true, force: true });
});

test("mutual TLS over [::1]: elects, replicates, serves the CLI", async () => {
  try {
    const ids = cluster.nodes.map((n) => n.id);
    const leader = await cluster.waitForLeader(ids);
    const follower = cluster.nodes.find((n) => n.id !== leader)!;
    const put = await cluster.request(follower.id, "PUT", "/v1/kv/secure", { json: { value: "yes" } });
    expect(put.status).toBe(200);
    await waitFor("all nodes to apply", async () => {
      const vals = await Promise.all(ids.map((id) => cluster.request(id, "GET", "/v1/kv/secure?consistency=stale")));
      return vals.every((r) => r.json?.kv?.value === "yes");
    });
    // Without a client certificate the peer route refuses (the client API stays open).
    const peer = await cluster.request(follower.id, "POST", "/raft/v1/snapshot", { body: new Uint8Array([0x90]), headers: { "x-phalanx-from": "n9" } });
    expect(peer.status).toBe(401);
    const cli = Bun.spawnSync([BUN, MAIN, "kv", "get", "secure", "--tls-ca", caFile, "--addr", follower.addr], { stdout: "pipe", stderr: "pipe" });
    expect(cli.stderr.toString()).toBe("");
    expect(cli.stdout.toString()).toBe("yes"); // into a pipe: the bytes exactly
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);
