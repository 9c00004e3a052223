// Leases in the state machine: which leases exist (id, TTL) and which keys each one carries. The
// state machine never looks at a clock to expire a lease: the leader's lease timer
// (src/node/lease_timer.ts) decides, and proposes a leaseExpire entry that every replica applies
// the same way. So expiry happens at the same index everywhere, and a lagging or partitioned
// follower cannot delete keys on its own.
import type { Database, Statement } from "bun:sqlite";

export const LEASE_DDL = `
CREATE TABLE IF NOT EXISTS kv_leases (id INTEGER PRIMARY KEY, ttl_ms INTEGER NOT NULL, granted_at INTEGER NOT NULL) STRICT;
CREATE TABLE IF NOT EXISTS kv_lease_keys (key TEXT PRIMARY KEY, lease INTEGER NOT NULL) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS kv_lease_keys_lease ON kv_lease_keys (lease, key);
`;

export interface LeaseInfo {
  id: number;
  ttlMs: number;
  /** Log time (ms) of the grant. */
  grantedAt: number;
}

export class LeaseTable {
  private readonly q: Record<"grant" | "get" | "all" | "remove" | "attach" | "detach" | "leaseOf" | "keys" | "anyKey" | "shape", Statement>;
  /** Conservative: true once any key may carry a lease (a rollback leaving it true costs only speed). */
  private anyAttached = true;

  constructor(db: Database) {
    this.q = {
      grant: db.query("INSERT INTO kv_leases (id, ttl_ms, granted_at) VALUES (?, ?, ?)"),
      get: db.query("SELECT id, ttl_ms, granted_at FROM kv_leases WHERE id = ?"),
      all: db.query("SELECT id, ttl_ms, granted_at FROM kv_leases ORDER BY id"),
      remove: db.query("DELETE FROM kv_leases WHERE id = ?"),
      attach: db.query("INSERT OR REPLACE INTO kv_lease_keys (key, lease) VALUES (?, ?)"),
      detach: db.query("DELETE FROM kv_lease_keys WHERE key = ?"),
      leaseOf: db.query("SELECT lease FROM kv_lease_keys WHERE key = ?"),
      keys: db.query("SELECT key FROM kv_lease_keys WHERE lease = ? ORDER BY key LIMIT ?"),
      anyKey: db.query("SELECT 1 FROM kv_lease_keys LIMIT 1"),
      shape: db.query("SELECT count(*), coalesce(max(id), 0) FROM kv_leases"),
    };
    this.reload();
  }

  grant(id: number, ttlMs: number, logTime: number): void {
    this.q.grant.run(id, ttlMs, logTime);
  }

  get(id: number): LeaseInfo | null {
    const row = this.q.get.values(id)[0] as [number, number, number] | undefined;
    return row === undefined ? null : { id: row[0], ttlMs: row[1], grantedAt: row[2] };
  }

  all(): LeaseInfo[] {
    return (this.q.all.values() as Array<[number, number, number]>).map(([id, ttlMs, grantedAt]) => ({ id, ttlMs, grantedAt }));
  }

  /**
   * A cheap fingerprint of the set of leases: it changes whenever the set does, because ids only
   * grow (a grant raises the max unless it is gone again) and a revoke alone lowers the count.
   */
  shape(): string {
    const [count, max] = this.q.shape.values()[0] as [number, number];
    return `${count}:${max}`;
  }

  remove(id: number): void {
    this.q.remove.run(id);
  }

  /**
   * Records which lease carries `key` (0: none, the key outlives every lease, as in etcd). While
   * no key was ever attached (since open or the last restore), detaching has nothing to do: the
   * write path of a cluster without leases pays no extra statement.
   */
  setLeaseOf(key: string, lease: number): void {
    if (lease !== 0) {
      this.anyAttached = true;
      this.q.attach.run(key, lease);
    } else if (this.anyAttached) this.q.detach.run(key);
  }

  /**
   * Re-reads whether any key carries a lease (at open, after a snapshot is installed). Returns how
   * to undo it: a rolled-back install must not leave "no leased keys" behind for a state that has some.
   */
  reload(): () => void {
    const prev = this.anyAttached;
    this.anyAttached = this.q.anyKey.values().length > 0;
    return () => {
      this.anyAttached = prev;
    };
  }

  leaseOf(key: string): number {
    return (this.q.leaseOf.values(key)[0] as [number] | undefined)?.[0] ?? 0;
  }

  /** The keys a lease carries, in key order, at most `limit`. */
  keys(id: number, limit: number): string[] {
    return (this.q.keys.values(id, limit) as Array<[string]>).map((r) => r[0]);
  }
}
