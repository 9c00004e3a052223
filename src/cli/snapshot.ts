// `phalanx snapshot save|status|restore`: backups of a running cluster, and new clusters built
// from them. The file format is src/kv/backup_file.ts; the data-dir building is
// src/node/disaster_recovery.ts.
import { Database } from "bun:sqlite";
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { parseArgs } from "node:util";
import { BadBackupError, decodeBackup, type BackupHeader } from "../kv/backup_file.ts";
import { ConfigError, parsePeers } from "../node/config.ts";
import { RecoveryRefused, restoreDataDir, restoredClusterId } from "../node/disaster_recovery.ts";
import { StorageError } from "../storage/errors.ts";
import { CLIENT_HELP } from "./client.ts";
import { failure, runClientCommand, UsageError } from "./command.ts";
import { EXIT, fail, printJson } from "./output.ts";

/** Largest backup `save` accepts; the whole file passes through memory once. */
const MAX_BACKUP_BYTES = 8 * 2 ** 30;
const SAVE_DEFAULT_TIMEOUT_MS = 600_000;

const HELP = `usage: phalanx snapshot <save|status|restore> ...

  snapshot save FILE [--stale]     stream a consistent backup from a running node into FILE
                                   (needs an admin credential). By default the node first passes
                                   a linearizable read barrier: every write acknowledged before
                                   the save started is in the file. --stale skips the barrier
                                   (no quorum): the node's applied state as it is.
  snapshot status FILE [--json]    verify FILE (checksums, image integrity) and describe it;
                                   exit 4 with the reason when it is damaged or truncated
  snapshot restore FILE --data-dir D --id ID --peers id=host:port,... [--cluster-id C]
                                   build the data dir of one member of a NEW cluster from FILE:
                                   run it once per member with the same --peers, then start
                                   \`phalanx serve\` on each. It gets a new cluster id (derived from
                                   the file and --peers, or --cluster-id) and refuses a data dir
                                   that exists and is not empty.
options of save:
${CLIENT_HELP}`;

export async function snapshotCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case "save":
      return save(rest);
    case "status":
      return status(rest);
    case "restore":
      return restore(rest);
    default: {
      const asked = sub === undefined || sub === "--help" || sub === "-h" || sub === "help";
      process[asked ? "stdout" : "stderr"].write(`${HELP}\n`);
      return asked ? EXIT.ok : EXIT.usage;
    }
  }
}

function save(argv: string[]): Promise<number> {
  return runClientCommand(
    argv,
    HELP,
    { stale: { type: "boolean" } },
    async (ctx) => {
      const [file] = ctx.positionals;
      if (file === undefined || ctx.positionals.length !== 1) throw new UsageError("give the file to save the snapshot to");
      const timeoutMs = ctx.values.timeout === undefined ? SAVE_DEFAULT_TIMEOUT_MS : Number(ctx.values.timeout);
      const query = ctx.values.stale === true ? "?consistency=stale" : "";
      const res = await ctx.client.request("GET", `/v1/snapshot${query}`, { timeoutMs });
      if (res.status !== 200) return failure(res);
      // What arrived is checked before it replaces anything: a broken transfer never becomes FILE.
      let header: BackupHeader;
      try {
        header = decodeBackup(res.body).header;
      } catch (err) {
        if (err instanceof BadBackupError) return fail(EXIT.error, `${res.addr} sent a damaged snapshot: ${err.message}`);
        throw err;
      }
      writeDurably(file, res.body);
      if (ctx.json) printJson({ file, bytes: res.body.byteLength, ...header });
      else {
        process.stdout.write(
          `saved ${file}: ${res.body.byteLength} bytes, index ${header.index}, term ${header.term}, from ${header.node} (${res.addr}), sha256 ${header.dataSha256}\n`,
        );
      }
      return EXIT.ok;
    },
    { maxResponseBytes: MAX_BACKUP_BYTES },
  );
}

/** Writes `file` whole or not at all: a temporary file, fsync, rename, fsync of the directory. */
function writeDurably(file: string, bytes: Uint8Array): void {
  const tmp = `${file}.partial`;
  const fd = openSync(tmp, "w");
  try {
    for (let at = 0; at < bytes.byteLength; ) at += writeSync(fd, bytes, at, Math.min(bytes.byteLength - at, 1 << 20));
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, file);
  const dir = openSync(dirname(resolve(file)), "r");
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Reads and fully verifies a backup file; a Number is the exit code of a reported failure. */
function load(file: string): { header: BackupHeader; data: Uint8Array; keys: number } | number {
  if (!existsSync(file)) return fail(EXIT.usage, `${file}: no such file`);
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    return fail(EXIT.error, `${file}: ${(err as Error).message}`);
  }
  try {
    const { header, data } = decodeBackup(bytes);
    return { header, data, keys: checkImage(header, data) };
  } catch (err) {
    if (err instanceof BadBackupError) return fail(EXIT.error, `${file}: ${err.message}`);
    throw err;
  }
}

/** The image itself: a SQLite database of ours at the header's index. Returns its key count. */
function checkImage(header: BackupHeader, data: Uint8Array): number {
  let db: Database;
  try {
    db = Database.deserialize(data, true);
  } catch (err) {
    throw new BadBackupError(`the image is not a SQLite database: ${(err as Error).message}`);
  }
  try {
    const check = (db.query("PRAGMA quick_check").values()[0] as [string] | undefined)?.[0];
    if (check !== "ok") throw new BadBackupError(`the image fails its integrity check: ${String(check)}`);
    const state = db.query("SELECT applied_index FROM kv_state").values() as Array<[number]>;
    if (state.length !== 1 || state[0]![0] !== header.index) {
      throw new BadBackupError(`the image holds state at index ${String(state[0]?.[0])}, the header says ${header.index}`);
    }
    return (db.query("SELECT count(*) FROM kv").values()[0] as [number])[0];
  } catch (err) {
    if (err instanceof BadBackupError) throw err;
    throw new BadBackupError(`the image is not a phalanx snapshot: ${(err as Error).message}`);
  } finally {
    db.close();
  }
}

function status(argv: string[]): number {
  const { values, positionals } = parseArgs({ args: argv, options: { json: { type: "boolean" }, help: { type: "boolean", short: "h" } }, allowPositionals: true });
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const [file] = positionals;
  if (file === undefined || positionals.length !== 1) return fail(EXIT.usage, `give the snapshot file\n${HELP}`);
  const r = load(file);
  if (typeof r === "number") return r;
  const h = r.header;
  if (values.json === true) printJson({ file, ok: true, keys: r.keys, ...h });
  else {
    process.stdout.write(
      `${file}: ok (checksums and image verified)\n` +
        `  format      ${h.format}\n` +
        `  cluster     ${h.clusterId ?? "none recorded (static PEERS cluster)"}\n` +
        `  taken on    ${h.node} at ${h.createdAt}\n` +
        `  index       ${h.index} (term ${h.term})\n` +
        `  voters      ${h.conf.voters.join(",") || "-"}\n` +
        `  learners    ${h.conf.learners.join(",") || "-"}\n` +
        `  keys        ${r.keys}\n` +
        `  image       ${h.dataBytes} bytes, sha256 ${h.dataSha256}\n`,
    );
  }
  return EXIT.ok;
}

function restore(argv: string[]): number {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      "data-dir": { type: "string" },
      id: { type: "string" },
      peers: { type: "string" },
      "cluster-id": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  if (values.help === true) {
    process.stdout.write(`${HELP}\n`);
    return EXIT.ok;
  }
  const [file] = positionals;
  if (file === undefined || positionals.length !== 1) return fail(EXIT.usage, `give the snapshot file\n${HELP}`);
  const dataDir = values["data-dir"];
  const id = values.id;
  if (dataDir === undefined || id === undefined || values.peers === undefined) return fail(EXIT.usage, "restore needs --data-dir, --id and --peers");
  let peers;
  try {
    peers = parsePeers(values.peers);
  } catch (err) {
    if (err instanceof ConfigError) return fail(EXIT.usage, err.message);
    throw err;
  }
  if (!peers.has(id)) return fail(EXIT.usage, `--peers must include this node (${id})`);
  const r = load(file);
  if (typeof r === "number") return r;
  const clusterId = values["cluster-id"] ?? restoredClusterId(r.header, peers);
  if (clusterId === r.header.clusterId) return fail(EXIT.usage, `--cluster-id ${clusterId} is the id of the cluster the backup came from: a restored cluster needs a new one`);
  try {
    restoreDataDir({ header: r.header, data: r.data, dataDir, self: id, peers, clusterId });
  } catch (err) {
    if (err instanceof RecoveryRefused || err instanceof StorageError) return fail(EXIT.error, err.message);
    throw err;
  }
  process.stdout.write(
    `restored ${dataDir} as ${id} of new cluster ${clusterId}: ${r.keys} keys at index ${r.header.index}, voters ${[...peers.keys()].sort().join(",")}\n` +
      `start it with: phalanx serve --id ${id} --data-dir ${dataDir} --rpc-addr ${peers.get(id)} (and the cluster's CLUSTER_KEY or TLS settings)\n`,
  );
  return EXIT.ok;
}
