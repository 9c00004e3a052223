// What one node tells the leader for leader placement: its region and its own measured round trips
// to the other members. The leader measures only its own links; whether a follower would commit
// faster depends on the follower's links, which only the follower can measure.
//
// A peer route (/peer/v1/placement): the request is authenticated like Raft traffic (cluster key
// or mutual TLS) and so is the answer (signed as a reply, checked by the leader), so neither a
// stranger nor a man in the middle on an h2c link can steer leadership with made-up latencies.
// The answer is small and bounded (at most MAX_ENTRIES links), and the leader refuses anything that
// does not parse as exactly this shape.
//
// The leader's request also carries its election ranking (election_rank.ts) in the query, which
// the request's signature covers: who runs first after this leader is lost. A node takes it only
// from the leader it follows; an old node ignores the query.
import { Hono } from "hono";
import { z } from "zod";
import type { NodeId } from "../raft/types.ts";
import { NONCE_HEADER, type PeerAuth, type PeerEnv, PeerGate, peerAuth, peerReplyHeaders, peerRequestHeaders, verifyPeerReply } from "../transport/auth.ts";
import { nodeIdSchema } from "../transport/codec.ts";
import type { H2Client } from "../transport/h2_client.ts";
import type { ElectionRanking } from "./election_rank.ts";

export const PLACEMENT_REPORT_PATH = "/peer/v1/placement";
const MAX_ENTRIES = 64;
const MAX_REPLY_BYTES = 16 * 1024;

const reportSchema = z
  .object({
    id: nodeIdSchema,
    region: z.string().max(64),
    /** Peer id → smoothed round trip in ms; only fresh measurements. */
    rttMs: z.record(nodeIdSchema, z.number().finite().nonnegative().max(600_000)),
  })
  .strict()
  .refine((r) => Object.keys(r.rttMs).length <= MAX_ENTRIES, `at most ${MAX_ENTRIES} round trips`);

export type PlacementReport = z.infer<typeof reportSchema>;

const rankingSchema = z
  .object({
    order: z.array(nodeIdSchema).max(MAX_ENTRIES),
    electionMs: z.number().int().nonnegative().max(60_000),
    guardMs: z.number().int().nonnegative().max(60_000),
  })
  .strict();

/** What the placement runner hangs on the node while it runs. */
export interface PlacementHooks {
  info(): unknown;
  report(): PlacementReport;
  /** The leader `from` sent its election ranking. */
  ranked(from: NodeId, ranking: ElectionRanking): void;
}

/** The route; `report` is null while this node has nothing to say (placement off): 404. */
export function placementReportRoutes(opts: {
  self: NodeId;
  auth: PeerAuth;
  report: () => PlacementReport | null;
  ranked: (from: NodeId, ranking: ElectionRanking) => void;
}): Hono<PeerEnv> {
  const app = new Hono<PeerEnv>();
  const gate = new PeerGate(opts.auth, opts.self);
  app.get(PLACEMENT_REPORT_PATH, peerAuth(gate, 0), (c) => {
    const report = opts.report();
    if (report === null) return c.text("leader placement is off on this node", 404);
    const rankingText = c.req.query("ranking");
    if (rankingText !== undefined) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(rankingText);
      } catch {
        return c.text("ranking is not JSON", 400);
      }
      const r = rankingSchema.safeParse(parsed);
      if (!r.success) return c.text(`ranking refused: ${r.error.issues[0]?.message ?? "invalid"}`, 400);
      opts.ranked(c.var.peerFrom, r.data);
    }
    const body = new TextEncoder().encode(JSON.stringify(report)) as Uint8Array<ArrayBuffer>;
    const headers = { "content-type": "application/json", ...peerReplyHeaders(opts.auth, { path: PLACEMENT_REPORT_PATH, from: opts.self, to: c.var.peerFrom, nonce: c.var.peerNonce, body }) };
    return c.body(body, 200, headers);
  });
  return app;
}

/** Asks `peer` at `address` for its report; throws with a reason on anything but a valid, proven one. */
export async function fetchPlacementReport(
  client: H2Client,
  auth: PeerAuth,
  self: NodeId,
  peer: NodeId,
  address: string,
  timeoutMs: number,
  ranking: ElectionRanking | null = null,
): Promise<PlacementReport> {
  const path = PLACEMENT_REPORT_PATH;
  const sent = ranking === null ? path : `${path}?ranking=${encodeURIComponent(JSON.stringify(ranking))}`;
  const headers = peerRequestHeaders(auth, { method: "GET", path: sent, from: self, to: peer, body: new Uint8Array(0) });
  const res = await client.request(client.originFor(address), { method: "GET", path: sent, headers, timeoutMs });
  if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${new TextDecoder().decode(res.body.subarray(0, 200))}`);
  if (res.body.byteLength > MAX_REPLY_BYTES) throw new Error(`report of ${res.body.byteLength} bytes exceeds ${MAX_REPLY_BYTES}`);
  const replyHeaders = new Headers();
  for (const [name, value] of Object.entries(res.headers)) {
    if (!name.startsWith(":") && typeof value === "string") replyHeaders.set(name, value);
  }
  // The request's nonce is signed into the answer: a recorded answer cannot be replayed later.
  const verdict = verifyPeerReply(auth, replyHeaders, { path, from: peer, to: self, nonce: headers[NONCE_HEADER] ?? "", body: res.body });
  if (!verdict.ok) throw new Error(`report refused: ${verdict.reason}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(res.body));
  } catch {
    throw new Error("report is not JSON");
  }
  const r = reportSchema.safeParse(parsed);
  if (!r.success) throw new Error(`report refused: ${r.error.issues[0]?.message ?? "invalid"}`);
  if (r.data.id !== peer) throw new Error(`report from ${r.data.id}, asked ${peer}`);
  return r.data;
}
