// A counting semaphore over bytes: bounds the memory that concurrent large reads hold at once.
// Waiters are served in arrival order, so a stream of small reads cannot starve a large one;
// a waiter whose deadline passes gives up (the route answers 503 with Retry-After).

export class ByteBudget {
  private used = 0;
  private readonly waiters: Array<{ bytes: number; grant: () => void }> = [];

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError("byte budget capacity must be a positive integer");
  }

  get inUse(): number {
    return this.used;
  }

  /**
   * Reserves `bytes` (clamped to the capacity, so one request can always run alone); resolves to
   * the release function, or null when the reservation was not granted within `timeoutMs`.
   */
  async acquire(bytes: number, timeoutMs: number): Promise<(() => void) | null> {
    const n = Math.min(Math.max(1, Math.ceil(bytes)), this.capacity);
    if (this.waiters.length === 0 && this.used + n <= this.capacity) {
      this.used += n;
      return this.releaser(n);
    }
    return new Promise((resolve) => {
      const waiter = {
        bytes: n,
        grant: () => {
          clearTimeout(timer);
          resolve(this.releaser(n));
        },
      };
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i !== -1) this.waiters.splice(i, 1);
        resolve(null);
        this.drain();
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  private releaser(n: number): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= n;
      if (this.used < 0) throw new Error(`byte budget went negative (${this.used})`);
      this.drain();
    };
  }

  private drain(): void {
    while (this.waiters.length > 0 && this.used + this.waiters[0]!.bytes <= this.capacity) {
      const w = this.waiters.shift()!;
      this.used += w.bytes;
      w.grant();
    }
  }
}
