// `phalanx lease grant <ttl> | keepalive <id> [--once] | revoke <id> | show <id> [--keys] | list`
// (etcdctl lease grant / keep-alive / revoke / timetolive / list).
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError, type ClientContext } from "./command.ts";
import { EXIT, printJson, table } from "./output.ts";

const HELP = `usage: phalanx lease grant <ttl-seconds>
       phalanx lease keepalive <id> [--once]   (renews every ttl/3 until interrupted)
       phalanx lease revoke <id>                (its keys are deleted)
       phalanx lease show <id> [--keys]
       phalanx lease list
  attach keys with: phalanx kv put <key> <value> --lease <id>
options:
${CLIENT_HELP}`;

const EXTRA = { once: { type: "boolean" }, keys: { type: "boolean" } } as const;

function idArg(ctx: ClientContext): number {
  if (ctx.positionals.length !== 2) throw new UsageError("expected a lease id");
  const id = Number(ctx.positionals[1]);
  if (!Number.isSafeInteger(id) || id < 1) throw new UsageError("a lease id is a positive integer");
  return id;
}

async function grant(ctx: ClientContext): Promise<number> {
  if (ctx.positionals.length !== 2) throw new UsageError("expected the TTL in seconds");
  const ttl = Number(ctx.positionals[1]);
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new UsageError("the TTL is a whole number of seconds ≥ 1");
  const res = await ctx.client.request("POST", "/v1/lease", { json: { ttl } });
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else process.stdout.write(`lease ${String(res.json!.id)} granted with TTL ${String(res.json!.ttl)} s\n`);
  return EXIT.ok;
}

async function keepalive(ctx: ClientContext): Promise<number> {
  const id = idArg(ctx);
  const once = async (): Promise<{ ttl: number } | { code: number }> => {
    const res = await ctx.client.request("POST", `/v1/lease/${id}/keepalive`);
    if (res.status !== 200) return { code: failure(res) };
    if (ctx.json) process.stdout.write(`${JSON.stringify(res.json)}\n`);
    else process.stdout.write(`lease ${id} kept alive, TTL ${String(res.json!.ttl)} s\n`);
    return { ttl: Number(res.json!.ttl) };
  };
  const first = await once();
  if ("code" in first) return first.code;
  if (ctx.values.once === true) return EXIT.ok;
  const ttl = first.ttl;
  let stop = false;
  const onSignal = () => (stop = true);
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    // Until interrupted, or until the lease is gone (then the exit code says so).
    while (!stop) {
      const wait = Math.max(200, (ttl * 1000) / 3);
      for (let t = 0; t < wait && !stop; t += 100) await new Promise((r) => setTimeout(r, 100));
      if (stop) break;
      const r = await once();
      if ("code" in r) return r.code;
    }
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  return EXIT.ok;
}

async function revoke(ctx: ClientContext): Promise<number> {
  const id = idArg(ctx);
  const res = await ctx.client.request("DELETE", `/v1/lease/${id}`);
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else process.stdout.write(`lease ${id} revoked, ${String(res.json!.deleted)} keys deleted\n`);
  return EXIT.ok;
}

async function show(ctx: ClientContext): Promise<number> {
  const id = idArg(ctx);
  const res = await ctx.client.request("GET", `/v1/lease/${id}${ctx.values.keys === true ? "?keys" : ""}`);
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else {
    const j = res.json!;
    const left = j.remainingMs === null ? "unknown" : `${(Number(j.remainingMs) / 1000).toFixed(1)} s`;
    process.stdout.write(`lease ${id}: TTL ${String(j.ttl)} s, remaining ${left}\n`);
    for (const k of (j.keys as string[] | undefined) ?? []) process.stdout.write(`  ${k}\n`);
  }
  return EXIT.ok;
}

async function list(ctx: ClientContext): Promise<number> {
  if (ctx.positionals.length !== 1) throw new UsageError("list takes no arguments");
  const res = await ctx.client.request("GET", "/v1/leases");
  if (res.status !== 200) return failure(res);
  if (ctx.json) printJson(res.json);
  else {
    const leases = res.json!.leases as Array<{ id: number; ttl: number }>;
    process.stdout.write(table([["ID", "TTL"], ...leases.map((l) => [String(l.id), `${l.ttl} s`])]));
  }
  return EXIT.ok;
}

const SUBS: Record<string, (ctx: ClientContext) => Promise<number>> = { grant, keepalive, revoke, show, list };

export function leaseCommand(argv: string[]): Promise<number> {
  return runClientCommand(argv, HELP, EXTRA, async (ctx) => {
    const sub = ctx.positionals[0];
    const run = sub === undefined ? undefined : SUBS[sub];
    if (run === undefined) throw new UsageError(sub === undefined ? "expected a lease command" : `unknown lease command ${JSON.stringify(sub)}`);
    return run(ctx);
  });
}
