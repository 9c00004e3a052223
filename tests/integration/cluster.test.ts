// Three `phalanx serve` processes over HTTP/2 on loopback: election, writes through a follower,
// convergence, leader crash (kill -9) and restart, and a minority that must not answer
// linearizable reads or writes. Steps depend on each other, so they run in order in one test file.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;
const t0 = performance.now();
const ids = ["n1", "n2", "n3"];

beforeAll(async () => {
  // Frequent snapshots with a short log tail: the restarted node must catch up from a snapshot.
  cluster = await TestCluster.create(3, { env: { SNAPSHOT_EVERY: "10", CATCHUP_ENTRIES: "2" } });
  cluster.startAll();
});

afterAll(async () => {
  await cluster.stopAll();
});

function others(id: string, of = ids): string[] {
  return of.filter((x) => x !== id);
}

async function staleValue(id: string, key: string): Promise<string | null> {
  const res = await cluster.request(id, "GET", `/v1/kv/${key}?consistency=stale`, { timeoutMs: 1000 });
  return res.status === 200 ? (res.json.kv.value as string) : null;
}

let leader = "";

test("elects a leader, writes through a follower, all nodes converge", async () => {
  try {
    leader = await cluster.waitForLeader(ids);
    console.log(`leader ${leader} elected ${(performance.now() - t0).toFixed(0)} ms after starting 3 processes`);
    const follower = others(leader)[0]!;
    const started = performance.now();
    const put = await cluster.request(follower, "PUT", "/v1/kv/greeting", { json: { value: "hello" } });
    expect(put.status).toBe(200);
    expect(put.headers["x-phalanx-leader"]).toBe(leader);
    expect(put.json.revision).toBeGreaterThan(0);
    const get = await cluster.request(follower, "GET", "/v1/kv/greeting");
    expect(get.status).toBe(200);
    expect(get.json.kv.value).toBe("hello");
    await waitFor("every node to apply the write", async () => (await Promise.all(ids.map((id) => staleValue(id, "greeting")))).every((v) => v === "hello"));
    console.log(`write through follower ${follower} visible on all nodes in ${(performance.now() - started).toFixed(0)} ms`);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);

test("a new leader serves writes after kill -9 of the leader; the old one catches up on restart", async () => {
  try {
    const killed = leader;
    const rest = others(killed);
    const started = performance.now();
    await cluster.kill(killed);
    leader = await cluster.waitForLeader(rest);
    console.log(`after kill -9 of ${killed}: ${leader} leads, ${(performance.now() - started).toFixed(0)} ms`);
    for (let i = 0; i < 20; i++) {
      const res = await cluster.request(rest[i % 2]!, "PUT", `/v1/kv/after-crash/${i}`, { json: { value: `v${i}` } });
      expect(res.status).toBe(200);
    }
    cluster.start(killed);
    await waitFor(`${killed} to catch up`, async () => (await staleValue(killed, "after-crash%2F19")) === "v19");
    expect(cluster.logs.get(killed)).toContain("installed a snapshot from the leader");
    await cluster.waitForLeader(ids);
    const list = await cluster.request(killed, "GET", "/v1/kv?prefix=after-crash/&limit=5");
    expect(list.status).toBe(200);
    expect(list.json.kvs.length).toBe(5);
    expect(list.json.more).toBe(true);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 40_000);

test("a minority refuses linearizable reads and writes (503/504), never a stale answer", async () => {
  const stopped: string[] = [];
  try {
    leader = await cluster.waitForLeader(ids);
    // 1. The leader cut off from both followers: no quorum, so no linearizable answer.
    for (const id of others(leader)) {
      cluster.signal(id, "SIGSTOP");
      stopped.push(id);
    }
    const read = await cluster.request(leader, "GET", "/v1/kv/greeting?timeout=1500", { timeoutMs: 4000 });
    const write = await cluster.request(leader, "PUT", "/v1/kv/greeting?timeout=1500", { json: { value: "minority" }, timeoutMs: 4000 });
    // Only inside the lease could a read succeed, and then only with the last committed value.
    if (read.status === 200) expect(read.json.kv.value).toBe("hello");
    else expect([503, 504]).toContain(read.status);
    expect([503, 504]).toContain(write.status);
    // Well past the lease: refused for sure.
    const later = await cluster.request(leader, "GET", "/v1/kv/greeting?timeout=1000", { timeoutMs: 4000 });
    expect([503, 504]).toContain(later.status);
    if (later.status === 503) expect(later.headers["retry-after"]).toBe("1");
    expect((await cluster.request(leader, "GET", "/v1/kv/greeting?consistency=stale")).status).toBe(200);
    console.log(`isolated leader ${leader}: read ${read.status}, write ${write.status}, later read ${later.status}`);
    for (const id of stopped.splice(0)) cluster.signal(id, "SIGCONT");

    // 2. A frozen leader that wakes up after the others moved on must not serve its old value.
    const old = await cluster.waitForLeader(ids);
    cluster.signal(old, "SIGSTOP");
    stopped.push(old);
    const fresh = await cluster.waitForLeader(others(old));
    expect((await cluster.request(fresh, "PUT", "/v1/kv/greeting", { json: { value: "new" } })).status).toBe(200);
    cluster.signal(old, "SIGCONT");
    stopped.splice(0);
    const res = await cluster.request(old, "GET", "/v1/kv/greeting?timeout=2000", { timeoutMs: 4000 });
    console.log(`woken ex-leader ${old}: linearizable read ${res.status} ${res.status === 200 ? res.json.kv.value : ""}`);
    if (res.status === 200) expect(res.json.kv.value).toBe("new");
    else expect([503, 504]).toContain(res.status);
    await waitFor(`${old} to rejoin`, async () => (await cluster.request(old, "GET", "/v1/kv/greeting")).json?.kv?.value === "new");
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  } finally {
    for (const id of stopped) cluster.signal(id, "SIGCONT");
  }
}, 40_000);

test("exactly-once writes with a client session; typed errors", async () => {
  const via = others(leader)[0]!;
  const reg = await cluster.request(via, "POST", "/v1/session");
  expect(reg.status).toBe(200);
  const client = reg.json.client as number;
  const headers = { "x-phalanx-session": `${client}:1` };
  const first = await cluster.request(via, "PUT", "/v1/kv/once", { json: { value: "a" }, headers });
  const retry = await cluster.request(via, "PUT", "/v1/kv/once", { json: { value: "a" }, headers });
  expect(first.status).toBe(200);
  expect(retry.json.revision).toBe(first.json.revision);
  const stale = await cluster.request(via, "PUT", "/v1/kv/once", { json: { value: "b" }, headers: { "x-phalanx-session": `${client}:0` } });
  expect(stale.status).toBe(409);
  const cas = await cluster.request(via, "PUT", "/v1/kv/once", { json: { value: "c", expect: { modRevision: 1 } } });
  expect(cas.status).toBe(409);
  expect(cas.json.error).toBe("compare_failed");
  const casOk = await cluster.request(via, "PUT", `/v1/kv/once?prevRevision=${first.json.revision}`, { body: new TextEncoder().encode("raw bytes") });
  expect(casOk.status).toBe(200);
  expect((await cluster.request(via, "GET", "/v1/kv/missing")).status).toBe(404);
  const bad = await cluster.request(via, "PUT", "/v1/kv/x", { json: { value: 1 } });
  expect(bad.status).toBe(400);
  expect(bad.json.error).toBe("bad_request");
  const big = await cluster.request(via, "PUT", "/v1/kv/big", { body: new Uint8Array(1024 * 1024 + 1) });
  expect(big.status).toBe(413);
  const peer = await cluster.request(via, "POST", "/raft/v1/snapshot", { body: new Uint8Array([0x90]) });
  expect(peer.status).toBe(401);
}, 30_000);

test("SIGTERM of the leader hands leadership over and exits cleanly", async () => {
  try {
    const old = await cluster.waitForLeader(ids);
    const proc = cluster.procs.get(old)!;
    const started = performance.now();
    proc.kill("SIGTERM");
    expect(await proc.exited).toBe(0);
    const next = await cluster.waitForLeader(others(old));
    console.log(`SIGTERM of leader ${old}: ${next} leads, process gone after ${(performance.now() - started).toFixed(0)} ms`);
    expect(cluster.logs.get(old)).toContain("handing leadership over before stopping");
    expect((await cluster.request(next, "PUT", "/v1/kv/after-term", { json: { value: "ok" } })).status).toBe(200);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);
