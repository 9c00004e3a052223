// Lifeguard local health awareness: a member that keeps missing acks or nacks, or has to refute
// suspicion of itself, is probably the slow one, so it stretches its own probe interval and
// timeout instead of blaming others.

export class Awareness {
  private score = 0;

  /** `maxMultiplier` caps the stretch: the score runs from 0 to maxMultiplier − 1. */
  constructor(private readonly maxMultiplier: number) {
    if (!(maxMultiplier >= 1)) throw new Error(`awareness maxMultiplier must be >= 1, got ${maxMultiplier}`);
  }

  apply(delta: number): void {
    this.score = Math.min(this.maxMultiplier - 1, Math.max(0, this.score + delta));
  }

  health(): number {
    return this.score;
  }

  /** Timeouts scale by (score + 1). */
  scale(ms: number): number {
    return ms * (this.score + 1);
  }
}
