// Semantic checks on a message before it may touch the core. The transport validates shapes
// (types, ranges); this checks what only Raft knows, so a peer speaking nonsense is refused with a
// reason instead of tripping an invariant and stopping the node.
import { decodeConfEntry } from "./conf_change.ts";
import type { Message } from "./types.ts";

/** Why `m` cannot be a message from a correct peer, or null when it is fine. */
export function protocolError(m: Message): string | null {
  if (m.from === m.to) return `${m.type} from ${m.from} to itself`;
  switch (m.type) {
    case "append": {
      if (m.prevTerm > m.term) return `append prevTerm ${m.prevTerm} is after its term ${m.term}`;
      let index = m.prevIndex;
      let term = m.prevTerm;
      for (const e of m.entries) {
        if (e.index !== index + 1) return `append entries are not consecutive after ${index} (got ${e.index})`;
        if (e.term < term || e.term > m.term) return `append entry ${e.index} has term ${e.term} outside [${term}, ${m.term}]`;
        if (e.type === "conf") {
          try {
            decodeConfEntry(e.data);
          } catch (err) {
            return `append entry ${e.index}: ${(err as Error).message}`;
          }
        }
        index = e.index;
        term = e.term;
      }
      return null;
    }
    case "snapshot": {
      const { meta, offset, total, chunk } = m;
      if (meta.term > m.term) return `snapshot term ${meta.term} is after the sender's term ${m.term}`;
      if (meta.index === 0) return "snapshot at index 0";
      if (offset > total || offset + chunk.byteLength > total) return `snapshot chunk [${offset}, +${chunk.byteLength}) exceeds its size ${total}`;
      if (meta.conf.voters.length === 0) return "snapshot with no voters";
      return null;
    }
    case "vote":
    case "preVote":
      return m.lastTerm > m.term ? `${m.type} lastTerm ${m.lastTerm} is after its term ${m.term}` : null;
    default:
      return null;
  }
}
