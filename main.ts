// phalanx: one binary for servers and clients. Only the subcommand dispatch lives here.
import { benchCommand } from "./src/cli/bench.ts";
import { leaderCommand, membersCommand, statusCommand } from "./src/cli/cluster.ts";
import { devCommand } from "./src/cli/dev.ts";
import { kvCommand } from "./src/cli/kv.ts";
import { recoverCommand } from "./src/cli/recover.ts";
import { electCommand, lockCommand } from "./src/cli/lock.ts";
import { leaseCommand } from "./src/cli/lease.ts";
import { EXIT, fail } from "./src/cli/output.ts";
import { serveCommand } from "./src/cli/serve.ts";
import { snapshotCommand } from "./src/cli/snapshot.ts";
import { didYouMean } from "./src/cli/suggest.ts";
import { versionCommand } from "./src/cli/version.ts";
import { endpointCommand } from "./src/cli/endpoint.ts";
import { memberCommand } from "./src/cli/member.ts";

const USAGE = `usage: phalanx <command> [args] (--help on any command)

  serve                    run a node (configured by env: NODE_ID, DATA_DIR, RPC_ADDR, PEERS, ...)
  kv put|get|del|cas|list  read and write keys
  kv txn|watch             multi-key transactions; follow changes
  lease grant|keepalive|revoke|show|list
                           TTL leases (kv put --lease ID attaches keys)
  lock <name> -- <cmd>     run a command while holding a lock (leases, fencing revision)
  elect <name> <proposal>  campaign for leadership (--listen: follow the leader)
  status                   a node's view of the cluster
  members                  cluster membership
  leader transfer <id>     move leadership
  snapshot save|status|restore   backups, and new clusters built from them
  recover --force-new-cluster    one survivor of a lost majority becomes a one-voter cluster
  dev --nodes 3            a local cluster for trying things out
  bench                    load generator
  endpoint status|health   every endpoint's state, or whether it serves (--cluster: all members)
  member add|promote|remove    change a static cluster's membership (learner first)
  version                  this binary's version (also --version)
`;

const COMMANDS: Record<string, (argv: string[]) => Promise<number>> = {
  serve: serveCommand,
  kv: kvCommand,
  lock: lockCommand,
  lease: leaseCommand,
  elect: electCommand,
  status: statusCommand,
  members: membersCommand,
  leader: leaderCommand,
  snapshot: snapshotCommand,
  recover: recoverCommand,
  dev: devCommand,
  bench: benchCommand,
  endpoint: endpointCommand,
  member: memberCommand,
  version: versionCommand,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return cmd === undefined ? EXIT.usage : EXIT.ok;
  }
  if (cmd === "--version" || cmd === "-v") return versionCommand(rest);
  const run = COMMANDS[cmd];
  if (run === undefined) return fail(EXIT.usage, `unknown command ${JSON.stringify(cmd)}${didYouMean(cmd, Object.keys(COMMANDS))} (phalanx --help lists them)`);
  try {
    return await run(rest);
  } catch (err) {
    // parseArgs and friends throw on bad usage; keep it to one line.
    const code = (err as { code?: string }).code ?? "";
    return fail(code.startsWith("ERR_PARSE_ARGS") ? EXIT.usage : EXIT.error, err instanceof Error ? err.message : String(err));
  }
}

// Explicit exit: a finished command must not linger on an idle pooled connection.
process.exit(await main(process.argv.slice(2)));
