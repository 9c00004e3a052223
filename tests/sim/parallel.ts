// Runs simulator jobs (worker.ts) in child processes, as many at once as the machine has cores
// (at most 4): the simulator is pure CPU, and the suite's time budget is wall-clock.
import { availableParallelism } from "node:os";
import { join } from "node:path";

const WORKER = join(import.meta.dir, "worker.ts");
const LIMIT = Math.max(1, Math.min(availableParallelism(), 4));
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
