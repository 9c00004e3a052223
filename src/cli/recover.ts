// `phalanx recover --force-new-cluster`: when a majority of the voters is gone for good, one
// survivor's data becomes a one-voter cluster (etcd's --force-new-cluster, Consul's peers.json).
// It refuses while the node runs (the data-dir lock) and while a quorum of the old voters still
// answers on their addresses: forcing a new cluster next to a live majority splits the brain.
import { existsSync } from "node:fs";
import { createConnection } from "node:net";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { KvStore } from "../kv/store.ts";
import { forceNewCluster, inspectSurvivor, RecoveryRefused } from "../node/disaster_recovery.ts";
import type { NodeId } from "../raft/types.ts";
import { DB_FILE, openDataDir, type DataDir } from "../storage/data_dir.ts";
import { DataDirInUseError, StorageError } from "../storage/errors.ts";
import { parseHostPort } from "../transport/address.ts";
import { EXIT, fail } from "./output.ts";

const DEFAULT_PROBE_MS = 2000;

const HELP = `usage: phalanx recover --data-dir D --id ID --force-new-cluster [--dry-run] [--probe-timeout-ms 2000]

Disaster recovery when a MAJORITY of the voters is lost for good: turns this stopped node's data
into a cluster with itself as the only voter. Every entry in its log is kept and committed
(including entries past its commit index, which the old leader may have acknowledged). The old
data file is kept in D/before-recovery-<time>/; the cluster gets a new id.

It refuses when the node is running (data-dir lock) or when a quorum of the old voters answers
on its addresses (probed for --probe-timeout-ms). Pick the survivor with the highest last index
(run with --dry-run on each to compare). The lost members must never come back with their old
data: wipe them, then let them join as new servers (see the operator's guide).

  --dry-run             show the data dir's state and what recovery would do, change nothing
  --force-new-cluster   do it`;

export async function recoverCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      "data-dir": { type: "string" },
      id: { type: "string" },
      "force-new-cluster": { type: "boolean" },
      "dry-run": { type: "boolean" },
      "probe-timeout-ms": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const dir = values["data-dir"];
  const self = values.id;
  if (dir === undefined || self === undefined) return fail(EXIT.usage, `recover needs --data-dir and --id\n${HELP}`);
  const force = values["force-new-cluster"] === true;
  const dry = values["dry-run"] === true;
  if (force === dry) return fail(EXIT.usage, `give exactly one of --force-new-cluster and --dry-run\n${HELP}`);
  const probeMs = Number(values["probe-timeout-ms"] ?? DEFAULT_PROBE_MS);
  if (!Number.isFinite(probeMs) || probeMs <= 0) return fail(EXIT.usage, "--probe-timeout-ms must be a positive number");
  // openDataDir would create a brand-new data dir here: recovery only ever works on an existing one.
  if (!existsSync(join(dir, DB_FILE))) return fail(EXIT.error, `${dir} holds no phalanx data (${DB_FILE} is missing)`);
  let dd: DataDir;
  try {
    dd = openDataDir(dir, { bootstrap: { voters: [self], learners: [] } });
  } catch (err) {
    if (err instanceof DataDirInUseError) return fail(EXIT.error, `refusing: ${err.message}. Stop the node first; recovery rewrites its data.`);
    if (err instanceof StorageError) return fail(EXIT.error, err.message);
    throw err;
  }
  try {
    return await recover(dd, self, { force, probeMs });
  } finally {
    dd.close();
  }
}

async function recover(dd: DataDir, self: NodeId, o: { force: boolean; probeMs: number }): Promise<number> {
  const kv = new KvStore(dd);
  const s = inspectSurvivor(dd, kv);
  const say = (line: string) => process.stderr.write(`${line}\n`);
  say(
    `data dir ${dd.dir}: cluster ${s.clusterId ?? "(none recorded)"}, voters ${s.conf.voters.join(",") || "-"}, learners ${s.conf.learners.join(",") || "-"}\n` +
      `  term ${s.hardState.term}, commit ${s.hardState.commit}, applied ${s.applied}, last index ${s.lastIndex} (term ${s.lastTerm})`,
  );
  if (!s.conf.voters.includes(self)) {
    return fail(EXIT.error, `refusing: ${self} is not a voter of this data dir's configuration (voters ${s.conf.voters.join(",")}); recover from a voter`);
  }
  const others = s.conf.voters.filter((id) => id !== self);
  const quorum = Math.floor(s.conf.voters.length / 2) + 1;
  const probes = await Promise.all(others.map(async (id) => ({ id, address: s.addresses.get(id) ?? "", up: await listening(s.addresses.get(id) ?? "", o.probeMs) })));
  const running = probes.filter((p) => p.up === true);
  const unknown = probes.filter((p) => p.up === null);
  for (const p of probes) say(`  voter ${p.id} at ${p.address || "(no address recorded)"}: ${p.up === true ? "ANSWERS" : p.up === null ? "cannot be checked" : "no answer"}`);
  if (running.length >= quorum) {
    return fail(
      EXIT.error,
      `refusing: ${running.length} of the other voters (${running.map((p) => p.id).join(",")}) answer, a quorum of ${quorum} of the ${s.conf.voters.length}: ` +
        "the old cluster can still make progress. Restart this node normally instead; it catches up from the leader.",
    );
  }
  const promoted = Math.max(0, s.lastIndex - s.hardState.commit);
  say(
    `plan: ${self} becomes the only voter of a new cluster; entries up to ${s.lastIndex} are committed and applied` +
      (promoted > 0 ? ` (${promoted} past the commit index ${s.hardState.commit}: they may have been acknowledged by the old leader)` : ""),
  );
  if (!o.force) {
    say("dry run: nothing changed. Pass --force-new-cluster to do it.");
    return EXIT.ok;
  }
  say("");
  say("WARNING: forcing a new cluster. Writes the lost majority committed that this node never received are gone for good.");
  if (running.length > 0) say(`WARNING: ${running.map((p) => `${p.id} (${p.address})`).join(", ")} still answer: stop them for good and wipe their data before they rejoin.`);
  if (unknown.length > 0) say(`WARNING: could not check ${unknown.map((p) => p.id).join(",")} (no address recorded): make sure they are gone.`);
  let r;
  try {
    r = forceNewCluster(dd, kv, self);
  } catch (err) {
    if (err instanceof RecoveryRefused || err instanceof StorageError) return fail(EXIT.error, err.message);
    throw err;
  }
  process.stdout.write(
    `recovered: ${dd.dir} is now cluster ${r.clusterId} with ${self} as its only voter, at index ${r.index}` +
      (r.promoted > 0 ? ` (${r.promoted} entries past the old commit index were committed)` : "") +
      `\nthe data file as it was is kept in ${r.keptAt}\n` +
      "next: start it with `phalanx serve` (same id and address); grow it back by gossip join (new servers with empty data dirs), " +
      "or `snapshot save` it and `snapshot restore` a full static cluster. See the operator's guide.\n",
  );
  return EXIT.ok;
}

/** true: something accepts TCP connections at `address`; false: nothing in time; null: no address. */
function listening(address: string, timeoutMs: number): Promise<boolean | null> {
  if (address === "") return Promise.resolve(null);
  let host: string;
  let port: number;
  try {
    ({ host, port } = parseHostPort(address));
  } catch {
    return Promise.resolve(null);
  }
  return new Promise((resolve) => {
    const socket = createConnection({ host, port });
    const done = (up: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(up);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}
