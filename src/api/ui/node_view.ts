// What the cluster view shows, gathered on the node the browser talks to: this node's own view
// (status, counters, peer round trips) and every other member's, asked over the client API
// over a signed peer request (GET /peer/v1/ui/node, ui_routes.ts), so one page load shows the
// whole cluster even though each node only knows its own term, commit and RTTs. A member that does
// not answer in time, or whose answer does not prove it came from it, is shown as down.
import type { PhalanxNode } from "../../node/node.ts";
import { formatHostPort, parseHostPort } from "../../transport/address.ts";
import { NONCE_HEADER, peerRequestHeaders, verifyPeerReply } from "../../transport/auth.ts";
import { statusOf } from "../cluster_routes.ts";

/** Path of one node's own view, a peer route (ui_routes.ts). */
export const NODE_VIEW_PATH = "/peer/v1/ui/node";
/** A member slower than this is shown as down for this sample: the page polls every second. */
const MEMBER_TIMEOUT_MS = 700;
/** A member's view is a few KiB; anything much larger is not one, and is not passed on. */
const MAX_MEMBER_VIEW_BYTES = 256 * 1024;

const WILDCARD_HOSTS = new Set(["0.0.0.0", "::", ""]);

/**
 * Where a browser finds this node's page: the debug server's address, with a wildcard host
 * ([::]:9100 on Fly) replaced by the host this node advertises to its peers. Null when the
 * debug server is off.
 */
export function uiUrlOf(node: PhalanxNode): string | null {
  const debugAddr = node.config.debugAddr;
  if (debugAddr === null) return null;
  const debug = parseHostPort(debugAddr);
  const host = WILDCARD_HOSTS.has(debug.host) ? parseHostPort(node.config.advertiseAddr).host : debug.host;
  return `http://${formatHostPort(host, debug.port)}/ui`;
}

/** This node as it sees itself: the figures only it knows. */
export function nodeView(node: PhalanxNode) {
  const m = node.metrics;
  return {
    id: node.id,
    region: node.config.region,
    ui: uiUrlOf(node),
    at: Date.now(),
    status: statusOf(node),
    // Cumulative since this process started; the page turns successive samples into rates.
    counters: {
      proposals: m.proposals,
      proposalsFailed: m.proposalsFailed,
      readsLinearizable: m.readsLinearizable,
      readsLease: m.readsLease,
      readsStale: m.readsStale,
      readsFailed: m.readsFailed,
      entriesApplied: m.entriesApplied,
      electionsStarted: m.electionsStarted,
      electionsWon: m.electionsWon,
      leaderChanges: m.leaderChanges,
    },
    peers: node.peerStats().map((p) => ({ id: p.id, state: p.state, rttMs: p.rttMs, errors: p.errors, lastError: p.lastError })),
    // With gossip: the autopilot's state; only the leader's holds its recent decisions.
    automatic: node.membershipInfo?.() ?? null,
  };
}

/** `askMs`: how long asking took, a round trip measured from this node (its own entry: 0). */
export type MemberAnswer =
  | { id: string; address: string; ok: true; view: unknown; askMs: number }
  | { id: string; address: string; ok: false; error: string };

/** The whole cluster as seen from this node (the browser's credential was checked by the caller). */
export async function clusterView(node: PhalanxNode) {
  const self = nodeView(node);
  const others = node.members().filter((m) => m.id !== node.id);
  const answers = await Promise.all(others.map((m) => askMember(node, m.id, m.address)));
  const leaderAnswer = answers.find((a) => a.id === self.status.leader);
  return {
    via: node.id,
    at: self.at,
    leader: self.status.leader,
    members: node.members(),
    nodes: [{ id: node.id, address: node.config.advertiseAddr, ok: true, view: self, askMs: 0 } as MemberAnswer, ...answers],
    automatic: self.status.leader === node.id ? self.automatic : automaticOf(leaderAnswer, self.automatic),
  };
}

async function askMember(node: PhalanxNode, id: string, address: string): Promise<MemberAnswer> {
  if (address === "") return { id, address, ok: false, error: "address not known yet" };
  try {
    const headers = peerRequestHeaders(node.auth, { method: "GET", path: NODE_VIEW_PATH, from: node.id, to: id, body: new Uint8Array(0) });
    const started = performance.now();
    const res = await node.client.request(node.client.originFor(address), { method: "GET", path: NODE_VIEW_PATH, headers, timeoutMs: MEMBER_TIMEOUT_MS });
    const askMs = Math.round((performance.now() - started) * 10) / 10;
    if (res.status !== 200) return { id, address, ok: false, error: `HTTP ${res.status}: ${new TextDecoder().decode(res.body.subarray(0, 200))}` };
    if (res.body.byteLength > MAX_MEMBER_VIEW_BYTES) return { id, address, ok: false, error: `answer too large (${res.body.byteLength} bytes)` };
    const h = new Headers();
    for (const [name, value] of Object.entries(res.headers)) if (!name.startsWith(":") && typeof value === "string") h.set(name, value);
    const proof = verifyPeerReply(node.auth, h, { path: NODE_VIEW_PATH, from: id, to: node.id, nonce: headers[NONCE_HEADER] ?? "", body: res.body });
    if (!proof.ok) return { id, address, ok: false, error: `answer not proven to come from ${id}: ${proof.reason}` };
    const view: unknown = JSON.parse(new TextDecoder().decode(res.body));
    if (typeof view !== "object" || view === null || (view as { id?: unknown }).id !== id) {
      return { id, address, ok: false, error: "answered with something that is not its own view" };
    }
    return { id, address, ok: true, view, askMs };
  } catch (err) {
    return { id, address, ok: false, error: (err as Error).message ?? String(err) };
  }
}

/** The autopilot's decisions are the leader's: its view when it answered, else our own. */
function automaticOf(leader: MemberAnswer | undefined, own: unknown): unknown {
  if (own === null || leader === undefined || !leader.ok) return own;
  return (leader.view as { automatic?: unknown }).automatic ?? own;
}
