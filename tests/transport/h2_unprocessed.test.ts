// H2Error.unprocessed: the client says "the server provably did not process this request" only
// when HTTP/2 proves it (no connection, REFUSED_STREAM, a stream above GOAWAY's last stream id),
// never for a stream reset after the server may have acted on it. A raw-frame server stands in
// for the peer, so each case is exactly the frames the RFC describes.
import { afterAll, expect, test } from "bun:test";
import { createServer, type Server, type Socket } from "node:net";
import { H2Client, H2Error } from "../../src/transport/h2_client.ts";
import { freePort } from "../integration/harness.ts";

const PREFACE_BYTES = 24;
const frame = (type: number, flags: number, stream: number, payload: number[] = []) =>
  Buffer.from([(payload.length >> 16) & 0xff, (payload.length >> 8) & 0xff, payload.length & 0xff, type, flags, 0, 0, (stream >> 8) & 0xff, stream & 0xff, ...payload]);
const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];
const SETTINGS = 4;
const HEADERS = 1;
const RST_STREAM = 3;
const GOAWAY = 7;

/** A server that speaks just enough HTTP/2 to answer a request's HEADERS with `answer(streamId)`. */
async function rawServer(answer: (stream: number) => Buffer): Promise<{ addr: string; server: Server }> {
  const server = createServer((sock: Socket) => {
    sock.on("error", () => undefined);
    sock.write(frame(SETTINGS, 0, 0));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    sock.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE_BYTES) return;
        buf = buf.subarray(PREFACE_BYTES);
        prefaceSeen = true;
      }
      while (buf.length >= 9) {
        const len = (buf[0]! << 16) | (buf[1]! << 8) | buf[2]!;
        if (buf.length < 9 + len) return;
        const type = buf[3]!;
        const flags = buf[4]!;
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && (flags & 1) === 0) sock.write(frame(SETTINGS, 1, 0));
        if (type === HEADERS) sock.write(answer(stream));
      }
    });
  });
  const port = await freePort();
  await new Promise<void>((r) => server.listen(port, "127.0.0.1", () => r()));
  return { addr: `127.0.0.1:${port}`, server };
}

const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

async function failure(answer: (stream: number) => Buffer): Promise<H2Error> {
  const { addr, server } = await rawServer(answer);
  servers.push(server);
  const client = new H2Client({ connectTimeoutMs: 1000 });
  try {
    await client.request(client.originFor(addr), { method: "PUT", path: "/v1/kv/x", body: new Uint8Array([1]), timeoutMs: 2000 });
    throw new Error("the request succeeded");
  } catch (err) {
    if (!(err instanceof H2Error)) throw err;
    return err;
  } finally {
    await client.close();
  }
}

test("REFUSED_STREAM: provably unprocessed", async () => {
  const err = await failure((s) => frame(RST_STREAM, 0, s, u32(7)));
  expect(err.unprocessed).toBe(true);
});

test("a stream above GOAWAY's last stream id: provably unprocessed", async () => {
  const err = await failure(() => frame(GOAWAY, 0, 0, [...u32(0), ...u32(0)]));
  expect(err.unprocessed).toBe(true);
});

test("a stream reset with another code, or at or below GOAWAY's last stream id: maybe processed", async () => {
  expect((await failure((s) => frame(RST_STREAM, 0, s, u32(2)))).unprocessed).toBe(false);
  expect((await failure((s) => frame(RST_STREAM, 0, s, u32(8)))).unprocessed).toBe(false);
  expect((await failure((s) => Buffer.concat([frame(GOAWAY, 0, 0, [...u32(s), ...u32(0)]), frame(RST_STREAM, 0, s, u32(2))]))).unprocessed).toBe(false);
});

test("no connection: unprocessed", async () => {
  const client = new H2Client({ connectTimeoutMs: 1000 });
  const err = await client.request(client.originFor(`127.0.0.1:${await freePort()}`), { path: "/" }).catch((e: unknown) => e);
  await client.close();
  expect(err).toBeInstanceOf(H2Error);
  expect((err as H2Error).unprocessed).toBe(true);
});
