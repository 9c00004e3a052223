// The hand-written check of the common proposals (command.ts quickProposal) against the schema it
// stands in for: on generated inputs, valid and broken, encodeProposal() and decodeProposal()
// must accept exactly what the schema accepts, return what it returns (key order included: the
// encoded bytes are the log's format) and refuse with the schema's message.
import { describe, expect, test } from "bun:test";
import { decode, encode } from "@msgpack/msgpack";
import { decodeProposal, encodeProposal, proposalSchema } from "../../src/kv/command.ts";
import { plainZodMessage } from "../../src/transport/zod_message.ts";
import { Prng } from "../sim/prng.ts";

const CASES = 8_000;
/** CPU-bound: 8,000 cases take 2.4 s beside the simulator lane and 4.4 s on a loaded machine. */
const BUDGET_MS = 60_000;

/** What decodeProposal did before the hand-written check: msgpack, then the schema alone. */
function oracleDecode(data: Uint8Array): { ok: true; bytes: Uint8Array; value: unknown } | { ok: false; message: string } {
  let raw: unknown;
  try {
    raw = decode(data);
  } catch (err) {
    return { ok: false, message: `malformed proposal: not msgpack (${(err as Error).message})` };
  }
  const parsed = proposalSchema.safeParse(raw);
  if (!parsed.success) return { ok: false, message: `malformed proposal: ${plainZodMessage(parsed.error)}` };
  return { ok: true, ...shape(parsed.data) };
}

/** What decodeProposal makes of `data`, in oracleDecode's terms. */
function decodedBy(data: Uint8Array): ReturnType<typeof oracleDecode> {
  try {
    return { ok: true, ...shape(decodeProposal(data)) };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

function shape(v: unknown): { bytes: Uint8Array; value: unknown } {
  // msgpack keeps key order, so equal bytes mean equal values with keys in the same order.
  return { bytes: encode(v), value: v };
}

// Every width msgpack has for an unsigned integer, at its edges.
const counters = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, 1_700_000_000_000, Number.MAX_SAFE_INTEGER];
const notCounters: unknown[] = [-1, -0.5, 1.5, Number.MAX_SAFE_INTEGER + 1, 2 ** 60, NaN, Infinity, -Infinity, "1", null, true, [], {}, undefined];
const notStrings: unknown[] = [1, null, true, [], {}, new Uint8Array(1), undefined];
const notBytes: unknown[] = ["v", 1, null, [1, 2], {}, undefined, new Uint16Array(2), new ArrayBuffer(2)];

function valid(r: Prng): Record<string, unknown> {
  // Every string header width (fixstr, str 8, str 16), ASCII and not.
  const key = r.pick(["k", "", "key/ünï", "\u{1F600}", "a".repeat(31), "b".repeat(32), "c".repeat(255), "d".repeat(256), "a".repeat(5000), "\ud800", "é".repeat(20)]);
  // Every bin header width (bin 8, 16, 32).
  const size = r.chance(0.9) ? r.int(200) : r.pick([255, 256, 65_535, 65_536]);
  const cmd = r.pick<() => Record<string, unknown>>([
    () => ({ op: "put", key, value: new Uint8Array(size).fill(3) }),
    () => ({ op: "put", key, value: Buffer.from("v"), lease: r.pick(counters) }),
    () => ({ op: "del", key }),
    () => ({ op: "register" }),
    () => ({ op: "cas", key, value: new Uint8Array(2), expect: { value: null } }),
    () => ({ op: "delIf", key, expect: { modRevision: 3 } }),
    () => ({ op: "leaseGrant", ttlMs: 5000 }),
    () => ({ op: "member", id: "n1", region: "lhr" }),
  ])();
  const session = r.chance(0.5) ? null : { client: r.pick(counters), seq: r.pick(counters) };
  return { time: r.pick(counters), session, cmd };
}

/** One random change that may or may not break it; applied 0-3 times. */
function mutate(r: Prng, p: Record<string, unknown>): void {
  const targets: Record<string, unknown>[] = [p];
  if (isObj(p.cmd)) targets.push(p.cmd);
  if (isObj(p.session)) targets.push(p.session);
  const o = r.pick(targets);
  const keys = Object.keys(o);
  const k = r.pick([...keys, "lease", "extra", "op", "__proto__"]);
  switch (r.int(7)) {
    case 0:
      delete o[k];
      break;
    case 1:
      o[k] = r.pick(notCounters);
      break;
    case 2:
      o[k] = r.pick(notStrings);
      break;
    case 3:
      o[k] = r.pick(notBytes);
      break;
    case 4:
      o[k] = r.pick(counters);
      break;
    case 5:
      o[k] = r.pick(["put", "del", "register", "txn", "PUT", "get"]);
      break;
    case 6:
      Object.defineProperty(o, k, { value: r.pick(counters), enumerable: r.chance(0.5), configurable: true, writable: true });
      break;
  }
}

/** A plain object to mutate further (not a typed array, an array or a shared constant). */
function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype && Object.keys(v).length > 0;
}

/** Some inputs our own code could hand to encodeProposal but msgpack cannot carry. */
function oddly(r: Prng, p: Record<string, unknown>): unknown {
  switch (r.int(4)) {
    case 0:
      return Object.assign(Object.create(null), p);
    case 1:
      return Object.assign(Object.create({ inherited: 1 }), p);
    case 2:
      return isObj(p.cmd) ? { ...p, cmd: Object.assign(Object.create(null), p.cmd) } : p;
    default:
      return [p];
  }
}

function outcome(fn: () => Uint8Array): { ok: true; bytes: Uint8Array } | { ok: false; message: string } {
  try {
    return { ok: true, bytes: fn() };
  } catch (err) {
    return { ok: false, message: (err as Error).message };
  }
}

/**
 * msgpack of `v` in randomly chosen widths (valid, often not minimal), map keys sometimes
 * reordered, integers sometimes as doubles: what another encoder could write.
 */
function writeLoose(r: Prng, v: unknown, out: number[]): void {
  const be = (n: number, bytes: number) => {
    for (let i = bytes - 1; i >= 0; i--) out.push(Math.floor(n / 2 ** (8 * i)) % 256);
  };
  const head = (len: number, fix: number | null, fixMax: number, formats: [number, number, number]) => {
    const options: Array<() => void> = [];
    if (fix !== null && len <= fixMax) options.push(() => out.push(fix | len));
    if (len < 256) options.push(() => out.push(formats[0], len));
    if (len < 65536) options.push(() => (out.push(formats[1]), be(len, 2)));
    options.push(() => (out.push(formats[2]), be(len, 4)));
    r.pick(options)();
  };
  if (v === null || v === undefined) out.push(0xc0);
  else if (typeof v === "boolean") out.push(v ? 0xc3 : 0xc2);
  else if (typeof v === "number") {
    if (Number.isSafeInteger(v) && v >= 0 && !r.chance(0.05)) {
      const widths = [v < 128 ? 0 : -1, v < 256 ? 1 : -1, v < 65536 ? 2 : -1, v < 2 ** 32 ? 4 : -1, 8].filter((w) => w >= 0);
      const w = r.pick(widths);
      if (w === 0) out.push(v);
      else (out.push({ 1: 0xcc, 2: 0xcd, 4: 0xce, 8: 0xcf }[w]!), be(v, w));
    } else {
      const b = new DataView(new ArrayBuffer(8));
      b.setFloat64(0, v);
      out.push(0xcb, ...new Uint8Array(b.buffer));
    }
  } else if (typeof v === "string") {
    const b = Buffer.from(v, "utf8");
    head(b.length, 0xa0, 31, [0xd9, 0xda, 0xdb]);
    out.push(...b);
  } else if (v instanceof Uint8Array) {
    head(v.length, null, 0, [0xc4, 0xc5, 0xc6]);
    out.push(...v);
  } else if (Array.isArray(v)) {
    out.push(0x90 | v.length);
    for (const x of v) writeLoose(r, x, out);
  } else {
    const entries = Object.entries(v as Record<string, unknown>);
    if (r.chance(0.1)) entries.reverse();
    const n = entries.length;
    r.pick([...(n <= 15 ? [() => out.push(0x80 | n)] : []), () => (out.push(0xde), be(n, 2)), () => (out.push(0xdf), be(n, 4))])();
    for (const [k, x] of entries) {
      writeLoose(r, k, out);
      writeLoose(r, x, out);
    }
  }
}

/** The encodings to try: ours, a loose one, or one of those damaged (a byte changed, cut short, or followed by more). */
function encodings(r: Prng, p: unknown): Uint8Array[] {
  const loose: number[] = [];
  try {
    writeLoose(r, p, loose);
  } catch {
    return [];
  }
  const out = [Uint8Array.from(loose)];
  try {
    out.push(encode(p));
  } catch {
    // not encodable by msgpack (undefined in a map is fine, a symbol is not): the loose one only
  }
  const base = r.pick(out);
  const damaged = Uint8Array.from(base);
  switch (r.int(3)) {
    case 0:
      damaged[r.int(damaged.length)] = r.int(256);
      out.push(damaged);
      break;
    case 1:
      out.push(base.subarray(0, r.int(base.length)));
      break;
    default:
      out.push(Uint8Array.from([...base, r.int(256)]));
  }
  return out;
}

/** A valid proposal after 0 to `below - 1` random mutations (as many as r.int(below) draws). */
function mutated(r: Prng, below: number): Record<string, unknown> {
  const p = valid(r);
  for (let m = r.int(below); m > 0; m--) mutate(r, p);
  return p;
}

describe("the hand-written proposal check is the schema", () => {
  test("decodeProposal reads loose, minimal and damaged encodings exactly as msgpack and the schema do", () => {
    const r = new Prng(12);
    let accepted = 0;
    let tried = 0;
    for (let i = 0; i < CASES; i++) {
      const p = mutated(r, 3);
      for (const data of encodings(r, p)) {
        const want = oracleDecode(data);
        const got = decodedBy(data);
        expect(got).toEqual(want);
        tried++;
        if (got.ok) accepted++;
      }
    }
    expect(accepted).toBeGreaterThan(tried / 5);
    expect(accepted).toBeLessThan(tried * 0.9);
  }, BUDGET_MS);

  test("decodeProposal accepts, returns and refuses exactly as the schema does", () => {
    const r = new Prng(10);
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const p = mutated(r, 4);
      let data: Uint8Array;
      try {
        data = encode(p);
      } catch {
        continue;
      }
      const want = oracleDecode(data);
      const got = decodedBy(data);
      expect(got).toEqual(want);
      if (got.ok) accepted++;
    }
    // Both sides must be exercised.
    expect(accepted).toBeGreaterThan(CASES / 5);
    expect(accepted).toBeLessThan(CASES * 0.9);
  }, BUDGET_MS);

  test("encodeProposal writes the bytes the schema's output gave, and refuses what it refused", () => {
    const r = new Prng(11);
    let accepted = 0;
    for (let i = 0; i < CASES; i++) {
      const p = mutated(r, 4);
      const input = r.chance(0.2) ? oddly(r, p) : p;
      const want = outcome(() => encode(proposalSchema.parse(input)));
      const got = outcome(() => encodeProposal(input as never));
      expect(got).toEqual(want);
      if (got.ok) accepted++;
    }
    expect(accepted).toBeGreaterThan(CASES / 5);
  }, BUDGET_MS);
});
