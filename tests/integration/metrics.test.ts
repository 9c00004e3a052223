// /metrics on a real 3-node cluster: the exposition is valid (a strict format check here, and
// `promtool check metrics` when promtool is installed: .ci/run installs it and sets
// PHALANX_REQUIRE_PROMTOOL=1, so CI never skips it), the figures operators alert on are there and
// move, and a leadership transfer counts as exactly one leader change on every node.
import { afterAll, beforeAll, expect, test } from "bun:test";
import pkg from "../../package.json" with { type: "json" };
import { freePort, TestCluster, waitFor } from "./harness.ts";

const ids = ["n1", "n2", "n3"];
let cluster: TestCluster;
const debugPorts = new Map<string, number>();

beforeAll(async () => {
  cluster = await TestCluster.create(3);
  for (const id of ids) {
    debugPorts.set(id, await freePort());
    cluster.start(id, { DEBUG_ADDR: `127.0.0.1:${debugPorts.get(id)}` });
  }
});

afterAll(async () => {
  await cluster.stopAll();
});

async function scrape(id: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${debugPorts.get(id)}/metrics`);
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toContain("text/plain; version=0.0.4");
  return res.text();
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Parses `{a="x",b="y\"z"}`; throws on anything the text format does not allow. */
function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let i = 0;
  while (i < text.length) {
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`bad labels in ${line}`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name) || name.startsWith("__")) throw new Error(`bad label name ${name} in ${line}`);
    if (text[eq + 1] !== '"') throw new Error(`unquoted label value in ${line}`);
    let j = eq + 2;
    let value = "";
    for (; j < text.length && text[j] !== '"'; j++) {
      if (text[j] === "\\") {
        const esc = text[++j];
        if (esc === "n") value += "\n";
        else if (esc === "\\" || esc === '"') value += esc;
        else throw new Error(`bad escape in ${line}`);
      } else value += text[j];
    }
    if (j >= text.length) throw new Error(`unterminated label value in ${line}`);
    if (name in labels) throw new Error(`label ${name} twice in ${line}`);
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (i !== text.length) throw new Error(`junk after label in ${line}`);
  }
  return labels;
}

/**
 * A strict reader of the Prometheus text format 0.0.4 with the naming conventions on top:
 * HELP and TYPE once per family, before its samples; samples belong to the family declared last;
 * counters end in _total; histograms have cumulative buckets ending in +Inf = _count; no series
 * twice; base units only (no _ms, _milliseconds, _kb...). Returns samples by series key.
 */
function checkExposition(text: string): Map<string, Sample> {
  expect(text.endsWith("\n")).toBe(true);
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples = new Map<string, Sample>();
  let family: string | null = null;
  const histo = new Map<string, { buckets: Array<[number, number]>; count?: number }>();
  for (const line of text.slice(0, -1).split("\n")) {
    if (line.startsWith("# HELP ")) {
      const [name, ...help] = line.slice(7).split(" ");
      if (!NAME.test(name!) || helps.has(name!) || help.join(" ").trim() === "") throw new Error(`bad or repeated HELP: ${line}`);
      helps.add(name!);
      family = name!;
      continue;
    }
    if (line.startsWith("# TYPE ")) {
      const [name, type, ...rest] = line.slice(7).split(" ");
      if (name !== family || types.has(name!) || rest.length > 0 || !["counter", "gauge", "histogram"].includes(type!)) throw new Error(`bad TYPE: ${line}`);
      types.set(name!, type!);
      if (type === "counter" && !name!.endsWith("_total")) throw new Error(`counter ${name} does not end in _total`);
      if (type !== "counter" && name!.endsWith("_total")) throw new Error(`${type} ${name} ends in _total`);
      if (/_(ms|milliseconds|microseconds|kb|mb|kilobytes|megabytes|percent)(_|$)/.test(name!)) throw new Error(`${name} is not in base units`);
      continue;
    }
    if (line.startsWith("#") || line.trim() === "") throw new Error(`unexpected line: ${JSON.stringify(line)}`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$/.exec(line);
    if (m === null) throw new Error(`malformed sample: ${line}`);
    const [, name, , labelText, valueText] = m;
    const value = valueText === "+Inf" ? Infinity : valueText === "-Inf" ? -Infinity : Number(valueText);
    if (valueText !== "NaN" && Number.isNaN(value)) throw new Error(`bad value: ${line}`);
    if (family === null) throw new Error(`sample before any HELP/TYPE: ${line}`);
    const type = types.get(family);
    const suffix = name!.slice(family.length);
    const allowed = type === "histogram" ? ["_bucket", "_sum", "_count"] : [""];
    if (!name!.startsWith(family) || !allowed.includes(suffix)) throw new Error(`sample ${name} outside its family ${family}`);
    const labels = parseLabels(labelText ?? "", line);
    const key = `${name}{${Object.entries(labels).sort().map(([k, v]) => `${k}=${v}`).join(",")}}`;
    if (samples.has(key)) throw new Error(`series twice: ${key}`);
    samples.set(key, { name: name!, labels, value });
    if (type === "counter" && !(value >= 0)) throw new Error(`negative counter: ${line}`);
    if (type === "histogram") {
      const { le, ...rest } = labels;
      const series = `${family}{${JSON.stringify(rest)}}`;
      const h = histo.get(series) ?? { buckets: [] };
      histo.set(series, h);
      if (suffix === "_bucket") {
        if (le === undefined) throw new Error(`bucket without le: ${line}`);
        h.buckets.push([le === "+Inf" ? Infinity : Number(le), value]);
      } else if (suffix === "_count") h.count = value;
    }
  }
  for (const [series, h] of histo) {
    for (let i = 1; i < h.buckets.length; i++) {
      if (!(h.buckets[i]![0] > h.buckets[i - 1]![0]) || h.buckets[i]![1] < h.buckets[i - 1]![1]) throw new Error(`${series}: buckets not cumulative and ordered`);
    }
    const last = h.buckets.at(-1);
    if (last === undefined || last[0] !== Infinity || last[1] !== h.count) throw new Error(`${series}: +Inf bucket missing or not equal to _count`);
  }
  return samples;
}

function value(samples: Map<string, Sample>, name: string, labels: Record<string, string> = {}): number {
  const found = [...samples.values()].filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  if (found.length === 0) throw new Error(`no sample ${name} ${JSON.stringify(labels)}`);
  return found.reduce((n, s) => n + s.value, 0);
}

async function promtool(text: string): Promise<string | null> {
  const path = Bun.which("promtool");
  if (path === null) {
    if (process.env.PHALANX_REQUIRE_PROMTOOL === "1") throw new Error("promtool is required (PHALANX_REQUIRE_PROMTOOL=1) but not installed");
    return null;
  }
  const p = Bun.spawn([path, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  const [out, err, code] = await Promise.all([new Response(p.stdout).text(), new Response(p.stderr).text(), p.exited]);
  return code === 0 && out.trim() === "" && err.trim() === "" ? "clean" : `exit ${code}: ${out}${err}`;
}

test("the exposition is valid and carries what operators alert on", async () => {
  try {
    const leader = await cluster.waitForLeader(ids);
    // The leader records each member's region as a proposal of its own (node.ts recordRegion):
    // once they are all in, the only proposals are the test's.
    await waitFor("every member's region recorded", async () => {
      const members = (await cluster.request(leader, "GET", "/v1/members")).json.members as { region: string }[];
      return members.length === 3 && members.every((x) => x.region !== "");
    });
    const proposalsBefore = value(checkExposition(await scrape(leader)), "phalanx_proposals_committed_total");
    for (let i = 0; i < 20; i++) {
      const res = await cluster.request(ids[i % 3]!, "PUT", `/v1/kv/m/${i}`, { json: { value: `v${i}` } });
      expect(res.status).toBe(200);
    }
    expect((await cluster.request(leader, "GET", "/v1/kv/m/1")).status).toBe(200);
    expect((await cluster.request(leader, "GET", "/v1/kv/m/absent")).status).toBe(404);
    const written = (await cluster.status(leader)).applied;
    await waitFor("every node to apply the writes", async () => (await Promise.all(ids.map((id) => cluster.status(id)))).every((s) => s.applied >= written));
    for (const id of ids) {
      // A follower that missed heartbeats on a loaded machine pre-votes for a moment and reports
      // no leader meanwhile (truly: it has none); the figures are read from a scrape that has one.
      const { text, m } = await waitFor(`${id} to report a leader`, async () => {
        const t = await scrape(id);
        const parsed = checkExposition(t);
        return value(parsed, "phalanx_raft_has_leader") === 1 ? { text: t, m: parsed } : undefined;
      });
      const lint = await promtool(text);
      if (lint === null) console.log("promtool not installed: strict format check only");
      else expect(lint).toBe("clean");
      expect(value(m, "phalanx_build_info", { version: pkg.version })).toBe(1);
      expect(value(m, "phalanx_raft_has_leader")).toBe(1);
      expect(value(m, "phalanx_raft_is_voter")).toBe(1);
      expect(value(m, "phalanx_raft_is_learner")).toBe(0);
      expect(value(m, "phalanx_raft_is_leader")).toBe(id === leader ? 1 : 0);
      expect(value(m, "phalanx_kv_keys")).toBe(20);
      expect(value(m, "phalanx_db_size_bytes")).toBeGreaterThan(0);
      expect(value(m, "phalanx_disk_fsync_duration_seconds_count")).toBeGreaterThan(0);
      expect(value(m, "phalanx_apply_duration_seconds_count")).toBeGreaterThan(0);
      expect(value(m, "phalanx_event_loop_lag_seconds_count")).toBeGreaterThan(0);
      expect(value(m, "process_resident_memory_bytes")).toBeGreaterThan(1e6);
      expect(value(m, "process_cpu_seconds_total")).toBeGreaterThan(0);
      expect(value(m, "process_open_fds")).toBeGreaterThan(3);
      expect(Math.abs(value(m, "process_start_time_seconds") - Date.now() / 1000)).toBeLessThan(120);
      // Bytes are counted by the side that sends a request: the leader's appends go out as its
      // requests and the followers' answers come back in the responses.
      if (id === leader) {
        for (const peer of ids.filter((p) => p !== id)) {
          expect(value(m, "phalanx_peer_sent_bytes_total", { peer })).toBeGreaterThan(0);
          expect(value(m, "phalanx_peer_received_bytes_total", { peer })).toBeGreaterThan(0);
          expect(value(m, "phalanx_peer_round_trip_time_seconds_count", { peer })).toBeGreaterThan(0);
        }
      }
      // Every node answered some of the 20 writes (round robin), by route pattern and code.
      expect(value(m, "phalanx_http_requests_total", { method: "PUT", route: "/v1/kv/*", code: "200" })).toBeGreaterThanOrEqual(6);
      expect(value(m, "phalanx_http_request_duration_seconds_count", { method: "PUT", route: "/v1/kv/*" })).toBeGreaterThanOrEqual(6);
      // No label carries a raw key: the route is the pattern.
      expect(text).not.toContain("/v1/kv/m/");
      if (id === leader) {
        expect(value(m, "phalanx_http_requests_total", { method: "GET", route: "/v1/kv/*", code: "404" })).toBe(1);
        // Proposals of the leader: 20 writes committed there (followers forward), none waiting.
        expect(value(m, "phalanx_proposals_committed_total") - proposalsBefore).toBe(20);
        expect(value(m, "phalanx_proposals_pending")).toBe(0);
      }
    }
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 40_000);

test("a leadership transfer counts as exactly one leader change on every node", async () => {
  try {
    const leader = await cluster.waitForLeader(ids);
    const before = new Map<string, number>();
    for (const id of ids) before.set(id, value(checkExposition(await scrape(id)), "phalanx_raft_leader_changes_total"));
    const to = ids.find((id) => id !== leader)!;
    const t = await cluster.request(leader, "POST", `/v1/leader/transfer?to=${to}`);
    expect(t.status).toBe(200);
    expect(await cluster.waitForLeader(ids)).toBe(to);
    for (const id of ids) {
      const after = value(checkExposition(await scrape(id)), "phalanx_raft_leader_changes_total");
      expect(`${id}: ${after - before.get(id)!}`).toBe(`${id}: 1`);
    }
  } catch (err) {
    console.log(cluster.dumpLogs());
    throw err;
  }
}, 30_000);
