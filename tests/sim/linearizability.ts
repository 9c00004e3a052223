/**
 * Linearizability checker: Wing & Gong's backtracking search with Lowe's memoization ("WGL").
 *
 * A history is linearizable if every operation can be given a point in time between its call and
 * its return such that applying the operations in that order to a sequential model reproduces
 * every observed output. The search walks the history's call/return events in time order and
 * tries to linearize each pending call; reaching a return whose operation is not yet linearized
 * means the current choice is wrong, so it backtracks. A configuration (set of linearized
 * operations, model state) that was already explored is never explored again, which turns the
 * exponential search into one that is fast on real histories.
 *
 * Operations that never returned (ret = Infinity) may or may not have taken effect, at any time
 * after their call: the search may leave them out, and succeeds once every finished operation is
 * linearized.
 */

export interface Operation<I, O> {
  /** Issuing client; only used in explanations. */
  client: number;
  input: I;
  /** Invocation time. */
  call: number;
  /**
   * Response time; Infinity when the outcome is unknown (timed out, crashed): the operation may
   * or may not have taken effect, at any time after `call`. An operation whose ret equals another's
   * call counts as concurrent with it (the checker never orders operations on a tie).
   */
  ret: number;
  /** Observed result; the built-in models use null for "unknown" (normally with ret = Infinity). */
  output: O;
}

export interface Model<S, I, O> {
  init(): S;
  /** Applies `input` to `state`; ok = false when `output` is impossible in `state`. Must not mutate `state`. */
  step(state: S, input: I, output: O): { ok: boolean; state: S };
  /** Canonical string for a state: equal states must give equal keys. Also used in explanations. */
  key(state: S): string;
  /** Splits a history into sub-histories that can be checked independently (P-compositionality, e.g. one per key). */
  partition?(ops: Operation<I, O>[]): Operation<I, O>[][];
}

export type CheckResult =
  | { ok: true }
  | { ok: false; explanation: string }
  | { ok: "unknown"; reason: string };

export interface CheckOptions {
  /** Search-step budget shared by all partitions; when exhausted the verdict is "unknown". */
  maxSteps?: number;
}

/** Roughly 0.1 to 0.3 s of search; the 102 Jepsen etcd histories need at most about 660,000. */
export const DEFAULT_MAX_STEPS = 2_000_000;

/**
 * Checks `ops` against `model`. Partitions are checked smallest first and the first failing one
 * is reported, so a failure explanation shows the smallest failing partition.
 */
export function checkLinearizable<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  opts: CheckOptions = {},
): CheckResult {
  for (const op of ops) {
    if (!Number.isFinite(op.call) || !(op.ret >= op.call)) {
      throw new Error(`invalid operation times: call ${op.call}, ret ${op.ret}`);
    }
  }
  const parts = (model.partition ? model.partition(ops) : [ops]).filter((p) => p.length > 0);
  const order = parts.map((_, i) => i).sort((a, b) => parts[a]!.length - parts[b]!.length);
  let budget = opts.maxSteps ?? DEFAULT_MAX_STEPS;
  for (const i of order) {
    const part = parts[i]!;
    const result = search(model, part, budget);
    if (result.kind === "fail") {
      return { ok: false, explanation: explain(model, part, result.best, i, parts.length) };
    }
    if (result.kind === "budget") {
      return {
        ok: "unknown",
        reason:
          `step budget of ${opts.maxSteps ?? DEFAULT_MAX_STEPS} exhausted on partition ${i + 1} of ` +
          `${parts.length} (${part.length} ops)`,
      };
    }
    budget -= result.steps;
  }
  return { ok: true };
}

type SearchResult =
  | { kind: "ok"; steps: number }
  | { kind: "fail"; best: number[] }
  | { kind: "budget" };

function search<S, I, O>(model: Model<S, I, O>, ops: Operation<I, O>[], budget: number): SearchResult {
  const n = ops.length;
  // Event e < n is the call of op e; event n + i is the return of op i.
  const time = (e: number): number => (e < n ? ops[e]!.call : ops[e - n]!.ret);
  const events = Array.from({ length: 2 * n }, (_, e) => e);
  events.sort((a, b) => {
    const ta = time(a);
    const tb = time(b);
    if (ta !== tb) return ta < tb ? -1 : 1;
    // Calls before returns on a tie, so that touching operations stay concurrent.
    return a - b;
  });

  // Circular doubly linked list of the events not yet linearized, with sentinel HEAD.
  const HEAD = 2 * n;
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  let last = HEAD;
  for (const e of events) {
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = HEAD;
  prev[HEAD] = last;
  // Dancing links: re-linking in reverse order of unlinking restores the list exactly.
  const unlink = (e: number): void => {
    next[prev[e]!] = next[e]!;
    prev[next[e]!] = prev[e]!;
  };
  const relink = (e: number): void => {
    next[prev[e]!] = e;
    prev[next[e]!] = e;
  };

  // Linearized set as a bitset, with an incrementally maintained Zobrist hash (two 32-bit halves).
  const words = (n + 31) >>> 5;
  const bits = new Uint32Array(words);
  const z1 = new Int32Array(n);
  const z2 = new Int32Array(n);
  let seed = 0x9e3779b9;
  const rand = (): number => {
    // xorshift32: deterministic, so runs are reproducible.
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed | 0;
  };
  let unfinished = 0; // finished ops (finite ret) not yet linearized
  for (let i = 0; i < n; i++) {
    z1[i] = rand();
    z2[i] = rand();
    if (ops[i]!.ret !== Infinity) unfinished++;
  }
  let h1 = 0;
  let h2 = 0;
  const toggle = (i: number): void => {
    bits[i >>> 5]! ^= 1 << (i & 31);
    h1 ^= z1[i]!;
    h2 ^= z2[i]!;
  };

  // Explored configurations: state key -> 53-bit hash of the linearized set -> linearized sets.
  const seen = new Map<string, Map<number, Uint32Array[]>>();
  const isNew = (stateKey: string): boolean => {
    let byHash = seen.get(stateKey);
    if (byHash === undefined) {
      byHash = new Map();
      seen.set(stateKey, byHash);
    }
    const h = (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
    const bucket = byHash.get(h);
    if (bucket === undefined) {
      byHash.set(h, [bits.slice()]);
      return true;
    }
    for (const b of bucket) {
      let same = true;
      for (let w = 0; w < words; w++) {
        if (b[w] !== bits[w]) {
          same = false;
          break;
        }
      }
      if (same) return false;
    }
    bucket.push(bits.slice());
    return true;
  };

  const stackOps = new Int32Array(n);
  const stackStates: S[] = [];
  const stackKeys: string[] = [];
  let depth = 0;
  let best: number[] = [];
  let bestFinished = unfinished + 1;
  let state = model.init();
  let stateKey = model.key(state);
  isNew(stateKey);
  let steps = 0;
  let entry = next[HEAD]!;

  // Done once every finished op is linearized: the remaining unknown-outcome ops never took effect.
  // Until then the walk meets a finished op's return before reaching HEAD.
  while (unfinished > 0) {
    if (++steps > budget) return { kind: "budget" };
    if (entry < n) {
      const op = ops[entry]!;
      const r = model.step(state, op.input, op.output);
      if (r.ok) {
        toggle(entry);
        const k = model.key(r.state);
        // An unknown-outcome op that leaves the state unchanged might as well not have happened:
        // skipping it spares exploring every configuration both with and without it.
        if ((op.ret !== Infinity || k !== stateKey) && isNew(k)) {
          stackOps[depth] = entry;
          stackStates[depth] = state;
          stackKeys[depth] = stateKey;
          depth++;
          if (op.ret !== Infinity) unfinished--;
          if (unfinished < bestFinished) {
            bestFinished = unfinished;
            best = Array.from(stackOps.subarray(0, depth));
          }
          state = r.state;
          stateKey = k;
          unlink(entry);
          unlink(entry + n);
          entry = next[HEAD]!;
          continue;
        }
        toggle(entry);
      }
      entry = next[entry]!;
    } else {
      // The op returning here is not linearized: undo the most recent choice and try the next one.
      if (depth === 0) return { kind: "fail", best };
      depth--;
      const i = stackOps[depth]!;
      state = stackStates[depth]!;
      stateKey = stackKeys[depth]!;
      if (ops[i]!.ret !== Infinity) unfinished++;
      toggle(i);
      relink(i + n);
      relink(i);
      entry = next[i]!;
    }
  }
  return { kind: "ok", steps };
}

function describe<I, O>(op: Operation<I, O>): string {
  const ret = op.ret === Infinity ? "?" : String(op.ret);
  const out = op.output === null ? "unknown" : JSON.stringify(op.output);
  return `client ${op.client} [${op.call}, ${ret}] ${JSON.stringify(op.input)} -> ${out}`;
}

/** Explanations list at most this many ops per section, so that failure traces stay readable. */
const EXPLAIN_LIMIT = 25;

function listOps(lines: string[], items: string[], keep: "first" | "last"): void {
  const omitted = items.length - EXPLAIN_LIMIT;
  if (omitted <= 0) {
    for (const item of items) lines.push(`  ${item}`);
  } else if (keep === "last") {
    lines.push(`  ... ${omitted} earlier ops`);
    for (const item of items.slice(omitted)) lines.push(`  ${item}`);
  } else {
    for (const item of items.slice(0, EXPLAIN_LIMIT)) lines.push(`  ${item}`);
    lines.push(`  ... ${omitted} more ops`);
  }
}

/** Explains a failed partition from the longest linearizable prefix the search found. */
function explain<S, I, O>(
  model: Model<S, I, O>,
  ops: Operation<I, O>[],
  best: number[],
  partIndex: number,
  partCount: number,
): string {
  const lines: string[] = [];
  const which = partCount > 1 ? `partition ${partIndex + 1} of ${partCount} (the smallest failing one)` : "history";
  lines.push(`not linearizable: ${which}, ${ops.length} ops`);
  lines.push(`longest linearizable prefix found (${best.length} ops, in linearization order):`);
  let state = model.init();
  const prefix: string[] = [];
  for (const i of best) {
    const op = ops[i]!;
    state = model.step(state, op.input, op.output).state;
    prefix.push(`${describe(op)}   => ${model.key(state)}`);
  }
  listOps(lines, prefix, "last");
  lines.push(`state after the prefix: ${model.key(state)}`);

  const done = new Set(best);
  const rest = ops.map((_, i) => i).filter((i) => !done.has(i));
  // Finished ops first: they are the ones that had to be placed.
  rest.sort((a, b) => Number(ops[a]!.ret === Infinity) - Number(ops[b]!.ret === Infinity) || ops[a]!.call - ops[b]!.call);
  // Only ops called before the earliest pending return can come next in real-time order.
  const deadline = Math.min(...rest.map((i) => ops[i]!.ret));
  const next: string[] = [];
  const later: string[] = [];
  for (const i of rest) {
    const op = ops[i]!;
    if (op.call > deadline) {
      later.push(describe(op));
    } else {
      const r = model.step(state, op.input, op.output);
      const why = !r.ok
        ? "impossible in this state"
        : op.ret === Infinity && model.key(r.state) === model.key(state)
          ? "no effect in this state"
          : "possible, but no continuation works";
      next.push(`${describe(op)}   (${why})`);
    }
  }
  lines.push("none of the ops that could come next leads to a linearization:");
  listOps(lines, next, "first");
  if (later.length > 0) {
    lines.push("ops called later:");
    listOps(lines, later, "first");
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Models. Both treat output null as "outcome unknown".

/** Output of a read/get: null when unknown (no constraint). */
function readValue(output: object | null): { value: number | null } | null {
  if (output === null || "value" in output) return output as { value: number | null } | null;
  throw new Error(`read output must be { value } or null, got ${JSON.stringify(output)}`);
}

/** Output of a cas: null when unknown. */
function casResult(output: object | null): { succeeded: boolean } | null {
  if (output === null || "succeeded" in output) return output as { succeeded: boolean } | null;
  throw new Error(`cas output must be { succeeded } or null, got ${JSON.stringify(output)}`);
}

/** A compare-and-set register: same semantics for the single register and for each key of the store. */
function casStep(
  value: number | null,
  expect: number | null,
  to: number,
  output: { succeeded: boolean } | null,
): { ok: boolean; state: number | null } {
  const matches = value === expect;
  // Unknown outcome: a cas that took effect succeeds exactly when the value matches; one that did
  // not take effect is covered by the search leaving it out.
  if (output === null) return { ok: true, state: matches ? to : value };
  if (output.succeeded) return { ok: matches, state: to };
  return { ok: !matches, state: value };
}

export type RegisterInput =
  | { op: "read" }
  | { op: "write"; value: number }
  | { op: "cas"; from: number | null; to: number };
/** read -> { value }, write -> {}, cas -> { succeeded }; null when the outcome is unknown. */
export type RegisterOutput = { value: number | null } | { succeeded: boolean } | Record<string, never> | null;

/** A single compare-and-set register, initially null. */
export const registerModel: Model<number | null, RegisterInput, RegisterOutput> = {
  init: () => null,
  step(value, input, output) {
    switch (input.op) {
      case "read": {
        const seen = readValue(output);
        return { ok: seen === null || seen.value === value, state: value };
      }
      case "write":
        return { ok: true, state: input.value };
      case "cas":
        return casStep(value, input.from, input.to, casResult(output));
    }
  },
  key: (value) => String(value),
};

export type KvInput =
  | { op: "get"; key: string }
  | { op: "put"; key: string; value: number }
  | { op: "cas"; key: string; expect: number | null; value: number };
/** get -> { value }, put -> {}, cas -> { succeeded }; null when the outcome is unknown. */
export type KvOutput = { value: number | null } | { succeeded: boolean } | Record<string, never> | null;

function asRegisterInput(input: KvInput): RegisterInput {
  switch (input.op) {
    case "get":
      return { op: "read" };
    case "put":
      return { op: "write", value: input.value };
    case "cas":
      return { op: "cas", from: input.expect, to: input.value };
  }
}

/**
 * A key-value store of compare-and-set registers, all initially null. Partitioned by key, so the
 * state is the value of the one key of the partition being checked.
 */
export const kvModel: Model<number | null, KvInput, KvOutput> = {
  init: () => null,
  // Each key is a register: the same semantics under the KV operation names.
  step: (value, input, output) => registerModel.step(value, asRegisterInput(input), output),
  key: (value) => String(value),
  partition(ops) {
    const byKey = new Map<string, Operation<KvInput, KvOutput>[]>();
    for (const op of ops) {
      let list = byKey.get(op.input.key);
      if (list === undefined) {
        list = [];
        byKey.set(op.input.key, list);
      }
      list.push(op);
    }
    return [...byKey.values()];
  },
};
