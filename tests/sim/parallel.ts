// Runs simulator jobs (worker.ts) in child processes, as many at once as the machine has cores
// (at most 4), or SIM_WORKERS: the simulator is pure CPU, and the suite's time budget is
// wall-clock. `npm test` runs the simulator beside the real-process tests with SIM_WORKERS=1
// (tests/lanes.ts), so one core stays for those.
import { availableParallelism } from "node:os";
import { join } from "node:path";

const WORKER = join(import.meta.dir, "worker.ts");
const LIMIT = workerLimit(process.env.SIM_WORKERS);

function workerLimit(setting: string | undefined): number {
  if (setting === undefined || setting === "") return Math.max(1, Math.min(availableParallelism(), 4));
  const n = Number(setting);
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new Error(`SIM_WORKERS must be an integer from 1 to 64, not ${JSON.stringify(setting)}`);
  return n;
}
let running = 0;
const waiting: (() => void)[] = [];

async function slot<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= LIMIT) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Runs `worker.ts <args>` and parses the JSON line it ends with. */
export function runWorker<T>(args: string[]): Promise<T> {
  return slot(async () => {
    const p = Bun.spawn([process.execPath, WORKER, ...args], { stdout: "pipe", stderr: "pipe" });
    const [code, out, err] = await Promise.all([p.exited, new Response(p.stdout).text(), new Response(p.stderr).text()]);
    const last = out.trim().split("\n").at(-1) ?? "";
    if (code !== 0 || !last.startsWith("{")) throw new Error(`worker ${args.join(" ")} exited ${code}: ${err.slice(-2000)}`);
    return JSON.parse(last) as T;
  });
}
