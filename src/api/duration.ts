// Go-style durations (time.ParseDuration), the syntax etcd and Consul users already type:
// "500ms", "5s", "1m", "1h30m", "1.5s", "250us". Units: ns, us (µs, μs), ms, s, m, h. No sign:
// a negative duration means nothing where we take one. A bare "0" is zero, as in Go.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3,
  "\u03bcs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Longer input than any sensible duration: refused before the regex runs. */
const MAX_TEXT = 64;

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/y;

/** Milliseconds (may be fractional), or null when `text` is not a duration. */
export function parseDuration(text: string): number | null {
  if (text.length === 0 || text.length > MAX_TEXT) return null;
  if (text === "0") return 0;
  let ms = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const at = PART.lastIndex;
    const m = PART.exec(text);
    if (m === null || m.index !== at) return null;
    ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(ms) ? ms : null;
}
