// Content negotiation for the client API. Requests: JSON, msgpack, or (for a value) the raw bytes,
// so `curl --data-binary @file` stores the file as is. Responses: msgpack when the client accepts
// it, else JSON, where values appear as UTF-8 text (null when not valid UTF-8) and as base64.
import { decode, encode } from "@msgpack/msgpack";
import type { Context } from "hono";
import type { KeyValue } from "../kv/command.ts";

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

/** Parses a JSON or msgpack body into a plain value; the route's zod schema checks its shape. */
export function decodeBody(kind: "json" | "msgpack", body: Uint8Array): unknown {
  try {
    return kind === "json" ? JSON.parse(new TextDecoder().decode(body)) : decode(body);
  } catch (err) {
    throw new BadRequest(`body is not valid ${kind}: ${(err as Error).message}`);
  }
}

export function wantsMsgpack(c: Context): boolean {
  const accept = c.req.header("accept") ?? "";
  return accept.includes(MSGPACK) || accept.includes("application/x-msgpack");
}

function jsonValue(v: Uint8Array): { value: string | null; valueBase64: string } {
  let value: string | null;
  try {
    value = utf8.decode(v);
  } catch {
    value = null;
  }
  return { value, valueBase64: Buffer.from(v).toString("base64") };
}

/** Replaces byte arrays with their JSON form, recursively (for KeyValue and results). */
function toJson(v: unknown): unknown {
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (Array.isArray(v)) return v.map(toJson);
  if (v !== null && typeof v === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      if (k === "value" && x instanceof Uint8Array) Object.assign(out, jsonValue(x));
      else out[k] = toJson(x);
    }
    return out;
  }
  return v;
}

/** Sends `payload` as msgpack or JSON, per the Accept header. */
export function reply(c: Context, status: number, payload: unknown, headers: Record<string, string> = {}): Response {
  const h = new Headers(headers);
  if (wantsMsgpack(c)) {
    h.set("content-type", MSGPACK);
    return new Response(encode(payload, { ignoreUndefined: true }), { status, headers: h });
  }
  h.set("content-type", "application/json");
  return new Response(JSON.stringify(toJson(payload)), { status, headers: h });
}

export function errorReply(c: Context, status: number, error: string, message: string, headers: Record<string, string> = {}): Response {
  return reply(c, status, { error, message }, headers);
}

export type { KeyValue };
