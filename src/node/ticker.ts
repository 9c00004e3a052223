// Turns the monotonic clock into core ticks. Ticks are counted from a fixed start, not from timer
// callbacks: when the event loop stalls (GC, SIGSTOP, a slow disk) the missed ticks are replayed
// on the next catchUp(), so the core never believes less time has passed than really has. This
// matters most for the leader lease: a leader that under-counts time would serve stale reads.
import { realScheduler, type Scheduler } from "./scheduler.ts";

export class Ticker {
  private readonly start: number;
  private done = 0;
  private cancel: (() => void) | null = null;

  constructor(
    private readonly tickMs: number,
    private readonly onTick: () => void,
    private readonly clock: Pick<Scheduler, "now" | "after"> = realScheduler,
  ) {
    this.start = clock.now();
  }

  /** Checks twice per tick so a tick is late by at most half a period. */
  run(afterCatchUp: () => void): void {
    if (this.cancel !== null) return;
    const period = Math.max(1, Math.floor(this.tickMs / 2));
    const check = () => {
      this.cancel = this.clock.after(period, check);
      if (this.catchUp() > 0) afterCatchUp();
    };
    this.cancel = this.clock.after(period, check);
  }

  /** Fires every tick due by now; returns how many fired. */
  catchUp(): number {
    const due = Math.floor((this.clock.now() - this.start) / this.tickMs);
    const missed = due - this.done;
    while (this.done < due) {
      this.done++;
      this.onTick();
    }
    return missed;
  }

  stop(): void {
    this.cancel?.();
    this.cancel = null;
  }
}
