// StateLog turns per-tick state into one line per change: fed the same state again it stays quiet.
import { expect, test } from "bun:test";
import { createLogger } from "../../src/node/log.ts";
import { FAR_BEHIND_ENTRIES, FAR_BEHIND_MS, StateLog } from "../../src/node/state_log.ts";
import type { ProgressStatus, Status } from "../../src/raft/raw_node.ts";
import type { PeerStats } from "../../src/transport/peers.ts";

function setup() {
  const lines: string[] = [];
  let now = 0;
  const log = new StateLog("n1", createLogger("n1", { write: (l) => lines.push(l) }), () => now);
  return { lines, log, advance: (ms: number) => (now += ms) };
}

function status(role: Status["role"], lastIndex: number, progress: Record<string, Partial<ProgressStatus>> = {}): Status {
  const full: Record<string, ProgressStatus> = {};
  for (const [id, p] of Object.entries(progress)) full[id] = { match: 0, next: 1, state: "replicate", answeredRecently: true, regressions: 0, regressedFrom: 0, ...p };
  return {
    id: "n1", role, term: 2, vote: "n1", leader: role === "leader" ? "n1" : null, commit: lastIndex, applied: lastIndex, lastIndex, firstIndex: 1,
    conf: { voters: ["n1", "n2", "n3"], learners: [] }, leaseValid: false, transferee: null, progress: full,
  };
}

function peer(id: string, reachable: boolean): PeerStats {
  return { id, address: `127.0.0.1:1${id.slice(1)}`, state: reachable ? "up" : "backoff", sent: 0, dropped: 0, errors: 0, batches: 0, queued: 0, inflight: 0, rttMs: null, lastError: reachable ? null : "ECONNREFUSED", reachable, bytesSent: 0, bytesReceived: 0 };
}

const msgs = (lines: string[]) => lines.map((l) => /msg="([^"]*)"/.exec(l)?.[1] ?? /msg=(\S+)/.exec(l)![1]);

test("unreachable and quorum lost once per change, with downtime when they come back", () => {
  const { lines, log, advance } = setup();
  const st = status("leader", 10);
  log.observe(st, [peer("n2", true), peer("n3", true)]);
  expect(lines).toEqual([]);
  for (let i = 0; i < 5; i++) {
    log.observe(st, [peer("n2", false), peer("n3", true)]);
    advance(50);
  }
  expect(msgs(lines)).toEqual(["peer unreachable"]);
  for (let i = 0; i < 5; i++) {
    log.observe(st, [peer("n2", false), peer("n3", false)]);
    advance(50);
  }
  expect(msgs(lines)).toEqual(["peer unreachable", "peer unreachable", "quorum lost: writes and linearizable reads stall"]);
  expect(lines[2]).toContain("unreachable=n2,n3");
  // Stepped down meanwhile (check-quorum): regained is still reported when a voter is back.
  advance(1000);
  log.observe(status("follower", 10), [peer("n2", true), peer("n3", false)]);
  log.observe(status("follower", 10), [peer("n2", true), peer("n3", false)]);
  expect(msgs(lines).slice(3)).toEqual(["peer reachable again", "quorum regained"]);
  expect(lines[3]).toContain("peer=n2 downMs=1500");
  expect(lines[4]).toContain("downMs=1250");
});

test("a follower far behind for long enough is logged once, and once when it caught up", () => {
  const { lines, log, advance } = setup();
  const peers = [peer("n2", true), peer("n3", true)];
  const last = 5000;
  const behind = status("leader", last, { n2: { match: last - FAR_BEHIND_ENTRIES - 1 }, n3: { match: last } });
  log.observe(behind, peers);
  advance(FAR_BEHIND_MS - 1);
  log.observe(behind, peers);
  expect(lines).toEqual([]); // a burst, not yet a lagging follower
  advance(1);
  log.observe(behind, peers);
  advance(1000);
  log.observe(behind, peers);
  expect(msgs(lines)).toEqual(["follower far behind"]);
  expect(lines[0]).toContain(`peer=n2`);
  expect(lines[0]).toContain(`behind=${FAR_BEHIND_ENTRIES + 1}`);
  // Inside the threshold but not well inside: no flapping line.
  log.observe(status("leader", last, { n2: { match: last - FAR_BEHIND_ENTRIES + 1 }, n3: { match: last } }), peers);
  expect(lines).toHaveLength(1);
  log.observe(status("leader", last, { n2: { match: last - 3 }, n3: { match: last } }), peers);
  expect(msgs(lines)).toEqual(["follower far behind", "follower caught up"]);
  expect(lines[1]).toContain("behindMs=6000");
});

test("a snapshot sent is logged with size, and finished with its duration", () => {
  const { lines, log, advance } = setup();
  const peers = [peer("n2", true), peer("n3", true)];
  log.snapshotSending("n2", 900, 123456);
  log.observe(status("leader", 1000, { n2: { state: "snapshot" }, n3: { match: 1000 } }), peers);
  advance(750);
  log.observe(status("leader", 1000, { n2: { state: "probe", match: 900 }, n3: { match: 1000 } }), peers);
  log.observe(status("leader", 1000, { n2: { state: "replicate", match: 1000 }, n3: { match: 1000 } }), peers);
  expect(msgs(lines)).toEqual(["sending a snapshot", "follower finished the snapshot"]);
  expect(lines[0]).toContain("peer=n2 index=900 bytes=123456");
  expect(lines[1]).toContain("ms=750");
});
