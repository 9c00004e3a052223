// Where to join: JOIN seeds ("host:port", names resolved) and DISCOVERY_DNS (every A/AAAA record
// of a name, e.g. Fly's "<app>.internal", at the default gossip port).

import { promises as dns } from "node:dns";
import { isIP } from "node:net";
import { formatHostPort, parseHostPort } from "./address.ts";

export interface Resolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export async function discoverSeeds(
  join: readonly string[],
  discoveryDns: string | undefined,
  defaultPort: number,
  resolver: Resolver = dns,
): Promise<string[]> {
  const out = new Set<string>();
  const names = discoveryDns === undefined || discoveryDns === "" ? join : [...join, discoveryDns];
  for (const entry of names) {
    const hp = parseHostPort(entry, defaultPort);
    if (hp === null) continue;
    if (isIP(hp.host) !== 0) {
      out.add(formatHostPort(hp.host, hp.port));
      continue;
    }
    // A name with no records of one family is normal (Fly's .internal is AAAA only).
    const [v6, v4] = await Promise.all([resolver.resolve6(hp.host).catch(() => []), resolver.resolve4(hp.host).catch(() => [])]);
    for (const ip of [...v6, ...v4]) out.add(formatHostPort(ip, hp.port));
  }
  return [...out];
}

/** JOIN's comma-separated list. */
export function parseJoin(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
}
