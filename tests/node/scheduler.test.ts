// The real scheduler's afterSend must run only once what was just written to an HTTP/2 stream has
// left the process: a leader fsyncs (blocks) there, and its followers should be writing the same
// entries meanwhile. The peer is another process, so a blocked sender cannot hide a late write.
import { afterAll, expect, test } from "bun:test";
import http2 from "node:http2";
import { join } from "node:path";
import { realScheduler } from "../../src/node/scheduler.ts";
import { freePort } from "../integration/harness.ts";

const BLOCK_MS = 300;
const block = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end) {}
};

const children: { kill(): void }[] = [];
afterAll(() => {
  for (const c of children) c.kill();
});

/** Starts a peer process that prints, per chunk it reads, how long after its stamp it arrived. */
async function peer(): Promise<{ port: number; lines: AsyncIterator<string> }> {
  const port = await freePort();
  const src = `
    import http2 from "node:http2";
    const srv = http2.createServer();
    srv.on("stream", (s) => {
      s.respond({ ":status": 200 });
      s.on("data", (d) => console.log(String(Date.now() - Number(d.toString()))));
    });
    srv.listen(${port}, "127.0.0.1", () => console.log("listening"));
  `;
  const child = Bun.spawn([process.execPath, "-e", src], { stdout: "pipe", stderr: "inherit", cwd: join(import.meta.dir) });
  children.push(child);
  const decoder = new TextDecoder();
  const reader = child.stdout.getReader();
  let buf = "";
  async function* lines() {
    for (;;) {
      const i = buf.indexOf("\n");
      if (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        yield line;
        continue;
      }
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value);
    }
  }
  const it = lines();
  expect((await it.next()).value).toBe("listening");
  return { port, lines: it };
}

/** Writes a stamp, then blocks for BLOCK_MS inside `schedule`; resolves with the delay the peer saw. */
async function delaySeen(schedule: (fn: () => void) => void): Promise<number> {
  const p = await peer();
  const session = http2.connect(`http://127.0.0.1:${p.port}`);
  const stream = session.request({ ":method": "POST", ":path": "/" });
  await new Promise<void>((resolve) => stream.once("response", () => resolve()));
  stream.write(String(Date.now()));
  schedule(() => block(BLOCK_MS));
  const line = await p.lines.next();
  session.destroy();
  return Number(line.value);
}

test("afterSend runs after the frames just written have reached the peer", async () => {
  const delay = await delaySeen((fn) => realScheduler.afterSend(fn));
  // The write reached the peer while we were blocked, not after: well under the block.
  expect(delay).toBeLessThan(BLOCK_MS / 2);
}, 10_000);

test("the measurement can tell: a nextTick callback blocks before the write leaves", async () => {
  const delay = await delaySeen((fn) => process.nextTick(fn));
  expect(delay).toBeGreaterThanOrEqual(BLOCK_MS - 20);
}, 10_000);
