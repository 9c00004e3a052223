/**
 * Parser for Jepsen compare-and-set register logs, one event per line:
 * `INFO  jepsen.util - <process> <:invoke|:ok|:fail|:info> <:read|:write|:cas> <arg>`
 * (fields separated by tabs or spaces). The line number is used as the event time.
 */
import type { Operation, RegisterInput, RegisterOutput } from "./linearizability.ts";

type RegisterOp = Operation<RegisterInput, RegisterOutput>;

const LINE = /jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*?)\s*$/;

function parseValue(text: string): number | null {
  if (text === "nil") return null;
  const n = Number(text);
  if (!Number.isInteger(n)) throw new Error(`bad register value: ${text}`);
  return n;
}

function parseInput(f: string, arg: string): RegisterInput {
  if (f === "read") return { op: "read" };
  if (f === "write") {
    const value = parseValue(arg);
    if (value === null) throw new Error("write of nil");
    return { op: "write", value };
  }
  const m = /^\[(\S+)\s+(\S+)\]$/.exec(arg);
  const to = m ? parseValue(m[2]!) : null;
  if (!m || to === null) throw new Error(`bad cas argument: ${arg}`);
  return { op: "cas", from: parseValue(m[1]!), to };
}

export function parseJepsenHistory(text: string): RegisterOp[] {
  const ops: RegisterOp[] = [];
  const pending = new Map<number, { call: number; input: RegisterInput }>();
  const lines = text.split("\n");
  lines.forEach((line, t) => {
    if (line.trim() === "") return;
    const m = LINE.exec(line);
    if (!m) throw new Error(`line ${t + 1}: unrecognized: ${line}`);
    const [, procText, type, f, arg] = m as unknown as [string, string, string, string, string];
    const client = Number(procText);
    if (type === "invoke") {
      if (pending.has(client)) throw new Error(`line ${t + 1}: process ${client} invoked twice`);
      pending.set(client, { call: t, input: parseInput(f, arg) });
      return;
    }
    const inv = pending.get(client);
    if (inv === undefined || inv.input.op !== f) throw new Error(`line ${t + 1}: no matching invoke`);
    pending.delete(client);
    let ret: number = t;
    let output: RegisterOutput;
    if (type === "ok") {
      output = f === "read" ? { value: parseValue(arg) } : f === "cas" ? { succeeded: true } : {};
    } else if (type === "fail" && f === "cas") {
      // A failed cas definitely did not take effect: the value differed.
      output = { succeeded: false };
    } else if (type === "info" || f === "read") {
      // :info, and :fail :read :timed-out: the outcome is unknown.
      ret = Infinity;
      output = null;
    } else {
      throw new Error(`line ${t + 1}: unsupported event :${type} :${f}`);
    }
    ops.push({ client, input: inv.input, call: inv.call, ret, output });
  });
  // Invocations that never completed: unknown outcome too.
  for (const [client, inv] of pending) {
    ops.push({ client, input: inv.input, call: inv.call, ret: Infinity, output: null });
  }
  return ops;
}
