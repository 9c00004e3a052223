// A follower forwards a client's write to the leader on its peer stream (src/api/forward.ts,
// src/transport/peers.ts). When that forward provably never reached the leader (here: every
// connection to it is refused, so the Forward frame never left the follower's queue), the follower
// sends it again once it can, within the request's deadline, and the client gets a definite answer
// instead of a 503. When it may have reached the leader (the frame went out, the leader applied
// it, its reply was lost and then the connection died), the answer stays "outcome unknown" (502):
// never "not applied", and never sent a second time.
//
// Between n2 and n1 sits a proxy the test controls (n2's PEERS names n1 by the proxy's address, so
// n2's stream to n1 runs through it): "forward" passes bytes both ways, "swallow" passes n2's
// bytes to n1 but drops n1's answers, and refuse() stops listening, so every connection to the
// leader is refused (nothing sent: provably unprocessed). A connection accepted and then reset
// would not do: a frame written to it may have been read, so that forward's outcome is unknown.
import { afterAll, expect, test } from "bun:test";
import { connect, createServer, type Server, type Socket } from "node:net";
import { freePort, metricValue, TestCluster, waitFor } from "./harness.ts";

type Mode = "forward" | "swallow";

class Proxy {
  mode: Mode = "forward";
  private readonly open = new Set<Socket>();
  private server: Server | null = null;

  constructor(
    readonly port: number,
    private readonly to: { host: string; port: number },
  ) {}

  async start(): Promise<void> {
    this.server = createServer((inbound) => {
      const outbound = connect({ host: this.to.host, port: this.to.port });
      for (const s of [inbound, outbound]) {
        this.open.add(s);
        s.on("error", () => undefined);
        s.on("close", () => this.open.delete(s));
      }
      inbound.on("data", (d) => outbound.write(d));
      outbound.on("data", (d) => {
        if (this.mode !== "swallow") inbound.write(d);
      });
      inbound.on("close", () => outbound.destroy());
      outbound.on("close", () => inbound.destroy());
    });
    await new Promise<void>((r) => this.server!.listen(this.port, "127.0.0.1", () => r()));
  }

  /** Stops listening and resets what is open: every connection to the leader is refused until start(). */
  async refuse(): Promise<void> {
    await this.close();
    this.server = null;
  }

  /** Resets every open connection (as a dying link or a middlebox would). */
  resetAll(): void {
    for (const s of this.open) s.resetAndDestroy();
  }

  async close(): Promise<void> {
    this.resetAll();
    await new Promise<void>((r) => (this.server === null ? r() : this.server.close(() => r())));
  }
}

let cluster: TestCluster | null = null;
let proxy: Proxy | null = null;

afterAll(async () => {
  await proxy?.close();
  await cluster?.stopAll();
});

let n2Debug = "";

/** A counter from n2's /metrics (its debug server). */
const counter = (name: string) => metricValue(n2Debug, name);

test("a forward refused before it reached the leader is sent again until its deadline: the write is applied, not a 503; one that reached the leader stays outcome unknown", async () => {
  cluster = await TestCluster.create(3);
  const n1 = cluster.node("n1");
  const [host, port] = [n1.addr.split(":")[0]!, Number(n1.addr.split(":")[1])];
  proxy = new Proxy(await freePort(), { host, port });
  await proxy.start();
  const viaProxy = cluster.nodes.map((x) => `${x.id}=${x.id === "n1" ? `127.0.0.1:${proxy!.port}` : x.addr}`).join(",");
  cluster.start("n1");
  n2Debug = `127.0.0.1:${await freePort()}`;
  cluster.start("n2", { PEERS: viaProxy, DEBUG_ADDR: n2Debug });
  cluster.start("n3");
  let leader = await cluster.waitForLeader(["n1", "n2", "n3"]);
  if (leader !== "n1") {
    await waitFor("n1 leading", async () => {
      const l = await cluster!.waitForLeader(["n1", "n2", "n3"]);
      if (l === "n1") return true;
      await cluster!.request(l, "POST", "/v1/leader/transfer?to=n1", { timeoutMs: 3000 });
      return false;
    }, 20_000, 200);
    leader = "n1";
  }
  // A forwarded write through the proxy works, so n2 forwards to n1 by the proxy's address.
  const first = await cluster.request("n2", "PUT", "/v1/kv/a", { json: { value: "1" } });
  expect(first.status).toBe(200);

  // 1. Every connection to the leader is refused: the forward never reached n1.
  await proxy.refuse();
  const retriesBefore = await counter("phalanx_forward_retries_total");
  const write = cluster.request("n2", "PUT", "/v1/kv/b", { json: { value: "2" }, headers: { "x-phalanx-timeout-ms": "8000" }, timeoutMs: 10_000 });
  // The link comes back once n2 has been refused and is retrying (until the write's deadline).
  await waitFor("n2 to be refused and retry", () => counter("phalanx_forward_retries_total").then((n) => n > retriesBefore), 10_000, 10);
  await proxy.start();
  const res = await write;
  // The old forward answered 503 "not applied" here (true, but the client had to retry).
  expect({ status: res.status, body: res.json }).toMatchObject({ status: 200 });
  expect(await counter("phalanx_forward_retries_total")).toBeGreaterThan(retriesBefore);
  const b = await cluster.request("n1", "GET", "/v1/kv/b");
  expect(b.json.kv.version).toBe(1);

  // 2. The request reaches n1 and is applied, the answer is lost, then the connection resets:
  // n2 cannot know, so the answer is "outcome unknown" (never "not applied"), and it is not sent again.
  proxy.mode = "swallow";
  const lost = cluster.request("n2", "PUT", "/v1/kv/c", { json: { value: "3" }, headers: { "x-phalanx-timeout-ms": "8000" }, timeoutMs: 10_000 });
  await waitFor("n1 to apply c", async () => (await cluster!.request("n1", "GET", "/v1/kv/c")).status === 200, 10_000, 10);
  proxy.resetAll();
  proxy.mode = "forward";
  const unknown = await lost;
  expect(unknown.status).toBe(502);
  expect(unknown.json?.outcome).toBe("unknown");
  const c = await cluster.request("n1", "GET", "/v1/kv/c");
  expect(c.json.kv.version).toBe(1); // applied once, not retried
}, 60_000);
