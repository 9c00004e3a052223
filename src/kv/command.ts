// The replicated command format: what a `normal` entry carries (msgpack), and the results the
// state machine returns. The API layer and the client encode proposals and decode results with
// these helpers; the state machine decodes entries with them. Decoding validates with zod: an
// entry in our own log that does not parse was damaged, so it is reported, never skipped.
import { decode, encode } from "@msgpack/msgpack";
import { z } from "zod";
import { plainZodMessage } from "../transport/zod_message.ts";

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

const commandSchema = z.discriminatedUnion("op", [
  z.strictObject({ op: z.literal("put"), key: z.string(), value: bytes }),
  z.strictObject({ op: z.literal("del"), key: z.string() }),
  z.strictObject({ op: z.literal("cas"), key: z.string(), value: bytes, expect: expectSchema }),
  z.strictObject({ op: z.literal("delIf"), key: z.string(), expect: expectSchema }),
  z.strictObject({ op: z.literal("register") }),
]);

const proposalSchema = z.strictObject({
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
] as const;

const resultSchema = z.union([
  z.strictObject({ op: z.literal("put"), revision: counter, prev: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("del"), revision: counter, deleted: z.boolean(), prev: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("cas"), revision: counter, succeeded: z.boolean(), current: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("delIf"), revision: counter, succeeded: z.boolean(), current: keyValueSchema.nullable() }),
  z.strictObject({ op: z.literal("register"), client: counter }),
  z.strictObject({ error: z.enum(ERROR_CODES), message: z.string() }),
]);

/** `value: null` = the key must be absent; `modRevision: 0` = the key must be absent. */
export type Expect = z.infer<typeof expectSchema>;
export type Command = z.infer<typeof commandSchema>;
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
  return encode(proposalSchema.parse(p));
}

export function decodeProposal(data: Uint8Array): Proposal {
  return parse(proposalSchema, data, "proposal");
}

export function encodeResult(r: Result): Uint8Array {
  return encode(r);
}

export function decodeResult(data: Uint8Array): Result {
  return parse(resultSchema, data, "result");
}

const utf8 = new TextEncoder();

/** Checks a command against the limits: the API rejects early, the state machine deterministically. */
export function validateCommand(cmd: Command, limits: Limits): ErrorResult | null {
  if (cmd.op === "register") return null;
  if (cmd.key.length === 0 || !cmd.key.isWellFormed()) {
    return { error: "invalid_key", message: "a key must be a non-empty, well-formed Unicode string" };
  }
  const keyBytes = utf8.encode(cmd.key).byteLength;
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

function parse<T>(schema: z.ZodType<T>, data: Uint8Array, what: string): T {
  let raw: unknown;
  try {
    raw = decode(data);
  } catch (err) {
    throw new MalformedError(`malformed ${what}: not msgpack (${(err as Error).message})`);
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw new MalformedError(`malformed ${what}: ${plainZodMessage(parsed.error)}`);
  return parsed.data;
}
