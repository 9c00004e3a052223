// `phalanx status`, `phalanx members`, `phalanx leader transfer <id>`.
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError } from "./command.ts";
import { EXIT, printJson, table } from "./output.ts";

interface MemberStatus {
  id: string;
  address: string;
  /** As the log records it; "" while not recorded. */
  region: string;
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
    const rows = [["ID", "ADDRESS", "REGION", "ROLE", "MATCH", "STATE", "RTT"]];
    for (const m of members) {
      rows.push([m.id, m.address, m.region || "-", m.role, m.progress === null ? "-" : String(m.progress.match), m.progress?.state ?? "-", m.rttMs === null ? "-" : `${m.rttMs.toFixed(1)}ms`]);
    }
    process.stdout.write(table(rows));
    printVoterRegions(s.voterRegions as VoterRegions | null);
    const placement = s.placement as { decision: { kind: string; reason: string } | null } | null;
    if (placement?.decision != null) process.stdout.write(`leader placement: ${placement.decision.kind}: ${placement.decision.reason}\n`);
    return EXIT.ok;
  });
}

interface VoterRegions {
  regions: string[];
  notes: string[] | null;
}

function printVoterRegions(v: VoterRegions | null | undefined): void {
  if (v == null || v.regions.length === 0) return;
  process.stdout.write(`voter regions ${v.regions.join(",")}: ${v.notes === null ? "judged on the leader" : v.notes.length === 0 ? "voters match" : ""}\n`);
  for (const note of v.notes ?? []) process.stdout.write(`  ${note}\n`);
}

interface AutomaticMembership {
  voterRegions: VoterRegions;
  cluster: string;
  gossip: { id: string; state: string; rpcAddr: string; region: string }[];
  decisions: { at: string; change: string; reason: string; outcome: string }[];
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
      const auto = res.json!.automatic as AutomaticMembership | undefined;
      if (auto === undefined) {
        process.stdout.write(table([["ID", "ADDRESS", "REGION", "ROLE"], ...members.map((m) => [m.id + (m.id === leader ? " *" : ""), m.address, m.region || "-", m.role])]));
      } else {
        const gossip = new Map(auto.gossip.map((g) => [g.id, g]));
        // A member's region is the log's; gossip's liveness is added to it.
        const rows = members.map((m) => [m.id + (m.id === leader ? " *" : ""), m.address, m.region || "-", m.role, gossip.get(m.id)?.state ?? "-"]);
        // Servers gossip sees that are not (yet) members: candidates the autopilot may add (their region as they advertise it).
        for (const g of auto.gossip) if (!members.some((m) => m.id === g.id)) rows.push([g.id, g.rpcAddr, g.region, "not a member", g.state]);
        process.stdout.write(table([["ID", "ADDRESS", "REGION", "ROLE", "GOSSIP"], ...rows]));
        printVoterRegions(auto.voterRegions);
        process.stdout.write(`\nautopilot decisions (cluster ${auto.cluster}):\n`);
        if (auto.decisions.length === 0) process.stdout.write("  none yet\n");
        for (const d of auto.decisions) process.stdout.write(`  ${d.at}  ${d.change}: ${d.reason} (${d.outcome})\n`);
      }
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
