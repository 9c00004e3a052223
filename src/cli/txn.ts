// `phalanx kv txn [--file f.json | -]`: one multi-key transaction, the JSON of POST /v1/txn read
// from a file or stdin. Prints SUCCESS or FAILURE (which branch ran, like etcdctl) and each
// operation's answer; exit 0 when the compares held, 1 when the else branch ran.
import { readFileSync } from "node:fs";
import type { ClientContext } from "./command.ts";
import { failure, UsageError } from "./command.ts";
import { EXIT, printJson } from "./output.ts";

export const TXN_HELP = `usage: phalanx kv txn [--file <path>|-]   (JSON from the file, or stdin)
  {"compare": [{"key": "k", "target": "value|version|createRevision|modRevision|lease",
                "result": "==|!=|<|>", "value": ...}],
   "then": [{"put": {"key": "k", "value": "v", "lease": 0}}, {"delete": {"key": "k"}},
            {"delete": {"prefix": "p/"}}, {"get": {"key": "k"}}, {"range": {"prefix": "p/", "limit": 10}}],
   "else": [...]}
  exit 0: the compares held (then ran); 1: they did not (else ran). Sent with a fresh client id,
  so a retry after a lost answer cannot apply it twice.`;

interface Kv {
  key: string;
  value: string | null;
  valueBase64: string;
  modRevision: number;
}

function show(kv: Kv | null): string {
  if (kv === null) return "(none)";
  return `${kv.key} = ${kv.value ?? `base64:${kv.valueBase64}`} (modRevision ${kv.modRevision})`;
}

export async function txn(ctx: ClientContext): Promise<number> {
  if (ctx.positionals.length > 1) throw new UsageError("expected at most one argument: the file (or -)");
  const file = (ctx.values.file as string | undefined) ?? ctx.positionals[0] ?? "-";
  let text: string;
  try {
    text = readFileSync(file === "-" ? 0 : file, "utf8");
  } catch (err) {
    throw new UsageError(`cannot read ${file === "-" ? "stdin" : file}: ${(err as Error).message}`);
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`the transaction is not valid JSON: ${(err as Error).message}`);
  }
  if (body === null || typeof body !== "object" || Array.isArray(body)) throw new UsageError("the transaction is a JSON object");
  // The client retries on another endpoint when an answer does not come in time; with a client
  // id the transaction applies once however often it is sent (unless the file brings its own).
  let json = body as Record<string, unknown>;
  if (json.session === undefined) {
    const reg = await ctx.client.request("POST", "/v1/clients");
    if (reg.status !== 200) return failure(reg);
    json = { ...json, session: { client: Number(reg.json!.client), seq: 1 } };
  }
  const res = await ctx.client.request("POST", "/v1/txn", { json });
  if (res.status !== 200) return failure(res);
  const r = res.json as { succeeded: boolean; revision: number; responses: Array<Record<string, Record<string, unknown>>> };
  if (ctx.json) printJson(r);
  else {
    process.stdout.write(`${r.succeeded ? "SUCCESS" : "FAILURE"} revision=${r.revision}\n`);
    for (const op of r.responses) {
      const [kind, v] = Object.entries(op)[0]!;
      if (kind === "put") process.stdout.write(`put: OK${v.prev === null ? "" : ` (was ${show(v.prev as Kv)})`}\n`);
      else if (kind === "delete") process.stdout.write(`delete: ${String(v.deleted)} deleted\n`);
      else if (kind === "get") process.stdout.write(`get: ${v.overBudget === true ? "(over the read budget)" : show(v.kv as Kv | null)}\n`);
      else if (kind === "range") {
        const kvs = v.kvs as Kv[];
        process.stdout.write(`range: ${kvs.length} keys${v.more === true ? " (more)" : ""}\n`);
        for (const kv of kvs) process.stdout.write(`  ${show(kv)}\n`);
      }
    }
  }
  return r.succeeded ? EXIT.ok : EXIT.no;
}
