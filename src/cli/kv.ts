// `phalanx kv put|get|del|cas|list`.
import { readFileSync } from "node:fs";
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError, type ClientContext } from "./command.ts";
import { EXIT, fail, printJson, table } from "./output.ts";
import { didYouMean } from "./suggest.ts";
import { txn, TXN_HELP } from "./txn.ts";
import { watch, WATCH_HELP } from "./watch.ts";

const HELP: Record<string, string> = {
  put: `usage: phalanx kv put <key> <value>  |  phalanx kv put <key> - (or < file)  |  phalanx kv put <key> --file <path|-> [--lease ID]
  "-", or no value with stdin not a terminal, reads the value's bytes from stdin`,
  get: `usage: phalanx kv get <key> [--consistency linearizable|stale | --max-staleness 5s] [--raw]
  --max-staleness: answer from the node's own state if it can prove it is at most that stale
  (every write acknowledged longer ago than that is in it), else fail (exit 3) rather than older data
  --raw (the default when stdout is not a terminal) writes the value's bytes exactly, no newline`,
  del: `usage: phalanx kv del <key> [--prev-revision N] [--ignore-missing]
  --ignore-missing: a key that does not exist is success (exit 0), for idempotent scripts`,
  cas: `usage: phalanx kv cas <key> <new-value> (--prev-revision N | --prev-value V | --absent)
  sets the key only if it currently matches; --prev-revision 0 or --absent: only if it does not exist`,
  list: `usage: phalanx kv list [prefix] [--limit N] [--after key] [--consistency linearizable|stale | --max-staleness 5s]
  the table escapes control characters and cuts values at 60 characters; --json has them whole`,
  txn: TXN_HELP,
  watch: WATCH_HELP,
};

const KV_HELP = `usage: phalanx kv <put|get|del|cas|list|txn|watch> ...
${Object.values(HELP).join("\n")}
options:
${CLIENT_HELP}`;

const EXTRA = {
  file: { type: "string" },
  consistency: { type: "string" },
  "max-staleness": { type: "string" },
  "prev-revision": { type: "string" },
  "prev-value": { type: "string" },
  absent: { type: "boolean" },
  limit: { type: "string" },
  after: { type: "string" },
  prefix: { type: "string" },
  rev: { type: "string" },
  lease: { type: "string" },
  raw: { type: "boolean" },
  "ignore-missing": { type: "boolean" },
} as const;

const keyPath = (key: string) => `/v1/kv/${encodeURIComponent(key)}`;

function args(ctx: ClientContext, n: number): string[] {
  if (ctx.positionals.length !== n) throw new UsageError(`expected ${n} argument${n === 1 ? "" : "s"}, got ${ctx.positionals.length}`);
  return ctx.positionals;
}

function valueBody(ctx: ClientContext, given: string | undefined): Record<string, string> {
  const file = ctx.values.file as string | undefined;
  if (file !== undefined) {
    if (given !== undefined) throw new UsageError("give a value or --file, not both");
    return { valueBase64: readFileSync(file === "-" ? 0 : file).toString("base64") };
  }
  // etcdctl and consul habits: "-" is stdin, and so is a missing value when stdin is a file or a
  // pipe. A terminal on stdin with no value is a mistake, not a request to type the value.
  if (given === "-" || (given === undefined && process.stdin.isTTY !== true)) return { valueBase64: readFileSync(0).toString("base64") };
  if (given === undefined) throw new UsageError("missing value (give one, \"-\" for stdin, or --file)");
  return { value: given };
}

/** The read's consistency as query parameters; the server judges the bound's syntax (read_consistency.ts). */
function consistencyQuery(ctx: ClientContext): string {
  const bound = ctx.values["max-staleness"] as string | undefined;
  const given = ctx.values.consistency as string | undefined;
  if (bound !== undefined) {
    if (given !== undefined) throw new UsageError("give --consistency or --max-staleness, not both");
    return `max_staleness=${encodeURIComponent(bound)}`;
  }
  const c = given ?? "linearizable";
  if (c !== "linearizable" && c !== "stale") throw new UsageError("--consistency must be linearizable or stale");
  return `consistency=${c}`;
}

async function put(ctx: ClientContext): Promise<number> {
  const [key, value] = ctx.positionals;
  if (key === undefined || ctx.positionals.length > 2) throw new UsageError("expected <key> and a value");
  const lease = ctx.values.lease as string | undefined;
  const res = await ctx.client.request("PUT", `${keyPath(key)}${lease === undefined ? "" : `?lease=${encodeURIComponent(lease)}`}`, { json: valueBody(ctx, value) });
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else process.stdout.write(`OK revision=${String(res.json?.revision)}\n`);
  return EXIT.ok;
}

async function get(ctx: ClientContext): Promise<number> {
  const [key] = args(ctx, 1);
  const res = await ctx.client.request("GET", `${keyPath(key!)}?${consistencyQuery(ctx)}`);
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else {
    // One of value (UTF-8 text) or valueBase64 (other bytes).
    const kv = res.json?.kv as { value?: string; valueBase64?: string };
    const bytes = kv.value !== undefined ? Buffer.from(kv.value, "utf8") : Buffer.from(kv.valueBase64 ?? "", "base64");
    // Into a file or a pipe the bytes go exactly (`kv get k > f` restores what `kv put k < f`
    // stored); on a terminal a text value ends with a newline so the prompt starts on its own line.
    const exact = ctx.values.raw === true || process.stdout.isTTY !== true;
    process.stdout.write(bytes);
    if (!exact && kv.value !== undefined) process.stdout.write("\n");
  }
  return EXIT.ok;
}

async function del(ctx: ClientContext): Promise<number> {
  const [key] = args(ctx, 1);
  const prev = ctx.values["prev-revision"] as string | undefined;
  const res = await ctx.client.request("DELETE", `${keyPath(key!)}${prev === undefined ? "" : `?prevRevision=${encodeURIComponent(prev)}`}`);
  if (res.status === 404 && ctx.values["ignore-missing"] === true && res.json?.error === "not_found") {
    if (ctx.json) printJson(res.json);
    else process.stdout.write("not found (nothing to delete)\n");
    return EXIT.ok;
  }
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else process.stdout.write(`deleted revision=${String(res.json?.revision)}\n`);
  return EXIT.ok;
}

async function cas(ctx: ClientContext): Promise<number> {
  const [key, value] = ctx.positionals;
  if (key === undefined || ctx.positionals.length > 2) throw new UsageError("expected <key> and a new value");
  const prevRev = ctx.values["prev-revision"] as string | undefined;
  const prevValue = ctx.values["prev-value"] as string | undefined;
  const absent = ctx.values.absent === true;
  if ([prevRev !== undefined, prevValue !== undefined, absent].filter(Boolean).length !== 1) throw new UsageError("give exactly one of --prev-revision, --prev-value, --absent");
  let expect: Record<string, unknown>;
  if (prevRev !== undefined) {
    const n = Number(prevRev);
    if (!Number.isSafeInteger(n) || n < 0) throw new UsageError("--prev-revision must be a non-negative integer");
    expect = { modRevision: n };
  } else expect = { value: absent ? null : prevValue };
  const res = await ctx.client.request("PUT", keyPath(key), { json: { ...valueBody(ctx, value), expect } });
  if (res.status === 409 && res.json?.error === "compare_failed") {
    if (ctx.json) printJson(res.json);
    const cur = res.json.current as { modRevision: number } | null;
    process.stderr.write(`phalanx: compare failed: ${cur === null ? "the key does not exist" : `current modRevision is ${cur.modRevision}`}\n`);
    return EXIT.no;
  }
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else process.stdout.write(`OK revision=${String(res.json?.revision)}\n`);
  return EXIT.ok;
}

async function list(ctx: ClientContext): Promise<number> {
  if (ctx.positionals.length > 1) throw new UsageError("expected at most one prefix");
  const q = new URLSearchParams({ prefix: ctx.positionals[0] ?? "", limit: (ctx.values.limit as string | undefined) ?? "100" });
  const after = ctx.values.after as string | undefined;
  if (after !== undefined) q.set("after", after);
  const res = await ctx.client.request("GET", `/v1/kv?${q}&${consistencyQuery(ctx)}`);
  if (res.status !== 200) return failure(res);
  if (ctx.json) {
    printJson(res.json);
    return EXIT.ok;
  }
  const kvs = res.json?.kvs as Array<{ key: string; value?: string; valueBase64?: string; modRevision: number }>;
  const rows = [["KEY", "MOD_REVISION", "VALUE"], ...kvs.map((kv) => [cell(kv.key, LIST_KEY_WIDTH), String(kv.modRevision), cell(kv.value ?? `base64:${kv.valueBase64 ?? ""}`, LIST_VALUE_WIDTH)])];
  process.stdout.write(table(rows));
  // A page ends at the count limit or at the server's byte budget; `next` is where to resume.
  if (res.json?.more === true) process.stdout.write(`(more: --after ${JSON.stringify(res.json.next ?? kvs[kvs.length - 1]?.key)})\n`);
  return EXIT.ok;
}

const LIST_KEY_WIDTH = 80;
const LIST_VALUE_WIDTH = 60;

/**
 * One table cell on one line: control characters escaped (a value with a newline must not forge
 * a row), at most `width` characters, the cut marked with "…".
 */
export function cell(text: string, width: number): string {
  const escaped = JSON.stringify(text).slice(1, -1);
  return escaped.length <= width ? escaped : `${escaped.slice(0, width - 1)}…`;
}

const COMMANDS: Record<string, (ctx: ClientContext) => Promise<number>> = { put, get, del, cas, list, txn, watch };

export async function kvCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const run = sub === undefined ? undefined : COMMANDS[sub];
  if (run === undefined) {
    const help = sub === undefined || sub === "--help" || sub === "-h";
    if (!help) return fail(EXIT.usage, `unknown kv command ${JSON.stringify(sub)}${didYouMean(sub!, Object.keys(COMMANDS))} (phalanx kv --help lists them)`);
    process.stdout.write(`${KV_HELP}\n`);
    return help ? EXIT.ok : EXIT.usage;
  }
  return runClientCommand(rest, `${HELP[sub!]}\noptions:\n${CLIENT_HELP}`, EXTRA, run);
}
