// Helpers to build log entries carrying KV proposals, for the state machine tests.
import { encodeConfEntry } from "../../src/raft/conf_change.ts";
import { applyConfChange } from "../../src/raft/conf_history.ts";
import type { ConfChange, Entry } from "../../src/raft/types.ts";
import { encodeProposal, type Command, type Proposal, type Result } from "../../src/kv/command.ts";
import type { KvStore } from "../../src/kv/store.ts";
import type { DataDir } from "../../src/storage/data_dir.ts";

export const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export function proposal(index: number, cmd: Command, opts: Partial<Omit<Proposal, "cmd">> = {}): Entry {
  return {
    index,
    term: 1,
    type: "normal",
    data: encodeProposal({ time: opts.time ?? 1_000, session: opts.session ?? null, cmd }),
  };
}

/** A conf entry as the leader writes it: the change and the configuration it yields from `before`. */
export function conf(index: number, cc: ConfChange, before = { voters: ["n1"], learners: [] as string[] }): Entry {
  return { index, term: 1, type: "conf", data: encodeConfEntry({ change: cc, conf: applyConfChange(before, cc) }) };
}

export function noop(index: number): Entry {
  return { index, term: 1, type: "noop", data: new Uint8Array(0) };
}

/** Appends the entries to the log and applies them in one transaction, as the node does for a single-node Ready. */
export function commit(dd: DataDir, kv: KvStore, entries: Entry[]): Array<Result | null> {
  return dd.transaction(() => {
    dd.log.save(null, entries, { term: 1, vote: "n1", commit: entries[entries.length - 1]!.index });
    return entries.map((e) => kv.apply(e));
  });
}
