// The replicated command format: what a `normal` entry carries (msgpack), and the results the
// state machine returns. The API layer and the client encode proposals and decode results with
// these helpers; the state machine decodes entries with them. Decoding validates with zod: an
// entry in our own log that does not parse was damaged, so it is reported, never skipped.
import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";
import { plainZodMessage } from "../transport/zod_message.ts";
import { invalidRegion } from "./member.ts";

export interface Limits {
  /** UTF-8 bytes. */
  maxKeyBytes: number;
  maxValueBytes: number;
}

/** Part of the replicated semantics: every member of a cluster must use the same limits. */
export const DEFAULT_LIMITS: Limits = { maxKeyBytes: 4096, maxValueBytes: 1024 * 1024 };

const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes");
const counter = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

const expectSchema = z.union([
  z.strictObject({ value: bytes.nullable() }),
  z.strictObject({ modRevision: counter }),
]);

/** Limits of one transaction, part of the replicated semantics like `Limits` (etcd: --max-txn-ops 128). */
export const TXN_LIMITS = { maxCompares: 128, maxOps: 128, maxReadBytes: 4 * 1024 * 1024, maxRangeLimit: 10_000 } as const;

const txnCompareSchema = z.discriminatedUnion("target", [
  z.strictObject({ key: z.string(), target: z.literal("value"), result: z.enum(["==", "!="]), value: bytes.nullable() }),
  z.strictObject({
    key: z.string(),
    target: z.enum(["version", "createRevision", "modRevision", "lease"]),
    result: z.enum(["==", "!=", "<", ">"]),
    value: counter,
  }),
]);

const txnOpSchema = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("put"), key: z.string(), value: bytes, lease: counter.optional() }),
  z.strictObject({ op: z.literal("del"), key: z.string() }),
  z.strictObject({ op: z.literal("delPrefix"), prefix: z.string() }),
  z.strictObject({ op: z.literal("get"), key: z.string() }),
  z.strictObject({ op: z.literal("range"), prefix: z.string(), limit: counter }),
]);

const commandSchema = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("put"), key: z.string(), value: bytes, lease: counter.optional() }),
  z.strictObject({ op: z.literal("del"), key: z.string() }),
  z.strictObject({ op: z.literal("cas"), key: z.string(), value: bytes, expect: expectSchema }),
  z.strictObject({ op: z.literal("delIf"), key: z.string(), expect: expectSchema }),
  z.strictObject({ op: z.literal("register") }),
  z.strictObject({
    op: z.literal("txn"),
    compare: z.array(txnCompareSchema),
    then: z.array(txnOpSchema),
    else: z.array(txnOpSchema),
  }),
  /** Lease ids are the log index of the grant; ttlMs is the time a keep-alive buys. */
  z.strictObject({ op: z.literal("leaseGrant"), ttlMs: counter }),
  z.strictObject({ op: z.literal("leaseRevoke"), id: counter }),
  /** Proposed by the leader's lease timer only (src/node/lease_timer.ts): the lease ran out. */
  z.strictObject({ op: z.literal("leaseExpire"), id: counter }),
  /**
   * Proposed by the leader only (node.ts recordRegion): records where member `id` runs, learned
   * after it joined (a founder's bootstrap row has no region). A member not in the table is left
   * alone (it was removed meanwhile): the same outcome on every replica.
   */
  z.strictObject({ op: z.literal("member"), id: z.string().min(1).max(128), region: z.string() }),
]);

/** Exported for tests only: the oracle of the hand-written check (quickProposal). */
export const proposalSchema = z.strictObject({
  /** The proposer's wall clock (ms): the log's clock, see session.ts. */
  time: counter,
  session: z.strictObject({ client: counter, seq: counter }).nullable(),
  cmd: commandSchema,
});

const keyValueSchema = z.strictObject({
  key: z.string(),
  value: bytes,
  createRevision: counter,
  modRevision: counter,
  version: counter,
});

export const ERROR_CODES = [
  "invalid_key",
  "key_too_large",
  "value_too_large",
  "session_expired",
  "stale_sequence",
  "too_many_sessions",
  "lease_not_found",
  "invalid_txn",
  "invalid_lease",
  "invalid_member",
] as const;

const txnOpResultSchema = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("put"), prev: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("del"), deleted: counter }),
  z.strictObject({ op: z.literal("delPrefix"), deleted: counter }),
  /** `overBudget`: the key exists but its value would pass the transaction's read budget. */
  z.strictObject({ op: z.literal("get"), kv: keyValueSchema.nullable(), overBudget: z.literal(true).optional() }),
  z.strictObject({ op: z.literal("range"), kvs: z.array(keyValueSchema), more: z.boolean() }),
]);

const resultSchema = z.union([
  z.strictObject({ op: z.literal("put"), revision: counter, prev: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("del"), revision: counter, deleted: z.boolean(), prev: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("cas"), revision: counter, succeeded: z.boolean(), current: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("delIf"), revision: counter, succeeded: z.boolean(), current: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("register"), client: counter }),
  z.strictObject({ op: z.literal("txn"), revision: counter, succeeded: z.boolean(), responses: z.array(txnOpResultSchema) }),
  z.strictObject({ op: z.literal("leaseGrant"), revision: counter, id: counter, ttlMs: counter }),
  z.strictObject({ op: z.literal("leaseRevoke"), revision: counter, found: z.boolean(), deleted: counter }),
  z.strictObject({ op: z.literal("leaseExpire"), revision: counter, found: z.boolean(), deleted: counter }),
  z.strictObject({ op: z.literal("member"), found: z.boolean() }),
  z.strictObject({ error: z.enum(ERROR_CODES), message: z.string() }),
]);

/** `value: null` = the key must be absent; `modRevision: 0` = the key must be absent. */
export type Expect = z.infer<typeof expectSchema>;
export type Command = z.infer<typeof commandSchema>;
export type TxnCompare = z.infer<typeof txnCompareSchema>;
export type TxnOp = z.infer<typeof txnOpSchema>;
export type TxnOpResult = z.infer<typeof txnOpResultSchema>;
export type TxnCommand = Extract<Command, { op: "txn" }>;
export type Proposal = z.infer<typeof proposalSchema>;
/** etcd-like metadata: revisions are the Raft indexes of the key's creation and last change. */
export type KeyValue = z.infer<typeof keyValueSchema>;
/**
 * put: `prev` is the value replaced. del: `prev` the value deleted. cas/delIf: `current` is the
 * key after the command (on failure: the value that failed the comparison). `revision` is the
 * store revision after the command. register: the new client id.
 */
export type Result = z.infer<typeof resultSchema>;
export type ErrorCode = (typeof ERROR_CODES)[number];
export type ErrorResult = Extract<Result, { error: ErrorCode }>;

export class MalformedError extends Error {
  override name = "MalformedError";
}

export function isError(r: Result): r is ErrorResult {
  return "error" in r;
}

export function encodeProposal(p: Proposal): Uint8Array {
  const quick = quickProposal(p);
  return (quick === null ? null : quickEncode(quick)) ?? encode(quick ?? proposalSchema.parse(p));
}

export function decodeProposal(data: Uint8Array): Proposal {
  const quick = quickDecode(data);
  if (quick !== null) return quick;
  const raw = decodeMsgpack(data, "proposal");
  return quickProposal(raw) ?? check(proposalSchema, raw, "proposal");
}

export function encodeResult(r: Result): Uint8Array {
  return encode(r);
}

/**
 * One encoder and one decoder for every command and result: `encode()` and `decode()` of
 * @msgpack/msgpack build a new one per call (a 2 KiB buffer each, and the encoded entry a view
 * into it that kept the whole 2 KiB alive in the log caches). Encoder.encode() returns a copy of
 * exactly the bytes; both handle a reentrant call by cloning. An encoder whose buffer grew for a
 * large value is dropped, so one 1 MiB put does not pin 2 MiB for the life of the process.
 */
let encoder = new Encoder();
const decoder = new Decoder();
const KEEP_ENCODER_BYTES = 64 * 1024;

function encode(value: unknown): Uint8Array {
  const out = encoder.encode(value);
  if (out.byteLength > KEEP_ENCODER_BYTES / 2) encoder = new Encoder();
  return out;
}

/**
 * The proposals of nearly every write (put without a lease or with one, del, register; with or
 * without a client id) checked by hand, since the schema costs about a microsecond per entry on
 * every node. Returns exactly what `proposalSchema` returns (fresh objects, keys in the schema's
 * order, the value's bytes by reference) for a subset of what it accepts; null for anything else,
 * which the schema then accepts or refuses with its own message. So the inputs refused, and the
 * messages, are the schema's alone: tests/kv/command_quick.test.ts checks that against the schema on
 * generated inputs.
 */
function quickProposal(raw: unknown): Proposal | null {
  if (!isPlainObject(raw) || !hasExactly(raw, PROPOSAL_KEYS)) return null;
  const { time, session, cmd } = raw;
  if (!isCounter(time) || !isPlainObject(cmd)) return null;
  let s: Proposal["session"] = null;
  if (session !== null) {
    if (!isPlainObject(session) || !hasExactly(session, SESSION_KEYS)) return null;
    const { client, seq } = session;
    if (!isCounter(client) || !isCounter(seq)) return null;
    s = { client, seq };
  }
  const c = quickCommand(cmd);
  return c === null ? null : { time, session: s, cmd: c };
}

function quickCommand(cmd: Record<string, unknown>): Command | null {
  const { op, key } = cmd;
  if (op === "put") {
    const { value, lease } = cmd;
    if (typeof key !== "string" || !(value instanceof Uint8Array)) return null;
    if (lease === undefined) return hasExactly(cmd, PUT_KEYS) ? { op, key, value } : null;
    return isCounter(lease) && hasExactly(cmd, LEASED_PUT_KEYS) ? { op, key, value, lease } : null;
  }
  if (op === "del") return typeof key === "string" && hasExactly(cmd, DEL_KEYS) ? { op, key } : null;
  if (op === "register") return hasExactly(cmd, REGISTER_KEYS) ? { op } : null;
  return null;
}

const PROPOSAL_KEYS = ["time", "session", "cmd"];
const SESSION_KEYS = ["client", "seq"];
const PUT_KEYS = ["op", "key", "value"];
const LEASED_PUT_KEYS = ["op", "key", "value", "lease"];
const DEL_KEYS = ["op", "key"];
const REGISTER_KEYS = ["op"];

/** An object as msgpack decodes a map (and as our own code writes a literal): nothing inherited to trip over. */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/**
 * Its enumerable keys (what the schema's strict check walks with for-in) are exactly `keys`, all
 * its own. Counting alone would not do: a non-enumerable `time` beside an unknown enumerable key
 * counts three, and the schema refuses the unknown key.
 */
function hasExactly(o: Record<string, unknown>, keys: readonly string[]): boolean {
  let n = 0;
  for (const k in o) {
    if (!keys.includes(k) || !Object.hasOwn(o, k)) return false;
    n++;
  }
  return n === keys.length;
}

/**
 * The bytes our encoder writes for the common proposals, read in place: what the generic decoder
 * would build from them, without its per-call DataView and state. Only this exact layout (keys
 * in our order, unsigned integers, ASCII strings, nothing after the end); any other byte returns
 * null and the generic decoder reads it. tests/kv/command_quick.test.ts checks it against the
 * generic decoder on generated encodings, minimal and not, and damaged ones.
 */
function quickDecode(d: Uint8Array): Proposal | null {
  const r = { d, pos: 0 };
  if (d[r.pos++] !== 0x83 || !literal(r, K_TIME)) return null;
  const time = readUint(r);
  if (time < 0 || !literal(r, K_SESSION)) return null;
  let session: Proposal["session"] = null;
  if (d[r.pos] === 0xc0) r.pos++;
  else {
    if (d[r.pos++] !== 0x82 || !literal(r, K_CLIENT)) return null;
    const client = readUint(r);
    if (client < 0 || !literal(r, K_SEQ)) return null;
    const seq = readUint(r);
    if (seq < 0) return null;
    session = { client, seq };
  }
  if (!literal(r, K_CMD)) return null;
  const size = d[r.pos++];
  let cmd: Command;
  if (size === 0x81) {
    if (!literal(r, K_OP) || !literal(r, V_REGISTER)) return null;
    cmd = { op: "register" };
  } else if (size === 0x82) {
    if (!literal(r, K_OP) || !literal(r, V_DEL) || !literal(r, K_KEY)) return null;
    const key = readAscii(r);
    if (key === null) return null;
    cmd = { op: "del", key };
  } else if (size === 0x83 || size === 0x84) {
    if (!literal(r, K_OP) || !literal(r, V_PUT) || !literal(r, K_KEY)) return null;
    const key = readAscii(r);
    if (key === null || !literal(r, K_VALUE)) return null;
    const value = readBin(r);
    if (value === null) return null;
    if (size === 0x84) {
      if (!literal(r, K_LEASE)) return null;
      const lease = readUint(r);
      if (lease < 0) return null;
      cmd = { op: "put", key, value, lease };
    } else cmd = { op: "put", key, value };
  } else return null;
  return r.pos === d.length ? { time, session, cmd } : null;
}

/**
 * The bytes the generic encoder writes for a checked put, del or register with an ASCII key
 * (every integer and length in its smallest format, keys in the schema's order), written
 * straight into a buffer of the exact size; null for anything else (the generic encoder then).
 * tests/kv/command_quick.test.ts compares it with the generic encoder byte for byte.
 */
function quickEncode(p: Proposal): Uint8Array | null {
  const { time, session, cmd } = p;
  if (cmd.op !== "put" && cmd.op !== "del" && cmd.op !== "register") return null;
  const key = cmd.op === "register" ? "" : cmd.key;
  // Equal only when every UTF-16 unit is ASCII (any other, a lone surrogate too, takes 2+ bytes).
  if (Buffer.byteLength(key, "utf8") !== key.length) return null;
  const value = cmd.op === "put" ? cmd.value : null;
  const lease = cmd.op === "put" ? cmd.lease : undefined;
  let size = 1 + K_TIME.length + uintSize(time) + K_SESSION.length + 1 + K_CMD.length + 1 + K_OP.length;
  if (session !== null) size += K_CLIENT.length + uintSize(session.client) + K_SEQ.length + uintSize(session.seq);
  if (cmd.op === "register") size += V_REGISTER.length;
  else size += (cmd.op === "put" ? V_PUT : V_DEL).length + K_KEY.length + strHeaderSize(key.length) + key.length;
  if (value !== null) size += K_VALUE.length + binHeaderSize(value.byteLength) + value.byteLength;
  if (lease !== undefined) size += K_LEASE.length + uintSize(lease);
  const w = { d: new Uint8Array(size), pos: 0 };
  w.d[w.pos++] = 0x83;
  put(w, K_TIME);
  writeUint(w, time);
  put(w, K_SESSION);
  if (session === null) w.d[w.pos++] = 0xc0;
  else {
    w.d[w.pos++] = 0x82;
    put(w, K_CLIENT);
    writeUint(w, session.client);
    put(w, K_SEQ);
    writeUint(w, session.seq);
  }
  put(w, K_CMD);
  w.d[w.pos++] = 0x80 | (cmd.op === "register" ? 1 : cmd.op === "del" ? 2 : lease === undefined ? 3 : 4);
  put(w, K_OP);
  if (cmd.op === "register") put(w, V_REGISTER);
  else {
    put(w, cmd.op === "put" ? V_PUT : V_DEL);
    put(w, K_KEY);
    writeLength(w, key.length, STR_FORMATS, true);
    for (let i = 0; i < key.length; i++) w.d[w.pos++] = key.charCodeAt(i);
  }
  if (value !== null) {
    put(w, K_VALUE);
    writeLength(w, value.byteLength, BIN_FORMATS, false);
    w.d.set(value, w.pos);
    w.pos += value.byteLength;
  }
  if (lease !== undefined) {
    put(w, K_LEASE);
    writeUint(w, lease);
  }
  if (w.pos !== size) throw new Error(`quickEncode wrote ${w.pos} bytes of ${size}`);
  return w.d;
}

const uintSize = (n: number): number => (n < 0x80 ? 1 : n < 0x100 ? 2 : n < 0x10000 ? 3 : n < 0x100000000 ? 5 : 9);
const strHeaderSize = (len: number): number => (len < 32 ? 1 : len < 0x100 ? 2 : len < 0x10000 ? 3 : 5);
const binHeaderSize = (len: number): number => (len < 0x100 ? 2 : len < 0x10000 ? 3 : 5);

function put(w: Reader, bytes: Uint8Array): void {
  w.d.set(bytes, w.pos);
  w.pos += bytes.length;
}

function writeBE(w: Reader, n: number, bytes: number): void {
  for (let i = bytes - 1; i >= 0; i--) w.d[w.pos++] = (n >>> (8 * i)) & 0xff;
}

/** A safe non-negative integer in its smallest format, as the generic encoder writes it. */
function writeUint(w: Reader, n: number): void {
  if (n < 0x80) w.d[w.pos++] = n;
  else if (n < 0x100) (w.d[w.pos++] = 0xcc), writeBE(w, n, 1);
  else if (n < 0x10000) (w.d[w.pos++] = 0xcd), writeBE(w, n, 2);
  else if (n < 0x100000000) (w.d[w.pos++] = 0xce), writeBE(w, n, 4);
  else {
    w.d[w.pos++] = 0xcf;
    writeBE(w, Math.floor(n / 4294967296), 4);
    writeBE(w, n >>> 0, 4);
  }
}

function writeLength(w: Reader, len: number, formats: readonly [number, number, number], fix: boolean): void {
  if (fix && len < 32) w.d[w.pos++] = 0xa0 | len;
  else if (len < 0x100) (w.d[w.pos++] = formats[0]), writeBE(w, len, 1);
  else if (len < 0x10000) (w.d[w.pos++] = formats[1]), writeBE(w, len, 2);
  else (w.d[w.pos++] = formats[2]), writeBE(w, len, 4);
}

/** A cursor over bytes being read (or written, by quickEncode). */
interface Reader {
  d: Uint8Array;
  pos: number;
}

/** A key or fixed string as our encoder writes it (fixstr). */
const fixstr = (s: string): Uint8Array => Uint8Array.from([0xa0 | s.length, ...Array.from(s, (c) => c.charCodeAt(0))]);
const K_TIME = fixstr("time");
const K_SESSION = fixstr("session");
const K_CLIENT = fixstr("client");
const K_SEQ = fixstr("seq");
const K_CMD = fixstr("cmd");
const K_OP = fixstr("op");
const K_KEY = fixstr("key");
const K_VALUE = fixstr("value");
const K_LEASE = fixstr("lease");
const V_PUT = fixstr("put");
const V_DEL = fixstr("del");
const V_REGISTER = fixstr("register");

function literal(r: Reader, bytes: Uint8Array): boolean {
  if (r.pos + bytes.length > r.d.length) return false;
  for (let i = 0; i < bytes.length; i++) if (r.d[r.pos + i] !== bytes[i]) return false;
  r.pos += bytes.length;
  return true;
}

/** An unsigned integer in any of msgpack's widths, as the generic decoder computes it; -1 for anything else. */
function readUint(r: Reader): number {
  const { d } = r;
  const b = d[r.pos];
  if (b === undefined) return -1;
  if (b <= 0x7f) {
    r.pos++;
    return b;
  }
  const width = b === 0xcc ? 1 : b === 0xcd ? 2 : b === 0xce ? 4 : b === 0xcf ? 8 : 0;
  if (width === 0 || r.pos + 1 + width > d.length) return -1;
  const at = r.pos + 1;
  r.pos = at + width;
  if (width === 8) {
    // Above 2^53 the generic decoder's number is not the integer written: the schema decides.
    const n = be32(d, at) * 4294967296 + be32(d, at + 4);
    return Number.isSafeInteger(n) ? n : -1;
  }
  return width === 4 ? be32(d, at) : width === 2 ? (d[at]! << 8) | d[at + 1]! : d[at]!;
}

function be32(d: Uint8Array, at: number): number {
  return ((d[at]! << 24) >>> 0) + ((d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!);
}

/** Length of a str or bin header (`fix`: the fixstr range applies); -1 if the byte is neither. */
function readLength(r: Reader, formats: readonly [number, number, number], fix: boolean): number {
  const { d } = r;
  const b = d[r.pos];
  if (b === undefined) return -1;
  let len: number;
  let head: number;
  if (fix && b >= 0xa0 && b <= 0xbf) [len, head] = [b & 0x1f, 1];
  else if (b === formats[0] && r.pos + 2 <= d.length) [len, head] = [d[r.pos + 1]!, 2];
  else if (b === formats[1] && r.pos + 3 <= d.length) [len, head] = [(d[r.pos + 1]! << 8) | d[r.pos + 2]!, 3];
  else if (b === formats[2] && r.pos + 5 <= d.length) [len, head] = [be32(d, r.pos + 1), 5];
  else return -1;
  if (r.pos + head + len > d.length) return -1;
  r.pos += head;
  return len;
}

const STR_FORMATS = [0xd9, 0xda, 0xdb] as const;
const BIN_FORMATS = [0xc4, 0xc5, 0xc6] as const;

/** An ASCII-only string (its UTF-8 decoding is byte for byte); null for anything else. */
function readAscii(r: Reader): string | null {
  const len = readLength(r, STR_FORMATS, true);
  if (len < 0) return null;
  const { d, pos } = r;
  let out = "";
  for (let i = pos; i < pos + len; i++) {
    const c = d[i]!;
    if (c >= 0x80) return null;
    out += String.fromCharCode(c);
  }
  r.pos = pos + len;
  return out;
}

/** Bytes, as the generic decoder returns them: a view into the entry's data. */
function readBin(r: Reader): Uint8Array | null {
  const len = readLength(r, BIN_FORMATS, false);
  if (len < 0) return null;
  const value = r.d.subarray(r.pos, r.pos + len);
  r.pos += len;
  return value;
}

/** What `counter` accepts. */
function isCounter(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

export function decodeResult(data: Uint8Array): Result {
  return parse(resultSchema, data, "result");
}


/** Checks a command against the limits: the API rejects early, the state machine deterministically. */
export function validateCommand(cmd: Command, limits: Limits): ErrorResult | null {
  if (cmd.op === "register" || cmd.op === "leaseRevoke" || cmd.op === "leaseExpire") return null;
  if (cmd.op === "txn") return validateTxn(cmd, limits);
  if (cmd.op === "leaseGrant") return validateLeaseGrant(cmd);
  if (cmd.op === "member") {
    const bad = invalidRegion(cmd.region, "must be known");
    return bad === null ? null : { error: "invalid_member", message: `member ${cmd.id}: ${bad}` };
  }
  if (cmd.key.length === 0 || !cmd.key.isWellFormed()) {
    return { error: "invalid_key", message: "a key must be a non-empty, well-formed Unicode string" };
  }
  // Well-formed (checked above), so byteLength counts exactly the UTF-8 encoding, without building it.
  const keyBytes = Buffer.byteLength(cmd.key, "utf8");
  if (keyBytes > limits.maxKeyBytes) {
    return { error: "key_too_large", message: `key of ${keyBytes} bytes exceeds the limit of ${limits.maxKeyBytes}` };
  }
  if ((cmd.op === "put" || cmd.op === "cas") && cmd.value.byteLength > limits.maxValueBytes) {
    return {
      error: "value_too_large",
      message: `value of ${cmd.value.byteLength} bytes exceeds the limit of ${limits.maxValueBytes}`,
    };
  }
  return null;
}

/** A key as every write takes it: non-empty, well-formed, within the limit. */
export function validateKey(key: string, limits: Limits): ErrorResult | null {
  return validateCommand({ op: "del", key }, limits);
}

/** Lease TTLs: at least a second (below that a keep-alive cannot keep up), at most a day. */
export const LEASE_TTL_MS = { min: 1000, max: 24 * 60 * 60 * 1000 } as const;

function validateLeaseGrant(cmd: Extract<Command, { op: "leaseGrant" }>): ErrorResult | null {
  if (cmd.ttlMs < LEASE_TTL_MS.min || cmd.ttlMs > LEASE_TTL_MS.max) {
    return { error: "invalid_lease", message: `a lease TTL must be in [${LEASE_TTL_MS.min / 1000}, ${LEASE_TTL_MS.max / 1000}] seconds` };
  }
  return null;
}

/**
 * A transaction is refused whole, before anything runs, when one of its parts is invalid, when it
 * has too many parts, or when one branch writes a key twice (etcd: "duplicate key given in txn
 * request"): the order of two writes to one key in one revision would be a hidden rule.
 */
function validateTxn(cmd: TxnCommand, limits: Limits): ErrorResult | null {
  const invalid = (message: string): ErrorResult => ({ error: "invalid_txn", message });
  if (cmd.compare.length > TXN_LIMITS.maxCompares) return invalid(`at most ${TXN_LIMITS.maxCompares} compares, got ${cmd.compare.length}`);
  for (const cmp of cmd.compare) {
    const bad = validateKey(cmp.key, limits);
    if (bad !== null) return bad;
  }
  for (const [name, ops] of [["then", cmd.then], ["else", cmd.else]] as const) {
    if (ops.length > TXN_LIMITS.maxOps) return invalid(`${name}: at most ${TXN_LIMITS.maxOps} operations, got ${ops.length}`);
    const written = new Set<string>();
    const prefixes: string[] = [];
    for (const op of ops) {
      if (op.op === "delPrefix" || op.op === "range") {
        if (op.op === "range" && (op.limit < 1 || op.limit > TXN_LIMITS.maxRangeLimit)) {
          return invalid(`${name}: a range limit must be in [1, ${TXN_LIMITS.maxRangeLimit}]`);
        }
        if (Buffer.byteLength(op.prefix, "utf8") > limits.maxKeyBytes || !op.prefix.isWellFormed()) return invalid(`${name}: prefix too long or not well-formed`);
        if (op.op === "delPrefix") prefixes.push(op.prefix);
        continue;
      }
      const bad = op.op === "put" ? validateCommand({ op: "put", key: op.key, value: op.value }, limits) : validateKey(op.key, limits);
      if (bad !== null) return bad;
      if (op.op === "get") continue;
      if (written.has(op.key)) return invalid(`${name}: duplicate key ${JSON.stringify(op.key)} written twice in one transaction`);
      written.add(op.key);
    }
    for (const p of prefixes) {
      const clash = [...written].find((k) => k.startsWith(p));
      if (clash !== undefined || prefixes.filter((q) => q.startsWith(p)).length > 1) {
        return invalid(`${name}: a prefix delete of ${JSON.stringify(p)} overlaps another write in the same transaction`);
      }
    }
  }
  return null;
}

function parse<T>(schema: z.ZodType<T>, data: Uint8Array, what: string): T {
  return check(schema, decodeMsgpack(data, what), what);
}

function decodeMsgpack(data: Uint8Array, what: string): unknown {
  try {
    return decoder.decode(data);
  } catch (err) {
    throw new MalformedError(`malformed ${what}: not msgpack (${(err as Error).message})`);
  }
}

function check<T>(schema: z.ZodType<T>, raw: unknown, what: string): T {
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new MalformedError(`malformed ${what}: ${plainZodMessage(parsed.error)}`);
  return parsed.data;
}
