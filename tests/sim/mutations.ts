// Classic Raft bugs, applied to a temporary copy of the source so production code carries no
// bug switches. Each must be caught by the simulator; `find` failing to match means the code
// moved and the mutation needs updating (the test then fails rather than passing vacuously).
import { cpSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { STALLED_LEADER_PROFILE, type SimOptions } from "./cluster.ts";

export interface Mutation {
  name: string;
  file: string;
  find: string;
  replace: string;
  /** Fault profile that exposes this kind of bug (seeds still vary everything else). */
  profile: Partial<SimOptions>;
}

const TICK = 10;
/** Lease bugs live where clocks drift apart the most and elections are fast. */
const leaseProfile: Partial<SimOptions> = { drift: 0.1, maxDelay: 3, leaseReads: true, faultEvery: 10 * TICK };
/**
 * The drift margin matters when a slow-clocked leader is cut off right after a heartbeat round and
 * fast-clocked followers elect at once: so the leader is cut off and healed over and over, on a
 * fixed one-unit network (no loss), three nodes (one of three slow and two fast is common).
 * leaseProfile's first catch was seed 633, and the real code failed that seed too (a simulator
 * artefact, now fixed: a stalled node's inputs overtaking each other); this one catches at seed 5.
 */
const leaseMarginProfile: Partial<SimOptions> = {
  drift: 0.1,
  nodes: 3,
  minDelay: 1,
  maxDelay: 1,
  loss: 0,
  duplicate: 0,
  stalls: false,
  leaseReads: true,
  faultKinds: "leaderIsolation",
  faultEvery: 15 * TICK,
};
/**
 * A new leader does not yet know what its predecessor committed when leadership was handed on
 * right after a commit (TimeoutNow overtakes the next commit index): so leadership is transferred
 * over and over under a slow network with many writers on one key, and reads take ReadIndex.
 */
const readIndexProfile: Partial<SimOptions> = {
  nodes: 3,
  clients: 8,
  keys: 1,
  maxDelay: 20,
  maxInflight: 1,
  loss: 0,
  leaseReads: false,
  faultKinds: "leaderTransfer",
  faultEvery: 10 * TICK,
};

/** Bounded-staleness reads, with stalls and partitions that leave a node serving on an old proof. */
const boundedProfile: Partial<SimOptions> = { boundedReads: 0.6, stalls: true, faultEvery: 10 * TICK };

// The hunts run in this order, one per core: the costliest first (its seeds are the slowest), so
// the others fill the second core meanwhile and the hunts end together.
export const MUTATIONS: Mutation[] = [
  {
    // Issue 8 §1: the snapshot may hold the write (a new leader committed it while this one stalled).
    name: "a proposal covered by an installed snapshot reported as not applied",
    file: "src/node/waiters.ts",
    find: 'w.settle(unknownOutcome("snapshot", why))',
    replace: 'w.settle(notApplied("overwritten", why))',
    // Only leader stalls, one at a time, on three nodes: caught at seed 70 (11 before the stall-ordering fix; the mixed faults of
    // STALLED_LEADER_PROFILE alone took 128 seeds).
    profile: { ...STALLED_LEADER_PROFILE, nodes: 3, faultKinds: "leaderStall", faultEvery: 80 * TICK },
  },
  {
    name: "commit an old-term entry by counting replicas (§5.4.2)",
    file: "src/raft/raft.ts",
    find: "if (mci <= this.log.committed || this.log.term(mci) !== this.term) return false;",
    replace: "if (mci <= this.log.committed) return false;",
    // Figure 8: a leader dies right after an append acknowledgement (having counted an old-term
    // entry's replicas and committed it, its own-term entry still in flight), a node holding a
    // newer-term entry at that index is elected. So leaders die on their next ack over and over
    // ("leaderCrash"), on three nodes (two make a majority), entries trickle one per message,
    // 30% loss leaves logs diverged, eight writers keep every leader appending: caught at seed 18
    // (the mixed faults with one-entry messages took 2,689 seeds). Bounded reads off: their
    // freshness probes and wider read intervals let the mutant survive. Writes and fsyncs at once
    // (no early send): since a leader's own entries wait for its background fsync, a fsync that
    // takes its time moved the catch from seed 10 to 714; at once, seed 134.
    profile: {
      earlySend: false,
      nodes: 3,
      clients: 8,
      maxMsgBytes: 1,
      maxInflight: 1,
      loss: 0.3,
      faultKinds: "leaderCrash",
      faultEvery: 5 * TICK,
      duration: 1200 * TICK,
      boundedReads: 0,
    },
  },
  {
    name: "grant a vote without the up-to-date check (§5.4.1)",
    file: "src/raft/raft.ts",
    find: "if (canVote && logOk) {",
    replace: "if (canVote) {",
    profile: {},
  },
  {
    name: "serve lease reads without the clock-drift margin",
    file: "src/raft/raft.ts",
    find: "return this.now < this.leaseStart() + this.cfg.electionTicks - this.cfg.maxClockDriftTicks;",
    replace: "return this.now < this.leaseStart() + this.cfg.electionTicks;",
    profile: leaseMarginProfile,
  },
  {
    name: "apply a retried client write twice",
    file: "src/kv/session.ts",
    find: 'if (seq === rec.seq) return { kind: "duplicate", result: rec.result };',
    replace: "",
    profile: {},
  },
  {
    name: "grant votes while still hearing from a leader (no stickiness)",
    file: "src/raft/raft.ts",
    find: "if (inLease && !m.transfer) {",
    replace: "if (false) {",
    // The leader and one follower cut apart, the third node hearing both: caught at seed 8 (seed
    // 49 with leaseProfile's mixed faults).
    profile: { ...leaseProfile, nodes: 3, faultKinds: "leaderCut", faultEvery: 15 * TICK },
  },
  {
    name: "serve ReadIndex before the leader committed an entry of its term",
    file: "src/raft/raft.ts",
    find: "    if (!this.committedInTerm) {\n      // Until an entry of this term commits",
    replace: "    if (false) {\n      // Until an entry of this term commits",
    profile: readIndexProfile,
  },
  {
    // A shared ReadIndex round is asked after its last read arrived (waiters.ts): a read that
    // joins a round already asked gets an index older than writes acknowledged in between. The
    // mutant never starts a new batch, so every turn asks again for every read still waiting:
    // it shows as a storm of rounds first (caught at seed 3 as a runaway queue).
    name: "a read joins a ReadIndex round that was already asked",
    file: "src/node/waiters.ts",
    find: "    this.pending = new Set();\n    this.byCtx.set(ctx, batch);",
    replace: "    this.byCtx.set(ctx, batch);",
    profile: { nodes: 3, clients: 8, keys: 1, maxDelay: 20, loss: 0, leaseReads: false },
  },
  {
    // The early send and background fsync (Raft thesis §10.2.1) are only safe for a leader's own appends.
    name: "acknowledge entries before persisting them (early send on followers)",
    file: "src/raft/raw_node.ts",
    find: '!termOrVote && r.role === "leader",',
    replace: "!termOrVote,",
    profile: { earlySend: true },
  },
  {
    // The leader's own copy counts toward a commit only once its background fsync is done.
    name: "count the leader's own entries toward a commit before they are fsynced",
    file: "src/raft/raft.ts",
    find: "const own = this.log.durable;",
    replace: "const own = this.log.lastIndex();",
    // Leaders die (by a power cut) right after they count an acknowledgement, on three nodes, so
    // an entry counted on the leader and one follower is lost on the leader: caught at seed 8
    // (seed 235 with the mixed faults and a slower disk model).
    profile: { earlySend: true, powerCuts: 1, nodes: 3, faultKinds: "leaderCrash", faultEvery: 10 * TICK },
  },
  {
    // The deadline says nothing about the entry: it is in the log and may commit a moment later.
    name: "a write past its deadline reported as not applied",
    file: "src/node/waiters.ts",
    find: 'const timeout = unknownOutcome("timeout", ',
    replace: 'const timeout = notApplied("overwritten", ',
    profile: {},
  },
  {
    // A bounded read is served only within the bound the node can prove (freshness.ts).
    name: "serve a bounded-staleness read without proving the bound",
    file: "src/node/node.ts",
    find: 'if (this.freshness.judge(this.clock.now(), maxStalenessMs).kind === "within") {\n      this.metrics.readsBoundedLocal++;',
    replace: 'if (true) {\n      this.metrics.readsBoundedLocal++;',
    profile: boundedProfile,
  },
  {
    // The proof dates from when the round started: the leader read its commit index at some
    // moment after that, which the follower cannot place more precisely on its own clock.
    name: "date a freshness proof from when the ReadIndex answer was applied, not from when the round started",
    file: "src/node/node.ts",
    find: "if (o.kind === \"ready\") this.freshness.proved(started);",
    replace: "if (o.kind === \"ready\") this.freshness.proved(this.clock.now());",
    profile: boundedProfile,
  },
];

/** Copies src/ and tests/sim/ to a temp dir, applies the mutation, returns the copy's root. */
export function buildMutant(repo: string, m: Mutation): string {
  const root = mkdtempSync(join(tmpdir(), "phalanx-mutant-"));
  cpSync(join(repo, "src"), join(root, "src"), { recursive: true });
  cpSync(join(repo, "tests", "sim"), join(root, "tests", "sim"), { recursive: true });
  // The node loop imports its runtime dependencies (zod, msgpack) by name.
  symlinkSync(join(repo, "node_modules"), join(root, "node_modules"));
  const path = join(root, m.file);
  const text = readFileSync(path, "utf8");
  if (!text.includes(m.find)) {
    removeMutant(root);
    throw new Error(`mutation "${m.name}": text not found in ${m.file}; update tests/sim/mutations.ts`);
  }
  writeFileSync(path, text.replace(m.find, m.replace));
  return root;
}

/** Unlinks the node_modules link first, so removing the copy can never reach the real one. */
function removeMutant(root: string): void {
  unlinkSync(join(root, "node_modules"));
  rmSync(root, { recursive: true, force: true });
}

export interface MutantResult {
  name: string;
  caughtAtSeed: number | null;
  seedsRun: number;
  violation: string | null;
  /** The real code's violation on the catching seed (null: it passes, so the mutation was caught). */
  realCodeViolation: string | null;
}

/**
 * Runs seeds 1..maxSeeds against the mutant until one reports a violation (the first catch ends
 * the hunt), then that seed with the same profile on the real code, which must pass it: a
 * violation the real code has too would say nothing about the mutation.
 */
export async function hunt(repo: string, m: Mutation, maxSeeds: number): Promise<MutantResult> {
  const root = buildMutant(repo, m);
  try {
    const sim = (await import(join(root, "tests", "sim", "cluster.ts"))) as typeof import("./cluster.ts");
    for (let seed = 1; seed <= maxSeeds; seed++) {
      const r = sim.runSim(seed, m.profile);
      if (r.ok) continue;
      const real = (await import(join(repo, "tests", "sim", "cluster.ts"))) as typeof import("./cluster.ts");
      const check = real.runSim(seed, m.profile);
      return { name: m.name, caughtAtSeed: seed, seedsRun: seed, violation: r.violation, realCodeViolation: check.violation };
    }
    return { name: m.name, caughtAtSeed: null, seedsRun: maxSeeds, violation: null, realCodeViolation: null };
  } finally {
    removeMutant(root);
  }
}
