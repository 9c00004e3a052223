// "host:port" addresses as gossip carries them; IPv6 hosts are bracketed ("[::1]:7946").

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(addr: string, defaultPort?: number): HostPort | null {
  const s = addr.trim();
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0) return null;
    const host = s.slice(1, close);
    const rest = s.slice(close + 1);
    if (rest === "") return defaultPort === undefined ? null : { host, port: defaultPort };
    if (!rest.startsWith(":")) return null;
    return withPort(host, rest.slice(1));
  }
  const colons = s.split(":").length - 1;
  // A bare IPv6 literal has several colons and no port.
  if (colons > 1) return defaultPort === undefined ? null : { host: s, port: defaultPort };
  if (colons === 0) return defaultPort === undefined || s === "" ? null : { host: s, port: defaultPort };
  const i = s.lastIndexOf(":");
  return withPort(s.slice(0, i), s.slice(i + 1));
}

function withPort(host: string, portText: string): HostPort | null {
  if (!/^\d{1,5}$/.test(portText)) return null;
  const port = Number(portText);
  if (port > 65535 || host === "") return null;
  return { host, port };
}

export function formatHostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** A dual-stack socket reports IPv4 peers as "::ffff:a.b.c.d"; gossip uses the plain form. */
export function normalizeHost(host: string): string {
  return host.startsWith("::ffff:") && host.includes(".") ? host.slice(7) : host;
}
