// Reads a request body into memory with a hard cap, so a peer cannot make us buffer without bound.

export class BodyTooLargeError extends Error {
  override readonly name = "BodyTooLargeError";
  constructor(readonly limit: number) {
    super(`body exceeds ${limit} bytes`);
  }
}

export async function readCappedBody(req: Request, limit: number): Promise<Uint8Array> {
  // A declared length over the cap is refused before reading a byte.
  const declared = Number(req.headers.get("content-length") ?? "0");
  if (declared > limit) throw new BodyTooLargeError(limit);
  if (req.body === null) return new Uint8Array(0);
  const reader = req.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > limit) {
      await reader.cancel().catch(() => undefined);
      throw new BodyTooLargeError(limit);
    }
    chunks.push(value);
  }
  if (chunks.length === 1 && chunks[0] !== undefined) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}
