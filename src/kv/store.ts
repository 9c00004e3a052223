// The replicated key-value state machine on SQLite, in the node's data file. Applying an entry,
// recording it as applied and updating the client's session happen in one transaction, so after
// a crash every entry has been applied exactly once: appliedIndex() is where to resume.
import type { Statement } from "bun:sqlite";
import { decodeConfEntry } from "../raft/conf_change.ts";
import type { ConfChange, ConfState, Entry, NodeId, SnapshotMeta } from "../raft/types.ts";
import type { DataDir } from "../storage/data_dir.ts";
import { CorruptDataError } from "../storage/errors.ts";
import {
  DEFAULT_LIMITS,
  decodeProposal,
  decodeResult,
  encodeResult,
  validateCommand,
  type Command,
  type Expect,
  type KeyValue,
  type Limits,
  type Proposal,
  type Result,
} from "./command.ts";
import { advanceLogTime, checkSession, isExpired, type SessionRecord } from "./session.ts";
import { DEFAULT_HISTORY_LIMITS, History, type HistoryLimits, type KvEvent } from "./history.ts";
import { LEASE_DDL, LeaseTable, type LeaseInfo } from "./lease.ts";
import { executeTxn, type TxnStore } from "./txn.ts";
import { decodeMemberContext, type Member, type MemberContext, type MemberRole } from "./member.ts";
import { restoreImage, takeImage, type KvSnapshot } from "./snapshot.ts";

export interface KvOptions {
  limits?: Limits;
  /** Sessions idle longer than this (log time) are evicted. Must be the same on every member. */
  sessionTtlMs?: number;
  /**
   * Live sessions at most; a registration beyond gets `too_many_sessions`. Part of the replicated
   * semantics (decided by the state alone, the same at every replica): the same on every member.
   */
  maxSessions?: number;
  /** Bounds of the change history behind watch. Must be the same on every member. */
  history?: HistoryLimits;
}

export const DEFAULT_SESSION_TTL_MS = 60 * 60 * 1000;
/** 20,000 registrations in 13 s all succeeded before there was a cap; each costs a row on every replica. */
export const DEFAULT_MAX_SESSIONS = 100_000;
/** A range page's default byte budget (keys and values). */
export const DEFAULT_RANGE_BYTES = 4 * 1024 * 1024;

export type { Member } from "./member.ts";


export interface RangeOptions {
  prefix: string;
  /** Exclusive: resume after the last key of the previous page. */
  after?: string;
  limit: number;
  /**
   * Stop once the keys and values returned add up to more than this (a page always has at least
   * one pair, so it may exceed the budget by one value). Without a byte budget 4 range reads over
   * 90 x 1 MiB values took a follower to 2.6 GB.
   */
  maxBytes?: number;
  /** Keys and revisions only: values are neither read into memory nor returned. */
  keysOnly?: boolean;
}

export interface RangePage {
  revision: number;
  kvs: KeyValue[];
  more: boolean;
  /** When `more`: the last key returned, to pass as `after` for the next page. */
  next: string | null;
  /** Key and value bytes in `kvs`. */
  bytes: number;
}

interface KvState {
  applied: number;
  revision: number;
  logTime: number;
  /**
   * Not stored: at most the oldest last_active of kv_sessions (Infinity when there is none), so
   * an entry whose log time expires no session skips the eviction statement. Kept here so that a
   * rollback restores it with the rest.
   */
  sessionFloor: number;
}

type KvRow = [string, Uint8Array, number, number, number];

const KV_COLUMNS = "key, value, create_revision, mod_revision, version";
const KEY_COLUMNS = "key, create_revision, mod_revision, version";
const NO_VALUE = new Uint8Array(0);

export class KvStore {
  private state: KvState;
  private readonly limits: Limits;
  private readonly ttl: number;
  private readonly maxSessions: number;
  private readonly q: Record<
    | "get"
    | "upsert"
    | "delete"
    | "setState"
    | "session"
    | "setSession"
    | "updateSession"
    | "evictSessions"
    | "oldestSession"
    | "countSessions"
    | "member"
    | "setMember"
    | "setRegion"
    | "removeMember"
    | "members",
    Statement
  >;
  /** Range and count statements by [with values?][lower bound inclusive?][has upper bound?]. */
  private readonly rangeQ: Statement[][][];
  private readonly countQ: Statement[];
  private readonly history: History;
  private readonly leases: LeaseTable;
  /** Position of the next event within the entry being applied (a transaction writes several). */
  private sub = 0;
  private readonly changeListeners = new Set<() => void>();
  /** The members table changed since takeMembersChanged() last asked (a spurious true after a rollback is harmless). */
  private membersDirty = false;
  private notifyScheduled = false;
  /** Writes the kv_state row from `state`, once per transaction, just before it commits (setState). */
  private readonly writeState = (): void => {
    this.q.setState.run(this.state.applied, this.state.revision, this.state.logTime);
  };

  constructor(
    private readonly dd: DataDir,
    options: KvOptions = {},
  ) {
    this.limits = options.limits ?? DEFAULT_LIMITS;
    this.ttl = options.sessionTtlMs ?? DEFAULT_SESSION_TTL_MS;
    this.maxSessions = options.maxSessions ?? DEFAULT_MAX_SESSIONS;
    const db = dd.db;
    this.q = {
      get: db.query(`SELECT ${KV_COLUMNS} FROM kv WHERE key = ?`),
      upsert: db.query(
        `INSERT INTO kv (${KV_COLUMNS}) VALUES (?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET ` +
          "value = excluded.value, mod_revision = excluded.mod_revision, version = excluded.version",
      ),
      delete: db.query("DELETE FROM kv WHERE key = ?"),
      setState: db.query("UPDATE kv_state SET applied_index = ?, revision = ?, log_time = ? WHERE id = 1"),
      session: db.query("SELECT seq, result, last_active FROM kv_sessions WHERE client = ?"),
      setSession: db.query("INSERT OR REPLACE INTO kv_sessions (client, seq, result, last_active) VALUES (?, ?, ?, ?)"),
      // The row exists (its session was just read): an UPDATE, about half the cost of a REPLACE's delete and insert.
      updateSession: db.query("UPDATE kv_sessions SET seq = ?, result = ?, last_active = ? WHERE client = ?"),
      evictSessions: db.query("DELETE FROM kv_sessions WHERE last_active < ?"),
      oldestSession: db.query("SELECT min(last_active) FROM kv_sessions"),
      countSessions: db.query("SELECT count(*) FROM kv_sessions"),
      member: db.query("SELECT address, region FROM members WHERE id = ?"),
      setMember: db.query("INSERT OR REPLACE INTO members (id, address, role, region) VALUES (?, ?, ?, ?)"),
      setRegion: db.query("UPDATE members SET region = ? WHERE id = ?"),
      removeMember: db.query("DELETE FROM members WHERE id = ?"),
      members: db.query("SELECT id, address, role, region FROM members ORDER BY id"),
    };
    const range = (columns: string, lower: string, upper: boolean) =>
      db.query(`SELECT ${columns} FROM kv WHERE key ${lower} ?${upper ? " AND key < ?" : ""} ORDER BY key LIMIT ?`);
    this.rangeQ = [KEY_COLUMNS, KV_COLUMNS].map((cols) => [
      [range(cols, ">", false), range(cols, ">", true)],
      [range(cols, ">=", false), range(cols, ">=", true)],
    ]);
    this.countQ = [db.query("SELECT count(*) FROM kv WHERE key >= ?"), db.query("SELECT count(*) FROM kv WHERE key >= ? AND key < ?")];
    this.state = this.loadState();
    // One transaction, so a new data dir pays one fsync for these tables, not one per statement.
    dd.transaction(() => {
      db.run(LEASE_DDL);
      History.ensureTables(db, this.state.revision);
    });
    this.history = new History(db, options.history ?? DEFAULT_HISTORY_LIMITS, (undo) => this.dd.tx.onRollback(undo));
    this.leases = new LeaseTable(db);
  }

  /**
   * Calls `listener` after entries were applied (or a snapshot installed), once per batch, from a
   * microtask: by then the batch's transaction has committed (or rolled back, and the listener
   * sees the old state). Watch and blocking reads hang off this. Returns the unsubscribe function.
   */
  onChange(listener: () => void): () => void {
    this.changeListeners.add(listener);
    return () => this.changeListeners.delete(listener);
  }

  /** Events with revision in (after, upTo], in revision order, at most `limit`. */
  events(after: number, upTo: number, limit: number): KvEvent[] {
    return this.history.read(after, upTo, limit);
  }

  /** Every event with a revision above this is in the history; older ones were pruned. */
  historyFloor(): number {
    return this.history.floor();
  }

  historyStats(): { events: number; bytes: number; floor: number } {
    return this.history.stats();
  }

  /** Whether the key (or a key under the prefix) changed after `revision` according to the history (false also when pruned). */
  changedAfter(range: { key: string } | { prefix: string }, revision: number): boolean {
    if ("key" in range) return this.history.changedAfter(range.key, revision);
    return this.history.rangeChangedAfter(range.prefix, prefixEnd(range.prefix), revision);
  }

  lease(id: number): LeaseInfo | null {
    return this.leases.get(id);
  }

  allLeases(): LeaseInfo[] {
    return this.leases.all();
  }

  /** Changes whenever the set of leases changes (see LeaseTable.shape). */
  leaseShape(): string {
    return this.leases.shape();
  }

  leaseKeys(id: number, limit: number): string[] {
    return this.leases.keys(id, limit);
  }

  leaseOf(key: string): number {
    return this.leases.leaseOf(key);
  }

  private scheduleNotify(): void {
    if (this.notifyScheduled || this.changeListeners.size === 0) return;
    this.notifyScheduled = true;
    queueMicrotask(() => {
      this.notifyScheduled = false;
      for (const l of this.changeListeners) l();
    });
  }

  appliedIndex(): number {
    return this.state.applied;
  }

  /** The Raft index of the last mutation. */
  revision(): number {
    return this.state.revision;
  }

  /** The log's clock: the largest proposer timestamp applied so far. */
  logTime(): number {
    return this.state.logTime;
  }

  get(key: string): { revision: number; kv: KeyValue | null } {
    return { revision: this.state.revision, kv: this.row(key) };
  }

  /**
   * Keys starting with `prefix`, in UTF-8 byte order, after `after`, at most `limit` pairs and
   * about `maxBytes` of keys and values. Rows are read one at a time, so memory follows the
   * budget, not the limit.
   */
  range(opts: RangeOptions): RangePage {
    if (!Number.isInteger(opts.limit) || opts.limit < 1) throw new RangeError(`range limit must be a positive integer`);
    const maxBytes = opts.maxBytes ?? DEFAULT_RANGE_BYTES;
    if (!Number.isInteger(maxBytes) || maxBytes < 1) throw new RangeError(`range maxBytes must be a positive integer`);
    const upper = prefixEnd(opts.prefix);
    const useAfter = opts.after !== undefined && compareUtf8(opts.after, opts.prefix) >= 0;
    const lower = useAfter ? opts.after! : opts.prefix;
    const stmt = this.rangeQ[opts.keysOnly === true ? 0 : 1]![useAfter ? 0 : 1]![upper === null ? 0 : 1]!;
    const args = upper === null ? [lower, opts.limit + 1] : [lower, upper, opts.limit + 1];
    const kvs: KeyValue[] = [];
    let bytes = 0;
    let more = false;
    for (const row of stmt.iterate(...args) as IterableIterator<Record<string, unknown>>) {
      const kv = opts.keysOnly === true ? toKeyOnly(row) : toKeyValue(Object.values(row) as KvRow);
      const size = Buffer.byteLength(kv.key) + kv.value.byteLength;
      if (kvs.length >= opts.limit || (kvs.length > 0 && bytes + size > maxBytes)) {
        more = true;
        break;
      }
      kvs.push(kv);
      bytes += size;
    }
    return { revision: this.state.revision, kvs, more, next: more ? kvs[kvs.length - 1]!.key : null, bytes };
  }

  count(prefix: string): { revision: number; count: number } {
    const upper = prefixEnd(prefix);
    const row = (upper === null ? this.countQ[0]!.values(prefix) : this.countQ[1]!.values(prefix, upper))[0] as [number];
    return { revision: this.state.revision, count: row[0] };
  }

  /** Whether the members table may have changed since the last call (conf entry, member command, snapshot). */
  takeMembersChanged(): boolean {
    const dirty = this.membersDirty;
    this.membersDirty = false;
    return dirty;
  }

  /** The cluster members as of the applied index (bootstrap members, then applied conf changes). */
  members(): Member[] {
    return (this.q.members.values() as Array<[string, string, MemberRole, string]>).map(([id, address, role, region]) => ({
      id,
      address,
      region,
      role,
    }));
  }

  /**
   * Applies the next committed entry. Returns the client's result for a `normal` entry, null
   * for `noop` and `conf`. Entries must come in log order without gaps: anything else is a bug
   * upstream that would corrupt the state, so it throws.
   */
  apply(entry: Entry): Result | null {
    if (entry.index !== this.state.applied + 1) {
      throw new Error(`apply out of order: entry ${entry.index} after applied index ${this.state.applied}`);
    }
    const run = (): Result | null => {
      const next: KvState = { ...this.state, applied: entry.index };
      let result: Result | null = null;
      if (entry.type === "normal") result = this.applyProposal(entry.index, this.decodeEntry(entry), next);
      else if (entry.type === "conf") this.applyConfChange(this.decodeConf(entry));
      this.setState(next);
      return result;
    };
    // Inside the caller's transaction (a Ready) no savepoint per entry: an entry that throws fails
    // the whole transaction, which rolls back together with the state set by setState().
    const result = this.dd.tx.active ? run() : this.dd.tx.run(run);
    this.scheduleNotify();
    return result;
  }

  /** A consistent copy of the state as last committed; see snapshot.ts. */
  snapshot(): KvSnapshot {
    return takeImage(this.dd.db);
  }

  /** Replaces the whole state with a snapshot's, atomically (inside the caller's transaction if any). */
  restore(data: Uint8Array, meta: SnapshotMeta): void {
    this.dd.tx.run(() => {
      const restored = restoreImage(this.dd.db, data, meta.index, `${this.dd.file} (snapshot ${meta.index})`);
      this.setState({ applied: meta.index, revision: restored.revision, logTime: restored.logTime, sessionFloor: this.oldestSession() });
      this.history.reload();
      this.dd.tx.onRollback(this.leases.reload());
      this.membersDirty = true;
    });
    this.scheduleNotify();
  }

  /**
   * Disaster recovery only (snapshot restore, force-new-cluster): replaces the member rows with a
   * configuration decided by the operator, in the caller's transaction. Raft never calls this;
   * its membership changes arrive as conf entries through apply().
   */
  replaceMembers(members: readonly Member[]): void {
    if (!this.dd.tx.active) throw new Error("replaceMembers must run inside a transaction");
    this.dd.db.run("DELETE FROM members");
    for (const m of members) this.q.setMember.run(m.id, m.address, m.role, m.region);
  }

  private applyProposal(index: number, p: Proposal, next: KvState): Result {
    next.logTime = advanceLogTime(next.logTime, p.time);
    // Evicting on every write, by log time, makes every replica drop the same sessions at the same
    // index. Skipped, with the same outcome, while even the oldest session (at least the floor) is
    // not expired: then the statement would delete nothing. Most writes skip it.
    if (isExpired({ lastActive: next.sessionFloor }, next.logTime, this.ttl)) {
      this.q.evictSessions.run(next.logTime - this.ttl);
      next.sessionFloor = this.oldestSession();
    }
    if (p.cmd.op === "register") {
      // Counted after this entry's eviction, from replicated state only: every replica agrees.
      const live = (this.q.countSessions.values()[0] as [number])[0];
      if (live >= this.maxSessions) {
        return { error: "too_many_sessions", message: `${live} client sessions are live (the limit is ${this.maxSessions}); reuse a session, or wait for idle ones to expire` };
      }
      const result: Result = { op: "register", client: index };
      this.q.setSession.run(index, 0, encodeResult(result), next.logTime);
      next.sessionFloor = Math.min(next.sessionFloor, next.logTime);
      return result;
    }
    this.sub = 0;
    this.history.begin();
    if (p.session === null) return this.executeAndPrune(index, p.cmd, next);
    const { client, seq } = p.session;
    const verdict = checkSession(client, this.session(client), seq);
    if (verdict.kind === "error") return { error: verdict.code, message: verdict.message };
    const result = verdict.kind === "duplicate" ? verdict.result : this.executeAndPrune(index, p.cmd, next);
    const { changes } = this.q.updateSession.run(seq, encodeResult(result), next.logTime, client);
    if (changes !== 1) throw new Error(`session ${client} was read but its row was not updated (${changes} rows)`);
    next.sessionFloor = Math.min(next.sessionFloor, next.logTime);
    return result;
  }

  private executeAndPrune(index: number, cmd: Command, next: KvState): Result {
    const result = this.execute(index, cmd, next);
    this.history.prune(next.revision);
    return result;
  }

  private execute(index: number, cmd: Command, next: KvState): Result {
    const invalid = validateCommand(cmd, this.limits);
    if (invalid !== null) return invalid;
    switch (cmd.op) {
      case "put": {
        const lease = cmd.lease ?? 0;
        if (lease !== 0 && this.leases.get(lease) === null) return leaseNotFound(lease);
        const prev = this.row(cmd.key);
        this.write(index, cmd.key, cmd.value, prev, next, lease);
        return { op: "put", revision: next.revision, prev };
      }
      case "del": {
        const prev = this.row(cmd.key);
        if (prev !== null) this.remove(index, cmd.key, next);
        return { op: "del", revision: next.revision, deleted: prev !== null, prev };
      }
      case "cas": {
        const cur = this.row(cmd.key);
        if (!matches(cur, cmd.expect)) return { op: "cas", revision: next.revision, succeeded: false, current: cur };
        const current = this.write(index, cmd.key, cmd.value, cur, next);
        return { op: "cas", revision: next.revision, succeeded: true, current };
      }
      case "delIf": {
        const cur = this.row(cmd.key);
        if (!matches(cur, cmd.expect)) return { op: "delIf", revision: next.revision, succeeded: false, current: cur };
        if (cur !== null) this.remove(index, cmd.key, next);
        return { op: "delIf", revision: next.revision, succeeded: true, current: null };
      }
      case "register":
        throw new Error("register is handled before execute");
      case "txn":
        return executeTxn(cmd, this.txnStore(index, next));
      case "member": {
        const found = this.q.member.values(cmd.id).length > 0;
        if (found) this.q.setRegion.run(cmd.region, cmd.id);
        this.membersDirty = true;
        return { op: "member", found };
      }
      case "leaseGrant":
        // The id is the grant's log index: unique, and the same on every replica.
        this.leases.grant(index, cmd.ttlMs, next.logTime);
        return { op: "leaseGrant", revision: next.revision, id: index, ttlMs: cmd.ttlMs };
      case "leaseRevoke":
      case "leaseExpire": {
        const found = this.leases.get(cmd.id) !== null;
        let deleted = 0;
        // Bounded: every page deletes the keys it read (remove() detaches them), so it shrinks.
        for (let keys = this.leases.keys(cmd.id, 1000); keys.length > 0; keys = this.leases.keys(cmd.id, 1000)) {
          for (const key of keys) this.remove(index, key, next);
          deleted += keys.length;
        }
        this.leases.remove(cmd.id);
        return { op: cmd.op, revision: next.revision, found, deleted };
      }
    }
  }

  private txnStore(index: number, next: KvState): TxnStore {
    return {
      row: (key) => this.row(key),
      leaseOf: (key) => this.leases.leaseOf(key),
      leaseExists: (id) => this.leases.get(id) !== null,
      page: (prefix, after, limit) => this.range({ prefix, limit, ...(after === undefined ? {} : { after }) }),
      put: (key, value, lease, prev) => void this.write(index, key, value, prev, next, lease),
      remove: (key) => this.remove(index, key, next),
      revision: () => next.revision,
    };
  }

  private write(index: number, key: string, value: Uint8Array, prev: KeyValue | null, next: KvState, lease = 0): KeyValue {
    const kv: KeyValue = {
      key,
      value,
      createRevision: prev?.createRevision ?? index,
      modRevision: index,
      version: (prev?.version ?? 0) + 1,
    };
    this.q.upsert.run(key, value, kv.createRevision, kv.modRevision, kv.version);
    // A put without a lease detaches the key from any lease it had (etcd does the same).
    this.leases.setLeaseOf(key, lease);
    this.history.record({ type: "put", revision: index, key, value, createRevision: kv.createRevision, version: kv.version, lease }, this.sub++);
    next.revision = index;
    return kv;
  }

  private remove(index: number, key: string, next: KvState): void {
    this.q.delete.run(key);
    this.leases.setLeaseOf(key, 0);
    this.history.record({ type: "delete", revision: index, key, value: NO_VALUE, createRevision: 0, version: 0, lease: 0 }, this.sub++);
    next.revision = index;
  }

  /**
   * The table becomes exactly the entry's configuration: one row per voter and learner, in its
   * role. Addresses and regions: the changed member's from its record, the others' from the
   * records the leader carried along (`others`), else as this replica knew them ("" for a member
   * it never saw: entries from before format 2 carry no records). A replica that joined later
   * thereby gets the founders' rows from the first conf entry it applies.
   */
  private applyConfChange({ change: cc, conf, context }: { change: ConfChange; conf: ConfState; context: MemberContext }): void {
    this.membersDirty = true;
    const known = new Map(this.members().map((m) => [m.id, m]));
    const pick = (fresh: string | undefined, old: string | undefined) => (fresh !== undefined && fresh !== "" ? fresh : (old ?? ""));
    this.dd.db.run("DELETE FROM members");
    for (const [ids, role] of [[conf.voters, "voter"], [conf.learners, "learner"]] as const) {
      for (const id of ids) {
        const fresh = id === cc.node ? context : context.others[id];
        this.q.setMember.run(id, pick(fresh?.address, known.get(id)?.address), role, pick(fresh?.region, known.get(id)?.region));
      }
    }
  }

  /**
   * The client's session, its cached result decoded only when read: only a retry (the duplicate
   * verdict) reads it, and decoding with the result schema cost more than the rest of a write.
   * A damaged result is still reported as corruption, by the retry that needs it; the next newer
   * write of the client replaces it.
   */
  private session(client: number): SessionRecord<Result> | undefined {
    const row = this.q.session.values(client)[0] as [number, Uint8Array, number] | undefined;
    if (row === undefined) return undefined;
    const decode = () => this.decodeStored(row[1], `session ${client}`);
    return {
      seq: row[0],
      lastActive: row[2],
      get result() {
        return decode();
      },
    };
  }

  /**
   * The new state, in memory at once and in the kv_state row when the transaction commits: one
   * UPDATE per Ready instead of one per entry. Still inside the transaction, so the row and the
   * entries' effects commit or roll back together, and the applied index on disk is exact.
   */
  private setState(next: KvState): void {
    this.dd.tx.beforeCommit(this.writeState);
    const prev = this.state;
    this.dd.tx.onRollback(() => {
      this.state = prev;
    });
    this.state = next;
  }

  private row(key: string): KeyValue | null {
    const row = this.q.get.values(key)[0] as KvRow | undefined;
    return row === undefined ? null : toKeyValue(row);
  }

  private loadState(): KvState {
    const row = this.dd.db.query("SELECT applied_index, revision, log_time FROM kv_state WHERE id = 1").values()[0] as
      | [number, number, number]
      | undefined;
    if (row === undefined) throw this.corrupt("the kv_state row is missing");
    const [applied, revision, logTime] = row;
    if (revision > applied) throw this.corrupt(`store revision ${revision} is beyond the applied index ${applied}`);
    return { applied, revision, logTime, sessionFloor: this.oldestSession() };
  }

  private oldestSession(): number {
    return (this.q.oldestSession.values()[0] as [number | null])[0] ?? Infinity;
  }

  private decodeEntry(entry: Entry): Proposal {
    try {
      return decodeProposal(entry.data);
    } catch (err) {
      throw this.corrupt(`log entry ${entry.index}: ${(err as Error).message}`, err);
    }
  }

  private decodeConf(entry: Entry): { change: ConfChange; conf: ConfState; context: MemberContext } {
    try {
      const { change, conf } = decodeConfEntry(entry.data);
      return { change, conf, context: decodeMemberContext(change.context) };
    } catch (err) {
      throw this.corrupt(`log entry ${entry.index}: ${(err as Error).message}`, err);
    }
  }

  private decodeStored(data: Uint8Array, what: string): Result {
    try {
      return decodeResult(data);
    } catch (err) {
      throw this.corrupt(`${what}: ${(err as Error).message}`, err);
    }
  }

  private corrupt(detail: string, cause?: unknown): CorruptDataError {
    return new CorruptDataError(`${this.dd.file}: ${detail}`, this.dd.file, { cause });
  }
}

/** A keys-only row; its value is empty (the API leaves it out). */
function toKeyOnly(row: Record<string, unknown>): KeyValue {
  return {
    key: row.key as string,
    value: NO_VALUE,
    createRevision: row.create_revision as number,
    modRevision: row.mod_revision as number,
    version: row.version as number,
  };
}

function leaseNotFound(id: number): Result {
  return { error: "lease_not_found", message: `lease ${id} does not exist (expired or revoked)` };
}

function toKeyValue(row: KvRow): KeyValue {
  return { key: row[0], value: row[1], createRevision: row[2], modRevision: row[3], version: row[4] };
}

function matches(cur: KeyValue | null, expect: Expect): boolean {
  if ("modRevision" in expect) return expect.modRevision === 0 ? cur === null : cur?.modRevision === expect.modRevision;
  if (expect.value === null) return cur === null;
  return cur !== null && Buffer.compare(cur.value, expect.value) === 0;
}

/** SQLite orders TEXT by its UTF-8 bytes, i.e. by code point; JS `<` compares UTF-16 units. */
function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));
}

/**
 * The least string above every string starting with `prefix` (null: no bound): the prefix with
 * its last code point incremented, trailing U+10FFFF dropped, surrogates skipped.
 */
export function prefixEnd(prefix: string): string | null {
  const cps = Array.from(prefix, (c) => c.codePointAt(0)!);
  for (let i = cps.length - 1; i >= 0; i--) {
    const cp = cps[i]!;
    if (cp === 0x10ffff) continue;
    const inc = cp === 0xd7ff ? 0xe000 : cp + 1;
    return String.fromCodePoint(...cps.slice(0, i), inc);
  }
  return null;
}
