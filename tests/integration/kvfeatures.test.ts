// Transactions, watch, blocking reads, leases and locks on three real `phalanx serve` processes,
// with the CLI run as a user runs it. Faults: the leader is killed (kill -9) under a running
// `kv watch` and under a live lease; a `phalanx lock` holder is killed with kill -9.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import http2 from "node:http2";
import { join } from "node:path";
import { encode } from "@msgpack/msgpack";
import type { Subprocess } from "bun";
import { LineStream } from "../../src/cli/stream_client.ts";
import { BUN, MAIN, TestCluster, waitFor } from "./harness.ts";

let cluster: TestCluster;
const ids = ["n1", "n2", "n3"];
const children: Subprocess[] = [];

beforeAll(async () => {
  // Frequent snapshots with a short log tail: a restarted node catches up by snapshot install,
  // and its change history must then be the same as everyone else's.
  cluster = await TestCluster.create(3, { env: { SNAPSHOT_EVERY: "20", CATCHUP_ENTRIES: "2" } });
  cluster.startAll();
  await cluster.waitForLeader(ids);
});

afterAll(async () => {
  for (const c of children) c.kill("SIGKILL");
  await cluster.stopAll();
});

const live = () => ids.filter((id) => cluster.procs.has(id));
const addrs = () => live().map((id) => cluster.node(id).addr);

function cli(args: string[], opts: { stdin?: string } = {}): Subprocess<"pipe", "pipe", "pipe"> {
  const p = Bun.spawn([BUN, MAIN, ...args], { stdin: "pipe", stdout: "pipe", stderr: "pipe" });
  if (opts.stdin !== undefined) p.stdin.write(opts.stdin);
  p.stdin.end();
  children.push(p);
  return p;
}

/** Collects a child's stdout lines as they come. */
function linesOf(p: Subprocess<"pipe", "pipe", "pipe">): string[] {
  const out: string[] = [];
  void (async () => {
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of p.stdout) {
      buf += dec.decode(chunk, { stream: true });
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        out.push(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
      }
    }
  })();
  return out;
}

/** Every event of `prefix` from revision 1 up to `upTo`, from one node's history (ground truth). */
async function historyOf(id: string, prefix: string, upTo: number): Promise<Array<[number, string, string, string | null]>> {
  const s = new LineStream(undefined, 2000);
  const got: Array<[number, string, string, string | null]> = [];
  const abort = new AbortController();
  try {
    await s.read(
      cluster.node(id).addr,
      `/v1/watch?prefix=${encodeURIComponent(prefix)}&rev=1`,
      (v) => {
        if (v.type === "events") {
          for (const e of v.events as Array<{ type: string; kv: { key: string; value?: string | null } }>) got.push([Number(v.revision), e.type, e.kv.key, e.kv.value ?? null]);
          if (Number(v.revision) >= upTo) abort.abort();
        }
        if ((v.type === "progress" || v.type === "created") && Number(v.revision) >= upTo && Number(v.startRevision ?? 0) <= 1) {
          if (got.length > 0 && got[got.length - 1]![0] >= upTo) abort.abort();
        }
      },
      abort.signal,
    );
  } finally {
    await s.close();
  }
  return got;
}

test("txn: compares on several keys, then/else in one revision, through a follower; msgpack; exactly once", async () => {
  try {
    const leader = await cluster.waitForLeader(ids);
    const via = ids.find((id) => id !== leader)!;
    expect((await cluster.request(via, "PUT", "/v1/kv/t/a", { json: { value: "1" } })).status).toBe(200);
    const body = {
      compare: [
        { key: "t/a", target: "value", result: "==", value: "1" },
        { key: "t/b", target: "version", result: "==", value: 0 },
      ],
      then: [{ put: { key: "t/a", value: "2" } }, { put: { key: "t/b", value: "new" } }, { get: { key: "t/a" } }],
      else: [{ range: { prefix: "t/" } }],
    };
    const ok = await cluster.request(via, "POST", "/v1/txn", { json: body });
    expect(ok.status).toBe(200);
    expect(ok.json.succeeded).toBe(true);
    expect(ok.headers["x-phalanx-revision"]).toBe(String(ok.json.revision));
    expect(ok.json.responses[2].get.kv).toMatchObject({ value: "2", modRevision: ok.json.revision });
    const b = await cluster.request(via, "GET", "/v1/kv/t/b");
    expect(b.json.kv.modRevision).toBe(ok.json.revision);
    // The same transaction again: the compares fail now, the else branch runs, nothing changes.
    const again = await cluster.request(via, "POST", "/v1/txn", { body: encode(body), headers: { "content-type": "application/msgpack" } });
    expect(again.status).toBe(200);
    expect(again.json.succeeded).toBe(false);
    expect(again.json.revision).toBe(ok.json.revision);
    expect(again.json.responses[0].range.kvs.map((k: { key: string }) => k.key)).toEqual(["t/a", "t/b"]);
    // Exactly once with a write session: the retry returns the first answer, not a second apply.
    const client = (await cluster.request(via, "POST", "/v1/clients")).json.client as number;
    const incr = { compare: [{ key: "t/n", target: "version", result: "==", value: 0 }], then: [{ put: { key: "t/n", value: "first" } }], else: [{ put: { key: "t/n", value: "second" } }] };
    const headers = { "x-phalanx-session": `${client}:1` };
    const first = await cluster.request(via, "POST", "/v1/txn", { json: incr, headers });
    const retry = await cluster.request(via, "POST", "/v1/txn", { json: incr, headers });
    expect(retry.json).toEqual(first.json);
    expect((await cluster.request(via, "GET", "/v1/kv/t/n")).json.kv).toMatchObject({ value: "first", version: 1 });
    // Refused whole: a key written twice.
    const dup = await cluster.request(via, "POST", "/v1/txn", { json: { then: [{ put: { key: "t/x", value: "1" } }, { delete: { key: "t/x" } }] } });
    expect(dup.status).toBe(400);
    expect(dup.json.error).toBe("invalid_txn");
    // The CLI, JSON from stdin: exit 1 when the else branch ran.
    const p = cli(["kv", "txn", "-a", addrs().join(","), "--json"], { stdin: JSON.stringify(body) });
    expect(await p.exited).toBe(1);
    expect(JSON.parse(await new Response(p.stdout).text()).succeeded).toBe(false);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);

test("kv watch across kill -9 of the node it reads from: every change once, in order, nothing lost", async () => {
  try {
    const leader = await cluster.waitForLeader(ids);
    const order = [leader, ...ids.filter((id) => id !== leader)];
    const start = (await cluster.request(leader, "PUT", "/v1/kv/w/start", { json: { value: "s" } })).json.revision as number;
    const watcher = cli(["kv", "watch", "--prefix", "w/", "--rev", String(start), "--json", "-a", order.map((id) => cluster.node(id).addr).join(",")]);
    const lines = linesOf(watcher);
    await waitFor("the watch to print the first event", () => lines.length >= 1);
    const acked: string[] = [];
    const write = async (i: number) => {
      // Any live node; a write whose outcome is unknown may or may not show up (both fine).
      for (let attempt = 0; attempt < 40; attempt++) {
        const id = live()[attempt % live().length]!;
        const res = await cluster.request(id, "PUT", `/v1/kv/w/${i}`, { json: { value: `v${i}` }, timeoutMs: 3000 }).catch(() => null);
        if (res?.status === 200) return void acked.push(`w/${i}`);
        await Bun.sleep(100);
      }
      throw new Error(`write ${i} never succeeded`);
    };
    for (let i = 0; i < 15; i++) await write(i);
    // The watch process is frozen while its node dies and the cluster moves on: when it wakes up
    // it must fetch exactly what it missed from another node.
    watcher.kill("SIGSTOP");
    await cluster.kill(leader);
    for (let i = 15; i < 30; i++) await write(i);
    watcher.kill("SIGCONT");
    for (let i = 30; i < 40; i++) await write(i);
    const rest = live();
    await cluster.waitForLeader(rest);
    const last = (await cluster.request(rest[0]!, "PUT", "/v1/kv/w/end", { json: { value: "e" } })).json.revision as number;
    await waitFor("the watch to print the last write", () => lines.some((l) => JSON.parse(l).revision === last), 20_000);
    const printed = lines.flatMap((l) => {
      const v = JSON.parse(l) as { revision: number; events: Array<{ type: string; kv: { key: string; value?: string | null } }> };
      return v.events.map((e) => [v.revision, e.type, e.kv.key, e.kv.value ?? null] as [number, string, string, string | null]);
    });
    const truth = (await historyOf(rest[0]!, "w/", last)).filter((e) => e[0] >= start);
    expect(printed).toEqual(truth);
    const revs = printed.map((e) => e[0]);
    expect(revs).toEqual([...revs].sort((a, b) => a - b));
    expect(new Set(revs).size).toBe(revs.length);
    for (const k of acked) expect(printed.some((e) => e[2] === k)).toBe(true);
    const stderr = watcher.stderr;
    watcher.kill("SIGTERM");
    expect(await watcher.exited).toBe(0);
    console.log(`watch: ${printed.length} events, ${acked.length} acked writes, stderr: ${(await new Response(stderr).text()).trim().split("\n")[0]}`);
    // The killed node comes back and catches up from a snapshot: same history, same floor.
    cluster.start(leader);
    await cluster.waitForLeader(ids);
    await waitFor(`${leader} to catch up`, async () => (await cluster.request(leader, "GET", "/v1/kv/w%2Fend?consistency=stale")).status === 200);
    expect(cluster.logs.get(leader)).toContain("installed a snapshot from the leader");
    const after = (await historyOf(leader, "w/", last)).filter((e) => e[0] >= start);
    expect(after).toEqual(truth);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);

test("blocking read: ?index=N&wait= returns when the key changes past N, or when the wait ends", async () => {
  const leader = await cluster.waitForLeader(ids);
  const follower = ids.find((id) => id !== leader)!;
  const first = await cluster.request(leader, "PUT", "/v1/kv/b/k", { json: { value: "1" } });
  const rev = first.json.revision as number;
  const t0 = performance.now();
  const waiting = cluster.request(follower, "GET", `/v1/kv/b/k?index=${rev}&wait=10s`, { timeoutMs: 15_000 });
  await Bun.sleep(300);
  await cluster.request(leader, "PUT", "/v1/kv/b/k", { json: { value: "2" } });
  const got = await waiting;
  expect(got.status).toBe(200);
  expect(got.json.kv.value).toBe("2");
  expect(Number(got.headers["x-phalanx-revision"])).toBeGreaterThan(rev);
  expect(performance.now() - t0).toBeLessThan(8000);
  const t1 = performance.now();
  const idle = await cluster.request(follower, "GET", `/v1/kv/b/k?index=${got.json.kv.modRevision}&wait=700ms`, { timeoutMs: 5000 });
  expect(idle.status).toBe(200);
  expect(performance.now() - t1).toBeGreaterThanOrEqual(650);
  // A prefix (Consul's ?recurse): returns on a change of any key under it, and waits once, not twice.
  const t2 = performance.now();
  const quiet = await cluster.request(follower, "GET", `/v1/kv?prefix=b/&index=${got.json.kv.modRevision}&wait=1000ms`, { timeoutMs: 5000 });
  expect(quiet.status).toBe(200);
  expect(performance.now() - t2).toBeGreaterThanOrEqual(950);
  // Waiting twice (the middleware running for both routes) would take 2 s.
  expect(performance.now() - t2).toBeLessThan(1950);
  const ranged = cluster.request(follower, "GET", `/v1/kv?prefix=b/&index=${got.json.kv.modRevision}&wait=10s`, { timeoutMs: 15_000 });
  await Bun.sleep(200);
  await cluster.request(leader, "PUT", "/v1/kv/b/other", { json: { value: "3" } });
  const r = await ranged;
  expect(r.json.kvs.map((k: { key: string }) => k.key)).toEqual(["b/k", "b/other"]);
}, 30_000);

test("a lease outlives a leader change (full TTL on the new leader), then expires by log entry; its delete is watched", async () => {
  try {
    const leader = await cluster.waitForLeader(ids);
    const ttl = 3;
    const grant = await cluster.request(leader, "POST", "/v1/lease", { json: { ttl } });
    expect(grant.status).toBe(200);
    const id = grant.json.id as number;
    const t0 = performance.now();
    const put = await cluster.request(leader, "PUT", `/v1/kv/lease/k?lease=${id}`, { json: { value: "v" } });
    expect(put.status).toBe(200);
    const follower = ids.find((x) => x !== leader)!;
    const deletes: number[] = [];
    const s = new LineStream(undefined, 2000);
    const abort = new AbortController();
    const watching = s
      .read(cluster.node(follower).addr, `/v1/watch?key=lease%2Fk&rev=${put.json.revision}`, (v) => {
        if (v.type === "events") for (const e of v.events as Array<{ type: string }>) if (e.type === "delete") deletes.push(Number(v.revision));
      }, abort.signal)
      .catch(() => undefined);
    await Bun.sleep(2000);
    await cluster.kill(leader);
    const rest = ids.filter((x) => x !== leader);
    await cluster.waitForLeader(rest);
    // Past the lease's first deadline (t0 + 3 s) the key must still be there: the new leader
    // gave the lease its full TTL again. A node-local clock would have deleted it by now.
    await Bun.sleep(Math.max(0, t0 + ttl * 1000 + 800 - performance.now()));
    const still = await cluster.request(follower, "GET", "/v1/kv/lease/k");
    expect(still.status).toBe(200);
    await waitFor("the lease to expire on the new leader", async () => (await cluster.request(follower, "GET", "/v1/kv/lease/k")).status === 404, 15_000);
    const expiredAfter = performance.now() - t0;
    await waitFor("the watch to see the delete", () => deletes.length === 1);
    abort.abort();
    await watching;
    await s.close();
    const l = await cluster.request(follower, "GET", `/v1/lease/${id}`);
    expect(l.status).toBe(404);
    console.log(`lease of ${ttl} s with a leader kill at 2 s: expired after ${expiredAfter.toFixed(0)} ms`);
    cluster.start(leader);
    await cluster.waitForLeader(ids);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 60_000);

test("phalanx lock: a holder killed with kill -9 is released after its TTL; fencing revisions grow", async () => {
  const pidFile = join(cluster.dir, "holder.pid");
  try {
    const a = addrs().join(",");
    const holder = cli(["lock", "-a", a, "--ttl", "2", "jobs", "--", "sh", "-c", `echo $$ > ${pidFile}; echo "rev=$PHALANX_LOCK_REVISION"; exec sleep 30`]);
    const out = linesOf(holder);
    await waitFor("the first holder to run", () => out.some((l) => l.startsWith("rev=")));
    const firstRev = Number(out.find((l) => l.startsWith("rev="))!.slice(4));
    const waiter = cli(["lock", "-a", a, "--ttl", "2", "jobs", "--", "sh", "-c", 'echo "rev=$PHALANX_LOCK_REVISION"']);
    const waiterOut = linesOf(waiter);
    await Bun.sleep(500);
    expect(waiterOut).toEqual([]);
    const killedAt = performance.now();
    holder.kill("SIGKILL");
    await holder.exited;
    process.kill(Number(readFileSync(pidFile, "utf8").trim()), "SIGKILL");
    expect(await waiter.exited).toBe(0);
    const waited = performance.now() - killedAt;
    const secondRev = Number(waiterOut.find((l) => l.startsWith("rev="))!.slice(4));
    expect(secondRev).toBeGreaterThan(firstRev);
    // Released by expiry, not earlier than the lease could have run out.
    expect(waited).toBeGreaterThan(1000);
    console.log(`lock released ${waited.toFixed(0)} ms after kill -9 of its holder (TTL 2 s)`);
    // The normal path: released at once when the command exits, with its exit code.
    const quick = cli(["lock", "-a", a, "jobs", "--", "sh", "-c", "exit 7"]);
    expect(await quick.exited).toBe(7);
    const keys = await cluster.request(live()[0]!, "GET", "/v1/kv?prefix=jobs/");
    expect(keys.json.kvs).toEqual([]);
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  } finally {
    writeFileSync(pidFile, "");
  }
}, 40_000);

test("phalanx elect: the campaigner killed with kill -9 loses leadership after its TTL; --listen follows", async () => {
  const a = addrs().join(",");
  const listen = cli(["elect", "-a", a, "ballot", "--listen"]);
  const seen = linesOf(listen);
  const first = cli(["elect", "-a", a, "--ttl", "2", "ballot", "alpha"]);
  const firstOut = linesOf(first);
  await waitFor("alpha to be elected", () => firstOut.includes("alpha"));
  const second = cli(["elect", "-a", a, "--ttl", "2", "ballot", "beta"]);
  const secondOut = linesOf(second);
  await waitFor("the listener to see alpha", () => seen.includes("alpha"));
  await Bun.sleep(300);
  expect(secondOut).toEqual([]);
  first.kill("SIGKILL");
  await waitFor("beta to be elected after alpha's lease expired", () => secondOut.includes("beta"), 15_000);
  await waitFor("the listener to see beta", () => seen.includes("beta"));
  expect(seen).toEqual(["alpha", "beta"]);
  // Resigning (SIGTERM) deletes the key at once.
  second.kill("SIGTERM");
  expect(await second.exited).toBe(0);
  await waitFor("the ballot to be empty", async () => (await cluster.request(live()[0]!, "GET", "/v1/kv?prefix=ballot/")).json.kvs.length === 0);
  listen.kill("SIGTERM");
  expect(await listen.exited).toBe(0);
}, 40_000);

test("a watcher that stops reading does not stall the node and is cancelled with the reason; a watch from a pruned revision gets 410 compacted", async () => {
  const id = live()[0]!;
  // The slow consumer: a small HTTP/2 window and a paused stream, so nothing it is sent gets read.
  const session = http2.connect(`http://${cluster.node(id).addr}`, { settings: { initialWindowSize: 16 * 1024 } });
  session.on("error", () => undefined);
  const slow = session.request({ ":path": "/v1/watch?prefix=c/" });
  let slowText = "";
  slow.setEncoding("utf8");
  slow.on("data", (d: string) => (slowText += d));
  await waitFor("the slow watch to be created", () => slowText.includes('"created"'));
  slow.pause();
  const txn = (t: number) => ({ then: Array.from({ length: 128 }, (_, i) => ({ put: { key: `c/${t}/${i}`, value: "x".repeat(64) } })) });
  // 20,000 events is the default history bound (history.ts): 160 txns of 128 puts pass it. The
  // writes go on at full speed while the slow watcher sits on its full buffer.
  const t0 = performance.now();
  for (let t = 0; t < 160; t++) {
    // A 503 (an election on a loaded machine) is retried: these puts are the same when applied twice.
    let res = await cluster.request(id, "POST", "/v1/txn", { json: txn(t), timeoutMs: 10_000 });
    for (let attempt = 0; attempt < 20 && res.status === 503; attempt++) {
      await Bun.sleep(200);
      res = await cluster.request(id, "POST", "/v1/txn", { json: txn(t), timeoutMs: 10_000 });
    }
    if (res.status !== 200) throw new Error(`txn ${t}: HTTP ${res.status} ${JSON.stringify(res.json)}`);
  }
  console.log(`160 txns of 128 puts with a stuck watcher: ${(performance.now() - t0).toFixed(0)} ms`);
  slow.resume();
  const ended = new Promise<void>((r) => slow.once("end", () => r()));
  await waitFor("the slow watch to end", () => ended.then(() => true), 15_000);
  const last = JSON.parse(slowText.trim().split("\n").at(-1)!);
  expect(last).toMatchObject({ type: "canceled", error: "compacted" });
  expect(last.message).toContain("read too slowly");
  // It got a prefix of the events, each revision once, before the cancel.
  const revs = slowText.trim().split("\n").map((l) => JSON.parse(l)).filter((v) => v.type === "events").map((v) => v.revision as number);
  expect(revs.length).toBeGreaterThan(0);
  expect(revs).toEqual([...new Set(revs)].sort((x, y) => x - y));
  session.close();
  const res = await cluster.request(id, "GET", "/v1/watch?prefix=c/&rev=1");
  expect(res.status).toBe(410);
  expect(res.json.error).toBe("compacted");
  expect(res.json.oldestRevision).toBeGreaterThan(1);
  expect(res.json.message).toContain(`oldest available is ${res.json.oldestRevision}`);
  const p = cli(["kv", "watch", "--prefix", "c/", "--rev", "1", "-a", cluster.node(id).addr]);
  expect(await p.exited).toBe(1);
  expect(await new Response(p.stderr).text()).toContain("compacted");
}, 60_000);

test("phalanx lease: grant, attach with kv put --lease, show --keys, keepalive --once, revoke deletes the keys", async () => {
  const a = ["-a", addrs().join(",")];
  const run = async (args: string[]) => {
    const p = cli([...args, ...a]);
    const code = await p.exited;
    return { code, out: await new Response(p.stdout).text(), err: await new Response(p.stderr).text() };
  };
  const g = await run(["lease", "grant", "30", "--json"]);
  expect(g.code).toBe(0);
  const id = JSON.parse(g.out).id as number;
  expect((await run(["kv", "put", "cli/leased", "v", "--lease", String(id)])).code).toBe(0);
  const shown = await run(["lease", "show", String(id), "--keys"]);
  expect(shown.out).toContain("TTL 30 s");
  expect(shown.out).toContain("cli/leased");
  expect((await run(["lease", "keepalive", String(id), "--once"])).out).toContain(`lease ${id} kept alive`);
  expect((await run(["lease", "list"])).out).toContain(String(id));
  expect((await run(["lease", "revoke", String(id)])).out).toContain("1 keys deleted");
  expect((await run(["kv", "get", "cli/leased"])).code).toBe(1);
  const gone = await run(["lease", "keepalive", String(id), "--once"]);
  expect(gone.code).toBe(1);
  expect(gone.err).toContain("expired or revoked");
  expect((await run(["kv", "put", "cli/x", "v", "--lease", String(id)])).code).toBe(1);
}, 30_000);
