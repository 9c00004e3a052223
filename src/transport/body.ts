// Reads a request body into memory with a hard cap, so a peer cannot make us buffer without bound.

export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
  constructor(readonly limit: number) {
    super(`body exceeds ${limit} bytes`);
  }
}

/** The Node-style request that @hono/node-server puts in a context's env, when there is one. */
export interface IncomingBody {
  readonly readableDidRead: boolean;
  on(event: "data", fn: (chunk: Uint8Array) => void): unknown;
  on(event: "error", fn: (err: Error) => void): unknown;
  once(event: "end" | "close", fn: () => void): unknown;
  removeAllListeners(event: "data"): unknown;
  pause(): unknown;
}

/**
 * A body already in memory: a request a follower forwarded on its peer stream arrives whole in
 * its frame (api/forward.ts runForwarded puts it beside the raw path), so it is taken as it is
 * instead of being read back out of the Request's web stream (reading 100 bytes back that way
 * costs 2.5-3 µs of CPU more, measured alone; a forwarded write costs the leader about 50 µs in
 * all, `bun bench/client_path.ts --only forwarded`).
 */
export interface HeldBody {
  readonly held: Uint8Array;
}

/** Where a request's body can be read from other than its web stream; undefined: the stream. */
export function incomingOf(env: unknown): IncomingBody | HeldBody | undefined {
  const incoming = (env as { incoming?: Partial<IncomingBody & HeldBody> } | undefined)?.incoming;
  if (incoming === undefined) return undefined;
  if (incoming.held instanceof Uint8Array) return incoming as HeldBody;
  return typeof incoming.on === "function" && incoming.readableDidRead === false ? (incoming as IncomingBody) : undefined;
}

/**
 * With `incoming` (the Node request under the Request), reads it directly: the Request's body
 * stream is a web-stream adapter around the same bytes and costs several times more per request.
 * A held body (HeldBody) is the body itself, under the same cap.
 */
export async function readCappedBody(req: Request, limit: number, incoming?: IncomingBody | HeldBody): Promise<Uint8Array> {
  // A declared length over the cap is refused before reading a byte.
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new BodyTooLargeError(limit);
  if (incoming !== undefined && "held" in incoming) {
    if (incoming.held.byteLength > limit) throw new BodyTooLargeError(limit);
    return incoming.held;
  }
  if (incoming !== undefined) return readIncoming(incoming, limit);
  return readStreamCapped(req.body, { maxBytes: limit, tooLarge: () => new BodyTooLargeError(limit) });
}

/**
 * A web stream read into memory, cancelled (and `tooLarge()` thrown) once it passes `maxBytes`,
 * and with `withinMs`, cancelled (and `late()` thrown) when it has not ended by then.
 */
export async function readStreamCapped(
  body: ReadableStream<Uint8Array> | null,
  cap: { maxBytes: number; tooLarge: () => Error; withinMs?: number; late?: () => Error },
): Promise<Uint8Array> {
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  let late = false;
  const timer =
    cap.withinMs === undefined
      ? undefined
      : setTimeout(() => {
          late = true;
          void reader.cancel().catch(() => undefined);
        }, cap.withinMs);
  try {
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (late) throw cap.late?.() ?? new Error(`the stream did not end within ${cap.withinMs} ms`);
      if (done) break;
      total += value.byteLength;
      if (total > cap.maxBytes) {
        await reader.cancel().catch(() => undefined);
        throw cap.tooLarge();
      }
      chunks.push(value);
    }
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  } finally {
    clearTimeout(timer);
  }
}

function readIncoming(incoming: IncomingBody, limit: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const chunks: Uint8Array[] = [];
    let total = 0;
    let done = false;
    // Listeners stay (an 'error' without one would be thrown); only the first outcome counts.
    const settle = (outcome: () => void) => {
      if (done) return;
      done = true;
      incoming.removeAllListeners("data");
      outcome();
    };
    incoming.on("data", (chunk) => {
      total += chunk.byteLength;
      if (total <= limit) {
        chunks.push(chunk);
        return;
      }
      // Stop reading; the stream ends with the answer (413).
      incoming.pause();
      settle(() => reject(new BodyTooLargeError(limit)));
    });
    incoming.once("end", () => settle(() => resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks))));
    incoming.on("error", (err) => settle(() => reject(err)));
    incoming.once("close", () => settle(() => reject(new Error("the request was closed before its body ended"))));
  });
}
