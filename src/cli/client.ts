// The CLI's API client: JSON over the pooled HTTP/2 client, with failover across several
// endpoints. Connection failures move to the next endpoint; 503 (no leader yet, election under
// way) retries with a short backoff, preferring the leader a server names; all within one deadline.
import { H2Client, H2Error, type ClientTls } from "../transport/h2_client.ts";
import { readFileSync } from "node:fs";

export interface ClientOptions {
  addrs: string[];
  timeoutMs: number;
  tls?: ClientTls;
  /** Largest answer accepted (default 16 MiB); `snapshot save` raises it. */
  maxResponseBytes?: number;
  /** Bearer token sent with every request. */
  token?: string;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body (null when empty or not JSON). */
  json: Record<string, unknown> | null;
  body: Uint8Array;
  /** The endpoint that answered. */
  addr: string;
}

export class UnreachableError extends Error {
  override name = "UnreachableError";
}

/**
 * A write went out and no answer came back (a timeout, a reset stream): it may have been applied.
 * Sending it again to another endpoint could apply it twice (and a retried compare-and-swap could
 * report compare_failed after the first attempt swapped), so the command stops and says so.
 */
export class OutcomeUnknownError extends Error {
  override name = "OutcomeUnknownError";
}

/** Reads can be sent again after any failure; a write only when it provably never arrived. */
function isWrite(method: string): boolean {
  return method !== "GET" && method !== "HEAD";
}

const RETRY_MIN_MS = 50;
const RETRY_MAX_MS = 1000;

export class ApiClient {
  private readonly h2: H2Client;
  private preferred = 0;

  constructor(private readonly opts: ClientOptions) {
    if (opts.addrs.length === 0) throw new Error("no server address given");
    this.h2 = new H2Client({
      ...(opts.tls === undefined ? {} : { tls: opts.tls }),
      ...(opts.maxResponseBytes === undefined ? {} : { maxResponseBytes: opts.maxResponseBytes }),
      connectTimeoutMs: Math.min(2000, opts.timeoutMs),
    });
  }

  /** One request with failover; throws UnreachableError when no endpoint answered usefully in time. */
  async request(method: string, path: string, opts: { json?: unknown; timeoutMs?: number } = {}): Promise<ApiResponse> {
    const deadline = performance.now() + (opts.timeoutMs ?? this.opts.timeoutMs);
    const body = opts.json === undefined ? undefined : new TextEncoder().encode(JSON.stringify(opts.json));
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.opts.token !== undefined) headers.authorization = `Bearer ${this.opts.token}`;
    if (body !== undefined) headers["content-type"] = "application/json";
    const addrs = [...this.opts.addrs];
    let lastProblem = "no attempt made";
    let last503: ApiResponse | null = null;
    let wait = RETRY_MIN_MS;
    // Endpoints that said no for certain (refused, unknown name): waiting will not change that, so
    // once every endpoint has, the command ends at once instead of retrying for the whole timeout.
    const refused = new Map<string, string>();
    // Bounded: each pass tries every endpoint once, and passes stop at the deadline.
    for (let attempt = 0; attempt < 10_000; attempt++) {
      const remaining = deadline - performance.now();
      if (remaining <= 0) break;
      const addr = addrs[this.preferred % addrs.length]!;
      try {
        const res = await this.h2.request(this.h2.originFor(addr), {
          method,
          path,
          headers: { ...headers, "x-phalanx-timeout-ms": String(Math.max(1, Math.floor(remaining - 100))) },
          ...(body === undefined ? {} : { body }),
          timeoutMs: Math.max(1, remaining),
        });
        const answer = toResponse(res, addr);
        if (res.status !== 503) return answer;
        last503 = answer;
        lastProblem = `${addr}: ${String(answer.json?.message ?? "unavailable")}`;
        const leaderAddr = answer.headers["x-phalanx-leader-addr"];
        if (typeof leaderAddr === "string" && leaderAddr !== addr) {
          if (!addrs.includes(leaderAddr)) addrs.push(leaderAddr);
          this.preferred = addrs.indexOf(leaderAddr);
        } else {
          this.preferred++;
        }
      } catch (err) {
        if (!(err instanceof H2Error)) throw err;
        lastProblem = err.message;
        this.preferred++;
        const definite = err.kind === "connect" ? definiteConnectFailure(err.message) : null;
        if (definite !== null) {
          refused.set(addr, definite);
          if (addrs.every((a) => refused.has(a))) {
            throw new UnreachableError(`cannot reach any server: ${addrs.map((a) => `${a}: ${refused.get(a)}`).join("; ")}`);
          }
          continue;
        }
        // "connect" and "closed" fail before the request is sent; anything later may have arrived.
        if (isWrite(method) && (err.kind === "timeout" || err.kind === "stream")) {
          throw new OutcomeUnknownError(
            `${method} ${path} was sent to ${addr} but no answer came back (${err.message}); its outcome is unknown: check with a read, or retry with a client id (POST /v1/clients) to apply it exactly once`,
          );
        }
        if (err.kind === "timeout") continue;
      }
      await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - performance.now()))));
      wait = Math.min(RETRY_MAX_MS, wait * 2);
    }
    if (last503 !== null) return last503;
    throw new UnreachableError(`cannot reach any server (${lastProblem})`);
  }

  async close(): Promise<void> {
    await this.h2.close();
  }
}

/**
 * A connection failure that retrying within a few seconds will not fix, in words; null for the
 * others (a connect timeout may be a slow network, a closed session a restart).
 */
export function definiteConnectFailure(message: string): string | null {
  if (message.includes("ECONNREFUSED")) return "connection refused (is phalanx running there?)";
  if (message.includes("ENOTFOUND") || message.includes("EAI_NONAME")) return "unknown host name (DNS lookup failed)";
  if (message.includes("EHOSTUNREACH") || message.includes("ENETUNREACH")) return "no route to host";
  return null;
}

function toResponse(res: { status: number; headers: Record<string, unknown>; body: Uint8Array }, addr: string): ApiResponse {
  let json: Record<string, unknown> | null = null;
  const type = String(res.headers["content-type"] ?? "");
  if (type.startsWith("application/json") && res.body.byteLength > 0) {
    try {
      json = JSON.parse(new TextDecoder().decode(res.body)) as Record<string, unknown>;
    } catch {
      json = null;
    }
  }
  return { status: res.status, headers: res.headers as ApiResponse["headers"], json, body: res.body, addr };
}

/**
 * "--addr a,b --addr c" and $PHALANX_ADDR → endpoint list (default 127.0.0.1:9000). The endpoints as etcdctl and consul take them too: `host:port`, `http://host:port` or
 * `https://host:port` (a trailing slash is fine). https:// means TLS even without --tls-ca (the
 * system's CAs then verify the server); schemes cannot be mixed.
 */
export function endpointsFrom(values: string[] | undefined, env: Record<string, string | undefined> = process.env): { addrs: string[]; tls: boolean } {
  const raw = values !== undefined && values.length > 0 ? values : [env.PHALANX_ADDR || "127.0.0.1:9000"];
  const items = raw.flatMap((v) => v.split(",")).map((s) => s.trim()).filter((s) => s !== "");
  const schemes = new Set<string>();
  const addrs = items.map((item) => {
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/(.*)$/.exec(item);
    if (m === null) return item;
    const scheme = m[1]!.toLowerCase();
    if (scheme !== "http" && scheme !== "https") throw new Error(`--addr ${item}: the scheme must be http:// or https://`);
    schemes.add(scheme);
    const rest = m[2]!.replace(/\/+$/, "");
    if (rest.includes("/")) throw new Error(`--addr ${item}: give host:port, without a path`);
    return rest;
  });
  if (schemes.size > 1) throw new Error("--addr: do not mix http:// and https:// endpoints");
  return { addrs, tls: schemes.has("https") };
}

export function tlsFrom(values: { "tls-ca"?: string; "tls-cert"?: string; "tls-key"?: string }): ClientTls | undefined {
  const { "tls-ca": ca, "tls-cert": cert, "tls-key": key } = values;
  if (ca === undefined && cert === undefined && key === undefined) return undefined;
  return {
    ...(ca === undefined ? {} : { ca: readFileSync(ca) }),
    ...(cert === undefined ? {} : { cert: readFileSync(cert) }),
    ...(key === undefined ? {} : { key: readFileSync(key) }),
  };
}

/**
 * The bearer token: --token, --token-file, $PHALANX_TOKEN, $PHALANX_TOKEN_FILE (first given wins,
 * in that order). A file is the way to keep it out of `ps` and shell history.
 */
export function tokenFrom(values: { token?: string; "token-file"?: string }, env: Record<string, string | undefined> = process.env): string | undefined {
  const fromFile = (path: string, what: string) => {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (err) {
      throw new Error(`${what}: cannot read ${path}: ${(err as Error).message}`);
    }
    const token = text.trim();
    if (token === "" || /\s/.test(token)) throw new Error(`${what}: ${path} must hold one token`);
    return token;
  };
  if (values.token !== undefined && values["token-file"] !== undefined) throw new Error("give --token or --token-file, not both");
  if (values.token !== undefined) return values.token;
  if (values["token-file"] !== undefined) return fromFile(values["token-file"], "--token-file");
  if (env.PHALANX_TOKEN !== undefined && env.PHALANX_TOKEN !== "") return env.PHALANX_TOKEN;
  if (env.PHALANX_TOKEN_FILE !== undefined && env.PHALANX_TOKEN_FILE !== "") return fromFile(env.PHALANX_TOKEN_FILE, "PHALANX_TOKEN_FILE");
  return undefined;
}

/** Options every client command takes. */
export const CLIENT_OPTIONS = {
  addr: { type: "string", multiple: true, short: "a" },
  timeout: { type: "string" },
  json: { type: "boolean" },
  "tls-ca": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  token: { type: "string" },
  "token-file": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

export const CLIENT_HELP = `  -a, --addr host:port[,host:port]  servers to try, in order (also $PHALANX_ADDR; default 127.0.0.1:9000)
      --timeout ms                  overall deadline including retries (default 10000)
      --json                        machine-readable output
      --tls-ca/--tls-cert/--tls-key files for a TLS (or mutual TLS) cluster
      --token t | --token-file path bearer token (also $PHALANX_TOKEN / $PHALANX_TOKEN_FILE)
  -h, --help
exit codes: 0 ok, 1 not found / compare failed, 2 usage, 3 unreachable or no leader, 4 other error`;
