// The key-value API: GET/PUT/DELETE /v1/kv/<key>, range reads on GET /v1/kv?prefix=, and
// POST /v1/session for exactly-once writes. Writes go through the leader (forwarded from
// followers); linearizable reads wait for the core's read barrier (lease or ReadIndex) and are
// served locally, stale reads are served from whatever this node has applied, bounded-staleness
// reads (?max_staleness=5s) from this node's state once it proves the bound (read_consistency.ts).
import { Hono, type Context } from "hono";
import { z } from "zod";
import { DEFAULT_LIMITS, isError, validateCommand, type Command, type ErrorCode, type Expect, type Proposal, type Result } from "../kv/command.ts";
import type { PhalanxNode } from "../node/node.ts";
import { BodyTooLargeError, incomingOf, readCappedBody } from "../transport/body.ts";
import { plainZodMessage } from "../transport/zod_message.ts";
import { Deadline } from "./deadline.ts";
import { keyFromRawPath } from "./raw_path.ts";
import { forward, forwardTarget, leaderHeaders, notAppliedReply, outcomeUnknownReply, RETRY_AFTER_S } from "./forward.ts";
import { BadRequest, bodyKind, decodeBody, errorReply, reply, valueEncodingOf } from "./wire.ts";
import { ByteBudget } from "./byte_budget.ts";
import { errorStatus, proposeAndReply } from "./propose_reply.ts";
import { chargeBody } from "./fairness.ts";
import { DEFAULT_RANGE_BYTES } from "../kv/store.ts";
import { readGate, readHeaders, readModeOf } from "./read_consistency.ts";

export const SESSION_HEADER = "x-phalanx-session";
export const REVISION_HEADER = "x-phalanx-revision";
const MAX_RANGE_LIMIT = 10_000;
/** Largest byte budget a client may ask of one range page. */
export const MAX_RANGE_BYTES = 16 * 1024 * 1024;
/**
 * Value bytes that range reads on one node may hold at once (a JSON answer costs about 2-3x
 * that while it is encoded); further range reads wait for room until their deadline.
 */
export const RANGE_BYTES_IN_FLIGHT = 32 * 1024 * 1024;
/** Room for JSON/base64 framing around the largest value (base64 grows by 4/3). */
const MAX_BODY = Math.ceil(DEFAULT_LIMITS.maxValueBytes * 1.4) + 64 * 1024;

const counter = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes");
const sessionSchema = z.strictObject({ client: counter, seq: counter });
const valueFields = { value: z.union([z.string(), bytes]).nullable().optional(), valueBase64: z.string().nullable().optional() };
const expectSchema = z.strictObject({ ...valueFields, modRevision: counter.optional() });
const writeSchema = z.strictObject({ ...valueFields, expect: expectSchema.optional(), session: sessionSchema.optional() });
type WriteBody = z.infer<typeof writeSchema>;

const utf8 = new TextEncoder();

/** value / valueBase64 → bytes; null when neither field is present. */
function valueOf(v: { value?: string | Uint8Array | null; valueBase64?: string | null }, what: string): Uint8Array | null | undefined {
  const given = [v.value !== undefined, v.valueBase64 !== undefined].filter(Boolean).length;
  if (given > 1) throw new BadRequest(`${what}: give value or valueBase64, not both`);
  if (v.value !== undefined) return v.value === null ? null : typeof v.value === "string" ? utf8.encode(v.value) : v.value;
  if (v.valueBase64 !== undefined) {
    if (v.valueBase64 === null) return null;
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v.valueBase64)) throw new BadRequest(`${what}: valueBase64 is not base64`);
    return new Uint8Array(Buffer.from(v.valueBase64, "base64"));
  }
  return undefined;
}

function parseExpect(body: WriteBody, c: Context): Expect | null {
  const prev = c.req.query("prevRevision");
  if (prev !== undefined) {
    const n = Number(prev);
    if (!Number.isSafeInteger(n) || n < 0) throw new BadRequest("prevRevision must be a non-negative integer (0: key must be absent)");
    return { modRevision: n };
  }
  if (body.expect === undefined) return null;
  const value = valueOf(body.expect, "expect");
  if (body.expect.modRevision !== undefined) {
    if (value !== undefined) throw new BadRequest("expect: give a value or a modRevision, not both");
    return { modRevision: body.expect.modRevision };
  }
  if (value === undefined) throw new BadRequest("expect needs value, valueBase64 (null: key must be absent) or modRevision");
  return { value };
}

function intQuery(c: Context, name: string, fallback: number, max: number): number {
  const text = c.req.query(name);
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < 1 || n > max) throw new BadRequest(`${name} must be an integer in [1, ${max}]`);
  return n;
}

function parseSession(c: Context, body: WriteBody): Proposal["session"] {
  const header = c.req.header(SESSION_HEADER);
  if (header !== undefined) {
    const m = /^(\d{1,15}):(\d{1,15})$/.exec(header.trim());
    if (m === null) throw new BadRequest(`${SESSION_HEADER} must be <client>:<seq>`);
    return { client: Number(m[1]), seq: Number(m[2]) };
  }
  return body.session ?? null;
}

function leaseQuery(c: Context): number | undefined {
  const text = c.req.query("lease");
  if (text === undefined || text === "0") return undefined;
  const n = Number(text);
  if (!/^\d{1,16}$/.test(text) || !Number.isSafeInteger(n)) throw new BadRequest("lease must be a lease id (a positive integer)");
  return n;
}

/** The key as the client sent it: see raw_path.ts (the normalised URL rewrites `a/../b`). */
function keyOf(c: Context): string {
  return keyFromRawPath(c, "/v1/kv/");
}

async function readBody(c: Context): Promise<Uint8Array> {
  // A declared length is charged to the client's share before a byte is read (fairness.ts).
  const declared = Number(c.req.header("content-length") ?? "0");
  const early = Number.isSafeInteger(declared) && declared > 0 && declared <= MAX_BODY ? declared : 0;
  chargeBody(c, early);
  let body: Uint8Array;
  try {
    body = await readCappedBody(c.req.raw, MAX_BODY, incomingOf(c.env));
  } catch (err) {
    if (err instanceof BodyTooLargeError) throw err;
    throw new BadRequest(`could not read the body: ${(err as Error).message}`);
  }
  if (body.byteLength > early) chargeBody(c, body.byteLength - early);
  return body;
}

/** Structured JSON/msgpack write body, or {} when the body is raw bytes or empty. */
function structured(c: Context, body: Uint8Array): { parsed: WriteBody; raw: boolean } {
  const kind = bodyKind(c.req.header("content-type"));
  if (kind === "raw" || body.byteLength === 0) return { parsed: {}, raw: kind === "raw" };
  const r = writeSchema.safeParse(decodeBody(kind, body));
  if (!r.success) throw new BadRequest(plainZodMessage(r.error));
  return { parsed: r.data, raw: false };
}

/** What a write answer includes beyond the outcome. */
interface AnswerShape {
  /** `?prev`: the replaced or deleted pair (up to 1 MiB of value: sent only when asked). */
  prev: boolean;
}

function answerShape(c: Context): AnswerShape {
  return { prev: c.req.query("prev") !== undefined };
}

function resultStatus(r: Result, shape: AnswerShape): { status: number; payload: unknown } {
  if (!isError(r) && (r.op === "put" || r.op === "del") && !shape.prev) {
    const { prev: _, ...rest } = r;
    return resultStatus(rest as Result, { prev: true });
  }
  if (isError(r)) {
    return { status: errorStatus(r), payload: r };
  }
  switch (r.op) {
    case "del":
      return r.deleted ? { status: 200, payload: r } : { status: 404, payload: { error: "not_found", message: "no such key", revision: r.revision } };
    case "cas":
    case "delIf":
      return r.succeeded
        ? { status: 200, payload: r }
        : { status: 409, payload: { error: "compare_failed", message: "the key does not match the expectation", ...r } };
    default:
      return { status: 200, payload: r };
  }
}

export function kvRoutes(node: PhalanxNode): Hono {
  const app = new Hono();
  const defaultTimeout = node.config.requestTimeoutMs;
  const rangeBudget = new ByteBudget(RANGE_BYTES_IN_FLIGHT);

  /** Proposes on the leader (forwarding when this node is not it) and maps the outcome to HTTP. */
  const write = (c: Context, body: Uint8Array | undefined, cmd: Command, session: Proposal["session"], deadline: Deadline) =>
    proposeAndReply(c, node, { body, cmd, session, deadline }, (r) => resultStatus(r, answerShape(c)));

  app.get("/v1/kv", async (c) => {
    const deadline = Deadline.of(c, defaultTimeout);
    const prefix = c.req.query("prefix") ?? "";
    const after = c.req.query("after");
    const limit = intQuery(c, "limit", 100, MAX_RANGE_LIMIT);
    const maxBytes = intQuery(c, "maxBytes", DEFAULT_RANGE_BYTES, MAX_RANGE_BYTES);
    const keysOnly = c.req.query("keys") !== undefined;
    valueEncodingOf(c);
    const mode = readModeOf(c);
    const refused = await readGate(c, node, mode, deadline, "serve a linearizable read");
    if (refused !== null) return refused;
    // A page may exceed its budget by one pair (it always returns at least one): reserve for that.
    const reserve = keysOnly ? Math.min(maxBytes, limit * DEFAULT_LIMITS.maxKeyBytes) : maxBytes + DEFAULT_LIMITS.maxKeyBytes + DEFAULT_LIMITS.maxValueBytes;
    const release = await rangeBudget.acquire(reserve, deadline.remaining());
    if (release === null) {
      return errorReply(c, 503, "busy", "too many large reads in flight on this node; retry (or ask for a smaller maxBytes)", {
        "retry-after": RETRY_AFTER_S,
        ...leaderHeaders(node.leader()),
      });
    }
    try {
      // The header is judged where the state is read: waiting for room aged the proof.
      const staleness = readHeaders(c, node, mode);
      if (staleness instanceof Response) return staleness;
      const r = node.kv.range({ prefix, limit, maxBytes, keysOnly, ...(after === undefined ? {} : { after }) });
      const page = { revision: r.revision, kvs: keysOnly ? r.kvs.map(({ value: _, ...meta }) => meta) : r.kvs, more: r.more, ...(r.next === null ? {} : { next: r.next }) };
      return reply(c, 200, page, { [REVISION_HEADER]: String(r.revision), ...staleness, ...leaderHeaders(node.leader()) });
    } finally {
      // The answer is encoded by now; its bytes leave with the response.
      release();
    }
  });

  app.get("/v1/kv/*", async (c) => {
    const deadline = Deadline.of(c, defaultTimeout);
    const key = keyOf(c);
    const mode = readModeOf(c);
    const refused = await readGate(c, node, mode, deadline, "serve a linearizable read");
    if (refused !== null) return refused;
    const staleness = readHeaders(c, node, mode);
    if (staleness instanceof Response) return staleness;
    const { revision, kv } = node.kv.get(key);
    const headers: Record<string, string> = { [REVISION_HEADER]: String(revision), ...staleness, ...leaderHeaders(node.leader()) };
    if (kv === null) return errorReply(c, 404, "not_found", `no key ${JSON.stringify(key)}`, headers);
    const raw = c.req.query("raw") !== undefined || (c.req.header("accept") ?? "").startsWith("application/octet-stream");
    if (raw) {
      // This object is ours alone: extended in place rather than copied once more per read.
      headers["content-type"] = "application/octet-stream";
      headers["x-phalanx-mod-revision"] = String(kv.modRevision);
      return new Response(kv.value, { status: 200, headers });
    }
    return reply(c, 200, { revision, kv }, headers);
  });

  app.put("/v1/kv/*", async (c) => {
    const deadline = Deadline.of(c, defaultTimeout);
    const key = keyOf(c);
    const body = await readBody(c);
    const { parsed, raw } = structured(c, body);
    const value = raw ? body : valueOf(parsed, "body");
    if (value === undefined || value === null) throw new BadRequest("the body needs value or valueBase64 (or send the raw bytes)");
    const expect = parseExpect(parsed, c);
    // kvfeatures: ?lease=<id> attaches the key to a lease (etcd's put --lease); see lease_routes.ts.
    const lease = leaseQuery(c);
    if (lease !== undefined && expect !== null) throw new BadRequest("lease= with a compare: use POST /v1/txn");
    const cmd: Command = expect === null ? { op: "put", key, value, ...(lease === undefined ? {} : { lease }) } : { op: "cas", key, value, expect };
    return write(c, body, cmd, parseSession(c, parsed), deadline);
  });

  app.delete("/v1/kv/*", async (c) => {
    const deadline = Deadline.of(c, defaultTimeout);
    const key = keyOf(c);
    const body = await readBody(c);
    const { parsed } = structured(c, body);
    const expect = parseExpect(parsed, c);
    const cmd: Command = expect === null ? { op: "del", key } : { op: "delIf", key, expect };
    return write(c, body, cmd, parseSession(c, parsed), deadline);
  });

  app.post("/v1/session", async (c) => {
    const deadline = Deadline.of(c, defaultTimeout);
    return write(c, undefined, { op: "register" }, null, deadline);
  });

  return app;
}
