// The lab's client inside one region's network namespace: reads one JSON command per line on
// stdin, answers one JSON line on stdout. It talks only to its own region's node (no delay), so
// a write's latency is what a client in that region sees. Every loop is bounded by a count or a
// wall-clock end.
import { createInterface } from "node:readline";
import { ApiClient } from "../../src/cli/client.ts";
import { H2Client } from "../../src/transport/h2_client.ts";

export type AgentCommand =
  | { id: number; op: "status"; addr: string }
  | { id: number; op: "transfer"; addr: string; to: string }
  | { id: number; op: "writes"; addr: string; count: number; prefix: string }
  | { id: number; op: "untilWrite"; addr: string; prefix: string; endAt: number }
  | { id: number; op: "samplePeers"; debugUrl: string; everyMs: number; endAt: number }
  | { id: number; op: "metric"; url: string; name: string };

/** Per peer: samples taken, how many found 4 or more requests in flight (the old cap) or messages queued. */
export interface PeerSamples {
  samples: number;
  fourOrMore: number;
  queued: number;
  maxInflight: number;
  rttMs: number | null;
}

/** A command without its id (the driver numbers them). */
export type AgentRequest = AgentCommand extends infer C ? (C extends AgentCommand ? Omit<C, "id"> : never) : never;

export interface WriteSample {
  /** Wall clock (Date.now) when the write was sent and when its answer came. */
  start: number;
  end: number;
  ok: boolean;
  status: number;
}

const clients = new Map<string, ApiClient>();
function clientFor(addr: string): ApiClient {
  let c = clients.get(addr);
  if (c === undefined) {
    c = new ApiClient({ addrs: [addr], timeoutMs: 10_000 });
    clients.set(addr, c);
  }
  return c;
}

/** Writes go out once each (no client-side retry or backoff), so a sample is one round trip. */
const h2 = new H2Client({ connectTimeoutMs: 2000 });
const VALUE = new TextEncoder().encode(JSON.stringify({ value: "v" }));

async function write(addr: string, key: string, timeoutMs: number): Promise<WriteSample & { ms: number }> {
  const start = Date.now();
  const t0 = performance.now();
  let status = 0;
  try {
    const res = await h2.request(h2.originFor(addr), {
      method: "PUT",
      path: `/v1/kv/${key}`,
      headers: { "content-type": "application/json", "x-phalanx-timeout-ms": String(timeoutMs) },
      body: VALUE,
      timeoutMs: timeoutMs + 500,
    });
    status = res.status;
  } catch {
    status = 0;
  }
  const ms = performance.now() - t0;
  return { start, end: Date.now(), ok: status === 200, status, ms };
}

async function run(cmd: AgentCommand): Promise<unknown> {
  switch (cmd.op) {
    case "status": {
      const res = await clientFor(cmd.addr).request("GET", "/v1/status", { timeoutMs: 3000 });
      return res.json;
    }
    case "transfer": {
      const res = await clientFor(cmd.addr).request("POST", `/v1/leader/transfer?to=${encodeURIComponent(cmd.to)}`, { timeoutMs: 10_000 });
      return { status: res.status, body: res.json };
    }
    case "writes": {
      const ms: number[] = [];
      let failed = 0;
      for (let i = 0; i < cmd.count; i++) {
        const w = await write(cmd.addr, `${cmd.prefix}-${i}`, 5000);
        if (w.ok) ms.push(w.ms);
        else failed++;
      }
      return { ms, failed };
    }
    case "untilWrite": {
      // Writes back to back until the end time; the driver picks the first success after its event.
      const samples: WriteSample[] = [];
      for (let i = 0; Date.now() < cmd.endAt && i < 100_000; i++) {
        const w = await write(cmd.addr, `${cmd.prefix}-${i}`, Math.max(100, Math.min(3000, cmd.endAt - Date.now())));
        samples.push({ start: w.start, end: w.end, ok: w.ok, status: w.status });
        if (!w.ok) await new Promise((r) => setTimeout(r, 20));
      }
      return { samples };
    }
    case "metric": {
      // One counter from the node's /metrics (null when the node does not answer).
      try {
        const text = await (await fetch(cmd.url)).text();
        const line = text.split("\n").find((l) => l.startsWith(`${cmd.name} `));
        return line === undefined ? null : Number(line.split(" ")[1]);
      } catch {
        return null;
      }
    }
    case "samplePeers": {
      // The leader's transport, seen from outside while a write run goes on: how often each peer
      // has 4 or more requests in flight (the cap before the lab measured this) and messages queued.
      const out: Record<string, PeerSamples> = {};
      for (let i = 0; Date.now() < cmd.endAt && i < 100_000; i++) {
        try {
          const res = await fetch(cmd.debugUrl);
          const body = (await res.json()) as { peers: { id: string; inflight: number; queued: number; rttMs: number | null }[] };
          for (const p of body.peers) {
            const o = (out[p.id] ??= { samples: 0, fourOrMore: 0, queued: 0, maxInflight: 0, rttMs: null });
            o.samples++;
            if (p.inflight >= 4) o.fourOrMore++;
            if (p.queued > 0) o.queued++;
            o.maxInflight = Math.max(o.maxInflight, p.inflight);
            o.rttMs = p.rttMs;
          }
        } catch {
          // the node is busy or gone: skip this sample
        }
        await new Promise((r) => setTimeout(r, cmd.everyMs));
      }
      return out;
    }
  }
}

const lines = createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const cmd = JSON.parse(line) as AgentCommand;
  run(cmd).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: cmd.id, result })}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ id: cmd.id, error: String(err) })}\n`),
  );
});
lines.on("close", () => process.exit(0));
process.stdout.write(`${JSON.stringify({ id: 0, result: "ready" })}\n`);
