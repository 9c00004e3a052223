// A delaying TCP relay: the lab's stand-in for netem (this kernel has neither netem nor prio).
// Each route listens on one address and forwards every connection to one target, holding each
// chunk for the route's one-way delay (± jitter) in both directions. Order within a direction is
// kept: a chunk is never delivered before the one read ahead of it, so jitter reorders nothing
// (like netem with rate limiting, unlike plain netem jitter). An end or reset on one side reaches
// the other after the same delay, as a FIN or RST would.
//
// The relay reads eagerly, so TCP windows on either side never fill: only HTTP/2's own flow
// control sees the delay, as it would on a long link with large TCP buffers.
//
// Run as a process of its own (one per network namespace): `bun tests/lab/relay.ts '<routes JSON>'`,
// or in-process through startRelay(). Prints "ready" once every route listens.
//
// A route can be blocked (a partition): the relay stops reading both sockets of every connection
// on it, new ones included, so the peers' TCP windows fill and nothing passes, as on a blackholed
// link (no reset, no FIN; a new connection's handshake stalls). Unblocking resumes reading; what
// the senders buffered meanwhile then goes through, as TCP's retransmits would deliver it. As a
// process it takes "block <listen>" / "unblock <listen>" lines on stdin and answers "ok <line>".
import { createServer, connect, type Server, type Socket } from "node:net";
import { parseHostPort } from "../../src/transport/address.ts";

export interface RelayRoute {
  listen: string;
  to: string;
  oneWayMs: number;
  /** Fraction of the delay added or taken at random per chunk (0.05 = ±5%). */
  jitter: number;
}

interface Held {
  at: number;
  act: () => void;
}

/** One direction of one connection: chunks leave in order, each no earlier than its own time. */
class DelayLine {
  private readonly queue: Held[] = [];
  private last = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly oneWayMs: number,
    private readonly jitter: number,
    private readonly random: () => number,
  ) {}

  hold(act: () => void): void {
    const delay = this.oneWayMs * (1 + (this.random() * 2 - 1) * this.jitter);
    this.last = Math.max(this.last, performance.now() + delay);
    this.queue.push({ at: this.last, act });
    if (this.queue.length === 1) this.arm();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }

  private arm(): void {
    const head = this.queue[0];
    if (head === undefined) return;
    this.timer = setTimeout(() => this.release(), Math.max(0, head.at - performance.now()));
  }

  private release(): void {
    const now = performance.now();
    while (this.queue.length > 0 && this.queue[0]!.at <= now + 0.5) this.queue.shift()!.act();
    this.arm();
  }
}

function pipeDelayed(from: Socket, to: Socket, line: DelayLine, onGone: () => void): void {
  from.on("data", (chunk: Buffer) => line.hold(() => to.destroyed || to.write(chunk)));
  from.on("end", () => line.hold(() => to.destroyed || to.end()));
  from.on("error", () => undefined);
  from.on("close", (hadError: boolean) =>
    line.hold(() => {
      if (hadError) to.resetAndDestroy();
      else to.destroySoon();
      onGone();
    }),
  );
}

export interface RunningRelay {
  close(): Promise<void>;
  /** Blocks or unblocks the route listening on `listen` (see the top of the file). */
  setBlocked(listen: string, blocked: boolean): void;
  /** Connections accepted so far, per route index. */
  accepted: number[];
}

export async function startRelay(routes: RelayRoute[], random: () => number = Math.random): Promise<RunningRelay> {
  const servers: Server[] = [];
  const open = new Set<Socket>();
  const lines = new Set<DelayLine>();
  const accepted = routes.map(() => 0);
  const blocked = routes.map(() => false);
  const conns = routes.map(() => new Set<Socket[]>());
  for (const [i, route] of routes.entries()) {
    const target = parseHostPort(route.to);
    const where = parseHostPort(route.listen);
    const server = createServer({ noDelay: true }, (inbound) => {
      accepted[i]!++;
      const outbound = connect({ host: target.host, port: target.port, noDelay: true });
      const up = new DelayLine(route.oneWayMs, route.jitter, random);
      const down = new DelayLine(route.oneWayMs, route.jitter, random);
      const sockets = [inbound, outbound];
      for (const s of sockets) open.add(s);
      conns[i]!.add(sockets);
      lines.add(up);
      lines.add(down);
      let gone = 0;
      const onGone = () => {
        if (++gone < 2) return;
        for (const s of sockets) open.delete(s);
        conns[i]!.delete(sockets);
        lines.delete(up);
        lines.delete(down);
      };
      pipeDelayed(inbound, outbound, up, onGone);
      pipeDelayed(outbound, inbound, down, onGone);
      if (blocked[i]) for (const s of sockets) s.pause();
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err) => reject(new Error(`relay cannot listen on ${route.listen}: ${err.message}`)));
      server.listen(where.port, where.host, () => resolve());
    });
    server.on("error", () => undefined);
    servers.push(server);
  }
  return {
    accepted,
    setBlocked: (listen, on) => {
      const i = routes.findIndex((r) => r.listen === listen);
      if (i < 0) throw new Error(`no route listens on ${listen}`);
      blocked[i] = on;
      for (const pair of conns[i]!) for (const s of pair) on ? s.pause() : s.resume();
    },
    close: async () => {
      for (const l of lines) l.stop();
      for (const s of open) s.destroy();
      await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}

if (import.meta.main) {
  const routes = JSON.parse(process.argv[2] ?? "[]") as RelayRoute[];
  const relay = await startRelay(routes);
  process.stdout.write("ready\n");
  const { createInterface } = await import("node:readline");
  createInterface({ input: process.stdin }).on("line", (line) => {
    const [verb, listen] = line.trim().split(" ");
    if ((verb === "block" || verb === "unblock") && listen !== undefined) relay.setBlocked(listen, verb === "block");
    process.stdout.write(`ok ${line.trim()}\n`);
  });
  const stop = () => void relay.close().then(() => process.exit(0));
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}
