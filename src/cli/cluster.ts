// `phalanx status`, `phalanx members`, `phalanx leader transfer <id>`.
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError } from "./command.ts";
import { EXIT, printJson, table } from "./output.ts";

interface MemberStatus {
  id: string;
  address: string;
  role: string;
  progress: { match: number; state: string } | null;
  rttMs: number | null;
}

export function statusCommand(argv: string[]): Promise<number> {
  const help = `usage: phalanx status\n  the answering node's view: role, term, leader, indexes, members and their progress\noptions:\n${CLIENT_HELP}`;
  return runClientCommand(argv, help, {}, async (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError("status takes no arguments");
    const res = await ctx.client.request("GET", "/v1/status");
    if (res.status !== 200) return failure(res);
    if (ctx.json) {
      printJson(res.json);
      return EXIT.ok;
    }
    const s = res.json!;
    process.stdout.write(
      `node ${String(s.id)} (${res.addr}): ${String(s.role)}, term ${String(s.term)}, leader ${String(s.leader ?? "none")}\n` +
        `commit ${String(s.commit)}, applied ${String(s.applied)}, log ${String(s.firstIndex)}..${String(s.lastIndex)}\n`,
    );
    const members = s.members as MemberStatus[];
    const rows = [["ID", "ADDRESS", "ROLE", "MATCH", "STATE", "RTT"]];
    for (const m of members) {
      rows.push([m.id, m.address, m.role, m.progress === null ? "-" : String(m.progress.match), m.progress?.state ?? "-", m.rttMs === null ? "-" : `${m.rttMs.toFixed(1)}ms`]);
    }
    process.stdout.write(table(rows));
    return EXIT.ok;
  });
}

export function membersCommand(argv: string[]): Promise<number> {
  const help = `usage: phalanx members\noptions:\n${CLIENT_HELP}`;
  return runClientCommand(argv, help, {}, async (ctx) => {
    if (ctx.positionals.length > 0) throw new UsageError("members takes no arguments");
    const res = await ctx.client.request("GET", "/v1/members");
    if (res.status !== 200) return failure(res);
    if (ctx.json) printJson(res.json);
    else {
      const leader = res.headers["x-phalanx-leader"];
      const members = res.json!.members as MemberStatus[];
      process.stdout.write(table([["ID", "ADDRESS", "ROLE"], ...members.map((m) => [m.id + (m.id === leader ? " *" : ""), m.address, m.role])]));
    }
    return EXIT.ok;
  });
}

export function leaderCommand(argv: string[]): Promise<number> {
  const help = `usage: phalanx leader transfer <id>\n  hands leadership to a voter and waits until it took over\noptions:\n${CLIENT_HELP}`;
  const [sub, ...rest] = argv;
  if (sub !== "transfer") {
    const asked = sub === undefined || sub === "--help" || sub === "-h";
    process[asked ? "stdout" : "stderr"].write(`${help}\n`);
    return Promise.resolve(asked ? EXIT.ok : EXIT.usage);
  }
  return runClientCommand(rest, help, {}, async (ctx) => {
    const [to] = ctx.positionals;
    if (to === undefined || ctx.positionals.length !== 1) throw new UsageError("give the id of the new leader");
    const res = await ctx.client.request("POST", `/v1/leader/transfer?to=${encodeURIComponent(to)}`);
    if (res.status !== 200) return failure(res);
    if (ctx.json) printJson(res.json);
    else process.stdout.write(`leader is now ${String(res.json?.leader)} (term ${String(res.json?.term)})\n`);
    return EXIT.ok;
  });
}
