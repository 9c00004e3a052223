// The CPU time another process has used, for benchmarks that run their servers as child processes.
import { readFileSync } from "node:fs";

/** User + system CPU of process `pid` so far, µs: /proc/<pid>/stat fields 14 and 15, in clock ticks (100 Hz on Linux). */
export function processCpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}
