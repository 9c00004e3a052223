// POST /v1/clients: registers a client id for exactly-once writes (scope: write). The answer
// {"client": 17} is then used as `x-phalanx-session: 17:<seq>` (or "session": {"client": 17,
// "seq": n} in a body) with seq 1, 2, 3... one write in flight at a time; a retried write with the
// same seq returns the first result instead of applying twice.
//
// Named "client id", not "session", on purpose: a Consul session (and an etcd concurrency
// session) is a lease that locks hang off; these ids are only the Raft-dissertation (§6.3)
// deduplication of retries. POST /v1/session stays as the old name of this route.
import { Hono } from "hono";
import type { PhalanxNode } from "../node/node.ts";
import { Deadline } from "./deadline.ts";
import { answerResult, proposeAndReply } from "./propose_reply.ts";

export function clientRoutes(node: PhalanxNode): Hono {
  const app = new Hono();
  app.post("/v1/clients", async (c) => {
    const deadline = Deadline.of(c, node.config.requestTimeoutMs);
    return proposeAndReply(c, node, { body: undefined, cmd: { op: "register" }, session: null, deadline }, answerResult((r) => {
      if (r.op !== "register") throw new Error(`a client registration returned a ${r.op} result`);
      return { status: 200, payload: { client: r.client } };
    }));
  });
  return app;
}
