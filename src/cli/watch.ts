// `phalanx kv watch <key> | --prefix <p> [--rev N] [--json]`: prints every change as it comes.
// When the stream breaks (node killed, leader change, network), it reconnects to the next
// --addr endpoint and resumes at the last revision seen + 1: no event is lost or printed twice.
import { endpointsFrom, tlsFrom, tokenFrom } from "./client.ts";
import { UsageError, type ClientContext } from "./command.ts";
import { EXIT, fail } from "./output.ts";
import { LineStream, StreamError } from "./stream_client.ts";

export const WATCH_HELP = `usage: phalanx kv watch <key> | --prefix <prefix> [--rev N] [--json]
  prints each change (PUT/DELETE) from revision N (default: from now on); reconnects to the
  next --addr endpoint after a disconnect and resumes at the last revision seen + 1.
  --json: one JSON line per revision: {"revision":N,"events":[...]}`;

export interface WatchEvent {
  type: "put" | "delete";
  kv: { key: string; value?: string | null; valueBase64?: string; createRevision?: number; modRevision: number; version?: number; lease?: number };
}

export interface ResumingWatch {
  addrs: string[];
  tls: ReturnType<typeof tlsFrom>;
  /** Bearer token (client auth), none when undefined. */
  token: string | undefined;
  range: { key: string } | { prefix: string };
  /** First revision to deliver; undefined: from now on. */
  rev: number | undefined;
  /** Give up when no endpoint answered for this long. */
  unreachableMs: number;
  onEvents: (revision: number, events: WatchEvent[]) => void;
  /** Called once the first stream is set up, with the revision it is current at. */
  onCreated?: (revision: number) => void;
  signal?: AbortSignal;
  /** Called on each reconnect, for a note on stderr. */
  onReconnect?: (why: string, next: number) => void;
}

export class WatchCanceled extends Error {
  override name = "WatchCanceled";
  constructor(
    message: string,
    readonly error: string,
  ) {
    super(message);
  }
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2000;

/**
 * Watches until `signal` aborts (resolves) or the server cancels for good (compacted: rejects with
 * WatchCanceled) or no endpoint answered for `unreachableMs` (rejects with StreamError).
 */
export async function resumingWatch(w: ResumingWatch): Promise<void> {
  const lines = new LineStream(w.tls, 2000, w.token);
  let next = w.rev;
  let endpoint = 0;
  let backoff = BACKOFF_MIN_MS;
  let failingSince: number | null = null;
  let created = false;
  try {
    // Ends by abort, a final cancel, or unreachability; each failed round waits a bounded backoff.
    while (w.signal?.aborted !== true) {
      const addr = w.addrs[endpoint % w.addrs.length]!;
      const q = new URLSearchParams("key" in w.range ? { key: w.range.key } : { prefix: w.range.prefix });
      if (next !== undefined) q.set("rev", String(next));
      let final: WatchCanceled | null = null;
      let reason = "the stream ended";
      try {
        await lines.read(
          addr,
          `/v1/watch?${q}`,
          (v) => {
            failingSince = null;
            backoff = BACKOFF_MIN_MS;
            if (v.type === "created") {
              if (next === undefined) next = Number(v.startRevision);
              if (!created) w.onCreated?.(Number(v.revision));
              created = true;
            } else if (v.type === "events") {
              const rev = Number(v.revision);
              // A revision at or below what we have seen would be a duplicate: never print it twice.
              if (next !== undefined && rev < next) return;
              next = rev + 1;
              w.onEvents(rev, v.events as WatchEvent[]);
            } else if (v.type === "progress") {
              const rev = Number(v.revision);
              if (next === undefined || rev + 1 > next) next = rev + 1;
            } else if (v.type === "canceled") {
              if (v.error === "compacted") final = new WatchCanceled(String(v.message), "compacted");
              reason = String(v.message);
            }
          },
          w.signal,
        );
      } catch (err) {
        if (!(err instanceof StreamError)) throw err;
        if (err.status === 410) throw new WatchCanceled(String(err.body?.message ?? err.message), "compacted");
        if (err.status === 400) throw new WatchCanceled(String(err.body?.message ?? err.message), "bad_request");
        reason = err.message;
      }
      if (final !== null) throw final;
      if ((w.signal?.aborted as boolean | undefined) === true) break;
      failingSince ??= performance.now();
      if (performance.now() - failingSince > w.unreachableMs) throw new StreamError(`no endpoint served the watch for ${w.unreachableMs} ms (${reason})`, null, null);
      endpoint++;
      w.onReconnect?.(reason, next ?? 0);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(BACKOFF_MAX_MS, backoff * 2);
    }
  } finally {
    await lines.close();
  }
}

function describe(e: WatchEvent): string {
  if (e.type === "delete") return `DELETE ${e.kv.key}`;
  const value = e.kv.value ?? `base64:${e.kv.valueBase64 ?? ""}`;
  return `PUT ${e.kv.key} ${value}`;
}

export async function watch(ctx: ClientContext): Promise<number> {
  const prefix = ctx.values.prefix as string | undefined;
  if ((prefix === undefined) === (ctx.positionals.length === 0) || ctx.positionals.length > 1) throw new UsageError("give one key or --prefix");
  const revText = ctx.values.rev as string | undefined;
  const rev = revText === undefined ? undefined : Number(revText);
  if (rev !== undefined && (!Number.isSafeInteger(rev) || rev < 1)) throw new UsageError("--rev must be a positive integer");
  const abort = new AbortController();
  const stop = () => abort.abort();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  try {
    await resumingWatch({
      addrs: endpointsFrom(ctx.values.addr as string[] | undefined).addrs,
      tls: tlsFrom(ctx.values as Record<string, string>),
      token: tokenFrom(ctx.values as Record<string, string>),
      range: prefix !== undefined ? { prefix } : { key: ctx.positionals[0]! },
      rev,
      unreachableMs: Number(ctx.values.timeout ?? 10_000),
      signal: abort.signal,
      onEvents: (revision, events) => {
        if (ctx.json) process.stdout.write(`${JSON.stringify({ revision, events })}\n`);
        else for (const e of events) process.stdout.write(`${describe(e)} (revision ${revision})\n`);
      },
      onReconnect: (why, next) => process.stderr.write(`phalanx: watch interrupted (${why}); resuming at revision ${next} on the next endpoint\n`),
    });
  } catch (err) {
    if (err instanceof WatchCanceled) return fail(err.error === "bad_request" ? EXIT.usage : EXIT.no, err.message);
    if (err instanceof StreamError) return fail(EXIT.unavailable, err.message);
    throw err;
  } finally {
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
  }
  return EXIT.ok;
}
