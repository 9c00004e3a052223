// Multi-key transactions (etcd's Txn): every compare is evaluated against the state before the
// transaction, then either the `then` or the `else` list runs, all in one log entry, so every
// write of the transaction carries the same revision and no other write can come in between.
// The shape was validated (command.ts validateTxn) before this runs.
import { TXN_LIMITS, type KeyValue, type Result, type TxnCommand, type TxnCompare, type TxnOp, type TxnOpResult } from "./command.ts";

/** What a transaction may do to the store; KvStore implements it with its own write path. */
export interface TxnStore {
  row(key: string): KeyValue | null;
  leaseOf(key: string): number;
  leaseExists(id: number): boolean;
  /** Keys under `prefix` in key order, after `after` (exclusive), at most `limit`. */
  page(prefix: string, after: string | undefined, limit: number): { kvs: KeyValue[]; more: boolean };
  put(key: string, value: Uint8Array, lease: number, prev: KeyValue | null): void;
  remove(key: string): void;
  /** The store revision after the writes so far. */
  revision(): number;
}

const DELETE_PAGE = 1000;

export function executeTxn(cmd: TxnCommand, store: TxnStore): Result {
  const succeeded = cmd.compare.every((c) => compare(c, store));
  const ops = succeeded ? cmd.then : cmd.else;
  // A missing lease refuses the whole transaction before any write: nothing half-applied.
  for (const op of ops) {
    if (op.op === "put" && op.lease !== undefined && op.lease !== 0 && !store.leaseExists(op.lease)) {
      return { error: "lease_not_found", message: `lease ${op.lease} does not exist (expired or revoked)` };
    }
  }
  let readBudget: number = TXN_LIMITS.maxReadBytes;
  const responses: TxnOpResult[] = ops.map((op) => {
    const r = run(op, store, readBudget);
    readBudget -= r.readBytes;
    return r.result;
  });
  return { op: "txn", revision: store.revision(), succeeded, responses };
}

function run(op: TxnOp, store: TxnStore, budget: number): { result: TxnOpResult; readBytes: number } {
  switch (op.op) {
    case "put": {
      const prev = store.row(op.key);
      store.put(op.key, op.value, op.lease ?? 0, prev);
      return { result: { op: "put", prev }, readBytes: 0 };
    }
    case "del": {
      const found = store.row(op.key) !== null;
      if (found) store.remove(op.key);
      return { result: { op: "del", deleted: found ? 1 : 0 }, readBytes: 0 };
    }
    case "delPrefix": {
      let deleted = 0;
      // Bounded: each page deletes what it read, so the next page starts past it; the key space is finite.
      for (;;) {
        const { kvs, more } = store.page(op.prefix, undefined, DELETE_PAGE);
        for (const kv of kvs) store.remove(kv.key);
        deleted += kvs.length;
        if (!more) break;
      }
      return { result: { op: "delPrefix", deleted }, readBytes: 0 };
    }
    case "get": {
      const kv = store.row(op.key);
      const size = kv?.value.byteLength ?? 0;
      // Over the read budget a get says so instead of returning the value: deterministic, and the
      // result (kept for exactly-once retries) stays bounded.
      if (size > budget) return { result: { op: "get", kv: null, overBudget: true }, readBytes: 0 };
      return { result: { op: "get", kv }, readBytes: size };
    }
    case "range": {
      const { kvs, more } = store.page(op.prefix, undefined, op.limit);
      let used = 0;
      let n = 0;
      while (n < kvs.length && used + kvs[n]!.value.byteLength <= budget) used += kvs[n++]!.value.byteLength;
      return { result: { op: "range", kvs: kvs.slice(0, n), more: more || n < kvs.length }, readBytes: used };
    }
  }
}

/**
 * etcd's rules: a missing key has version, create and mod revision 0 and lease 0; comparing the
 * value of a missing key fails for both == and != (we add `value: null` == "the key is absent").
 */
function compare(c: TxnCompare, store: TxnStore): boolean {
  const kv = store.row(c.key);
  if (c.target === "value") {
    if (c.value === null) return c.result === "==" ? kv === null : kv !== null;
    if (kv === null) return false;
    const eq = Buffer.compare(kv.value, c.value) === 0;
    return c.result === "==" ? eq : !eq;
  }
  const actual =
    c.target === "lease" ? (kv === null ? 0 : store.leaseOf(c.key)) : kv === null ? 0 : kv[c.target];
  switch (c.result) {
    case "==":
      return actual === c.value;
    case "!=":
      return actual !== c.value;
    case "<":
      return actual < c.value;
    case ">":
      return actual > c.value;
  }
}
