// A streaming GET over the CLI's HTTP/2 sessions: newline-delimited JSON lines as they arrive
// (for `kv watch`, `lock`, `elect`). The buffered ApiClient waits for a whole answer; a watch
// never ends, so it gets its own reader.
import http2 from "node:http2";
import { H2Client, type ClientTls } from "../transport/h2_client.ts";

export class StreamError extends Error {
  override name = "StreamError";
  constructor(
    message: string,
    /** HTTP status when the server answered with an error (not a broken connection). */
    readonly status: number | null,
    readonly body: Record<string, unknown> | null,
  ) {
    super(message);
  }
}

/** Longest line accepted (a 1 MiB value in JSON and base64, with room). */
const MAX_LINE = 8 * 1024 * 1024;

export class LineStream {
  private readonly h2: H2Client;

  constructor(
    tls: ClientTls | undefined,
    connectTimeoutMs: number,
    /** Bearer token sent with every stream (client auth), none when undefined. */
    private readonly token?: string,
  ) {
    this.h2 = new H2Client({ ...(tls === undefined ? {} : { tls }), connectTimeoutMs });
  }

  /**
   * Calls `onLine` with each parsed line of GET `path` on `addr` until the stream ends (resolves)
   * or breaks (rejects with StreamError). `signal` aborts it (resolves).
   */
  async read(addr: string, path: string, onLine: (v: Record<string, unknown>) => void, signal?: AbortSignal): Promise<void> {
    const origin = this.h2.originFor(addr);
    let session: http2.ClientHttp2Session;
    try {
      session = await this.h2.session(origin);
    } catch (err) {
      throw new StreamError((err as Error).message, null, null);
    }
    await new Promise<void>((resolve, reject) => {
      const auth = this.token === undefined ? {} : { authorization: `Bearer ${this.token}` };
      const stream = session.request({ ":method": "GET", ":path": path, accept: "application/x-ndjson, application/json", ...auth });
      let status = 0;
      let buf = "";
      const dec = new TextDecoder();
      let settled = false;
      const done = (err: StreamError | null) => {
        if (settled) return;
        settled = true;
        signal?.removeEventListener("abort", onAbort);
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        if (err === null) resolve();
        else reject(err);
      };
      const onAbort = () => done(null);
      signal?.addEventListener("abort", onAbort);
      if (signal?.aborted === true) return done(null);
      stream.on("response", (h) => {
        status = Number(h[":status"] ?? 0);
      });
      stream.on("data", (chunk: Buffer) => {
        buf += dec.decode(chunk, { stream: true });
        if (status !== 200) {
          if (buf.length > MAX_LINE) done(new StreamError(`${addr}: HTTP ${status}`, status, null));
          return;
        }
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const text = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (text.trim() === "") continue;
          let v: Record<string, unknown>;
          try {
            v = JSON.parse(text) as Record<string, unknown>;
          } catch {
            return done(new StreamError(`${addr}: the server sent a line that is not JSON`, null, null));
          }
          onLine(v);
          if (settled) return;
        }
        if (buf.length > MAX_LINE) done(new StreamError(`${addr}: a line longer than ${MAX_LINE} bytes`, null, null));
      });
      stream.on("end", () => {
        if (status !== 200) {
          let body: Record<string, unknown> | null = null;
          try {
            body = JSON.parse(buf) as Record<string, unknown>;
          } catch {
            body = null;
          }
          return done(new StreamError(`${addr}: ${String(body?.message ?? `HTTP ${status}`)}`, status, body));
        }
        done(null);
      });
      stream.on("error", (err) => done(new StreamError(`${addr}: ${err.message}`, null, null)));
      stream.on("close", () => done(status === 200 ? new StreamError(`${addr}: the stream closed`, null, null) : new StreamError(`${addr}: closed before an answer`, null, null)));
    });
  }

  async close(): Promise<void> {
    await this.h2.close();
  }
}
