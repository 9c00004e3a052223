// Client certificates as the second way to authenticate, on a real 3-node mutual-TLS cluster over
// loopback with one certificate per node (CN = node id). A listed client certificate gets its
// scope, directly and through a follower (which vouches for it on its peer stream to the leader,
// proved by its node certificate); an unlisted certificate from the same CA (a node's, or any
// other) gets nothing, and no client connection, not even one with a member's own certificate,
// passes for a forwarding follower by sending the follower's headers.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { H2Client } from "../../src/transport/h2_client.ts";
import { TestCluster } from "./harness.ts";

const pki = mkdtempSync(join(tmpdir(), "phalanx-certs-"));
let cluster: TestCluster;
let leader = "";
let follower = "";
const read = (f: string) => readFileSync(join(pki, f), "utf8");

async function openssl(...args: string[]): Promise<void> {
  const p = Bun.spawn(["openssl", ...args], { cwd: pki, stdout: "ignore", stderr: "pipe" });
  if ((await p.exited) !== 0) throw new Error(`openssl ${args[0]} failed: ${await new Response(p.stderr).text()}`);
}

async function leaf(name: string): Promise<void> {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  writeFileSync(join(pki, `${name}.ext`), `subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:${name}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  await openssl("req", ...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`, "-subj", `/CN=${name}`);
  await openssl("x509", "-req", "-in", `${name}.csr`, "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", `${name}.crt`, "-days", "1", "-extfile", `${name}.ext`);
}

function clientWith(name: string | null): H2Client {
  return new H2Client({ connectTimeoutMs: 2000, tls: { ca: read("ca.crt"), ...(name === null ? {} : { cert: read(`${name}.crt`), key: read(`${name}.key`) }) } });
}

async function put(client: H2Client, id: string, key: string, headers: Record<string, string> = {}): Promise<number> {
  const res = await client.request(client.originFor(cluster.node(id).addr), {
    method: "PUT",
    path: `/v1/kv/${key}`,
    headers: { "content-type": "application/octet-stream", ...headers },
    body: new TextEncoder().encode("v"),
    timeoutMs: 5000,
  });
  return res.status;
}

beforeAll(async () => {
  await openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=phalanx-test-ca");
  for (const name of ["n1", "n2", "n3", "app", "viewer", "intruder"]) await leaf(name);
  cluster = await TestCluster.create(3, {
    env: { TLS_CA: join(pki, "ca.crt"), CLUSTER_KEY: "", CLIENT_CERT_SCOPES: "app=write,viewer=read,ops=admin", TICK_MS: "100", ELECTION_TICKS: "20" },
    tls: { ca: read("ca.crt"), cert: read("app.crt"), key: read("app.key") },
  });
  for (const n of cluster.nodes) cluster.start(n.id, { TLS_CERT: join(pki, `${n.id}.crt`), TLS_KEY: join(pki, `${n.id}.key`) });
  leader = await cluster.waitForLeader(cluster.nodes.map((n) => n.id), 30_000);
  follower = cluster.nodes.find((n) => n.id !== leader)!.id;
}, 60_000);

afterAll(async () => {
  await cluster?.stopAll();
  rmSync(pki, { recursive: true, force: true });
});

test("a listed client certificate gets its scope, directly and through a follower; unlisted ones get nothing", async () => {
  const app = clientWith("app");
  const viewer = clientWith("viewer");
  const none = clientWith(null);
  const nodeCert = clientWith("n2");
  const intruder = clientWith("intruder");
  try {
    expect(await put(app, leader, "direct")).toBe(200);
    // The follower vouches for "app" on its peer stream (mTLS: its certificate names it); the leader accepts.
    expect(await put(app, follower, "via-follower")).toBe(200);
    expect(await put(viewer, leader, "nope")).toBe(403);
    expect(await put(viewer, follower, "nope")).toBe(403);
    expect(await put(none, leader, "nope")).toBe(401);
    expect(await put(intruder, leader, "nope")).toBe(401);
    // A node's certificate is not a client, and sending a follower's headers does not make a
    // client a follower: the vouching must come over the named member's own certificate.
    expect(await put(nodeCert, leader, "nope")).toBe(401);
    const forged = { "x-phalanx-forwarded-by": follower, "x-phalanx-client-name": "app", "x-phalanx-client-scope": "write" };
    expect(await put(intruder, leader, "nope", forged)).toBe(401);
    expect(await put(viewer, leader, "nope", { ...forged, "x-phalanx-client-name": "viewer" })).toBe(403);
    // The certificate named "n2" can vouch only when it claims to be n2 and n2 is a member; a
    // vouched identity must be a listed certificate with exactly that scope.
    expect(await put(nodeCert, leader, "nope", { ...forged, "x-phalanx-forwarded-by": "n9" })).toBe(401);
    expect(await put(nodeCert, leader, "nope", { ...forged, "x-phalanx-forwarded-by": "n2", "x-phalanx-client-name": "ops", "x-phalanx-client-scope": "write" })).toBe(401);
    // Not even a member's own certificate vouches over a client connection: only its peer stream
    // carries a forward (a stolen node key is not a client credential). The old forward took this.
    const member = clientWith(follower);
    try {
      expect(await put(member, leader, "nope", { ...forged, "x-phalanx-forwarded-by": follower })).toBe(401);
    } finally {
      await member.close();
    }
    const read = await cluster.request(leader, "GET", "/v1/kv?prefix=");
    const keys = (read.json.kvs as Array<{ key: string }>).map((k) => k.key);
    expect(keys).toEqual(["direct", "via-follower"]);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  } finally {
    await Promise.all([app, viewer, none, nodeCert, intruder].map((c) => c.close()));
  }
}, 60_000);
