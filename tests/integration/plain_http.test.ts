// The client port of a real node speaks HTTP/1.1 and h2c on one port: curl (both ways), Bun's
// fetch, Node's fetch and Python's urllib all get the same answer, reads and writes.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster } from "./harness.ts";

let cluster: TestCluster;
let base = "";

beforeAll(async () => {
  cluster = await TestCluster.create(1);
  cluster.startAll();
  await cluster.waitForLeader(["n1"]);
  base = `http://${cluster.node("n1").addr}`;
}, 30_000);

afterAll(async () => {
  await cluster?.stopAll();
});

function run(cmd: string[], stdin?: string): { code: number; out: string; err: string } {
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe", stdin: stdin === undefined ? "ignore" : Buffer.from(stdin) });
  return { code: r.exitCode ?? -1, out: r.stdout.toString(), err: r.stderr.toString() };
}

const haveCurl = Bun.which("curl") !== null;
const havePython = Bun.which("python3") !== null;
const haveNode = Bun.which("node") !== null;

test.skipIf(!haveCurl)("curl --http1.1, plain curl and curl --http2-prior-knowledge get the same answers", () => {
  const put = run(["curl", "-sS", "--http1.1", "-X", "PUT", "--data-binary", "from-http1", `${base}/v1/kv/plain`]);
  expect(put.err).toBe("");
  expect(JSON.parse(put.out)).toMatchObject({ revision: expect.any(Number) });
  const answers = [
    run(["curl", "-sS", `${base}/v1/kv/plain?raw`]),
    run(["curl", "-sS", "--http1.1", `${base}/v1/kv/plain?raw`]),
    run(["curl", "-sS", "--http2-prior-knowledge", `${base}/v1/kv/plain?raw`]),
  ];
  for (const a of answers) expect(a).toEqual({ code: 0, out: "from-http1", err: "" });
  const proto = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version}", "--http2-prior-knowledge", `${base}/v1/status`]);
  expect(proto.out).toBe("2");
  const proto1 = run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_version}", `${base}/v1/status`]);
  expect(proto1.out).toBe("1.1");
});

test("Bun's fetch (HTTP/1.1) reads and writes", async () => {
  const put = await fetch(`${base}/v1/kv/fetched`, { method: "PUT", body: "via-fetch" });
  expect(put.status).toBe(200);
  const got = await fetch(`${base}/v1/kv/fetched?raw`);
  expect(await got.text()).toBe("via-fetch");
});

test.skipIf(!haveNode)("Node's fetch gets the same answer", () => {
  const r = run(["node", "-e", `fetch(${JSON.stringify(`${base}/v1/kv/fetched?raw`)}).then(r => r.text()).then(t => process.stdout.write(t))`]);
  expect(r).toEqual({ code: 0, out: "via-fetch", err: "" });
});

test.skipIf(!havePython)("Python's urllib reads and writes", () => {
  const script = [
    "import urllib.request, sys",
    `u = ${JSON.stringify(`${base}/v1/kv/py`)}`,
    "urllib.request.urlopen(urllib.request.Request(u, data=b'from-python', method='PUT')).read()",
    "sys.stdout.write(urllib.request.urlopen(u + '?raw').read().decode())",
  ].join("\n");
  const r = run(["python3", "-c", script]);
  expect(r).toEqual({ code: 0, out: "from-python", err: "" });
});

test("a wrong method on a known route is 405 with Allow; an unknown route stays 404", async () => {
  const status = await fetch(`${base}/v1/status`, { method: "POST" });
  expect(status.status).toBe(405);
  expect(status.headers.get("allow")).toBe("GET, HEAD");
  expect(((await status.json()) as { error: string }).error).toBe("method_not_allowed");
  const kv = await fetch(`${base}/v1/kv/x`, { method: "PATCH" });
  expect(kv.status).toBe(405);
  expect(kv.headers.get("allow")).toBe("GET, HEAD, PUT, DELETE");
  // POST has fairness middleware on /v1/kv/* but no endpoint: not allowed.
  expect((await fetch(`${base}/v1/kv/x`, { method: "POST" })).headers.get("allow")).toBe("GET, HEAD, PUT, DELETE");
  expect((await fetch(`${base}/v1/transfer`, { method: "POST" })).status).toBe(404);
});

test("validation messages are plain text: no decoration glyphs, one line, with the field path", async () => {
  const res = await fetch(`${base}/v1/kv/x`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ value: 3 }) });
  expect(res.status).toBe(400);
  const { message } = (await res.json()) as { message: string };
  expect(message).not.toMatch(/[✖→\n]/);
  expect(message).toContain("value");
});

test("/v1/status names the version the node runs, the same as phalanx_build_info's", async () => {
  const status = (await (await fetch(`${base}/v1/status`)).json()) as { version: string };
  expect(status.version).toBe((await import("../../package.json")).default.version);
});
