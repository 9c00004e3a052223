// The request path exactly as the client sent it (HTTP/2 :path), not as the URL parser rewrote it.
// Hono routes on the WHATWG-normalised URL: `dir/../etc` becomes `etc`, `x/%2e%2e/y` becomes `y`,
// and `\` counts as `/`. A key taken from that URL is not the key the client named, so keys come
// from the raw path (percent-decoded exactly once), and a path with dot segments is refused
// outright: otherwise the route that runs (normalised) and the path we read (raw) could differ.
import type { Context, MiddlewareHandler } from "hono";
import { BadRequest, errorReply } from "./wire.ts";

/** Path part of the raw :path (no query); the parsed URL's path when there is no raw request. */
export function rawPath(c: Context): string {
  const raw = (c.env as { incoming?: { url?: unknown } } | undefined)?.incoming?.url;
  const full = typeof raw === "string" ? raw : new URL(c.req.url).pathname;
  const q = full.indexOf("?");
  return q === -1 ? full : full.slice(0, q);
}

/** Path and query exactly as received, for forwarding the request unchanged. */
export function rawPathAndQuery(c: Context): string {
  const raw = (c.env as { incoming?: { url?: unknown } } | undefined)?.incoming?.url;
  if (typeof raw === "string") return raw;
  const url = new URL(c.req.url);
  return url.pathname + url.search;
}

/**
 * A whole segment of one or two dots, each "." or "%2e" (any case), between "/" or "\"
 * separators or the path's ends. One scan, no allocation on a clean path: every client request
 * passes through here.
 */
const DOT_SEGMENT = /(?:^|[/\\])((?:\.|%2e){1,2})(?=[/\\]|$)/i;

/** The first "." or ".." segment (also percent-encoded, %2e) as the client wrote it; null when none. */
export function dotSegment(path: string): string | null {
  const m = DOT_SEGMENT.exec(path);
  return m === null ? null : m[1]!;
}

/**
 * Refuses paths the URL parser would rewrite (dot segments) and paths that are not plain ASCII.
 * Not an async function: it has nothing to do after next(), and every request passes through it
 * (an async layer costs a promise and a microtask turn per request).
 */
export function refuseRewrittenPaths(): MiddlewareHandler {
  return (c, next) => {
    const path = rawPath(c);
    if (!/^[\x21-\x7e]*$/.test(path)) {
      return Promise.resolve(errorReply(c, 400, "bad_path", "the path must be visible ASCII: percent-encode other bytes of a key (UTF-8)"));
    }
    const dot = dotSegment(path);
    if (dot !== null) {
      return Promise.resolve(
        errorReply(
          c,
          400,
          "bad_path",
          `the path has a dot segment ${JSON.stringify(dot)}, which URL normalisation would remove; ` +
            `keys cannot have "." or ".." between slashes in a URL (encode the slashes as %2F)`,
        ),
      );
    }
    return next();
  };
}

/** The key after `prefix` in the raw path, percent-decoded once as UTF-8. */
export function keyFromRawPath(c: Context, prefix: string): string {
  const path = rawPath(c);
  if (!path.startsWith(prefix)) throw new BadRequest(`the path must start with ${prefix}`);
  let key: string;
  try {
    key = decodeURIComponent(path.slice(prefix.length));
  } catch {
    throw new BadRequest("the key is not valid percent-encoding of UTF-8");
  }
  if (key === "") throw new BadRequest("the key is empty");
  return key;
}
