// "host:port" strings as used in config and membership: 127.0.0.1:9000, [::1]:9000, [::]:0, node-a.internal:9000.

import { isIPv6 } from "node:net";

export interface HostPort {
  host: string;
  port: number;
}

/** Parses "host:port"; IPv6 hosts must be bracketed. Throws on anything else (this is config, not wire input). */
export function parseHostPort(address: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(address);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (host === undefined || !(port >= 0 && port <= 65535)) {
    throw new Error(`invalid address "${address}": expected host:port or [ipv6]:port`);
  }
  if (m?.[1] !== undefined && !isIPv6(host)) throw new Error(`invalid IPv6 address in "${address}"`);
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return isIPv6(host) ? `[${host}]:${port}` : `${host}:${port}`;
}

export function originOf(address: string, secure: boolean): string {
  const { host, port } = parseHostPort(address);
  return `${secure ? "https" : "http"}://${formatHostPort(host, port)}`;
}
