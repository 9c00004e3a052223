// The placement report route and its client: only a cluster member may ask, and the leader takes
// only an answer proven to come from the peer it asked, in exactly the expected shape.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Hono } from "hono";
import { fetchPlacementReport, PLACEMENT_REPORT_PATH, placementReportRoutes, type PlacementReport } from "../../src/node/placement_report.ts";
import type { ElectionRanking } from "../../src/node/election_rank.ts";
import { NONCE_HEADER, type PeerAuth, peerReplyHeaders, peerRequestHeaders } from "../../src/transport/auth.ts";
import { H2Client } from "../../src/transport/h2_client.ts";
import { type RunningServer, serveApp } from "../../src/transport/server.ts";
import { freePort } from "../integration/harness.ts";

const AUTH: PeerAuth = { mode: "hmac", key: "placement-test-cluster-key" };
const STRANGER: PeerAuth = { mode: "hmac", key: "some-other-cluster-key-xyz" };
const REPORT: PlacementReport = { id: "n2", region: "fra", rttMs: { n1: 20.5, n3: 115 } };

const servers: RunningServer[] = [];
const client = new H2Client({ connectTimeoutMs: 1000 });
let asked = 0;
const rankings: { from: string; ranking: ElectionRanking }[] = [];
let honest = "";

/** A server that answers the report route with whatever `answer` builds (an impostor or a broken peer). */
async function fake(answer: () => { body: string; auth: PeerAuth; from: string; nonce?: string }): Promise<string> {
  const app = new Hono();
  app.get(PLACEMENT_REPORT_PATH, (c) => {
    const a = answer();
    const body = new TextEncoder().encode(a.body) as Uint8Array<ArrayBuffer>;
    const reply = { path: PLACEMENT_REPORT_PATH, from: a.from, to: "n1", nonce: a.nonce ?? c.req.header(NONCE_HEADER) ?? "", body };
    return c.body(body, 200, { "content-type": "application/json", ...peerReplyHeaders(a.auth, reply) });
  });
  const port = await freePort();
  servers.push(await serveApp(app, { listen: `127.0.0.1:${port}` }));
  return `127.0.0.1:${port}`;
}

beforeAll(async () => {
  const port = await freePort();
  const routes = placementReportRoutes({
    self: "n2",
    auth: AUTH,
    report: () => {
      asked++;
      return REPORT;
    },
    ranked: (from, ranking) => rankings.push({ from, ranking }),
  });
  servers.push(await serveApp(routes, { listen: `127.0.0.1:${port}` }));
  honest = `127.0.0.1:${port}`;
});

afterAll(async () => {
  await client.close();
  for (const s of servers) await s.close();
});

describe("placement report", () => {
  test("a member gets the peer's report", async () => {
    expect(await fetchPlacementReport(client, AUTH, "n1", "n2", honest, 2000)).toEqual(REPORT);
  });

  test("a stranger without the cluster key is refused before the report is built", async () => {
    const before = asked;
    await expect(fetchPlacementReport(client, STRANGER, "n1", "n2", honest, 2000)).rejects.toThrow(/HTTP 401/);
    const res = await client.request(client.originFor(honest), { method: "GET", path: PLACEMENT_REPORT_PATH, timeoutMs: 2000 });
    expect(res.status).toBe(401);
    expect(asked).toBe(before);
  });

  test("an answer not signed with the cluster key is refused (impostor or tampered link)", async () => {
    const addr = await fake(() => ({ body: JSON.stringify({ ...REPORT, rttMs: { n1: 0, n3: 0 } }), auth: STRANGER, from: "n2" }));
    await expect(fetchPlacementReport(client, AUTH, "n1", "n2", addr, 2000)).rejects.toThrow(/report refused: bad signature/);
  });

  test("an answer signed by another member, or naming another node, is refused", async () => {
    const signedByN3 = await fake(() => ({ body: JSON.stringify(REPORT), auth: AUTH, from: "n3" }));
    await expect(fetchPlacementReport(client, AUTH, "n1", "n2", signedByN3, 2000)).rejects.toThrow(/report refused: answer from n3/);
    const namesN3 = await fake(() => ({ body: JSON.stringify({ ...REPORT, id: "n3" }), auth: AUTH, from: "n2" }));
    await expect(fetchPlacementReport(client, AUTH, "n1", "n2", namesN3, 2000)).rejects.toThrow(/report from n3, asked n2/);
  });

  test("an answer signed for another request (a replayed recording) is refused", async () => {
    const replayed = await fake(() => ({ body: JSON.stringify({ ...REPORT, rttMs: { n1: 0, n3: 0 } }), auth: AUTH, from: "n2", nonce: "0".repeat(32) }));
    await expect(fetchPlacementReport(client, AUTH, "n1", "n2", replayed, 2000)).rejects.toThrow(/report refused: bad signature/);
  });

  test("a malformed report is refused, with a reason", async () => {
    const bodies = [
      "not json",
      JSON.stringify({ ...REPORT, rttMs: { n1: -1 } }),
      JSON.stringify({ ...REPORT, extra: 1 }),
      JSON.stringify({ ...REPORT, rttMs: Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`x${i}`, 1])) }),
    ];
    for (const body of bodies) {
      const addr = await fake(() => ({ body, auth: AUTH, from: "n2" }));
      await expect(fetchPlacementReport(client, AUTH, "n1", "n2", addr, 2000)).rejects.toThrow(/report (is not JSON|refused)/);
    }
  });

  test("the leader's election ranking rides on the request, signed: it arrives as sent, naming its sender", async () => {
    rankings.length = 0;
    const ranking: ElectionRanking = { order: ["n1", "n2", "n3"], electionMs: 687, guardMs: 121 };
    expect(await fetchPlacementReport(client, AUTH, "n1", "n2", honest, 2000, ranking)).toEqual(REPORT);
    expect(rankings).toEqual([{ from: "n1", ranking }]);
  });

  test("a ranking altered on the way (query not what was signed) or malformed is refused and not taken", async () => {
    rankings.length = 0;
    const signed = `${PLACEMENT_REPORT_PATH}?ranking=${encodeURIComponent(JSON.stringify({ order: ["n1", "n2"], electionMs: 500, guardMs: 100 }))}`;
    const headers = peerRequestHeaders(AUTH, { method: "GET", path: signed, from: "n1", to: "n2", body: new Uint8Array(0) });
    const altered = `${PLACEMENT_REPORT_PATH}?ranking=${encodeURIComponent(JSON.stringify({ order: ["n3", "n2"], electionMs: 500, guardMs: 100 }))}`;
    const res = await client.request(client.originFor(honest), { method: "GET", path: altered, headers, timeoutMs: 2000 });
    expect(res.status).toBe(401);
    for (const bad of ["{", JSON.stringify({ order: ["n1"], electionMs: -1, guardMs: 0 }), JSON.stringify({ order: ["n1"], electionMs: 1, guardMs: 0, extra: 1 })]) {
      const path = `${PLACEMENT_REPORT_PATH}?ranking=${encodeURIComponent(bad)}`;
      const h = peerRequestHeaders(AUTH, { method: "GET", path, from: "n1", to: "n2", body: new Uint8Array(0) });
      const r = await client.request(client.originFor(honest), { method: "GET", path, headers: h, timeoutMs: 2000 });
      expect(r.status).toBe(400);
    }
    expect(rankings).toEqual([]);
  });
});
