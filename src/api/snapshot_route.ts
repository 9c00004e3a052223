// GET /v1/snapshot: a consistent backup of this node's state machine, in the backup file format
// (src/kv/backup_file.ts), for `phalanx snapshot save`. ADMIN SCOPE: the image holds every key
// and session, so this route must sit behind the client-auth middleware with the admin scope.
//
// By default the node first passes a linearizable read barrier, so the image holds every write
// acknowledged before the request arrived (on any node: the barrier is the one reads use);
// `?consistency=stale` skips it and takes whatever this node has applied (e.g. no quorum);
// `?max_staleness=<duration>` takes this node's state once it proves the bound (read_consistency.ts).
import { Hono } from "hono";
import { encodeBackup } from "../kv/backup_file.ts";
import { readClusterId } from "../node/membership/formation.ts";
import type { PhalanxNode } from "../node/node.ts";
import { Deadline } from "./deadline.ts";
import { leaderHeaders, noLeader } from "./forward.ts";
import { readGate, readHeaders, readModeOf } from "./read_consistency.ts";

export const SNAPSHOT_PATH = "/v1/snapshot";
/** Slices the body is streamed in, so the response never holds a second copy of the image. */
const SLICE_BYTES = 256 * 1024;

export function snapshotRoutes(node: PhalanxNode): Hono {
  const app = new Hono();
  app.get(SNAPSHOT_PATH, async (c) => {
    const deadline = Deadline.of(c, node.config.requestTimeoutMs);
    const mode = readModeOf(c);
    const refused = await readGate(c, node, mode, deadline, "take a linearizable snapshot");
    if (refused !== null) return refused;
    if (node.isStopped) return noLeader(c, node, "node is shutting down");
    const staleness = readHeaders(c, node, mode);
    if (staleness instanceof Response) return staleness;
    const started = performance.now();
    // takeImage and term() run in one synchronous stretch: no entry is applied in between.
    const snap = node.kv.snapshot();
    const term = node.dd.log.term(snap.index);
    const file = encodeBackup(
      { clusterId: readClusterId(node.config.dataDir), node: node.id, index: snap.index, term, conf: snap.conf, createdAt: new Date() },
      snap.data,
    );
    node.metrics.backupDuration.observe((performance.now() - started) / 1000);
    const parts = file.parts;
    let part = 0;
    let at = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(ctrl) {
        while (part < parts.length && at >= parts[part]!.byteLength) {
          part++;
          at = 0;
        }
        if (part >= parts.length) {
          ctrl.close();
          return;
        }
        const p = parts[part]!;
        const end = Math.min(at + SLICE_BYTES, p.byteLength);
        ctrl.enqueue(p.subarray(at, end));
        at = end;
      },
    });
    return new Response(body, {
      status: 200,
      headers: {
        "content-type": "application/octet-stream",
        "content-length": String(file.bytes),
        "x-phalanx-snapshot-index": String(snap.index),
        "x-phalanx-snapshot-term": String(term),
        "x-phalanx-snapshot-sha256": file.header.dataSha256,
        ...staleness,
        ...leaderHeaders(node.leader()),
      },
    });
  });
  return app;
}
