// `npm test` after the type check: the suite in two lanes at once. The simulator (tests/sim: pure
// CPU, in worker processes) runs on one core with SIM_WORKERS=1; everything else (unit tests and
// real-process tests, which mostly wait on timers, sockets and fsync) runs beside it. Serially the
// two took about 6 minutes on this 2-core machine; side by side, about the longer of the two.
// Each lane is an ordinary `bun test` run; the exit code is nonzero when either lane failed.
// The other lane's output streams live; the simulator's is printed when it ends, and the other
// lane's failures are repeated after it.
//
// Usage: bun tests/lanes.ts [extra bun test args...]   (`bun test` alone still runs everything serially)
import { readdirSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dir, "..");
const extra = Bun.argv.slice(2);
const others = readdirSync(join(root, "tests"), { withFileTypes: true })
  .filter((e) => e.name !== "sim" && (e.isDirectory() || e.name.endsWith(".test.ts")))
  .map((e) => `./tests/${e.name}`)
  .sort();

const started = performance.now();
const seconds = () => ((performance.now() - started) / 1000).toFixed(1);

// A test without a budget of its own gets 20 s, not bun's 5: the CPU-bound ones (the proposal
// codec's oracle test takes 2.4 s beside the simulator lane here, 4.4 s on a loaded machine) must
// not fail on a slower CI machine. A test that waits on something names its own budget.
const TIMEOUT = "--timeout=20000";
const sim = Bun.spawn([process.execPath, "test", TIMEOUT, "./tests/sim", ...extra], {
  cwd: root,
  env: { ...process.env, SIM_WORKERS: "1" },
  stdout: "pipe",
  stderr: "pipe",
});
const simOutput = Promise.all([new Response(sim.stdout).text(), new Response(sim.stderr).text()]);
const rest = Bun.spawn([process.execPath, "test", TIMEOUT, ...others, ...extra], { cwd: root, stdout: "pipe", stderr: "pipe" });

// The unit lane streams live, and each of its failures is kept with its file's name and the lines
// printed since the test before it (bun prints a failure's error above its "(fail)" line), to be
// repeated at the very end: a CI log is often read from its tail, which the simulator lane's long
// output would otherwise fill.
const failures: string[] = [];
async function stream(from: ReadableStream<Uint8Array>, to: NodeJS.WriteStream): Promise<void> {
  let file = "";
  let unhandled = 0;
  let summary = false;
  const since: string[] = [];
  let partial = "";
  const decoder = new TextDecoder();
  for await (const chunk of from) {
    to.write(chunk);
    const lines = (partial + decoder.decode(chunk, { stream: true })).split("\n");
    partial = lines.pop() ?? "";
    for (const line of lines) {
      // Bun's closing summary lists the failures again ("1 tests failed:"): already kept.
      if (/^\d+ tests? failed:$/.test(line)) summary = true;
      if (summary) continue;
      if (/^tests\/\S+\.test\.ts:$/.test(line)) file = line;
      if (/^tests\/\S+\.test\.ts:$/.test(line) || line.startsWith("(pass)")) {
        since.length = 0;
        continue;
      }
      since.push(line);
      if (since.length > 80) since.shift();
      if (line.startsWith("(fail)")) failures.push([file, ...since.splice(0)].join("\n"));
      // An error outside any test ("# Unhandled error between tests") is followed by its text.
      if (line.startsWith("# Unhandled error")) unhandled = 30;
      if (unhandled > 0 && --unhandled === 0) failures.push([file, ...since.splice(0)].join("\n"));
    }
  }
}
const streamed = Promise.all([stream(rest.stdout, process.stdout), stream(rest.stderr, process.stderr)]);

const restCode = await rest.exited;
await streamed;
console.log(`\nlanes: unit and real-process tests ended after ${seconds()} s (exit ${restCode}); waiting for the simulator lane`);
const simCode = await sim.exited;
const [out, err] = await simOutput;
console.log(`\n---- simulator lane (tests/sim, SIM_WORKERS=1), ended after ${seconds()} s (exit ${simCode}) ----`);
process.stdout.write(out);
process.stdout.write(err);
if (failures.length > 0) {
  console.log(`\n---- the unit and real-process lane's ${failures.length} failure(s), repeated ----`);
  for (const failure of failures) console.log(`${failure}\n`);
}
console.log(`\nlanes: ${restCode === 0 && simCode === 0 ? "both passed" : "FAILED"} in ${seconds()} s (unit and real-process tests: exit ${restCode}; simulator: exit ${simCode})`);
process.exit(restCode !== 0 ? restCode : simCode);
