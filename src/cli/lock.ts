// `phalanx lock <name> [-- <command...>]` and `phalanx elect <name> [<proposal>] | --listen`,
// with etcd's concurrency semantics (clientv3/concurrency Mutex and Election):
// - a lease (--ttl seconds, kept alive every ttl/3) carries the key <name>/<lease id in hex>;
// - the key is created in a transaction (compare createRevision == 0); its create revision is the
//   place in line and the fencing token (PHALANX_LOCK_REVISION for the command);
// - the holder is the key with the lowest create revision; a waiter watches the next-older key
//   for its deletion, then looks again;
// - releasing deletes the key and revokes the lease; a holder that dies (kill -9) stops keeping its
//   lease alive, so the leader expires it after the TTL and the key goes with it.
// If the keep-alive fails for longer than the TTL (or the lease is gone), the lock is lost: the
// command is sent SIGTERM and lock exits with an error instead of pretending to hold it.
import type { ApiClient } from "./client.ts";
import { CLIENT_HELP, endpointsFrom, tlsFrom, tokenFrom } from "./client.ts";
import { runClientCommand, UsageError, type ClientContext } from "./command.ts";
import { EXIT, fail } from "./output.ts";
import { resumingWatch } from "./watch.ts";

export const LOCK_HELP = `usage: phalanx lock <name> [--ttl seconds] [-- <command> [args...]]
  waits for the lock, runs the command while holding it (env PHALANX_LOCK_KEY, and
  PHALANX_LOCK_REVISION: the fencing token), releases it when the command exits and exits with
  its code. Without a command: prints the key and holds the lock until interrupted.
  A holder that dies is released after the TTL (default 10 s).
options:
${CLIENT_HELP}`;

export const ELECT_HELP = `usage: phalanx elect <name> <proposal> [--ttl seconds] | phalanx elect <name> --listen
  campaign: waits until elected, prints the proposal, holds leadership until interrupted.
  --listen: prints the current leader's proposal each time the leader changes.
options:
${CLIENT_HELP}`;

const EXTRA = { ttl: { type: "string" }, listen: { type: "boolean" } } as const;

interface Kv {
  key: string;
  value: string | null;
  valueBase64: string;
  createRevision: number;
}

class ProblemError extends Error {
  override name = "ProblemError";
}

/** A lease kept alive in the background; `lost` resolves if it cannot be kept. */
class HeldLease {
  private timer: ReturnType<typeof setInterval> | null = null;
  private lastOk = performance.now();
  private lostResolve!: (why: string) => void;
  readonly lost = new Promise<string>((r) => (this.lostResolve = r));
  private isLost = false;

  private constructor(
    private readonly client: ApiClient,
    readonly id: number,
    readonly ttlS: number,
  ) {}

  static async grant(client: ApiClient, ttlS: number): Promise<HeldLease> {
    const res = await client.request("POST", "/v1/lease", { json: { ttl: ttlS } });
    if (res.status !== 200) throw new ProblemError(`cannot grant a lease: ${String(res.json?.message ?? `HTTP ${res.status}`)}`);
    const lease = new HeldLease(client, Number(res.json!.id), ttlS);
    lease.start();
    return lease;
  }

  private start(): void {
    const every = Math.max(200, (this.ttlS * 1000) / 3);
    let busy = false;
    this.timer = setInterval(() => {
      if (busy || this.isLost) return;
      busy = true;
      void this.client
        .request("POST", `/v1/lease/${this.id}/keepalive`, { timeoutMs: every })
        .then((res) => {
          if (res.status === 200) this.lastOk = performance.now();
          else if (res.status === 404) this.lose(`lease ${this.id} expired or was revoked`);
        })
        .catch(() => undefined)
        .finally(() => {
          busy = false;
          // Not renewed for a whole TTL: the leader may already have expired it. Assume the worst.
          if (performance.now() - this.lastOk > this.ttlS * 1000) this.lose(`lease ${this.id} could not be kept alive for ${this.ttlS} s`);
        });
    }, every);
  }

  private lose(why: string): void {
    if (this.isLost) return;
    this.isLost = true;
    this.stopKeepAlive();
    this.lostResolve(why);
  }

  stopKeepAlive(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Revokes the lease (its keys go with it). Best effort: an unreachable cluster expires it later. */
  async revoke(): Promise<void> {
    this.stopKeepAlive();
    this.isLost = true;
    await this.client.request("DELETE", `/v1/lease/${this.id}`, { timeoutMs: 3000 }).catch(() => undefined);
  }
}

async function listPrefix(client: ApiClient, prefix: string): Promise<{ kvs: Kv[]; revision: number }> {
  const q = new URLSearchParams({ prefix, limit: "10000" });
  const res = await client.request("GET", `/v1/kv?${q}`);
  if (res.status !== 200) throw new ProblemError(`cannot list ${prefix}: ${String(res.json?.message ?? `HTTP ${res.status}`)}`);
  return { kvs: res.json!.kvs as Kv[], revision: Number(res.json!.revision) };
}

/**
 * Joins the line for `name` with `value` on `lease` and resolves once first in line (etcd's
 * Mutex.Lock / Election.Campaign). Returns the key and its create revision (the fencing token).
 */
async function campaign(ctx: ClientContext, name: string, value: string, lease: HeldLease): Promise<{ key: string; revision: number }> {
  const prefix = `${name}/`;
  const key = `${prefix}${lease.id.toString(16)}`;
  const res = await ctx.client.request("POST", "/v1/txn", {
    json: {
      compare: [{ key, target: "createRevision", result: "==", value: 0 }],
      then: [{ put: { key, value, lease: lease.id } }],
      else: [{ get: { key } }],
    },
  });
  if (res.status !== 200) throw new ProblemError(`cannot join the line for ${name}: ${String(res.json?.message ?? `HTTP ${res.status}`)}`);
  const r = res.json as { succeeded: boolean; revision: number; responses: Array<{ get?: { kv: Kv } }> };
  const myRev = r.succeeded ? r.revision : r.responses[0]!.get!.kv.createRevision;
  // Bounded by the waiters ahead: each round waits for one of them to go, and they only leave.
  for (;;) {
    const { kvs, revision } = await listPrefix(ctx.client, prefix);
    if (!kvs.some((k) => k.key === key)) throw new ProblemError(`our key ${key} is gone (the lease expired)`);
    const ahead = kvs.filter((k) => k.createRevision < myRev).sort((a, b) => b.createRevision - a.createRevision);
    if (ahead.length === 0) return { key, revision: myRev };
    const next = ahead[0]!;
    const abort = new AbortController();
    const lost = lease.lost.then((why) => {
      abort.abort();
      throw new ProblemError(why);
    });
    await Promise.race([
      resumingWatch({
        addrs: endpointsFrom(ctx.values.addr as string[] | undefined).addrs,
        tls: tlsFrom(ctx.values as Record<string, string>),
        token: tokenFrom(ctx.values as Record<string, string>),
        range: { key: next.key },
        rev: revision + 1,
        unreachableMs: Number(ctx.values.timeout ?? 10_000),
        signal: abort.signal,
        onEvents: (_rev, events) => {
          if (events.some((e) => e.type === "delete")) abort.abort();
        },
      }),
      lost,
    ]);
    void lost.catch(() => undefined);
  }
}

function ttlOf(ctx: ClientContext): number {
  const ttl = Number(ctx.values.ttl ?? 10);
  if (!Number.isSafeInteger(ttl) || ttl < 1) throw new UsageError("--ttl must be a whole number of seconds ≥ 1");
  return ttl;
}

function untilSignal(): { promise: Promise<string>; dispose: () => void } {
  let resolve!: (s: string) => void;
  const promise = new Promise<string>((r) => (resolve = r));
  const onInt = () => resolve("SIGINT");
  const onTerm = () => resolve("SIGTERM");
  process.once("SIGINT", onInt);
  process.once("SIGTERM", onTerm);
  return { promise, dispose: () => (process.off("SIGINT", onInt), process.off("SIGTERM", onTerm)) };
}

export function lockCommand(argv: string[]): Promise<number> {
  const dash = argv.indexOf("--");
  const own = dash < 0 ? argv : argv.slice(0, dash);
  const command = dash < 0 ? [] : argv.slice(dash + 1);
  return runClientCommand(own, LOCK_HELP, EXTRA, async (ctx) => {
    if (ctx.positionals.length !== 1) throw new UsageError("expected the lock name (and the command after --)");
    const name = ctx.positionals[0]!;
    const signals = untilSignal();
    const lease = await HeldLease.grant(ctx.client, ttlOf(ctx));
    try {
      const held = await Promise.race([campaign(ctx, name, "", lease), signals.promise.then(() => null)]);
      if (held === null) return EXIT.error;
      if (command.length === 0) {
        process.stdout.write(`${held.key}\n`);
        const why = await Promise.race([signals.promise, lease.lost.then((w) => `lost: ${w}`)]);
        return why.startsWith("lost:") ? fail(EXIT.error, `lock ${name} ${why}`) : EXIT.ok;
      }
      const child = Bun.spawn(command, {
        stdio: ["inherit", "inherit", "inherit"],
        env: { ...process.env, PHALANX_LOCK_KEY: held.key, PHALANX_LOCK_REVISION: String(held.revision) },
      });
      void signals.promise.then((sig) => child.kill(sig as NodeJS.Signals));
      let lostWhy: string | null = null;
      void lease.lost.then((why) => {
        lostWhy = why;
        child.kill("SIGTERM");
      });
      const code = await child.exited;
      if (lostWhy !== null) return fail(EXIT.error, `lock ${name} was lost while the command ran (${lostWhy}); the command was sent SIGTERM`);
      return code;
    } catch (err) {
      if (err instanceof ProblemError) return fail(EXIT.error, err.message);
      throw err;
    } finally {
      signals.dispose();
      await lease.revoke();
    }
  });
}

export function electCommand(argv: string[]): Promise<number> {
  return runClientCommand(argv, ELECT_HELP, EXTRA, async (ctx) => {
    const [name, proposal] = ctx.positionals;
    if (name === undefined) throw new UsageError("expected the election name");
    if (ctx.values.listen === true) {
      if (proposal !== undefined) throw new UsageError("--listen takes no proposal");
      return observe(ctx, name);
    }
    if (proposal === undefined || ctx.positionals.length > 2) throw new UsageError("expected <name> <proposal>");
    const signals = untilSignal();
    const lease = await HeldLease.grant(ctx.client, ttlOf(ctx));
    try {
      const held = await Promise.race([campaign(ctx, name, proposal, lease), signals.promise.then(() => null)]);
      if (held === null) return EXIT.ok;
      process.stdout.write(`${held.key}\n${proposal}\n`);
      const why = await Promise.race([signals.promise, lease.lost.then((w) => `lost: ${w}`)]);
      return why.startsWith("lost:") ? fail(EXIT.error, `leadership of ${name} ${why}`) : EXIT.ok;
    } catch (err) {
      if (err instanceof ProblemError) return fail(EXIT.error, err.message);
      throw err;
    } finally {
      signals.dispose();
      await lease.revoke();
    }
  });
}

/** Prints the leader's proposal (the value of the lowest create revision) whenever it changes. */
async function observe(ctx: ClientContext, name: string): Promise<number> {
  const prefix = `${name}/`;
  const { kvs, revision } = await listPrefix(ctx.client, prefix);
  const line = new Map<string, { rev: number; value: string }>(kvs.map((k) => [k.key, { rev: k.createRevision, value: k.value ?? `base64:${k.valueBase64}` }]));
  let shown: string | null = null;
  const show = () => {
    let best: [string, { rev: number; value: string }] | null = null;
    for (const e of line) if (best === null || e[1].rev < best[1].rev) best = e;
    const now = best === null ? null : `${best[0]}\u0000${best[1].value}`;
    if (now !== shown && best !== null) process.stdout.write(`${best[1].value}\n`);
    shown = now;
  };
  show();
  const abort = new AbortController();
  const signals = untilSignal();
  void signals.promise.then(() => abort.abort());
  try {
    await resumingWatch({
      addrs: endpointsFrom(ctx.values.addr as string[] | undefined).addrs,
      tls: tlsFrom(ctx.values as Record<string, string>),
      token: tokenFrom(ctx.values as Record<string, string>),
      range: { prefix },
      rev: revision + 1,
      unreachableMs: Number(ctx.values.timeout ?? 10_000),
      signal: abort.signal,
      onEvents: (_rev, events) => {
        for (const e of events) {
          if (e.type === "delete") line.delete(e.kv.key);
          else line.set(e.kv.key, { rev: e.kv.createRevision ?? 0, value: e.kv.value ?? `base64:${e.kv.valueBase64 ?? ""}` });
        }
        show();
      },
    });
  } finally {
    signals.dispose();
  }
  return EXIT.ok;
}
