// `phalanx member add <id> <host:port> [region] | promote <id> | remove <id>`: membership changes for a
// static cluster, as etcdctl member add/promote/remove. A new server joins as a learner (start it
// with INITIAL_CLUSTER_STATE=existing and no PEERS), is promoted once caught up, and the leader
// refuses with the reason anything the autopilot would not do (src/api/member_routes.ts).
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError } from "./command.ts";
import { EXIT, fail, printJson, table } from "./output.ts";
import { didYouMean } from "./suggest.ts";

const HELP = `usage: phalanx member add <id> <host:port> [region] | phalanx member promote <id> | phalanx member remove <id>
  add: the server joins as a learner (start it first: INITIAL_CLUSTER_STATE=existing, no PEERS);
       the region (its REGION, e.g. lhr) is recorded with it in the log
  promote: a learner that has caught up becomes a voter (refused, with the reason, otherwise)
  remove: a learner, or a voter when the voters left keep a quorum (transfer leadership off a leader first)
needs the admin scope; refused where membership is automatic (gossip)
options:
${CLIENT_HELP}`;

/** Positional arguments each takes: [at least, at most]. */
const ARITY: Record<string, [number, number]> = { add: [2, 3], promote: [1, 1], remove: [1, 1] };

export async function memberCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === "--help" || sub === "-h") {
    process.stdout.write(`${HELP}\n`);
    return sub === undefined ? EXIT.usage : EXIT.ok;
  }
  const arity = ARITY[sub];
  if (arity === undefined) return fail(EXIT.usage, `unknown member command ${JSON.stringify(sub)}${didYouMean(sub, Object.keys(ARITY))} (phalanx member --help lists them)`);
  return runClientCommand(rest, HELP, {}, async (ctx) => {
    const n = ctx.positionals.length;
    if (n < arity[0] || n > arity[1]) throw new UsageError(sub === "add" ? "give the new server's id and address (and its region)" : "give the server's id");
    const [id, addr, region] = ctx.positionals as [string, string | undefined, string | undefined];
    const q = new URLSearchParams({ id, ...(addr === undefined ? {} : { addr }), ...(region === undefined ? {} : { region }) });
    const res = await ctx.client.request("POST", `/v1/members/${sub}?${q}`);
    if (res.status === 409 && res.json?.error === "change_refused") return fail(EXIT.no, `refused: ${String(res.json.message)}`);
    if (res.status !== 200) return failure(res);
    if (ctx.json) printJson(res.json);
    else {
      const members = res.json?.members as { id: string; address: string; region: string; role: string }[];
      process.stdout.write(`${String(res.json?.change)}: applied at index ${String(res.json?.index)}\n`);
      process.stdout.write(table([["ID", "ADDRESS", "REGION", "ROLE"], ...members.map((m) => [m.id, m.address, m.region || "-", m.role])]));
    }
    return EXIT.ok;
  });
}
