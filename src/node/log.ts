// One line per event on stderr, in one of two formats:
// - `text` (default): logfmt, `ts=<iso> level=info node=n1 msg="became leader" term=3`. Readable
//   by eye, greppable, and parsed by every log shipper that knows logfmt (Loki, Vector, Heroku's).
//   A value is quoted (JSON string escapes) when it is empty or holds a space, `=`, `"` or a
//   control character, so a line always splits back into the same key=value pairs.
// - `json` (LOG_FORMAT=json): one JSON object per line with the same keys, for shipping.
// The message is a fixed phrase and the facts go in fields, so a search for a phrase finds every
// occurrence whatever the values were.

export type Level = "debug" | "info" | "warn" | "error";
export type LogFormat = "text" | "json";

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Logger {
  /** The lowest level written, when known (the node turns the core's trace on only for debug). */
  readonly minLevel?: Level;
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

export interface LoggerOptions {
  minLevel?: Level;
  format?: LogFormat;
  write?: (line: string) => void;
}

/** A field's value as plain data: errors by their message, everything else as it is. */
function plain(v: unknown): unknown {
  if (v instanceof Error) return v.message;
  if (typeof v === "bigint") return v.toString();
  return v;
}

function logfmtValue(v: unknown): string {
  const p = plain(v);
  const s = typeof p === "string" ? p : p === undefined ? "" : JSON.stringify(p);
  return s === "" || /[\s"=\\\u0000-\u001f\u007f]/.test(s) ? JSON.stringify(s) : s;
}

/** A key stays a bare word: anything else in it becomes `_`, so it cannot break the line apart. */
function logfmtKey(k: string): string {
  const safe = k.replace(/[^A-Za-z0-9_.\-]/g, "_");
  return safe === "" ? "_" : safe;
}

export function formatLine(format: LogFormat, ts: string, level: Level, node: string, msg: string, fields?: Record<string, unknown>): string {
  if (format === "json") {
    const obj: Record<string, unknown> = { ts, level, node, msg };
    for (const [k, v] of Object.entries(fields ?? {})) if (!(k in obj)) obj[k] = plain(v);
    return `${JSON.stringify(obj)}\n`;
  }
  let line = `ts=${ts} level=${level} node=${logfmtValue(node)} msg=${logfmtValue(msg)}`;
  for (const [k, v] of Object.entries(fields ?? {})) line += ` ${logfmtKey(k)}=${logfmtValue(v)}`;
  return `${line}\n`;
}

export function createLogger(node: string, opts: LoggerOptions = {}): Logger {
  const minLevel = opts.minLevel ?? "info";
  const format = opts.format ?? "text";
  const write = opts.write ?? ((l: string) => void process.stderr.write(l));
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < ORDER[minLevel]) return;
    write(formatLine(format, new Date().toISOString(), level, node, msg, fields));
  };
  return {
    minLevel,
    debug: (m, f) => emit("debug", m, f),
    info: (m, f) => emit("info", m, f),
    warn: (m, f) => emit("warn", m, f),
    error: (m, f) => emit("error", m, f),
  };
}

/** A logger that writes at most one line per interval and says how many it held back. */
export function rateLimited(log: Logger, intervalMs: number, now: () => number = () => performance.now()): Logger {
  let last = Number.NEGATIVE_INFINITY;
  let held = 0;
  const gate = (emit: (m: string, f?: Record<string, unknown>) => void) => (m: string, f?: Record<string, unknown>) => {
    const t = now();
    if (t - last < intervalMs) {
      held++;
      return;
    }
    last = t;
    emit(m, held === 0 ? f : { ...f, suppressed: held });
    held = 0;
  };
  return { ...(log.minLevel === undefined ? {} : { minLevel: log.minLevel }), debug: gate(log.debug), info: gate(log.info), warn: gate(log.warn), error: gate(log.error) };
}
