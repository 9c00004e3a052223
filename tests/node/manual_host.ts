// A clock host for tests that step the real node loop by hand (tests/sim's SimClock over it):
// time stands still at 0, events wait in a list until runDue() runs those due now, and background
// fsyncs either run as events due now or wait, one by one, for endFsync().
import type { ClockHost, SimClock } from "../sim/sim_node.ts";

export type FsyncMode = "due now" | "held";

export class ManualHost implements ClockHost {
  private readonly due: { time: number; fn: () => void }[] = [];
  /** Background fsyncs started and not yet ended ("held" mode), oldest first. */
  readonly fsyncs: (() => void)[] = [];

  constructor(private readonly fsync: FsyncMode) {}

  now(): number {
    return 0;
  }
  at(clock: SimClock, time: number, fn: () => void): void {
    this.due.push({ time, fn: () => clock.dead || fn() });
  }
  writeAfterSend(clock: SimClock, fn: () => void): void {
    this.at(clock, 0, fn);
  }
  backgroundFsync(clock: SimClock, fn: () => void): void {
    if (this.fsync === "held") this.fsyncs.push(() => clock.dead || fn());
    else this.at(clock, 0, fn);
  }
  /** Runs every event due at time 0, including those they schedule for time 0. */
  runDue(): void {
    for (let i = this.due.findIndex((e) => e.time <= 0); i >= 0; i = this.due.findIndex((e) => e.time <= 0)) this.due.splice(i, 1)[0]!.fn();
  }
  /** Ends the oldest held background fsync, then runs what is due. */
  endFsync(): void {
    const fn = this.fsyncs.shift();
    if (fn === undefined) throw new Error("no background fsync is running");
    fn();
    this.runDue();
  }
}
