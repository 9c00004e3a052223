// phalanx: one binary for servers and clients. Only the subcommand dispatch lives here.
// Each command's module is imported when that command runs, so `phalanx serve` starts without
// evaluating the client commands and `phalanx kv get` without the server (BENCHMARKS.md, "Cluster start-up").
import { EXIT, fail } from "./src/cli/output.ts";
import { didYouMean } from "./src/cli/suggest.ts";

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

type Command = (argv: string[]) => Promise<number>;

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import("./src/cli/serve.ts")).serveCommand,
  kv: async () => (await import("./src/cli/kv.ts")).kvCommand,
  lock: async () => (await import("./src/cli/lock.ts")).lockCommand,
  lease: async () => (await import("./src/cli/lease.ts")).leaseCommand,
  elect: async () => (await import("./src/cli/lock.ts")).electCommand,
  status: async () => (await import("./src/cli/cluster.ts")).statusCommand,
  members: async () => (await import("./src/cli/cluster.ts")).membersCommand,
  leader: async () => (await import("./src/cli/cluster.ts")).leaderCommand,
  snapshot: async () => (await import("./src/cli/snapshot.ts")).snapshotCommand,
  recover: async () => (await import("./src/cli/recover.ts")).recoverCommand,
  dev: async () => (await import("./src/cli/dev.ts")).devCommand,
  bench: async () => (await import("./src/cli/bench.ts")).benchCommand,
  endpoint: async () => (await import("./src/cli/endpoint.ts")).endpointCommand,
  member: async () => (await import("./src/cli/member.ts")).memberCommand,
  version: async () => (await import("./src/cli/version.ts")).versionCommand,
};

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === "help" || cmd === "--help" || cmd === "-h") {
    process.stdout.write(USAGE);
    return cmd === undefined ? EXIT.usage : EXIT.ok;
  }
  const load = COMMANDS[cmd === "--version" || cmd === "-v" ? "version" : cmd];
  if (load === undefined) return fail(EXIT.usage, `unknown command ${JSON.stringify(cmd)}${didYouMean(cmd, Object.keys(COMMANDS))} (phalanx --help lists them)`);
  const run = await load();
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
