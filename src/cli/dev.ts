// `phalanx dev --nodes 3`: a local cluster for newcomers, as child processes of this same program.
// Data in ./data/node-N, client ports 9000+, debug ports 9100+. Ctrl-C stops every node cleanly.
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { EXIT, fail } from "./output.ts";
import { isCompiled, selfCommand } from "./self_exec.ts";

const HELP = `usage: phalanx dev [--nodes 3] [--base-port 9000] [--data ./data]
  starts a local cluster: node N listens on 127.0.0.1:<base-port + N - 1> (debug on +100),
  keeps its data in <data>/node-N. A node killed by a signal (kill -9 the leader to watch a
  failover) is restarted after 5 s and catches up. Ctrl-C stops the cluster; run it again to
  restart with the same data (and the same --base-port: addresses are stored in the data).`;

/** A node that ignores SIGTERM this long is killed. */
const STOP_GRACE_MS = 10_000;
/** Pause before a killed node is started again. */
const RESTART_DELAY_MS = 5_000;

export async function devCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { nodes: { type: "string" }, "base-port": { type: "string" }, data: { type: "string" }, help: { type: "boolean", short: "h" } },
    strict: true,
  });
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const n = Number(values.nodes ?? 3);
  const base = Number(values["base-port"] ?? 9000);
  if (!Number.isInteger(n) || n < 1 || n > 9) return fail(EXIT.usage, "--nodes must be 1..9");
  if (!Number.isInteger(base) || base < 1 || base + 100 + n > 65535) return fail(EXIT.usage, "--base-port is out of range");
  const dataRoot = values.data ?? "./data";
  const ids = Array.from({ length: n }, (_, i) => `n${i + 1}`);
  const rpc = (i: number) => `127.0.0.1:${base + i}`;
  const peers = ids.map((id, i) => `${id}=${rpc(i)}`).join(",");
  const key = randomBytes(24).toString("hex");
  const spawnNode = (i: number) =>
    Bun.spawn([...selfCommand(), "serve"], {
      env: {
        ...process.env,
        NODE_ID: ids[i],
        DATA_DIR: `${dataRoot}/node-${i + 1}`,
        RPC_ADDR: rpc(i),
        DEBUG_ADDR: `127.0.0.1:${base + 100 + i}`,
        PEERS: peers,
        CLUSTER_KEY: key,
      },
      stdout: "inherit",
      stderr: "inherit",
      // Own process group: Ctrl-C reaches only this process, which then stops each node exactly
      // once (a node given two signals exits at once, skipping its clean shutdown).
      detached: true,
    });
  const children = ids.map((_, i) => spawnNode(i));
  const addrs = ids.map((_, i) => rpc(i)).join(",");
  // From a checkout (npm start) the CLI is the same script; the binary is `phalanx` itself.
  const cli = isCompiled() ? "phalanx" : "npm run phalanx --";
  process.stdout.write(
    `phalanx dev: ${n} node(s) starting, data in ${dataRoot}/node-N\n` +
      `  try:   ${cli} kv put hello world --addr ${addrs}\n` +
      `         ${cli} kv get hello --addr ${addrs}\n` +
      `         ${cli} status --addr ${rpc(0)}\n` +
      `         curl --http2-prior-knowledge http://${rpc(0)}/v1/kv/hello\n` +
      `  view:  http://127.0.0.1:${base + 100}/ui   (live cluster view in a browser)\n` +
      `  debug: http://127.0.0.1:${base + 100}/metrics  /debug/raft  /readyz\n` +
      `  Ctrl-C stops the cluster.\n`,
  );
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    process.stdout.write("phalanx dev: stopping nodes...\n");
    for (const c of children) c.kill("SIGTERM");
    const killer = setTimeout(() => children.forEach((c) => c.kill("SIGKILL")), STOP_GRACE_MS);
    void Promise.all(children.map((c) => c.exited)).then(() => clearTimeout(killer));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
  // A node killed by a signal (try `kill -9` on the leader) comes back after a pause, so the
  // rest of the cluster shows a failover and then the catch-up. One that fails on its own (a bad
  // setting, a data dir problem) stays down: restarting would only repeat its error.
  const supervise = async (i: number): Promise<number> => {
    for (;;) {
      const child = children[i]!;
      const code = await child.exited;
      if (stopping) return code;
      if (child.signalCode === null) {
        process.stderr.write(`phalanx dev: node ${ids[i]} exited with code ${code}; the others keep running\n`);
        return code;
      }
      process.stderr.write(`phalanx dev: node ${ids[i]} was killed (${child.signalCode}); restarting it in ${RESTART_DELAY_MS / 1000} s\n`);
      await Bun.sleep(RESTART_DELAY_MS);
      if (stopping) return 0;
      children[i] = spawnNode(i);
    }
  };
  const codes = await Promise.all(ids.map((_, i) => supervise(i)));
  return codes.every((c) => c === 0) ? EXIT.ok : EXIT.error;
}
