// A follower forwards client requests to the leader on its peer stream (src/api/forward.ts,
// src/transport/forward_frame.ts), on real `phalanx serve` processes over loopback: the client
// gets the answer the leader gives (status, body, the passed headers, the leader's headers), the
// write is applied once, the raw path travels unchanged, and the leader authorizes the client
// itself: each node has its own token file here, and a token only the follower knows is refused
// by the leader even though the follower took it.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort, metricValue, TestCluster } from "./harness.ts";

const APP = "app-write-token-0123456789abcdef";
const ONLY = (id: string) => `only-${id}-write-token-0123456789abcdef`;
const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

let cluster: TestCluster;
let leader = "";
let follower = "";
const debug = new Map<string, string>();

beforeAll(async () => {
  cluster = await TestCluster.create(3, { headers: bearer(APP), env: { TICK_MS: "100", ELECTION_TICKS: "20" } });
  for (const n of cluster.nodes) {
    const file = join(cluster.dir, `tokens-${n.id}`);
    writeFileSync(file, `app write ${APP}\nonly-${n.id} write ${ONLY(n.id)}\n`);
    debug.set(n.id, `127.0.0.1:${await freePort()}`);
    cluster.start(n.id, { CLIENT_TOKENS_FILE: file, DEBUG_ADDR: debug.get(n.id)! });
  }
  leader = await cluster.waitForLeader(cluster.nodes.map((n) => n.id), 30_000);
  follower = cluster.nodes.find((n) => n.id !== leader)!.id;
}, 40_000);

afterAll(async () => {
  await cluster?.stopAll();
});

const counter = (id: string, name: string) => metricValue(debug.get(id)!, name, bearer(APP));

test("a write through a follower is answered as the leader answers it (status, body, headers) and applied once", async () => {
  try {
    const forwardedBefore = await counter(follower, "phalanx_forwarded_total");
    const direct = await cluster.request(leader, "PUT", "/v1/kv/direct", { json: { value: "1" } });
    const via = await cluster.request(follower, "PUT", "/v1/kv/via", { json: { value: "1" } });
    expect(direct.status).toBe(200);
    expect(via.status).toBe(200);
    expect(Object.keys(via.json).sort()).toEqual(Object.keys(direct.json).sort());
    expect(via.json.revision).toBeGreaterThan(direct.json.revision);
    for (const h of ["content-type", "x-phalanx-leader", "x-phalanx-leader-addr"]) expect({ h, v: via.headers[h] }).toEqual({ h, v: direct.headers[h] });
    expect(via.headers["x-phalanx-leader"]).toBe(leader);
    expect(via.headers["x-phalanx-revision"]).toBe(String(via.json.revision));
    expect(await counter(follower, "phalanx_forwarded_total")).toBe(forwardedBefore + 1);
    const got = await cluster.request(leader, "GET", "/v1/kv/via");
    expect({ value: got.json.kv.value, version: got.json.kv.version }).toEqual({ value: "1", version: 1 });

    // The leader's refusals come back as it made them.
    const cas = await cluster.request(follower, "PUT", "/v1/kv/via", { json: { value: "2", expect: { modRevision: 1 } } });
    expect({ status: cas.status, error: cas.json.error }).toEqual({ status: 409, error: "compare_failed" });
    // A transaction (JSON in, JSON out), and a raw-bytes put whose key needs percent-encoding and
    // a character the URL parser would encode: the raw path travels, the leader writes that key.
    const txn = await cluster.request(follower, "POST", "/v1/txn", { json: { compare: [{ key: "via", target: "version", result: "==", value: 1 }], then: [{ put: { key: "t", value: "x" } }, { get: { key: "via" } }] } });
    expect(txn.status).toBe(200);
    expect(txn.json.succeeded).toBe(true);
    expect(txn.json.responses[1].get.kv.value).toBe("1");
    const odd = await cluster.request(follower, "PUT", "/v1/kv/dir%2Fname|x?prevRevision=0", { body: new TextEncoder().encode("raw") });
    expect({ status: odd.status, body: odd.json }).toMatchObject({ status: 200 });
    expect((await cluster.request(leader, "GET", "/v1/kv/dir%2Fname%7Cx")).json.kv.value).toBe("raw");
    // A forwarded delete answers as a delete does.
    const del = await cluster.request(follower, "DELETE", "/v1/kv/t");
    expect(del.status).toBe(200);
    expect((await cluster.request(leader, "GET", "/v1/kv/t")).status).toBe(404);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);

test("the leader authorizes the forwarded client itself: a token only the follower knows is refused there", async () => {
  const mine = await cluster.request(follower, "PUT", "/v1/kv/only", { json: { value: "x" }, headers: bearer(ONLY(follower)) });
  expect(mine.status).toBe(401);
  expect(mine.headers["x-phalanx-leader"]).toBe(leader);
  expect((await cluster.request(leader, "GET", "/v1/kv/only")).status).toBe(404);
  // The leader's own token for itself works through the follower: the follower does not know it, so it refuses first.
  expect((await cluster.request(follower, "PUT", "/v1/kv/only", { json: { value: "x" }, headers: bearer(ONLY(leader)) })).status).toBe(401);
  expect((await cluster.request(leader, "PUT", "/v1/kv/only", { json: { value: "x" }, headers: bearer(ONLY(leader)) })).status).toBe(200);
}, 30_000);
