// A synchronous in-memory cluster for unit tests: every message is delivered at once unless its
// link is cut, and each Ready is handled in the documented order with MemoryStorage as the disk.
import { MemoryStorage } from "../../src/raft/memory_storage.ts";
import { RawNode, type FollowerRegression, type Ready, type RoleChange } from "../../src/raft/raw_node.ts";
import type { RaftConfig } from "../../src/raft/config.ts";
import type { Entry, Message, NodeId, ReadFailure, ReadState, Snapshot } from "../../src/raft/types.ts";
import { Prng } from "../sim/prng.ts";

export interface TestNode {
  id: NodeId;
  raw: RawNode;
  storage: MemoryStorage;
  applied: Entry[];
  reads: ReadState[];
  readFailures: ReadFailure[];
  installed: Snapshot[];
  /** Followers this node, as leader, found holding fewer entries than they had acknowledged. */
  followerRegressions: FollowerRegression[];
  /** Elections started and leaderships ended, with their reasons (Ready.roleChanges). */
  roleChanges: RoleChange[];
  /** State machine stand-in: the applied commands, also what snapshots carry. */
  snapshotData: () => Uint8Array;
}

export class TestCluster {
  readonly nodes = new Map<NodeId, TestNode>();
  readonly cut = new Set<string>();
  readonly sent: Message[] = [];
  private readonly rng: Prng;

  constructor(
    ids: NodeId[],
    private readonly extra: Partial<RaftConfig> = {},
    seed = 1,
    learners: NodeId[] = [],
  ) {
    this.rng = new Prng(seed);
    for (const id of [...ids, ...learners]) this.add(id, new MemoryStorage({ voters: ids, learners }));
  }

  add(id: NodeId, storage: MemoryStorage): TestNode {
    const node: TestNode = {
      id,
      storage,
      raw: new RawNode({ id, storage, random: () => this.rng.next(), ...this.extra }),
      applied: [],
      reads: [],
      readFailures: [],
      installed: [],
      followerRegressions: [],
      roleChanges: [],
      snapshotData: () => new TextEncoder().encode(String(node.applied.length)),
    };
    this.nodes.set(id, node);
    return node;
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`no node ${id}`);
    return n;
  }

  /** Restarts a node from its storage, losing everything that was only in memory. */
  restart(id: NodeId): TestNode {
    const old = this.node(id);
    const n = this.add(id, old.storage);
    return n;
  }

  isolate(id: NodeId): void {
    for (const other of this.nodes.keys()) {
      if (other === id) continue;
      this.cut.add(`${id}>${other}`);
      this.cut.add(`${other}>${id}`);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Handles Readies and delivers messages until the cluster is quiet. */
  settle(limit = 100_000): void {
    for (let i = 0; i < limit; i++) {
      let any = false;
      for (const n of this.nodes.values()) {
        if (!n.raw.hasReady()) continue;
        any = true;
        this.handle(n, n.raw.ready());
      }
      if (!any) return;
    }
    throw new Error("cluster did not settle");
  }

  private handle(n: TestNode, rd: Ready): void {
    n.storage.save(rd.snapshot, rd.entries, rd.hardState);
    if (rd.snapshot !== null) n.installed.push(rd.snapshot);
    for (const e of rd.committed) n.applied.push(e);
    n.reads.push(...rd.readStates);
    n.readFailures.push(...rd.readFailures);
    n.followerRegressions.push(...rd.followerRegressions);
    n.roleChanges.push(...rd.roleChanges);
    if (rd.snapshotRequest !== null) {
      const { index, conf } = rd.snapshotRequest;
      n.storage.createSnapshot({ meta: { index, term: n.storage.term(index), conf }, data: n.snapshotData() }, index);
    }
    n.raw.advance();
    for (const m of rd.messages) {
      this.sent.push(m);
      if (this.cut.has(`${m.from}>${m.to}`)) continue;
      const to = this.nodes.get(m.to);
      if (to !== undefined) to.raw.step(m);
    }
  }

  tick(times = 1, only?: NodeId[]): void {
    for (let t = 0; t < times; t++) {
      for (const n of this.nodes.values()) if (only === undefined || only.includes(n.id)) n.raw.tick();
      this.settle();
    }
  }

  /** Ticks until some node leads (with a generous bound, never forever). */
  elect(bound = 500): TestNode {
    for (let t = 0; t < bound; t++) {
      const l = this.leader();
      if (l !== null) return l;
      this.tick();
    }
    throw new Error("no leader elected");
  }

  leader(): TestNode | null {
    let best: TestNode | null = null;
    for (const n of this.nodes.values()) {
      const s = n.raw.raft;
      if (s.role === "leader" && (best === null || s.term > best.raw.raft.term)) best = n;
    }
    return best;
  }

  propose(text: string): { ok: boolean; index?: number } {
    const l = this.leader();
    if (l === null) return { ok: false };
    const r = l.raw.propose(new TextEncoder().encode(text));
    this.settle();
    return r.ok ? { ok: true, index: r.index } : { ok: false };
  }
}

export function texts(entries: Entry[]): string[] {
  const d = new TextDecoder();
  return entries.filter((e) => e.type === "normal").map((e) => d.decode(e.data));
}
