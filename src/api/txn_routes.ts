// POST /v1/txn: etcd's Txn over HTTP, in JSON or msgpack (scope: write).
//
//   {"compare": [{"key": "a", "target": "value", "result": "==", "value": "x"},
//                {"key": "b", "target": "version", "result": "==", "value": 0}],
//    "then": [{"put": {"key": "a", "value": "y"}}, {"get": {"key": "b"}}],
//    "else": [{"range": {"prefix": "a", "limit": 10}}]}
//
// → {"succeeded": true, "revision": 42, "responses": [{"put": {"prev": {...}}}, {"get": {"kv": null}}]}
//
// etcd's names are accepted too: "success"/"failure" for then/else, "EQUAL"/"NOT_EQUAL"/"LESS"/
// "GREATER" for results, "VALUE"/"VERSION"/"CREATE"/"MOD"/"LEASE" for targets.
import { Hono } from "hono";
import { z } from "zod";
import { type Command, type TxnCompare, type TxnOp, type TxnOpResult } from "../kv/command.ts";
import type { PhalanxNode } from "../node/node.ts";
import { Deadline } from "./deadline.ts";
import { answerResult, proposeAndReply, readBody, writeSessionOf, writeSessionSchema } from "./propose_reply.ts";
import { BadRequest, bodyKind, decodeBody } from "./wire.ts";

/** 128 puts of the largest value, in base64, plus framing. */
const MAX_TXN_BODY = 8 * 1024 * 1024;

const counter = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, "expected bytes");
const text = z.union([z.string(), bytes]);
const TARGETS = { value: "value", version: "version", createRevision: "createRevision", modRevision: "modRevision", lease: "lease", VALUE: "value", VERSION: "version", CREATE: "createRevision", MOD: "modRevision", LEASE: "lease" } as const;
const RESULTS = { "==": "==", "=": "==", "!=": "!=", "<": "<", ">": ">", EQUAL: "==", NOT_EQUAL: "!=", LESS: "<", GREATER: ">" } as const;

const compareBody = z.strictObject({
  key: z.string(),
  target: z.enum(Object.keys(TARGETS) as [keyof typeof TARGETS]),
  result: z.enum(Object.keys(RESULTS) as [keyof typeof RESULTS]).default("=="),
  value: z.union([text, counter]).nullable().optional(),
  valueBase64: z.string().optional(),
});
const opBody = z.union([
  z.strictObject({ put: z.strictObject({ key: z.string(), value: text.optional(), valueBase64: z.string().optional(), lease: counter.optional() }) }),
  z.strictObject({ delete: z.union([z.strictObject({ key: z.string() }), z.strictObject({ prefix: z.string() })]) }),
  z.strictObject({ get: z.strictObject({ key: z.string() }) }),
  z.strictObject({ range: z.strictObject({ prefix: z.string(), limit: counter.default(100) }) }),
]);
const txnBody = z.strictObject({
  compare: z.array(compareBody).default([]),
  then: z.array(opBody).optional(),
  else: z.array(opBody).optional(),
  success: z.array(opBody).optional(),
  failure: z.array(opBody).optional(),
  session: writeSessionSchema.optional(),
});

const utf8 = new TextEncoder();

function valueBytes(v: { value?: string | Uint8Array | number | null; valueBase64?: string }, what: string): Uint8Array {
  if (v.valueBase64 !== undefined) {
    if (v.value !== undefined) throw new BadRequest(`${what}: give value or valueBase64, not both`);
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(v.valueBase64)) throw new BadRequest(`${what}: valueBase64 is not base64`);
    return new Uint8Array(Buffer.from(v.valueBase64, "base64"));
  }
  if (typeof v.value === "string") return utf8.encode(v.value);
  if (v.value instanceof Uint8Array) return v.value;
  throw new BadRequest(`${what}: needs value (text) or valueBase64`);
}

function toCompare(b: z.infer<typeof compareBody>, i: number): TxnCompare {
  const target = TARGETS[b.target];
  const result = RESULTS[b.result];
  const what = `compare[${i}]`;
  if (target === "value") {
    if (result !== "==" && result !== "!=") throw new BadRequest(`${what}: a value compares only with == or !=`);
    if (b.value === null && b.valueBase64 === undefined) return { key: b.key, target, result, value: null };
    if (typeof b.value === "number") throw new BadRequest(`${what}: a value is text or valueBase64, not a number`);
    return { key: b.key, target, result, value: valueBytes(b, what) };
  }
  if (typeof b.value !== "number") throw new BadRequest(`${what}: ${target} compares with a number (0 = the key does not exist)`);
  return { key: b.key, target, result, value: b.value };
}

function toOp(b: z.infer<typeof opBody>, what: string): TxnOp {
  if ("put" in b) {
    const p = b.put;
    return { op: "put", key: p.key, value: valueBytes(p, what), ...(p.lease === undefined || p.lease === 0 ? {} : { lease: p.lease }) };
  }
  if ("delete" in b) return "key" in b.delete ? { op: "del", key: b.delete.key } : { op: "delPrefix", prefix: b.delete.prefix };
  if ("get" in b) return { op: "get", key: b.get.key };
  return { op: "range", prefix: b.range.prefix, limit: b.range.limit };
}

function branch(ours: unknown[] | undefined, etcds: unknown[] | undefined, names: string): z.infer<typeof opBody>[] {
  if (ours !== undefined && etcds !== undefined) throw new BadRequest(`give ${names}, not both`);
  return (ours ?? etcds ?? []) as z.infer<typeof opBody>[];
}

/** Parses a txn request body (JSON or msgpack) into the replicated command. Exported for the CLI's checks. */
export function parseTxn(raw: unknown): { cmd: Extract<Command, { op: "txn" }>; session: z.infer<typeof writeSessionSchema> | undefined } {
  const r = txnBody.safeParse(raw);
  if (!r.success) throw new BadRequest(z.prettifyError(r.error));
  const b = r.data;
  const then = branch(b.then, b.success, "then or success");
  const otherwise = branch(b.else, b.failure, "else or failure");
  return {
    cmd: {
      op: "txn",
      compare: b.compare.map(toCompare),
      then: then.map((o, i) => toOp(o, `then[${i}]`)),
      else: otherwise.map((o, i) => toOp(o, `else[${i}]`)),
    },
    session: b.session,
  };
}

/** The response of one operation, keyed by its kind like the request: {"put": {...}}. */
function opResponse(r: TxnOpResult): Record<string, unknown> {
  switch (r.op) {
    case "put":
      return { put: { prev: r.prev } };
    case "del":
    case "delPrefix":
      return { delete: { deleted: r.deleted } };
    case "get":
      return { get: { kv: r.kv, ...(r.overBudget === true ? { overBudget: true } : {}) } };
    case "range":
      return { range: { kvs: r.kvs, more: r.more } };
  }
}

export function txnRoutes(node: PhalanxNode): Hono {
  const app = new Hono();
  app.post("/v1/txn", async (c) => {
    const deadline = Deadline.of(c, node.config.requestTimeoutMs);
    const body = await readBody(c, MAX_TXN_BODY);
    const kind = bodyKind(c.req.header("content-type"));
    if (kind === "raw") throw new BadRequest("a transaction is JSON (content-type: application/json) or msgpack");
    const { cmd, session } = parseTxn(decodeBody(kind, body));
    return proposeAndReply(c, node, { body, cmd, session: writeSessionOf(c, session), deadline }, answerResult((r) => {
      if (r.op !== "txn") throw new Error(`a txn proposal returned a ${r.op} result`);
      return { status: 200, payload: { succeeded: r.succeeded, revision: r.revision, responses: r.responses.map(opResponse) } };
    }));
  });
  return app;
}
