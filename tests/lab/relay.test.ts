// The lab's delay line (tests/lab/relay.ts), on loopback: every chunk is held its one-way delay in
// each direction, jitter never reorders a stream, and an end or reset crosses with the same delay.
import { afterAll, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import { freePort, waitFor } from "../integration/harness.ts";
import { startRelay, type RunningRelay } from "./relay.ts";

const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup) await c();
});

/** An echo server; `onSocket` sees each accepted socket (to reset it). */
async function echo(onSocket: (s: Socket) => void = () => undefined): Promise<number> {
  const port = await freePort();
  const server: Server = createServer((s) => {
    onSocket(s);
    s.on("data", (d) => s.write(d));
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  cleanup.push(() => new Promise<void>((r) => server.close(() => r())));
  return port;
}

async function relayTo(port: number, oneWayMs: number, jitter: number): Promise<{ relay: RunningRelay; port: number }> {
  const listen = await freePort();
  const relay = await startRelay([{ listen: `127.0.0.1:${listen}`, to: `127.0.0.1:${port}`, oneWayMs, jitter }]);
  cleanup.push(() => relay.close());
  return { relay, port: listen };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port }, () => resolve(s));
    s.once("error", reject);
  });
}

test("a round trip through the relay takes twice the one-way delay", async () => {
  const { port } = await relayTo(await echo(), 40, 0);
  const s = await open(port);
  const rtts: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const back = new Promise<void>((r) => s.once("data", () => r()));
    s.write(`ping ${i}`);
    await back;
    rtts.push(performance.now() - t0);
  }
  s.destroy();
  for (const rtt of rtts) {
    expect(rtt).toBeGreaterThanOrEqual(79);
    expect(rtt).toBeLessThan(400); // generous: the machine is shared
  }
});

test("with jitter, chunks stay in order and each is held within ±jitter", async () => {
  const { port } = await relayTo(await echo(), 30, 0.5);
  const s = await open(port);
  let got = "";
  const all = new Promise<void>((r) => s.on("data", (d) => ((got += d.toString()), got.length >= 2000 * 4 && r())));
  // 2,000 numbered chunks written back to back, one every few microseconds: random delays of
  // 15-45 ms each way would reorder them if the line did not keep order.
  const t0 = performance.now();
  for (let i = 0; i < 2000; i++) s.write(String(i % 10_000).padStart(4, "0"));
  await all;
  const elapsed = performance.now() - t0;
  s.destroy();
  const expected = Array.from({ length: 2000 }, (_, i) => String(i).padStart(4, "0")).join("");
  expect(got).toBe(expected);
  expect(elapsed).toBeGreaterThanOrEqual(30); // at least 2 × 15 ms
  expect(elapsed).toBeLessThan(1000);
});

test("a reset by the far side reaches the near side after the delay, not before", async () => {
  let far: Socket | null = null;
  const { port } = await relayTo(await echo((s) => (far = s)), 50, 0);
  const s = await open(port);
  s.write("hello");
  await new Promise<void>((r) => s.once("data", () => r()));
  const closed = new Promise<number>((r) => s.once("close", () => r(performance.now())));
  s.on("error", () => undefined);
  const t0 = performance.now();
  (far as unknown as Socket).resetAndDestroy();
  const at = await closed;
  expect(at - t0).toBeGreaterThanOrEqual(45);
  expect(at - t0).toBeLessThan(500);
});

test("a blocked route passes nothing, on open and new connections, and delivers what was held once unblocked", async () => {
  const { relay, port } = await relayTo(await echo(), 5, 0);
  const listen = `127.0.0.1:${port}`;
  const s = await open(port);
  s.write("a");
  await new Promise<void>((r) => s.once("data", () => r()));
  relay.setBlocked(listen, true);
  let got = "";
  s.on("data", (d) => (got += d.toString()));
  s.write("b");
  const late = await open(port); // a connection made during the partition
  let lateGot = "";
  late.on("data", (d) => (lateGot += d.toString()));
  late.write("c");
  // Nothing may come back within many round trips (an absence needs a bounded wait).
  await Bun.sleep(200);
  expect(got).toBe("");
  expect(lateGot).toBe("");
  relay.setBlocked(listen, false);
  await waitFor("the held bytes after the heal", () => got === "b" && lateGot === "c", 5000, 5);
  s.destroy();
  late.destroy();
});
