// One in-process node serving the client API through Hono's app.request: the fixture the API
// tests share. It elects itself (a lone voter) before the tests run.
import http2 from "node:http2";
import type { Hono } from "hono";
import { nodeApp } from "../../src/api/app.ts";
import { resolveConfig, type RawSettings } from "../../src/node/config.ts";
import { createLogger } from "../../src/node/log.ts";
import { PhalanxNode } from "../../src/node/node.ts";
import { serveApp } from "../../src/transport/server.ts";
import { freePort, waitFor } from "../integration/harness.ts";

export interface SingleNode {
  node: PhalanxNode;
  app: Hono;
}

/** Opens and runs node n1 in `dataDir` (extra settings on top), and waits until it leads. */
export async function startSingleNode(dataDir: string, settings: RawSettings = {}): Promise<SingleNode> {
  const log = createLogger("n1", { minLevel: "warn" });
  const node = PhalanxNode.open(resolveConfig({ id: "n1", dataDir, rpcAddr: "127.0.0.1:0", tickMs: "20", ...settings }), log);
  node.run();
  const app = nodeApp(node, log);
  await waitFor("n1 to lead", () => node.leader()?.id === "n1", 5000, 5);
  return { node, app };
}

export interface ServedNode extends SingleNode {
  /** An h2c session to the node's port. */
  session: http2.ClientHttp2Session;
  /** Closes the session, the server and the node. */
  close(): Promise<void>;
}

/** startSingleNode() served by serveApp on a loopback port, for tests that need real HTTP/2 (raw :path, frames). */
export async function serveSingleNode(dataDir: string, settings: RawSettings = {}): Promise<ServedNode> {
  const { node, app } = await startSingleNode(dataDir, settings);
  const server = await serveApp(app, { listen: `127.0.0.1:${await freePort()}` });
  const session = http2.connect(`http://127.0.0.1:${server.port}`);
  return {
    node,
    app,
    session,
    close: async () => {
      session.close();
      await server.close();
      await node.stop();
    },
  };
}
