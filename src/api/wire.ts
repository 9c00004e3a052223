// Content negotiation for the client API. Requests: JSON, msgpack, or (for a value) the raw bytes,
// so `curl --data-binary @file` stores the file as is. Responses: msgpack when the client accepts
// it, else JSON, where a value appears once: as `value` (text) when its bytes are valid UTF-8,
// else as `valueBase64`; `?encoding=base64` asks for `valueBase64` always (etcd/Consul habit).
import { decode, encode } from "@msgpack/msgpack";
import type { Context } from "hono";
import { TXN_LIMITS, type KeyValue } from "../kv/command.ts";

export const MSGPACK = "application/msgpack";
const utf8 = new TextDecoder("utf-8", { fatal: true });

export type BodyKind = "json" | "msgpack" | "raw";

export function bodyKind(contentType: string | undefined): BodyKind {
  const t = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (t === "application/json") return "json";
  if (t === MSGPACK || t === "application/x-msgpack") return "msgpack";
  return "raw";
}

export class BadRequest extends Error {
  override name = "BadRequest";
}

/**
 * Our request bodies are shallow: a write is {value, expect: {value}, session: {client, seq}}, a
 * transaction {compare: [{...}], then: [{put: {...}}]} with at most 128 compares and 128 ops
 * per list (TXN_LIMITS). Limits on
 * the decoder stop a body from allocating more than its own size several times over: without
 * them 1.5 MB of nested one-element arrays cost 213 MiB. @msgpack/msgpack has no depth limit, so
 * the depth is checked by a scan that allocates nothing (msgpackDepthWithin) before decoding.
 */
export const MSGPACK_MAX_DEPTH = 6;
const MSGPACK_LIMITS = {
  maxStrLength: 2 * 1024 * 1024,
  maxBinLength: 2 * 1024 * 1024,
  maxArrayLength: Math.max(TXN_LIMITS.maxCompares, TXN_LIMITS.maxOps),
  maxMapLength: 16,
  maxExtLength: 0,
};

/** Parses a JSON or msgpack body into a plain value; the route's zod schema checks its shape. */
export function decodeBody(kind: "json" | "msgpack", body: Uint8Array): unknown {
  if (kind === "json") {
    let text: string;
    try {
      // fatal: invalid UTF-8 is refused, never replaced by U+FFFD (that would store other bytes).
      text = utf8.decode(body);
    } catch {
      throw new BadRequest("body is not valid UTF-8 (JSON must be UTF-8; send binary values as valueBase64, msgpack or raw bytes)");
    }
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new BadRequest(`body is not valid json: ${(err as Error).message}`);
    }
  }
  const depth = msgpackDepthWithin(body, MSGPACK_MAX_DEPTH);
  if (depth !== null) throw new BadRequest(`body is not acceptable msgpack: ${depth}`);
  try {
    return decode(body, MSGPACK_LIMITS);
  } catch (err) {
    throw new BadRequest(`body is not valid msgpack: ${(err as Error).message}`);
  }
}

/**
 * Walks one msgpack value without decoding it: null when it is well-formed enough to decode and
 * no container nests deeper than `maxDepth`, else the reason. Iterative (a counter of items still
 * to read per open container), so a hostile body cannot blow the stack either.
 */
export function msgpackDepthWithin(b: Uint8Array, maxDepth: number): string | null {
  const pending: number[] = [1];
  let at = 0;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const need = (n: number) => at + n <= b.byteLength;
  while (pending.length > 0) {
    if (pending[pending.length - 1] === 0) {
      pending.pop();
      continue;
    }
    pending[pending.length - 1]!--;
    if (!need(1)) return "truncated";
    const t = b[at++]!;
    let skip = 0;
    let items = -1;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) skip = 0;
    else if (t >= 0x80 && t <= 0x8f) items = (t & 0x0f) * 2;
    else if (t >= 0x90 && t <= 0x9f) items = t & 0x0f;
    else if (t >= 0xa0 && t <= 0xbf) skip = t & 0x1f;
    else {
      const width = ({ 0xc4: 1, 0xc5: 2, 0xc6: 4, 0xc7: 1, 0xc8: 2, 0xc9: 4, 0xd9: 1, 0xda: 2, 0xdb: 4, 0xdc: 2, 0xdd: 4, 0xde: 2, 0xdf: 4 } as Record<number, number>)[t];
      const fixed = ({ 0xca: 4, 0xcb: 8, 0xcc: 1, 0xcd: 2, 0xce: 4, 0xcf: 8, 0xd0: 1, 0xd1: 2, 0xd2: 4, 0xd3: 8, 0xd4: 2, 0xd5: 3, 0xd6: 5, 0xd7: 9, 0xd8: 17 } as Record<number, number>)[t];
      if (fixed !== undefined) skip = fixed;
      else if (width !== undefined) {
        if (!need(width)) return "truncated";
        const n = width === 1 ? b[at]! : width === 2 ? view.getUint16(at) : view.getUint32(at);
        at += width;
        if (t === 0xdc || t === 0xdd) items = n;
        else if (t === 0xde || t === 0xdf) items = n * 2;
        else skip = n + (t >= 0xc7 && t <= 0xc9 ? 1 : 0);
      } else return `unknown type byte 0x${t.toString(16)}`;
    }
    if (items >= 0) {
      if (pending.length >= maxDepth) return `nested deeper than ${maxDepth} levels`;
      pending.push(items);
    } else {
      if (!need(skip)) return "truncated";
      at += skip;
    }
  }
  return null;
}

export function wantsMsgpack(c: Context): boolean {
  const accept = c.req.header("accept") ?? "";
  return accept.includes(MSGPACK) || accept.includes("application/x-msgpack");
}

/** How values appear in JSON: text when valid UTF-8 (else base64), or base64 always. */
export type ValueEncoding = "auto" | "base64";

export function valueEncodingOf(c: Context): ValueEncoding {
  const e = c.req.query("encoding");
  if (e === undefined || e === "auto") return "auto";
  if (e === "base64") return "base64";
  throw new BadRequest("encoding must be auto (text when valid UTF-8, else valueBase64) or base64");
}

/** One representation per value: a 1 MiB value was sent as text and as base64 (7.5 MB of JSON). */
function jsonValue(v: Uint8Array, encoding: ValueEncoding): { value: string } | { valueBase64: string } {
  if (encoding === "auto") {
    try {
      return { value: utf8.decode(v) };
    } catch {
      // not text: base64 below
    }
  }
  return { valueBase64: Buffer.from(v).toString("base64") };
}

/** Replaces byte arrays with their JSON form, recursively (for KeyValue and results). */
function toJson(v: unknown, encoding: ValueEncoding): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (Array.isArray(v)) return v.map((x) => toJson(x, encoding));
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === "value" && x instanceof Uint8Array) Object.assign(out, jsonValue(x, encoding));
      else if (x !== undefined) out[k] = toJson(x, encoding);
    }
    return out;
  }
  return v;
}

/**
 * Sends `payload` as msgpack or JSON, per the Accept header. `headers` use lower-case names (ours
 * all do); they go out as a plain object, not a Headers: @hono/node-server writes a plain object
 * as it is, while a Headers is copied into one first, on every answer.
 */
export function reply(c: Context, status: number, payload: unknown, headers: Record<string, string> = {}): Response {
  if (wantsMsgpack(c)) {
    return new Response(encode(payload, { ignoreUndefined: true }), { status, headers: { ...headers, "content-type": MSGPACK } });
  }
  const h = { ...headers, "content-type": "application/json" };
  // A bad ?encoding on an error answer must not hide the error: errors fall back to auto.
  let encoding: ValueEncoding = "auto";
  try {
    encoding = valueEncodingOf(c);
  } catch {
    encoding = "auto";
  }
  return new Response(JSON.stringify(toJson(payload, encoding)), { status, headers: h });
}

export function errorReply(c: Context, status: number, error: string, message: string, headers: Record<string, string> = {}): Response {
  return reply(c, status, { error, message }, headers);
}

export type { KeyValue };
