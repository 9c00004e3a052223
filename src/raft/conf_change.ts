// Encoding of a `conf` entry: the change and the full configuration it produces. Carrying the
// result lets a brand-new member, whose log starts empty, learn the whole membership from the
// entry that adds it. JSON keeps it readable in a log dump; conf entries are rare.
import type { ConfChange, ConfState } from "./types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export interface ConfEntry {
  change: ConfChange;
  conf: ConfState;
}

export function encodeConfEntry(e: ConfEntry): Uint8Array {
  const { change, conf } = e;
  return encoder.encode(
    JSON.stringify({ op: change.op, node: change.node, context: change.context, voters: conf.voters, learners: conf.learners }),
  );
}

function isIdList(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === "string");
}

/** Entries come from our own log, so a malformed one is corruption: fail loudly. */
export function decodeConfEntry(data: Uint8Array): ConfEntry {
  const text = decoder.decode(data);
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw new Error(`corrupt conf change entry: not JSON: ${text.slice(0, 80)}`);
  }
  if (
    v === null ||
    typeof v !== "object" ||
    (v.op !== "addLearner" && v.op !== "addVoter" && v.op !== "remove") ||
    typeof v.node !== "string" ||
    typeof v.context !== "string" ||
    !isIdList(v.voters) ||
    !isIdList(v.learners)
  ) {
    throw new Error(`corrupt conf change entry: ${text}`);
  }
  return { change: { op: v.op, node: v.node, context: v.context }, conf: { voters: v.voters, learners: v.learners } };
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  return decodeConfEntry(data).change;
}
