// `npm test` after the type check: the suite in two lanes at once. The simulator (tests/sim: pure
// CPU, in worker processes) runs on one core with SIM_WORKERS=1; everything else (unit tests and
// real-process tests, which mostly wait on timers, sockets and fsync) runs beside it. Serially the
// two took about 6 minutes on this 2-core machine; side by side, about the longer of the two.
// Each lane is an ordinary `bun test` run; the exit code is nonzero when either lane failed.
// The other lane's output streams live; the simulator's is printed when it ends.
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

const sim = Bun.spawn([process.execPath, "test", "./tests/sim", ...extra], {
  cwd: root,
  env: { ...process.env, SIM_WORKERS: "1" },
  stdout: "pipe",
  stderr: "pipe",
});
const simOutput = Promise.all([new Response(sim.stdout).text(), new Response(sim.stderr).text()]);
const rest = Bun.spawn([process.execPath, "test", ...others, ...extra], { cwd: root, stdout: "inherit", stderr: "inherit" });

const restCode = await rest.exited;
console.log(`\nlanes: unit and real-process tests ended after ${seconds()} s (exit ${restCode}); waiting for the simulator lane`);
const simCode = await sim.exited;
const [out, err] = await simOutput;
console.log(`\n---- simulator lane (tests/sim, SIM_WORKERS=1), ended after ${seconds()} s (exit ${simCode}) ----`);
process.stdout.write(out);
process.stdout.write(err);
console.log(`\nlanes: ${restCode === 0 && simCode === 0 ? "both passed" : "FAILED"} in ${seconds()} s (unit and real-process tests: exit ${restCode}; simulator: exit ${simCode})`);
process.exit(restCode !== 0 ? restCode : simCode);
