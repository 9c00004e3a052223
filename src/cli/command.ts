// Shared plumbing of the client commands: argument parsing with the common options, the client's
// lifetime, and turning failures into one line and an exit code.
import { parseArgs, type ParseArgsConfig } from "node:util";
import { ApiClient, endpointsFrom, CLIENT_OPTIONS, tlsFrom, tokenFrom, OutcomeUnknownError, UnreachableError, type ApiResponse, type ClientOptions } from "./client.ts";
import { EXIT, fail } from "./output.ts";
import { didYouMean } from "./suggest.ts";

export class UsageError extends Error {
  override name = "UsageError";
}

export interface ClientContext {
  client: ApiClient;
  /** The endpoints given (--addr or $PHALANX_ADDR), in order. */
  addrs: string[];
  /** A client for one endpoint only, with the same credentials (closed with the command). */
  clientFor(addr: string, timeoutMs: number): ApiClient;
  json: boolean;
  positionals: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

type Options = NonNullable<ParseArgsConfig["options"]>;

export async function runClientCommand(
  argv: string[],
  help: string,
  extra: Options,
  body: (ctx: ClientContext) => Promise<number>,
  clientOptions: Pick<ClientOptions, "maxResponseBytes"> = {},
): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { ...CLIENT_OPTIONS, ...extra }, allowPositionals: true, strict: true });
  } catch (err) {
    return fail(EXIT.usage, `${argsProblem(err, { ...CLIENT_OPTIONS, ...extra })}\n${usageLine(help)}`);
  }
  const values = parsed.values as ClientContext["values"];
  if (values.help === true) {
    process.stdout.write(`${help}\n`);
    return EXIT.ok;
  }
  const timeout = Number(values.timeout ?? 10_000);
  if (!Number.isFinite(timeout) || timeout <= 0) return fail(EXIT.usage, "--timeout must be a positive number of milliseconds");
  let client: ApiClient;
  let base: Pick<ClientOptions, "addrs" | "tls" | "token">;
  try {
    const endpoints = endpointsFrom(values.addr as string[] | undefined);
    const tls = tlsFrom(values as Record<string, string>) ?? (endpoints.tls ? {} : undefined);
    const token = tokenFrom(values as Record<string, string>);
    base = { addrs: endpoints.addrs, ...(tls === undefined ? {} : { tls }), ...(token === undefined ? {} : { token }) };
    client = new ApiClient({ ...clientOptions, ...base, timeoutMs: timeout });
  } catch (err) {
    return fail(EXIT.usage, (err as Error).message);
  }
  const extraClients: ApiClient[] = [];
  const clientFor = (addr: string, timeoutMs: number): ApiClient => {
    const c = new ApiClient({ ...clientOptions, ...base, addrs: [addr], timeoutMs });
    extraClients.push(c);
    return c;
  };
  try {
    return await body({ client, addrs: base.addrs, clientFor, json: values.json === true, positionals: parsed.positionals, values });
  } catch (err) {
    if (err instanceof UsageError) return fail(EXIT.usage, `${err.message}\n${usageLine(help)}`);
    if (err instanceof UnreachableError) return fail(EXIT.unavailable, err.message);
    if (err instanceof OutcomeUnknownError) return fail(EXIT.error, err.message);
    return fail(EXIT.error, err instanceof Error ? err.message : String(err));
  } finally {
    await Promise.all([client, ...extraClients].map((c) => c.close()));
  }
}

/** Exit code and a one-line message for an answer that is not a success. */
export function failure(res: ApiResponse): number {
  const msg = String(res.json?.message ?? `HTTP ${res.status}`);
  if (res.status === 404 || res.status === 409) return fail(EXIT.no, msg);
  if (res.status === 503 || res.status === 504) return fail(EXIT.unavailable, `${res.addr}: ${msg}`);
  if (res.status === 400 || res.status === 413) return fail(EXIT.usage, msg);
  if (res.status === 401 || res.status === 403) return fail(EXIT.error, `${res.addr}: ${msg}`);
  return fail(EXIT.error, `${res.addr}: HTTP ${res.status}: ${msg}`);
}

/** A usage error shows the command's usage line, not the whole help (that is what --help is for). */
export function usageLine(help: string): string {
  return `${help.split("\n")[0]!} (--help for more)`;
}

/**
 * parseArgs' complaint in one short sentence, with a suggestion for a mistyped flag. Its own text
 * for an unknown option is two sentences about positional arguments after "--".
 */
export function argsProblem(err: unknown, options: Options): string {
  const e = err as { code?: string; message?: string };
  const unknown = /Unknown option '([^']+)'/.exec(e.message ?? "");
  if (e.code === "ERR_PARSE_ARGS_UNKNOWN_OPTION" && unknown !== null) {
    const flag = unknown[1]!;
    const known = Object.keys(options).map((o) => `--${o}`);
    return `unknown option ${flag}${didYouMean(flag, known)}`;
  }
  return (e.message ?? String(err)).split(". To specify")[0]!;
}
