// Watch over HTTP (scope: read). `GET /v1/watch?key=k` or `?prefix=p`, optionally `&rev=N` (the
// first revision to deliver; default: changes from now on). The answer is a stream of
// newline-delimited JSON (application/x-ndjson), readable with `curl -N --http2-prior-knowledge`:
//
//   {"type":"created","watchId":1,"revision":41,"startRevision":42}
//   {"type":"events","revision":42,"events":[{"type":"put","kv":{"key":"k","value":"v",...}}]}
//   {"type":"progress","revision":57}
//   {"type":"canceled","error":"compacted","message":"...","currentRevision":90,"oldestRevision":60}
//
// One line per revision, with all of that revision's events (a transaction's writes arrive
// together), so a client that lost the stream resumes with rev = last revision seen + 1, on any
// node, with no gap and no duplicate. Progress lines (every PROGRESS_MS) tell the revision the
// watcher is up to date at; resuming from progress + 1 is equally exact.
//
// Also the Consul-style blocking read on `GET /v1/kv/<key>?index=N&wait=30s` and
// `GET /v1/kv?prefix=p&index=N&wait=30s` (middleware in front of the kv routes): it waits until
// the key (a key under the prefix) changed after revision N, or the wait ends, then the normal
// read answers (x-phalanx-revision is the index for the next call).
import { Hono, type Context, type MiddlewareHandler } from "hono";
import type { KvEvent } from "../kv/history.ts";
import { TooManyWatchers, Watcher, type CancelReason, type WatchHub, type WatchRange, type WatchSink } from "../kv/watch_hub.ts";
import { REVISION_HEADER } from "./propose_reply.ts";
import { BadRequest, errorReply, reply } from "./wire.ts";
import { parseDuration } from "./duration.ts";

/** A watcher's stream buffers this much before it stops taking live events (then it pages the history). */
export const WATCH_BUFFER_BYTES = 256 * 1024;
export const PROGRESS_MS = 30_000;
const MAX_WAIT_MS = 10 * 60 * 1000;
const DEFAULT_WAIT_MS = 5 * 60 * 1000;

const enc = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

function line(v: unknown): Uint8Array {
  return enc.encode(`${JSON.stringify(v)}\n`);
}

function text(v: Uint8Array): string | null {
  try {
    return utf8.decode(v);
  } catch {
    return null;
  }
}

export function eventJson(e: KvEvent): unknown {
  if (e.type === "delete") return { type: "delete", kv: { key: e.key, modRevision: e.revision } };
  return {
    type: "put",
    kv: {
      key: e.key,
      value: text(e.value),
      valueBase64: Buffer.from(e.value).toString("base64"),
      createRevision: e.createRevision,
      modRevision: e.revision,
      version: e.version,
      lease: e.lease,
    },
  };
}

function counterQuery(c: Context, name: string): number | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!/^\d{1,16}$/.test(v) || !Number.isSafeInteger(n)) throw new BadRequest(`${name} must be a non-negative integer`);
  return n;
}

/** "30s", "5m", "1500ms", "10" (seconds): Consul's wait syntax. */
export function parseWait(v: string | undefined): number {
  if (v === undefined) return DEFAULT_WAIT_MS;
  const text = v.trim();
  // Consul also takes a bare number of seconds; everything else is a Go duration (duration.ts).
  const ms = /^\d{1,9}$/.test(text) ? Number(text) * 1000 : parseDuration(text);
  if (ms === null) throw new BadRequest('wait must be a duration like "30s", "5m" or "500ms"');
  return Math.min(ms, MAX_WAIT_MS);
}

function rangeOf(c: Context): WatchRange {
  const key = c.req.query("key");
  const prefix = c.req.query("prefix");
  if ((key === undefined) === (prefix === undefined)) throw new BadRequest("give key=<key> or prefix=<prefix> (one of them)");
  if (key !== undefined) {
    if (key === "") throw new BadRequest("the key is empty (use prefix= for a range)");
    return { key };
  }
  return { prefix: prefix! };
}

export function watchRoutes(hub: WatchHub): Hono {
  const app = new Hono();
  const timer = setInterval(() => hub.progressAll(), PROGRESS_MS);
  timer.unref();

  app.get("/v1/watch", (c) => {
    const range = rangeOf(c);
    const rev = counterQuery(c, "rev");
    if (rev === 0) throw new BadRequest("rev starts at 1 (omit it to watch from now on)");
    let watcher: Watcher | null = null;
    let controller!: ReadableStreamDefaultController<Uint8Array>;
    let ended = false;
    const push = (chunk: Uint8Array): boolean => {
      if (ended) return false;
      try {
        controller.enqueue(chunk);
      } catch {
        // The consumer is gone; cancel() below removes the watcher.
        return false;
      }
      return (controller.desiredSize ?? 0) > 0;
    };
    const stream = new ReadableStream<Uint8Array>(
      {
        start(ctrl) {
          controller = ctrl;
        },
        pull() {
          if (watcher !== null) hub.resume(watcher);
        },
        cancel() {
          ended = true;
          if (watcher !== null) hub.close(watcher);
        },
      },
      { highWaterMark: WATCH_BUFFER_BYTES, size: (chunk) => chunk?.byteLength ?? 0 },
    );
    const sink: WatchSink = {
      events: (revision, events) => push(line({ type: "events", revision, events: events.map(eventJson) })),
      progress: (revision) => {
        // Only into an empty-ish buffer: a progress line must never add to a backlog.
        if ((controller.desiredSize ?? 0) > WATCH_BUFFER_BYTES / 2) push(line({ type: "progress", revision }));
      },
      cancelled: (reason: CancelReason) => {
        push(line({ type: "canceled", ...reason }));
        ended = true;
        try {
          controller.close();
        } catch {
          // Already cancelled by the consumer.
        }
      },
    };
    let w: Watcher | CancelReason;
    try {
      w = hub.watch(range, rev, sink);
    } catch (err) {
      if (err instanceof TooManyWatchers) return errorReply(c, 503, "too_many_watchers", err.message, { "retry-after": "5" });
      throw err;
    }
    if (!(w instanceof Watcher)) return reply(c, 410, w, { [REVISION_HEADER]: String(hub.revision()) });
    watcher = w;
    push(line({ type: "created", watchId: w.id, revision: hub.revision(), startRevision: w.next }));
    return new Response(stream, {
      status: 200,
      headers: { "content-type": "application/x-ndjson", "cache-control": "no-store", [REVISION_HEADER]: String(hub.revision()) },
    });
  });
  return app;
}

/**
 * `?index=N[&wait=30s]` on GET /v1/kv/<key> (one key) or GET /v1/kv?prefix=p (a range, Consul's
 * `?recurse`): waits for a change after N, then the read runs.
 */
export function blockingReads(hub: WatchHub): MiddlewareHandler {
  // Every key read passes here and almost none blocks: only a read with ?index= becomes async.
  return (c, next) => {
    if (c.req.method !== "GET") return next();
    const index = counterQuery(c, "index");
    if (index === undefined) return next();
    return blockUntilChanged(hub, c, next, index);
  };
}

/** The blocking read itself: waits for a change after `index` (or the wait), then the normal read. */
async function blockUntilChanged(hub: WatchHub, c: Context, next: () => Promise<void>, index: number): Promise<Response | void> {
  const waitMs = parseWait(c.req.query("wait"));
  const path = new URL(c.req.url).pathname;
  let range: WatchRange;
  if (path === "/v1/kv" || path === "/v1/kv/") range = { prefix: c.req.query("prefix") ?? "" };
  else {
    try {
      range = { key: decodeURIComponent(path.slice("/v1/kv/".length)) };
    } catch {
      throw new BadRequest("the key is not valid percent-encoding");
    }
  }
  try {
    await hub.waitForChange(range, index, waitMs);
  } catch (err) {
    if (err instanceof TooManyWatchers) return errorReply(c, 503, "too_many_watchers", err.message, { "retry-after": "5" });
    throw err;
  }
  return next();
}
