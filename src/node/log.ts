// Plain one-line logs on stderr: "<iso time> <level> [<node>] <message> key=value...". Operators
// read them with their eyes and grep, so no JSON; values with spaces are quoted.

export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 0, info: 1, warn: 2, error: 3 };

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function format(v: unknown): string {
  const s = v instanceof Error ? v.message : typeof v === "string" ? v : JSON.stringify(v);
  return /[\s"=]/.test(s ?? "") ? JSON.stringify(s) : String(s);
}

export function createLogger(node: string, minLevel: Level = "info", write: (line: string) => void = (l) => process.stderr.write(l)): Logger {
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[level] < ORDER[minLevel]) return;
    const extra = fields === undefined ? "" : Object.entries(fields).map(([k, v]) => ` ${k}=${format(v)}`).join("");
    write(`${new Date().toISOString()} ${level.toUpperCase()} [${node}] ${msg}${extra}\n`);
  };
  return {
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
  return { debug: gate(log.debug), info: gate(log.info), warn: gate(log.warn), error: gate(log.error) };
}
