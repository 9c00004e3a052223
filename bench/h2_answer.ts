// Why a buffered answer is ended on its HTTP/2 stream (src/transport/h2_answer.ts), not through the
// compatibility response (not a test): `bun bench/h2_answer.ts [--requests 40000] [--rounds 3]`.
// A bare Bun h2c server answers 100 bytes the way serveApp does, all requests of a turn from one
// setImmediate, either through Http2ServerResponse (writeHead + end: Bun's compatibility response
// waits for trailers and flushes the socket at each end) or on the stream (respond + end: the
// turn's answers leave together). A client in another process keeps 64 streams in flight on one
// session. Prints the server's CPU µs per request (/proc/<pid>/stat), rounds alternated; with
// strace installed, also the server's sendto calls per request (one extra round each, traced).
// Bounded: a fixed number of requests per round; every process it starts is stopped.
import http2 from "node:http2";
import { parseArgs } from "node:util";
import { freePort } from "../tests/integration/harness.ts";
import { processCpuMicros } from "./proc_cpu.ts";

const SERVER = `
import http2 from "node:http2";
const [mode, port] = [process.argv[2], Number(process.argv[3])];
const body = new Uint8Array(100).fill(97);
const headers = { "content-type": "application/octet-stream", "content-length": 100 };
const queue = [];
const run = () => {
  for (const res of queue.splice(0)) {
    if (mode === "compat") { res.writeHead(200, headers); res.end(body); }
    else { res.stream.respond({ ":status": 200, ...headers }); res.stream.end(body); }
  }
};
http2.createServer({}, (req, res) => { if (queue.length === 0) setImmediate(run); queue.push(res); }).listen(port, "127.0.0.1", () => console.log("ready"));
`;

const { values: args } = parseArgs({ options: { requests: { type: "string", default: "40000" }, rounds: { type: "string", default: "3" } } });
const REQUESTS = Number(args.requests);
const ROUNDS = Number(args.rounds);
const serverFile = `${import.meta.dir}/.build/h2_answer_server.mjs`;
await Bun.write(serverFile, SERVER);


async function drive(port: number, n: number): Promise<void> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = session.request({ ":path": "/x" });
      s.on("data", () => undefined);
      s.on("end", resolve);
      s.on("error", reject);
      s.end();
    });
  let left = n;
  await Promise.all(Array.from({ length: 64 }, async () => {
    while (left-- > 0) await one();
  }));
  session.close();
}

/** One round: a fresh server in `mode`, a warm-up, then `REQUESTS` measured. */
async function round(mode: "compat" | "stream", traced: boolean): Promise<string> {
  const port = await freePort();
  const cmd = [process.execPath, serverFile, mode, String(port)];
  const traceFile = `${import.meta.dir}/.build/h2_answer_${mode}.strace`;
  const proc = Bun.spawn(traced ? ["strace", "-f", "-c", "-o", traceFile, ...cmd] : cmd, { stdout: "pipe", stderr: "inherit" });
  try {
    const reader = proc.stdout.getReader();
    await reader.read(); // "ready"
    const pid = traced ? Number((await Bun.$`pgrep -n -f ${serverFile}`.text()).trim()) : proc.pid;
    await drive(port, 5_000);
    const before = processCpuMicros(pid);
    await drive(port, REQUESTS);
    const used = processCpuMicros(pid) - before;
    if (!traced) return `${(used / REQUESTS).toFixed(1)} µs CPU/request`;
    process.kill(pid, "SIGTERM");
    await proc.exited;
    const line = (await Bun.file(traceFile).text()).split("\n").find((l) => l.trim().endsWith(" sendto"));
    const calls = Number(line?.trim().split(/\s+/)[3] ?? NaN);
    return `${(calls / (REQUESTS + 5_000)).toFixed(3)} sendto/request (traced)`;
  } finally {
    proc.kill();
    await proc.exited;
  }
}

for (let r = 1; r <= ROUNDS; r++) {
  for (const mode of ["compat", "stream"] as const) console.log(`round ${r} ${mode.padEnd(6)} ${await round(mode, false)}`);
}
if (Bun.which("strace") !== null) for (const mode of ["compat", "stream"] as const) console.log(`${mode.padEnd(6)} ${await round(mode, true)}`);
