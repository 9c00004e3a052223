// The simulator's replicated state machine: integer registers with exactly-once client sessions
// (the product's session rule from src/kv/session.ts). It counts how often each client write is
// applied so the simulator can prove exactly-once.
import { advanceLogTime, checkSession, isExpired, type SessionRecord } from "../../src/kv/session.ts";
import type { Entry } from "../../src/raft/types.ts";

export type SimCommand =
  | { op: "register"; time: number }
  | { op: "put"; client: number; seq: number; time: number; key: string; value: number }
  | { op: "cas"; client: number; seq: number; time: number; key: string; expect: number | null; value: number };

export type SimResult =
  | { ok: true; clientId?: number; succeeded?: boolean }
  | { ok: false; error: string };

export const SESSION_TTL = 50_000;

const enc = new TextEncoder();
const dec = new TextDecoder();

export function encodeCommand(c: SimCommand): Uint8Array {
  return enc.encode(JSON.stringify(c));
}

interface State {
  applied: number;
  logTime: number;
  data: [string, number][];
  sessions: [number, SessionRecord<SimResult>][];
  applyCount: [string, number][];
}

export class ModelKv {
  applied = 0;
  private logTime = 0;
  private data = new Map<string, number>();
  private sessions = new Map<number, SessionRecord<SimResult>>();
  /** "client:seq" -> times applied, part of the state so it survives snapshots and restarts. */
  private applyCount = new Map<string, number>();

  get(key: string): number | null {
    return this.data.get(key) ?? null;
  }

  /** Applies one committed entry; returns the result for a normal entry, and any exactly-once breach. */
  apply(e: Entry): { result: SimResult | null; duplicateApply: string | null } {
    if (e.index !== this.applied + 1) throw new Error(`model kv: applying ${e.index} after ${this.applied}`);
    this.applied = e.index;
    if (e.type !== "normal") return { result: null, duplicateApply: null };
    const cmd = JSON.parse(dec.decode(e.data)) as SimCommand;
    this.logTime = advanceLogTime(this.logTime, cmd.time);
    this.evictExpired();
    if (cmd.op === "register") {
      this.sessions.set(e.index, { seq: 0, result: { ok: true }, lastActive: this.logTime });
      return { result: { ok: true, clientId: e.index }, duplicateApply: null };
    }
    const rec = this.sessions.get(cmd.client);
    const verdict = checkSession(cmd.client, rec, cmd.seq);
    if (verdict.kind === "duplicate") return { result: verdict.result, duplicateApply: null };
    if (verdict.kind === "error") return { result: { ok: false, error: verdict.code }, duplicateApply: null };
    let result: SimResult;
    if (cmd.op === "put") {
      this.data.set(cmd.key, cmd.value);
      result = { ok: true };
    } else {
      const cur = this.data.get(cmd.key) ?? null;
      const succeeded = cur === cmd.expect;
      if (succeeded) this.data.set(cmd.key, cmd.value);
      result = { ok: true, succeeded };
    }
    this.sessions.set(cmd.client, { seq: cmd.seq, result, lastActive: this.logTime });
    const id = `${cmd.client}:${cmd.seq}`;
    const n = (this.applyCount.get(id) ?? 0) + 1;
    this.applyCount.set(id, n);
    return { result, duplicateApply: n > 1 ? id : null };
  }

  private evictExpired(): void {
    for (const [id, rec] of this.sessions) if (isExpired(rec, this.logTime, SESSION_TTL)) this.sessions.delete(id);
  }

  serialize(): Uint8Array {
    const s: State = {
      applied: this.applied,
      logTime: this.logTime,
      data: [...this.data],
      sessions: [...this.sessions],
      applyCount: [...this.applyCount],
    };
    return enc.encode(JSON.stringify(s));
  }

  static restore(bytes: Uint8Array): ModelKv {
    const kv = new ModelKv();
    if (bytes.byteLength === 0) return kv;
    const s = JSON.parse(dec.decode(bytes)) as State;
    kv.applied = s.applied;
    kv.logTime = s.logTime;
    kv.data = new Map(s.data);
    kv.sessions = new Map(s.sessions);
    kv.applyCount = new Map(s.applyCount);
    return kv;
  }
}
