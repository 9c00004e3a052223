// The gossip UDP socket (Bun.udpSocket). Bun 1.4.5, checked by hand: binding "::" accepts IPv4 and
// IPv6 and reports IPv4 peers as "::ffff:a.b.c.d"; "::1" and "127.0.0.1" work; send() throws on a
// bad address, so every send is guarded and only IP literals are sent to (names are resolved first).
// An ICMP "port unreachable" (a peer that died) surfaces as an ECONNREFUSED socket error, which
// kills the process unless handled; the socket keeps working after it.

import { isIP } from "node:net";
import { formatHostPort, normalizeHost, parseHostPort } from "./address.ts";

export interface UdpEndpoint {
  /** The bound port (the real one when 0 was asked for). */
  readonly port: number;
  /** False if the address is not an IP "host:port" or the socket refused it. */
  send(addr: string, bytes: Uint8Array): boolean;
  close(): void;
}

export async function openUdp(
  bind: string,
  onPacket: (from: string, bytes: Uint8Array) => void,
  onError: (err: unknown) => void,
): Promise<UdpEndpoint> {
  const hp = parseHostPort(bind);
  if (hp === null || isIP(hp.host) === 0) throw new Error(`gossip bind address must be an IP "host:port", got "${bind}"`);
  const sock = await Bun.udpSocket({
    hostname: hp.host,
    port: hp.port,
    socket: {
      data(_s, buf, port, address) {
        onPacket(formatHostPort(normalizeHost(address), port), buf);
      },
      // Bun 1.4.5 passes the error as the first argument despite the typings' (socket, error).
      error(...args: unknown[]) {
        onError(args.find((a) => a instanceof Error) ?? args[0]);
      },
    },
  });
  return {
    port: sock.port,
    send(addr: string, bytes: Uint8Array): boolean {
      const to = parseHostPort(addr);
      if (to === null || isIP(to.host) === 0) return false;
      try {
        return sock.send(bytes, to.port, to.host);
      } catch {
        return false;
      }
    },
    close(): void {
      sock.close();
    },
  };
}
