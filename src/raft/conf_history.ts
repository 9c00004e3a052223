// Configurations by log index. A single-server change takes effect as soon as its entry is in the
// log, committed or not (dissertation §4.1), so a follower that truncates a conf entry must fall
// back to the configuration before it. Conf changes are rare: the list stays tiny.
import { assert } from "./assert.ts";
import { decodeConfEntry } from "./conf_change.ts";
import type { ConfChange, ConfState, Entry } from "./types.ts";

export function applyConfChange(conf: ConfState, cc: ConfChange): ConfState {
  const voters = conf.voters.filter((id) => id !== cc.node);
  const learners = conf.learners.filter((id) => id !== cc.node);
  if (cc.op === "addVoter") voters.push(cc.node);
  else if (cc.op === "addLearner") learners.push(cc.node);
  return { voters, learners };
}

export class ConfHistory {
  /** Ascending by index; the first holds the configuration at the snapshot (or bootstrap). */
  private history: { index: number; conf: ConfState }[];

  constructor(base: { index: number; conf: ConfState }) {
    this.history = [base];
  }

  current(): ConfState {
    return this.history[this.history.length - 1]!.conf;
  }

  /** Index of the entry that installed the current configuration. */
  currentIndex(): number {
    return this.history[this.history.length - 1]!.index;
  }

  at(index: number): ConfState {
    for (let i = this.history.length - 1; i >= 0; i--) {
      const h = this.history[i]!;
      if (h.index <= index) return h.conf;
    }
    return this.history[0]!.conf;
  }

  /** Scans appended entries for conf changes; returns true when the configuration changed. */
  appended(entries: readonly Entry[]): boolean {
    let changed = false;
    for (const e of entries) {
      if (e.type !== "conf") continue;
      assert(e.index > this.currentIndex(), "a conf entry not after the current one: entry, current", e.index, this.currentIndex());
      this.history.push({ index: e.index, conf: decodeConfEntry(e.data).conf });
      changed = true;
    }
    return changed;
  }

  /** Entries from `index` on were replaced: forget the configurations they installed. */
  truncatedFrom(index: number): boolean {
    const before = this.history.length;
    while (this.history.length > 1 && this.history[this.history.length - 1]!.index >= index) this.history.pop();
    return this.history.length !== before;
  }

  reset(base: { index: number; conf: ConfState }): void {
    this.history = [base];
  }

  /** After compaction to `index`, only the configuration in force there and later ones matter. */
  compactTo(index: number): void {
    let keep = 0;
    for (let i = 0; i < this.history.length; i++) if (this.history[i]!.index <= index) keep = i;
    this.history = this.history.slice(keep);
  }
}
