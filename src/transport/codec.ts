// Wire format of peer messages: a msgpack array of Message objects, validated by zod on the way in.
// Nothing decoded from the network reaches the core without passing `batchSchema`.

import { Decoder, Encoder } from "@msgpack/msgpack";
import { z } from "zod";
import type { Message, MessageType } from "../raft/types.ts";
import { plainZodMessage } from "./zod_message.ts";

/** Raised for any batch that is not well-formed msgpack or does not match the schemas. */
export class CodecError extends Error {
  override readonly name = "CodecError";
}

export const MAX_NODE_ID_LENGTH = 256;
export const MAX_CTX_LENGTH = 1024;
export const MAX_BATCH_MESSAGES = 65_536;
export const MAX_ENTRIES_PER_APPEND = 1_000_000;
export const MAX_CONF_MEMBERS = 1024;
/** Zod lists every issue; a batch of thousands of bad messages must not make a megabyte error. */
const MAX_ERROR_TEXT = 2048;

// z.int() is already limited to the safe-integer range, so 2^60 from a uint64 is rejected.
const count = z.int().nonnegative();
// Visible ASCII only: the id also travels in an HTTP header (x-phalanx-from).
export const nodeIdSchema = z.string().regex(/^[\x21-\x7e]+$/, "node id must be visible ASCII").max(MAX_NODE_ID_LENGTH);
const bytes = z.instanceof(Uint8Array);

const envelope = { from: nodeIdSchema, to: nodeIdSchema, term: count };

const entrySchema = z.object({
  term: count,
  index: count,
  type: z.enum(["normal", "noop", "conf"]),
  data: bytes,
});

const confStateSchema = z.object({
  voters: z.array(nodeIdSchema).max(MAX_CONF_MEMBERS),
  learners: z.array(nodeIdSchema).max(MAX_CONF_MEMBERS),
});

// firstElection is optional: a node from before it sends none, and one that does not know it strips it.
const voteFields = { ...envelope, lastIndex: count, lastTerm: count, transfer: z.boolean(), firstElection: z.literal(true).optional() };

// `satisfies` makes the compiler check that every message type has a schema whose output is that type.
const schemas = {
  append: z.object({
    ...envelope,
    type: z.literal("append"),
    prevIndex: count,
    prevTerm: count,
    entries: z.array(entrySchema).max(MAX_ENTRIES_PER_APPEND),
    commit: count,
  }),
  appendResp: z.object({
    ...envelope,
    type: z.literal("appendResp"),
    index: count,
    reject: z.boolean(),
    hintIndex: count,
    hintTerm: count,
  }),
  heartbeat: z.object({ ...envelope, type: z.literal("heartbeat"), commit: count, seq: count }),
  heartbeatResp: z.object({ ...envelope, type: z.literal("heartbeatResp"), seq: count }),
  vote: z.object({ ...voteFields, type: z.literal("vote") }),
  preVote: z.object({ ...voteFields, type: z.literal("preVote") }),
  voteResp: z.object({ ...envelope, type: z.literal("voteResp"), reject: z.boolean() }),
  preVoteResp: z.object({ ...envelope, type: z.literal("preVoteResp"), reject: z.boolean() }),
  snapshot: z.object({
    ...envelope,
    type: z.literal("snapshot"),
    meta: z.object({ index: count, term: count, conf: confStateSchema }),
    offset: count,
    total: count,
    chunk: bytes,
  }),
  snapshotResp: z.object({
    ...envelope,
    type: z.literal("snapshotResp"),
    index: count,
    received: count,
    reject: z.boolean(),
  }),
  timeoutNow: z.object({ ...envelope, type: z.literal("timeoutNow") }),
  readIndex: z.object({ ...envelope, type: z.literal("readIndex"), ctx: z.string().max(MAX_CTX_LENGTH) }),
  readIndexResp: z.object({
    ...envelope,
    type: z.literal("readIndexResp"),
    ctx: z.string().max(MAX_CTX_LENGTH),
    index: count,
    reject: z.boolean(),
  }),
} satisfies { [K in MessageType]: z.ZodType<Message & { type: K }> };

/** Unknown fields are stripped (room for rolling upgrades); an unknown `type` is rejected. */
export const messageSchema = z.discriminatedUnion("type", [
  schemas.append,
  schemas.appendResp,
  schemas.heartbeat,
  schemas.heartbeatResp,
  schemas.vote,
  schemas.preVote,
  schemas.voteResp,
  schemas.preVoteResp,
  schemas.snapshot,
  schemas.snapshotResp,
  schemas.timeoutNow,
  schemas.readIndex,
  schemas.readIndexResp,
]);

const batchSchema = z.array(messageSchema).max(MAX_BATCH_MESSAGES);

const encoder = new Encoder();
// Limits stop a tiny body from announcing a huge array or string before zod ever sees it.
const decoder = new Decoder({
  maxArrayLength: MAX_ENTRIES_PER_APPEND,
  maxMapLength: 64,
  maxStrLength: MAX_CTX_LENGTH * 4,
  maxExtLength: 0,
});

export function encodeMessages(msgs: readonly Message[]): Uint8Array {
  return encoder.encode(msgs);
}

/**
 * Decodes and validates one batch. Byte fields (entry data, snapshot chunks) are views into
 * `bytes`, not copies: the batch buffer lives as long as any of them is kept.
 */
export function decodeMessages(bytes: Uint8Array): Message[] {
  let raw: unknown;
  try {
    raw = decoder.decode(bytes);
  } catch (err) {
    throw new CodecError(`malformed msgpack: ${err instanceof Error ? err.message : String(err)}`);
  }
  const parsed = batchSchema.safeParse(raw);
  if (!parsed.success) throw new CodecError(clip(plainZodMessage(parsed.error)));
  return parsed.data;
}

function clip(text: string): string {
  return text.length <= MAX_ERROR_TEXT ? text : `${text.slice(0, MAX_ERROR_TEXT)}… (truncated)`;
}
