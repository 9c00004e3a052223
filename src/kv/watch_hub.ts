// Watchers of one node: who waits for which key or prefix from which revision, fed from the
// replicated change history (history.ts) after each applied batch. Two groups, as in etcd's
// watchable store: a synced watcher is at the hub's position and gets events as they are applied;
// an unsynced one (started from an older revision, or paused because its consumer is slow to
// read) pages through the history table at its consumer's pace and joins the synced group when it
// reaches the position. Every watcher sees each revision of its key range once, in order, whole
// (the events of one transaction arrive together), or is cancelled with a reason: never a gap.
import type { KvEvent } from "./history.ts";
import type { KvStore } from "./store.ts";

export type WatchRange = { key: string } | { prefix: string };

export type CancelReason =
  | { error: "compacted"; message: string; currentRevision: number; oldestRevision: number }
  | { error: "slow_watcher"; message: string }
  | { error: "shutting_down"; message: string };

export interface WatchSink {
  /** One revision's matching events. Returns false when the consumer cannot take more now. */
  events(revision: number, events: KvEvent[]): boolean;
  /** The watcher is up to date at `revision` (nothing of its range changed up to there). */
  progress(revision: number): void;
  cancelled(reason: CancelReason): void;
}

export interface HubOptions {
  /** Most watchers (and blocking reads) one node serves at a time. */
  maxWatchers: number;
  /** Events read from the history per step of an unsynced watcher. */
  pageEvents: number;
}

export const DEFAULT_HUB_OPTIONS: HubOptions = { maxWatchers: 10_000, pageEvents: 500 };

export class TooManyWatchers extends Error {
  override name = "TooManyWatchers";
}

export class Watcher {
  /** The next revision this watcher must see. */
  next: number;
  synced = false;
  closed = false;

  constructor(
    readonly id: number,
    readonly range: WatchRange,
    start: number,
    readonly sink: WatchSink,
  ) {
    this.next = start;
  }

  matches(key: string): boolean {
    return "key" in this.range ? this.range.key === key : key.startsWith(this.range.prefix);
  }
}

export class WatchHub {
  /** Last revision dispatched to the synced group. */
  private position: number;
  private readonly byKey = new Map<string, Set<Watcher>>();
  /** Synced prefix watchers by prefix: an event is matched once per distinct prefix, not per watcher. */
  private readonly byPrefix = new Map<string, Set<Watcher>>();
  private readonly unsynced = new Set<Watcher>();
  /** Consumers that said "full": no live events, no reading, until they ask for more (resume). */
  private readonly paused = new Set<Watcher>();
  private nextId = 1;
  /** Every open watcher, whatever its group (a paused one is in no group). */
  private readonly all = new Set<Watcher>();
  private readonly unsubscribe: () => void;

  constructor(
    private readonly kv: KvStore,
    private readonly opts: HubOptions = DEFAULT_HUB_OPTIONS,
  ) {
    this.position = kv.revision();
    this.unsubscribe = kv.onChange(() => {
      try {
        this.onApplied();
      } catch (err) {
        // Never take the node down from a watch: end every watch with the reason instead.
        this.failAll(`watch failed on this node (${(err as Error).message}); resume on another node from the last revision + 1`);
      }
    });
  }

  /** The revision the hub has delivered up to (a watch from position + 1 is "from now"). */
  revision(): number {
    return this.position;
  }

  watcherCount(): number {
    return this.all.size;
  }

  /**
   * Consul-style blocking read: resolves once the key (or a key under the prefix) changed after revision `after`, or after
   * `timeoutMs`. At once when the history cannot tell (after is older than it): the caller reads
   * the current value either way, so an early answer is never wrong, only less patient.
   */
  waitForChange(range: WatchRange, after: number, timeoutMs: number): Promise<void> {
    if (after < this.kv.historyFloor() || this.kv.changedAfter(range, after) || after > Number.MAX_SAFE_INTEGER - 1) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let w: Watcher | CancelReason | null = null;
      const done = () => {
        clearTimeout(timer);
        if (w instanceof Watcher) this.close(w);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      w = this.watch(range, after + 1, { events: () => (done(), false), progress: () => undefined, cancelled: () => done() });
      if (!(w instanceof Watcher)) done();
    });
  }

  /**
   * Starts a watch from `start` (the first revision to deliver; undefined: from now). Throws
   * TooManyWatchers at the limit; returns the compaction reason when `start` is no longer in the
   * history (etcd's "required revision has been compacted").
   */
  watch(range: WatchRange, start: number | undefined, sink: WatchSink): Watcher | CancelReason {
    if (this.all.size >= this.opts.maxWatchers) throw new TooManyWatchers(`this node already serves ${this.all.size} watchers (limit ${this.opts.maxWatchers})`);
    const from = start ?? this.position + 1;
    const floor = this.kv.historyFloor();
    if (from <= floor) return this.compacted(from);
    const w = new Watcher(this.nextId++, range, from, sink);
    this.all.add(w);
    if (from > this.position) this.addSynced(w);
    else this.unsynced.add(w);
    return w;
  }

  /** Called by the consumer when it can take more: an unsynced watcher reads on. */
  resume(w: Watcher): void {
    if (w.closed || w.synced) return;
    this.paused.delete(w);
    this.unsynced.add(w);
    this.catchUp(w);
  }

  /** The consumer went away (or the route ended the watch). */
  close(w: Watcher): void {
    if (w.closed) return;
    w.closed = true;
    this.all.delete(w);
    this.unsynced.delete(w);
    this.paused.delete(w);
    this.removeSynced(w);
  }

  /** Sends a progress notice to every synced watcher (keeps idle connections alive and tells the revision). */
  progressAll(): void {
    for (const set of this.byKey.values()) for (const w of set) w.sink.progress(this.position);
    for (const set of this.byPrefix.values()) for (const w of set) w.sink.progress(this.position);
  }

  /** Ends every watch (node shutting down). */
  closeAll(): void {
    this.unsubscribe();
    this.failAll("the node is shutting down; resume on another node from the last revision + 1");
  }

  private failAll(message: string): void {
    for (const w of [...this.all]) {
      this.close(w);
      w.sink.cancelled({ error: "shutting_down", message });
    }
  }

  private compacted(from: number, why = ""): CancelReason {
    const floor = this.kv.historyFloor();
    return {
      error: "compacted",
      message: `compacted: ${why}revision ${from} is no longer in the change history; current revision is ${this.kv.revision()}, oldest available is ${floor + 1}`,
      currentRevision: this.kv.revision(),
      oldestRevision: floor + 1,
    };
  }

  private cancel(w: Watcher, reason: CancelReason): void {
    this.close(w);
    w.sink.cancelled(reason);
  }

  private groupOf(w: Watcher): [Map<string, Set<Watcher>>, string] {
    return "key" in w.range ? [this.byKey, w.range.key] : [this.byPrefix, w.range.prefix];
  }

  private addSynced(w: Watcher): void {
    w.synced = true;
    const [group, name] = this.groupOf(w);
    let set = group.get(name);
    if (set === undefined) group.set(name, (set = new Set()));
    set.add(w);
  }

  private removeSynced(w: Watcher): void {
    if (!w.synced) return;
    w.synced = false;
    const [group, name] = this.groupOf(w);
    const set = group.get(name);
    set?.delete(w);
    if (set?.size === 0) group.delete(name);
  }

  private onApplied(): void {
    const target = this.kv.revision();
    const floor = this.kv.historyFloor();
    if (floor > this.position) {
      // A snapshot jumped this node past history it never saw: synced watchers that still needed
      // those revisions cannot get them here. They are told, never silently skipped ahead.
      for (const w of this.syncedWatchers()) if (w.next <= floor) this.cancel(w, this.compacted(w.next));
      this.position = floor;
    }
    // A consumer that stopped reading holds a full buffer and nothing more; once the history has
    // moved past it, it can never catch up: it is told why (the line waits at the end of its buffer).
    for (const w of [...this.paused]) if (w.next <= floor) this.cancel(w, this.compacted(w.next, "this watcher read too slowly and fell behind the history: "));
    // Nobody watching: nothing to read (the write path pays no query for watch).
    if (this.all.size === 0) this.position = Math.max(this.position, target);
    // Bounded: each page moves the position forward to the last revision read.
    while (this.position < target) {
      const page = this.readRevisions(this.position, target);
      if (page.events.length === 0) {
        this.position = target;
        break;
      }
      this.dispatch(page.events);
      this.position = page.upTo;
    }
    for (const w of this.syncedWatchers()) if (w.next <= this.position) w.next = this.position + 1;
    for (const w of [...this.unsynced]) this.catchUp(w);
  }

  private *syncedWatchers(): Generator<Watcher> {
    for (const set of [...this.byKey.values()]) yield* [...set];
    for (const set of [...this.byPrefix.values()]) yield* [...set];
  }

  /** Events of whole revisions in (after, upTo]: a page never ends in the middle of a revision. */
  private readRevisions(after: number, upTo: number): { events: KvEvent[]; upTo: number } {
    const limit = this.opts.pageEvents;
    const events = this.kv.events(after, upTo, limit);
    if (events.length < limit) return { events, upTo };
    const last = events[events.length - 1]!.revision;
    const first = events[0]!.revision;
    if (first === last) return { events: this.kv.events(last - 1, last, Number.MAX_SAFE_INTEGER), upTo: last };
    const whole = events.filter((e) => e.revision < last);
    return { events: whole, upTo: last - 1 };
  }

  private dispatch(events: KvEvent[]): void {
    const byWatcher = new Map<Watcher, KvEvent[]>();
    let rev = events[0]!.revision;
    const flush = () => {
      for (const [w, evs] of byWatcher) this.deliver(w, rev, evs);
      byWatcher.clear();
    };
    for (const e of events) {
      if (e.revision !== rev) {
        flush();
        rev = e.revision;
      }
      const add = (w: Watcher) => {
        if (w.next > e.revision) return;
        let list = byWatcher.get(w);
        if (list === undefined) byWatcher.set(w, (list = []));
        list.push(e);
      };
      const exact = this.byKey.get(e.key);
      if (exact !== undefined) for (const w of exact) add(w);
      for (const [prefix, set] of this.byPrefix) if (e.key.startsWith(prefix)) for (const w of set) add(w);
    }
    flush();
  }

  /** A synced watcher's consumer that cannot keep up leaves the synced group (bounded buffer). */
  private deliver(w: Watcher, revision: number, events: KvEvent[]): void {
    if (w.closed) return;
    const more = w.sink.events(revision, events);
    w.next = revision + 1;
    if (!more && w.synced) {
      // Its buffer is full: it falls back to reading the history at its own pace. If the history
      // moves past it before it reads on, it is cancelled as compacted: bounded memory, no gap.
      this.removeSynced(w);
      this.paused.add(w);
    }
  }

  /** Pages an unsynced watcher forward while its consumer takes more; synced once at the position. */
  private catchUp(w: Watcher): void {
    // Bounded: each round advances w.next past a page of whole revisions, up to the position.
    while (!w.closed && !w.synced) {
      if (w.next <= this.kv.historyFloor()) {
        this.cancel(w, this.compacted(w.next));
        return;
      }
      if (w.next > this.position) {
        this.unsynced.delete(w);
        this.addSynced(w);
        return;
      }
      const page = this.readRevisions(w.next - 1, this.position);
      let open = true;
      let i = 0;
      while (i < page.events.length && open) {
        const rev = page.events[i]!.revision;
        const mine: KvEvent[] = [];
        for (; i < page.events.length && page.events[i]!.revision === rev; i++) if (w.matches(page.events[i]!.key)) mine.push(page.events[i]!);
        w.next = rev + 1;
        if (mine.length > 0) open = w.sink.events(rev, mine);
      }
      if (i >= page.events.length) w.next = Math.max(w.next, page.upTo + 1);
      if (!open) {
        // The consumer is full: wait for resume().
        this.unsynced.delete(w);
        this.paused.add(w);
        return;
      }
    }
  }
}
