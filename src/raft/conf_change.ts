// Encoding of a ConfChange inside a `conf` entry. JSON keeps it readable in a log dump, and
// conf entries are rare, so compactness does not matter.
import type { ConfChange } from "./types.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function encodeConfChange(cc: ConfChange): Uint8Array {
  return encoder.encode(JSON.stringify({ op: cc.op, node: cc.node, context: cc.context }));
}

/** Entries come from our own log, so a malformed one is corruption: fail loudly. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  const v = JSON.parse(decoder.decode(data)) as Partial<ConfChange>;
  if (
    (v.op !== "addLearner" && v.op !== "addVoter" && v.op !== "remove") ||
    typeof v.node !== "string" ||
    typeof v.context !== "string"
  ) {
    throw new Error(`corrupt conf change entry: ${decoder.decode(data)}`);
  }
  return { op: v.op, node: v.node, context: v.context };
}
