// `phalanx endpoint status|health [--cluster]`, as etcdctl's: one row per endpoint, each asked on
// its own (in parallel, with a short deadline), so one dead node is a row with its error rather
// than a command that hangs or fails for all.
import { CLIENT_HELP, type ApiResponse } from "./client.ts";
import { failure, runClientCommand, UsageError, type ClientContext } from "./command.ts";
import { cell } from "./kv.ts";
import { EXIT, fail, printJson, table } from "./output.ts";
import { didYouMean } from "./suggest.ts";

const HELP = `usage: phalanx endpoint status|health [--cluster]
  status: each endpoint's id, version, role, term, commit/applied, database size, leader, errors
  health: whether each endpoint serves a linearizable read (it has a leader and a quorum), and how fast
  --cluster: every member of the cluster (asked of the first endpoint that answers), not only --addr
  --endpoint-timeout ms: how long each endpoint may take (default 3000)
exit codes: 0 every endpoint answered (status) or is healthy (health), 3 otherwise
options:
${CLIENT_HELP}`;

const EXTRA = { cluster: { type: "boolean" }, "endpoint-timeout": { type: "string" } } as const;

export interface EndpointStatus {
  endpoint: string;
  id: string | null;
  version: string | null;
  role: string | null;
  term: number | null;
  commit: number | null;
  applied: number | null;
  dbSizeBytes: number | null;
  leader: string | null;
  error: string | null;
}

export interface EndpointHealth {
  endpoint: string;
  healthy: boolean;
  tookMs: number;
  error: string | null;
}

/** The endpoints to ask: --addr, or with --cluster every member's address. */
async function endpoints(ctx: ClientContext): Promise<string[] | number> {
  if (ctx.values.cluster !== true) return ctx.addrs;
  const res = await ctx.client.request("GET", "/v1/members");
  if (res.status !== 200) return failure(res);
  return (res.json?.members as { address: string }[]).map((m) => m.address);
}

function endpointTimeout(ctx: ClientContext): number {
  const t = Number(ctx.values["endpoint-timeout"] ?? 3000);
  if (!Number.isFinite(t) || t <= 0) throw new UsageError("--endpoint-timeout must be a positive number of milliseconds");
  return t;
}

/** The error of one endpoint, without the client's "cannot reach any server: <addr>:" preamble. */
function errorText(err: unknown, addr: string): string {
  const text = err instanceof Error ? err.message : String(err);
  const preamble = `cannot reach any server: ${addr}: `;
  return text.startsWith(preamble) ? text.slice(preamble.length) : text;
}

function problem(res: ApiResponse): string {
  return `HTTP ${res.status}: ${String(res.json?.message ?? "no message")}`;
}

async function statusOf(ctx: ClientContext, addr: string, timeoutMs: number): Promise<EndpointStatus> {
  const empty = { endpoint: addr, id: null, version: null, role: null, term: null, commit: null, applied: null, dbSizeBytes: null, leader: null };
  try {
    const res = await ctx.clientFor(addr, timeoutMs).request("GET", "/v1/status");
    if (res.status !== 200 || res.json === null) return { ...empty, error: problem(res) };
    const s = res.json as Record<string, unknown>;
    const num = (v: unknown) => (typeof v === "number" ? v : null);
    const str = (v: unknown) => (typeof v === "string" ? v : null);
    return {
      endpoint: addr,
      id: str(s.id),
      version: str(s.version),
      role: str(s.role),
      term: num(s.term),
      commit: num(s.commit),
      applied: num(s.applied),
      dbSizeBytes: num(s.dbSizeBytes),
      leader: str(s.leader),
      error: null,
    };
  } catch (err) {
    return { ...empty, error: errorText(err, addr) };
  }
}

async function healthOf(ctx: ClientContext, addr: string, timeoutMs: number): Promise<EndpointHealth> {
  const t0 = performance.now();
  const took = () => Math.round((performance.now() - t0) * 10) / 10;
  try {
    // A linearizable read needs a leader that still holds a quorum: found (200) or not (404), the
    // read path works. etcdctl endpoint health does the same with a get of "health".
    const res = await ctx.clientFor(addr, timeoutMs).request("GET", "/v1/kv/health?consistency=linearizable");
    const healthy = res.status === 200 || (res.status === 404 && res.json?.error === "not_found");
    return { endpoint: addr, healthy, tookMs: took(), error: healthy ? null : problem(res) };
  } catch (err) {
    return { endpoint: addr, healthy: false, tookMs: took(), error: errorText(err, addr) };
  }
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

async function status(ctx: ClientContext): Promise<number> {
  const list = await endpoints(ctx);
  if (typeof list === "number") return list;
  const timeoutMs = endpointTimeout(ctx);
  const rows = await Promise.all(list.map((a) => statusOf(ctx, a, timeoutMs)));
  if (ctx.json) printJson(rows);
  else {
    const dash = (v: unknown) => (v === null ? "-" : String(v));
    process.stdout.write(
      table([
        ["ENDPOINT", "ID", "VERSION", "ROLE", "TERM", "COMMIT", "APPLIED", "DB SIZE", "LEADER", "ERRORS"],
        ...rows.map((r) => [r.endpoint, dash(r.id), dash(r.version), dash(r.role), dash(r.term), dash(r.commit), dash(r.applied), r.dbSizeBytes === null ? "-" : formatBytes(r.dbSizeBytes), dash(r.leader), r.error === null ? "" : cell(r.error, 80)]),
      ]),
    );
  }
  return rows.every((r) => r.error === null) ? EXIT.ok : EXIT.unavailable;
}

async function health(ctx: ClientContext): Promise<number> {
  const list = await endpoints(ctx);
  if (typeof list === "number") return list;
  const timeoutMs = endpointTimeout(ctx);
  const rows = await Promise.all(list.map((a) => healthOf(ctx, a, timeoutMs)));
  if (ctx.json) printJson(rows);
  else {
    for (const r of rows) {
      const line = r.healthy ? `${r.endpoint} is healthy: a linearizable read took ${r.tookMs} ms` : `${r.endpoint} is unhealthy: ${r.error ?? "unknown"}`;
      process.stdout.write(`${cell(line, 200)}\n`);
    }
  }
  return rows.every((r) => r.healthy) ? EXIT.ok : EXIT.unavailable;
}

const COMMANDS: Record<string, (ctx: ClientContext) => Promise<number>> = { status, health };

export async function endpointCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  const run = sub === undefined ? undefined : COMMANDS[sub];
  if (run === undefined) {
    if (sub === undefined || sub === "--help" || sub === "-h") {
      process.stdout.write(`${HELP}\n`);
      return sub === undefined ? EXIT.usage : EXIT.ok;
    }
    return fail(EXIT.usage, `unknown endpoint command ${JSON.stringify(sub)}${didYouMean(sub, Object.keys(COMMANDS))} (phalanx endpoint --help lists them)`);
  }
  return runClientCommand(rest, HELP, EXTRA, async (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError(`endpoint ${sub} takes no arguments`);
    return run(ctx);
  });
}
