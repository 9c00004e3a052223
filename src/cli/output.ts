// Exit codes and output helpers shared by the commands. Scripts rely on the codes:
//   0 success, 1 the operation said no (key not found, compare failed), 2 usage error,
//   3 no server reachable or no leader in time, 4 any other error.
export const EXIT = { ok: 0, no: 1, usage: 2, unavailable: 3, error: 4 } as const;

/** Prints one line on stderr (never a stack trace) and returns the code. */
export function fail(code: number, message: string): number {
  process.stderr.write(`phalanx: ${message}\n`);
  return code;
}

export function printJson(v: unknown): void {
  process.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
}

export function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n") + "\n";
}
