// A member of the cluster: the one model of it, as the log carries it. The replicated `members`
// table (schema.ts) holds one row per member of the Raft configuration; conf entries write it
// (their context is a MemberRecord) and so does the `member` command (command.ts), which records
// a region the leader learned after the member joined. Every other view of a server derives from
// this one: gossip's liveness (GossipPeer) and the autopilot's and bootstrap's views
// (node/membership/server_view.ts) add health, never identity.
//
// The client API is served on the peer port (one HTTP/2 + HTTP/1.1 listener), so a member has one
// address; a distinct client address would be a new field of MemberRecord.
import type { NodeId } from "../raft/types.ts";

export const MEMBER_ROLES = ["voter", "learner"] as const;
export type MemberRole = (typeof MEMBER_ROLES)[number];

export interface Member {
  id: NodeId;
  /** host:port for peers and clients; "" when the log does not carry it (a member added before it knew). */
  address: string;
  /** Where it runs (REGION / FLY_REGION); "" when not recorded yet. */
  region: string;
  role: MemberRole;
}

/** What the log says about one member besides its id and role. */
export interface MemberRecord {
  address: string;
  region: string;
}

/**
 * A conf change's context: the record of the member it changes and, as the leader knew them when
 * it proposed the change, the records of all the others. A conf entry already carries the whole
 * configuration so a brand-new member learns it from the entry that adds it; `others` does the
 * same for addresses and regions. Without it a server that joined later, replaying the log from
 * the start, never learns the founders' rows (they were written at bootstrap, not in the log),
 * and its members table would differ from theirs.
 */
export interface MemberContext extends MemberRecord {
  others: Record<NodeId, MemberRecord>;
}

/** Region names: lowercase letters, digits and dashes (Fly.io's lhr, fra; "local"; "r-n1"). */
export const REGION_RE = /^[a-z0-9][a-z0-9-]{0,31}$/;
const MAX_ADDRESS = 300;

/** Why `region` is not a region name, or null. "" (not recorded) is allowed only where `unknown` says. */
export function invalidRegion(region: string, unknown: "unknown allowed" | "must be known"): string | null {
  if (region === "" && unknown === "unknown allowed") return null;
  if (!REGION_RE.test(region)) return `"${region}" is not a region name (lowercase letters, digits and dashes, at most 32, e.g. lhr)`;
  return null;
}

/** A conf change's context: JSON, so later fields can be added without ambiguity. */
export function encodeMemberContext(r: MemberRecord & { others?: Record<NodeId, MemberRecord> }): string {
  for (const [id, x] of [["", r] as const, ...Object.entries(r.others ?? {})]) {
    const bad = invalidRegion(x.region, "unknown allowed");
    if (bad !== null) throw new Error(`member context${id === "" ? "" : ` (${id})`}: ${bad}`);
  }
  const others = Object.fromEntries(Object.entries(r.others ?? {}).map(([id, x]) => [id, { address: x.address, region: x.region }]));
  return JSON.stringify({ address: r.address, region: r.region, ...(Object.keys(others).length === 0 ? {} : { others }) });
}

/**
 * Reads a conf change's context. Entries written before format 2 carry a bare "host:port" (or
 * nothing): they decode with an unknown region, so an old log replays to the same table it always
 * did. The context comes from our own log, so anything else is damage: it throws.
 */
export function decodeMemberContext(context: string): MemberContext {
  if (context === "") return { address: "", region: "", others: {} };
  if (!context.startsWith("{")) return { address: context, region: "", others: {} };
  let v: unknown;
  try {
    v = JSON.parse(context);
  } catch {
    throw new Error(`member context is not JSON: ${context.slice(0, 80)}`);
  }
  const malformed = () => new Error(`malformed member context: ${context.slice(0, 120)}`);
  const own = record(v);
  if (own === null) throw malformed();
  const others: Record<NodeId, MemberRecord> = {};
  const o = (v as Record<string, unknown>).others;
  if (o !== undefined) {
    if (typeof o !== "object" || o === null || Array.isArray(o)) throw malformed();
    for (const [id, x] of Object.entries(o)) {
      const r = record(x);
      if (r === null || id === "") throw malformed();
      others[id] = r;
    }
  }
  return { ...own, others };
}

function record(v: unknown): MemberRecord | null {
  if (typeof v !== "object" || v === null) return null;
  const o = v as Record<string, unknown>;
  if (typeof o.address !== "string" || o.address.length > MAX_ADDRESS) return null;
  if (typeof o.region !== "string" || invalidRegion(o.region, "unknown allowed") !== null) return null;
  return { address: o.address, region: o.region };
}
