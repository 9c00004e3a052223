// What the cluster benchmarks share: the Debian tools they need (installed only when missing),
// 3-member etcd and phalanx clusters on loopback in a temporary directory, and the bookkeeping
// that kills every child process on any way out (normal end, error, Ctrl-C).
import { type Subprocess, spawnSync } from "bun";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../tests/integration/harness.ts";

export const REPO = join(import.meta.dir, "..");
export const MEMBERS = 3;

// ---- children: tracked from spawn to exit, killed on any way out ---------------------------------

const children = new Set<Subprocess>();

/** Tracks `child` so that every way out of this process kills it. */
export function track<T extends Subprocess>(child: T): T {
  children.add(child);
  void child.exited.then(() => children.delete(child));
  return child;
}

/** Starts a tracked child whose stdout and stderr go to `logFile` and `logFile.err`. */
export function spawnLogged(cmd: string[], env: Record<string, string>, logFile: string): Subprocess {
  return track(Bun.spawn(cmd, { env: { ...process.env, ...env }, stdout: Bun.file(logFile), stderr: Bun.file(`${logFile}.err`) }));
}

/** SIGTERM to `procs` (default: every child), SIGKILL to those still running after `graceMs`. */
export async function stopChildren(procs: Subprocess[] = [...children], graceMs = 10_000): Promise<void> {
  for (const c of procs) c.kill("SIGTERM");
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([Promise.all(procs.map((c) => c.exited)), new Promise((r) => (timer = setTimeout(r, graceMs)))]);
  clearTimeout(timer);
  for (const c of procs) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await Promise.all(procs.map((c) => c.exited));
}

/**
 * A temporary directory for data dirs and logs, removed on exit unless `keep()` was called
 * (after a failure, so the servers' logs stay for a look); SIGINT/SIGTERM stop every child first.
 */
export function workDir(prefix: string): { root: string; keep: () => void; interrupted: () => boolean } {
  const root = mkdtempSync(join(tmpdir(), prefix));
  let keepLogs = false;
  // Interrupted on purpose: the failures that follow (children killed under the run) are not
  // worth keeping logs for.
  let interrupted = false;
  process.on("exit", () => {
    for (const c of children) c.kill("SIGKILL");
    if (!keepLogs || interrupted) rmSync(root, { recursive: true, force: true });
  });
  for (const sig of ["SIGINT", "SIGTERM"] as const) {
    process.on(sig, () => {
      interrupted = true;
      process.stderr.write(`\n${sig}: stopping every child\n`);
      void stopChildren([...children], 2000).finally(() => process.exit(130));
    });
  }
  return { root, keep: () => (keepLogs = true), interrupted: () => interrupted };
}

// ---- tools from Debian -----------------------------------------------------------------------------

/** A Debian package and the file whose presence shows it is installed. */
export interface DebianNeed {
  pkg: string;
  file: string;
}

export const ETCD_BIN = "/usr/bin/etcd";
export const GO_BIN = "/usr/bin/go";
export const GOCODE = "/usr/share/gocode";

/** apt-get installs the packages whose file is missing (apt-get update first); nothing when all are there. */
export function ensureDebian(needs: DebianNeed[]): void {
  const missing = needs.filter((n) => !existsSync(n.file)).map((n) => n.pkg);
  if (missing.length === 0) return;
  const cmds = [["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", ...missing]];
  if (process.getuid?.() !== 0) throw new Error(`missing Debian packages ${missing.join(" ")}: run as root, or ${cmds.map((c) => c.join(" ")).join(" && ")}`);
  process.stderr.write(`installing Debian packages: ${missing.join(" ")}\n`);
  for (const cmd of cmds) {
    const r = spawnSync(cmd, { stdout: "inherit", stderr: "inherit", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed (exit ${r.exitCode})`);
  }
  for (const n of needs) if (!existsSync(n.file)) throw new Error(`${n.pkg} installed but ${n.file} is missing`);
}

// ---- clusters --------------------------------------------------------------------------------------

export interface Cluster {
  system: "etcd" | "phalanx";
  /** Client addresses host:port, one per member. */
  addrs: string[];
  procs: Subprocess[];
  logs: string[];
  /** performance.now() just before the first member was spawned. */
  startedAt: number;
}

/** The first member that has exited, with its code, or null while all run. */
export function exited(c: Cluster): string | null {
  const i = c.procs.findIndex((p) => p.exitCode !== null || p.signalCode !== null);
  if (i < 0) return null;
  const p = c.procs[i]!;
  return `${c.system} member ${i + 1} exited (${p.exitCode ?? p.signalCode}); log ${c.logs[i]}(.err)`;
}

/**
 * Three etcd 3.4 members with their default durability (fsync per commit) and timing (100 ms
 * heartbeat, 1 s election), data in `root`.
 */
export async function startEtcd(root: string): Promise<Cluster> {
  mkdirSync(root, { recursive: true });
  const names = Array.from({ length: MEMBERS }, (_, i) => `e${i + 1}`);
  const client: string[] = [];
  const peer: string[] = [];
  for (let i = 0; i < MEMBERS; i++) {
    client.push(`127.0.0.1:${await freePort()}`);
    peer.push(`127.0.0.1:${await freePort()}`);
  }
  const cluster = names.map((n, i) => `${n}=http://${peer[i]}`).join(",");
  const token = `bench-${randomBytes(6).toString("hex")}`;
  const logs = names.map((n) => join(root, `${n}.log`));
  for (const name of names) mkdirSync(join(root, "etcd", name), { recursive: true });
  const startedAt = performance.now();
  const procs = names.map((name, i) => {
    const dir = join(root, "etcd", name);
    // prettier-ignore
    return spawnLogged([
      ETCD_BIN,
      "--name", name,
      "--data-dir", dir,
      "--listen-client-urls", `http://${client[i]}`,
      "--advertise-client-urls", `http://${client[i]}`,
      "--listen-peer-urls", `http://${peer[i]}`,
      "--initial-advertise-peer-urls", `http://${peer[i]}`,
      "--initial-cluster", cluster,
      "--initial-cluster-state", "new",
      "--initial-cluster-token", token,
    ], {}, logs[i]!);
  });
  return { system: "etcd", addrs: client, procs, logs, startedAt };
}

export interface PhalanxOptions {
  /** A compiled phalanx binary; by default `bun main.ts` from this checkout. */
  binary?: string;
  /** Extra server settings (e.g. client credentials), on top of the cluster's own. */
  env?: Record<string, string>;
  /**
   * Profile each node with Bun's sampling CPU profiler, written as markdown into
   * `<cpuProfDir>/<node id>/` when the node exits (on the graceful stop at the end of a run).
   */
  cpuProfDir?: string;
}

/**
 * Three `phalanx serve` nodes bootstrapped from PEERS with a fresh CLUSTER_KEY, everything else at
 * its default (fsync on every commit, 100 ms ticks, 1 s election), data in `root`.
 */
export async function startPhalanx(root: string, opts: PhalanxOptions = {}): Promise<Cluster> {
  mkdirSync(root, { recursive: true });
  const ids = Array.from({ length: MEMBERS }, (_, i) => `n${i + 1}`);
  const addrs: string[] = [];
  for (let i = 0; i < MEMBERS; i++) addrs.push(`127.0.0.1:${await freePort()}`);
  const peers = ids.map((id, i) => `${id}=${addrs[i]}`).join(",");
  const key = randomBytes(24).toString("hex");
  if (opts.binary !== undefined && opts.cpuProfDir !== undefined) throw new Error("CPU profiles need `bun main.ts`, not a compiled binary");
  const cmd = (id: string) =>
    opts.binary !== undefined
      ? [opts.binary, "serve"]
      : opts.cpuProfDir !== undefined
        ? [process.execPath, "--cpu-prof-md", `--cpu-prof-dir=${join(opts.cpuProfDir, id)}`, join(REPO, "main.ts"), "serve"]
        : [process.execPath, join(REPO, "main.ts"), "serve"];
  const logs = ids.map((id) => join(root, `${id}.log`));
  const startedAt = performance.now();
  const procs = ids.map((id, i) =>
    spawnLogged(cmd(id), { NODE_ID: id, DATA_DIR: join(root, "phalanx", id), RPC_ADDR: addrs[i]!, PEERS: peers, CLUSTER_KEY: key, ...opts.env }, logs[i]!),
  );
  return { system: "phalanx", addrs, procs, logs, startedAt };
}

/**
 * The headers every benchmark request to phalanx's client API carries: the one place to adapt
 * when client credentials change (the Go load generator's counterpart is phalanxSystem.request).
 */
export function phalanxHeaders(token: string | undefined): Record<string, string> {
  return token === undefined || token === "" ? {} : { authorization: `Bearer ${token}` };
}

/** KEY=VALUE strings (repeated --phalanx-env flags) as an environment. */
export function parseEnvPairs(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf("=");
    if (eq <= 0) throw new Error(`--phalanx-env wants KEY=VALUE, got ${JSON.stringify(p)}`);
    env[p.slice(0, eq)] = p.slice(eq + 1);
  }
  return env;
}

/** The nearest-rank percentile (p in (0, 100]): the smallest value with at least p% of them at or below it. */
export function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length))) - 1]!;
}

export function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
