// Ends a buffered HTTP/2 answer on its stream, not through the compatibility response.
//
// @hono/node-server answers through node:http2's compatibility API (Http2ServerResponse): for a
// buffered body, writeHead(status, headers) and then end(body). Bun 1.4.5's compatibility
// response sends its headers asking for trailers (waitForTrailers, so that addTrailers() could
// still work), so its end() cannot put END_STREAM on the body's DATA frame: it sends an empty
// frame to end the stream and flushes the socket at once, one write(2) per answer. Ended on the
// stream itself (stream.respond(), then stream.end(body)), the body's frame carries END_STREAM and
// the flush waits for the end of the turn: the answers of one turn leave in one write (a bare
// server under 64 streams, bench/h2_answer.ts: 1 sendto per answer → 0.055). One node under 64
// concurrent clients (bench/client_path.ts): a stale GET 70 → 61 µs of server CPU, a PUT 131 →
// 118 (BENCHMARKS.md, "Cluster").
//
// Only that one shape is taken to the stream; everything else goes the compatibility way as
// before: a body written in parts or with headers flushed first (a watch, a large range read), a
// HEAD request or a status without a body (the stream would end itself at the headers), a stream
// already closed or answered. Nothing here reads or sets the compatibility response's state, and
// its 'finish' and 'close' events still come (they follow the stream's).
import type http2 from "node:http2";
import type { OutgoingHttpHeaders } from "node:http";

/** Statuses that end an HTTP/2 stream at the headers (node:http2's respond() does so itself). */
const NO_BODY = new Set([204, 205, 304]);

/** The compatibility response's methods that @hono/node-server calls (flushHeaders is not in Node's types). */
type Answer = http2.Http2ServerResponse & { flushHeaders(): void };

export function endOnStream(req: http2.Http2ServerRequest, compat: http2.Http2ServerResponse): void {
  if (req.method === "HEAD") return;
  const res = compat as Answer;
  const compatWriteHead = res.writeHead;
  const compatWrite = res.write;
  const compatFlushHeaders = res.flushHeaders;
  const compatEnd = res.end;
  let head: { status: number; headers: OutgoingHttpHeaders } | null = null;
  const restore = (): void => {
    res.writeHead = compatWriteHead;
    res.write = compatWrite;
    res.flushHeaders = compatFlushHeaders;
    res.end = compatEnd;
  };
  // The compatibility way for the rest of this answer, the held headers sent first.
  const compatibly = (): void => {
    restore();
    const held = head;
    head = null;
    if (held !== null) (compatWriteHead as (...a: unknown[]) => http2.Http2ServerResponse).call(res, held.status, held.headers);
  };
  res.writeHead = function (this: http2.Http2ServerResponse, status: number, ...rest: unknown[]) {
    const headers = rest.find((r): r is OutgoingHttpHeaders => typeof r === "object" && r !== null && !Array.isArray(r));
    // A status message (HTTP/1.1 only), raw header arrays or a second call: not this shape.
    if (head !== null || rest.some((r) => typeof r === "string" || Array.isArray(r)) || NO_BODY.has(status)) {
      compatibly();
      return (compatWriteHead as (...a: unknown[]) => http2.Http2ServerResponse).call(this, status, ...rest);
    }
    head = { status, headers: headers ?? {} };
    return this;
  } as typeof res.writeHead;
  res.write = function (this: http2.Http2ServerResponse, ...args: unknown[]) {
    compatibly();
    return (compatWrite as (...a: unknown[]) => boolean).apply(this, args);
  } as typeof res.write;
  res.flushHeaders = function (this: http2.Http2ServerResponse) {
    compatibly();
    compatFlushHeaders.call(this);
  };
  res.end = function (this: http2.Http2ServerResponse, ...args: unknown[]) {
    const body = args[0];
    const held = head;
    const stream = res.stream;
    const buffered = body === undefined || typeof body === "string" || body instanceof Uint8Array;
    if (held === null || args.length > 1 || !buffered || stream.destroyed || stream.closed || stream.headersSent) {
      compatibly();
      return (compatEnd as (...a: unknown[]) => http2.Http2ServerResponse).apply(this, args);
    }
    head = null;
    restore();
    const headers: OutgoingHttpHeaders = { ":status": held.status };
    for (const [name, value] of Object.entries(held.headers)) if (value !== undefined) headers[name.toLowerCase()] = value;
    const empty = body === undefined || (typeof body === "string" ? body.length === 0 : body.byteLength === 0);
    stream.respond(headers, { endStream: empty });
    if (!empty) stream.end(body);
    return this;
  } as typeof res.end;
}
