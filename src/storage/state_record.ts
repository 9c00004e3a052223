// DATA_DIR/phalanx.state: a floor under the node's durable Raft state (term, vote, commit, last
// log index), kept OUTSIDE the SQLite database and its write-ahead log. Losing or damaging the WAL
// after a crash (deleted, or a torn/zeroed frame, after which SQLite silently stops reading it)
// rolls phalanx.db back to an older state that SQLite reports as healthy. A node serving from it
// would forget acknowledged writes, or its vote, and could vote twice in a term. Comparing the
// database with this record at open tells a rolled-back database from an intact one.
//
// Invariant: the record never claims more than the database holds durably. It is raised only
// after a synced commit (at once when term or vote changed, before any message of the new term
// or vote leaves; otherwise at most every RAISE_EVERY_MS), and lowered BEFORE a commit that
// legitimately moves the last index back (a conflicting suffix truncated, a snapshot installed).
//
// Format: two 256-byte slots, each one JSON line with a sequence number and a SHA-256 checksum; a
// write replaces the older slot and fdatasyncs. A torn write damages one slot; the other stands.
// Slots are overwritten in place, so a full disk cannot refuse the write.
import { createHash, randomUUID } from "node:crypto";
import { closeSync, constants, fdatasyncSync, openSync, readSync, writeSync } from "node:fs";

export const STATE_FILE = "phalanx.state";
const SLOT = 256;
const MAGIC = "phalanx-state v1";

/** The floor: what the database held durably when it was last recorded. */
export interface DurableState {
  term: number;
  vote: string | null;
  commit: number;
  last: number;
}

export interface RecordContent extends DurableState {
  /** Ties the record to one database (the same id is stored inside phalanx.db). */
  id: string;
  seq: number;
}

export type ReadResult = { kind: "valid"; record: RecordContent } | { kind: "damaged"; detail: string };

const checksum = (body: string) => createHash("sha256").update(body).digest("hex").slice(0, 32);

function encode(r: RecordContent): Buffer {
  const body = JSON.stringify({ m: MAGIC, id: r.id, seq: r.seq, term: r.term, vote: r.vote, commit: r.commit, last: r.last });
  const line = `${body} ${checksum(body)}\n`;
  if (line.length > SLOT) throw new Error(`state record too long (${line.length} bytes)`);
  return Buffer.from(line.padEnd(SLOT, "\0"), "utf8");
}

function decode(slot: Buffer): RecordContent | null {
  const text = slot.toString("utf8").replace(/\0+$/, "");
  const m = /^(\{.*\}) ([0-9a-f]{32})\n$/.exec(text);
  if (m === null || checksum(m[1]!) !== m[2]) return null;
  const v = JSON.parse(m[1]!) as Record<string, unknown>;
  const int = (x: unknown) => typeof x === "number" && Number.isSafeInteger(x);
  if (v.m !== MAGIC || typeof v.id !== "string" || !int(v.seq) || !int(v.term) || !int(v.commit) || !int(v.last)) return null;
  if (v.vote !== null && typeof v.vote !== "string") return null;
  return { id: v.id, seq: v.seq as number, term: v.term as number, vote: v.vote as string | null, commit: v.commit as number, last: v.last as number };
}

/** Reads the record; the newer of the two valid slots wins. */
export function readStateRecord(path: string): ReadResult {
  const fd = openSync(path, "r");
  const buf = Buffer.alloc(SLOT * 2);
  let n: number;
  try {
    n = readSync(fd, buf, 0, buf.length, 0);
  } finally {
    closeSync(fd);
  }
  const slots = [decode(buf.subarray(0, SLOT)), n > SLOT ? decode(buf.subarray(SLOT, SLOT * 2)) : null];
  const valid = slots.filter((s): s is RecordContent => s !== null);
  if (valid.length === 0) return { kind: "damaged", detail: `neither of its two records is intact (${n} bytes)` };
  if (valid.length === 2 && valid[0]!.id !== valid[1]!.id) return { kind: "damaged", detail: "its two records name different databases" };
  return { kind: "valid", record: valid.reduce((a, b) => (b.seq > a.seq ? b : a)) };
}

/** The open record file of a data dir this process holds (under its lock). */
export class StateRecord {
  private constructor(
    readonly path: string,
    private readonly fd: number,
    private content: RecordContent,
  ) {}

  /** A new record for a new database: both slots written, then synced. */
  static create(path: string, state: DurableState): StateRecord {
    const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o644);
    const content: RecordContent = { id: randomUUID(), seq: 1, ...state };
    try {
      writeSync(fd, encode({ ...content, seq: 0 }), 0, SLOT, 0);
      writeSync(fd, encode(content), 0, SLOT, SLOT);
      fdatasyncSync(fd);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return new StateRecord(path, fd, content);
  }

  static open(path: string, content: RecordContent): StateRecord {
    return new StateRecord(path, openSync(path, constants.O_RDWR), content);
  }

  get id(): string {
    return this.content.id;
  }

  get state(): DurableState {
    const { term, vote, commit, last } = this.content;
    return { term, vote, commit, last };
  }

  /** Replaces the older slot with `state` and makes it durable. */
  write(state: DurableState): void {
    const next: RecordContent = { id: this.content.id, seq: this.content.seq + 1, ...state };
    writeSync(this.fd, encode(next), 0, SLOT, (next.seq % 2) * SLOT);
    fdatasyncSync(this.fd);
    this.content = next;
  }

  close(): void {
    closeSync(this.fd);
  }
}

/**
 * Where `db` is below the floor `rec`, one clause per field that went back; empty when the
 * database holds at least everything recorded. A higher term resets the vote, so a vote is only
 * compared within the same term.
 */
export function wentBack(db: DurableState, rec: DurableState): string[] {
  const back: string[] = [];
  if (db.term < rec.term) back.push(`term ${db.term} < ${rec.term}`);
  if (db.term === rec.term && rec.vote !== null && db.vote !== rec.vote) back.push(`vote ${db.vote ?? "none"} != ${rec.vote} in term ${rec.term}`);
  if (db.commit < rec.commit) back.push(`commit index ${db.commit} < ${rec.commit}`);
  if (db.last < rec.last) back.push(`last log index ${db.last} < ${rec.last}`);
  return back;
}
