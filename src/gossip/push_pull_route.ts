// Push-pull over the node's HTTP/2 server: full state exchange on join and periodically, too big
// for one UDP packet. The body is the (encrypted, when a key is set) msgpack state; the answer is
// the peer's state in the same form.

import http2 from "node:http2";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";

export const PUSH_PULL_PATH = "/gossip/v1/push-pull";
export const MAX_PUSH_PULL_BYTES = 8 << 20;
const CONTENT_TYPE = "application/msgpack";

export type PushPullHandler = (bytes: Uint8Array) => Uint8Array | null;
export type PushPullFn = (rpcAddr: string, localState: Uint8Array) => Promise<Uint8Array>;

/** The sub-app the node mounts: POST PUSH_PULL_PATH. */
export function pushPullRoute(handle: PushPullHandler): Hono {
  const app = new Hono();
  app.post(
    PUSH_PULL_PATH,
    bodyLimit({ maxSize: MAX_PUSH_PULL_BYTES, onError: (c) => c.text("push-pull body too large", 413) }),
    async (c) => {
      const answer = handle(new Uint8Array(await c.req.arrayBuffer()));
      if (answer === null) return c.text("push-pull state refused", 400);
      return c.body(answer as Uint8Array<ArrayBuffer>, 200, { "content-type": CONTENT_TYPE });
    },
  );
  return app;
}

export interface PushPullClient {
  pushPull: PushPullFn;
  close(): void;
}

/** An h2c client keeping one session per peer. `rpcAddr` is "host:port" ("[v6]:port" for IPv6). */
export function pushPullClient(timeoutMs = 10_000): PushPullClient {
  const sessions = new Map<string, http2.ClientHttp2Session>();
  const session = (addr: string): http2.ClientHttp2Session => {
    const open = sessions.get(addr);
    if (open !== undefined && !open.closed && !open.destroyed) return open;
    const s = http2.connect(`http://${addr}`);
    const forget = () => {
      if (sessions.get(addr) === s) sessions.delete(addr);
    };
    s.on("error", forget);
    s.on("close", forget);
    s.on("goaway", forget);
    // An idle session to a peer should not keep the process alive.
    s.unref();
    sessions.set(addr, s);
    return s;
  };
  const pushPull: PushPullFn = (addr, localState) =>
    new Promise((resolve, reject) => {
      let s: http2.ClientHttp2Session;
      try {
        s = session(addr);
      } catch (err) {
        reject(err);
        return;
      }
      const req = s.request({ ":method": "POST", ":path": PUSH_PULL_PATH, "content-type": CONTENT_TYPE });
      req.setTimeout(timeoutMs, () => req.close(http2.constants.NGHTTP2_CANCEL));
      const chunks: Buffer[] = [];
      let size = 0;
      let status = 0;
      req.on("response", (h) => {
        status = Number(h[":status"]);
      });
      req.on("data", (c: Buffer) => {
        size += c.length;
        if (size > MAX_PUSH_PULL_BYTES) req.close(http2.constants.NGHTTP2_CANCEL);
        else chunks.push(c);
      });
      req.on("error", reject);
      req.on("close", () => {
        if (status === 200 && size <= MAX_PUSH_PULL_BYTES) resolve(new Uint8Array(Buffer.concat(chunks)));
        else reject(new Error(`push-pull to ${addr} failed: status ${status}, ${size} bytes`));
      });
      req.end(localState);
    });
  return {
    pushPull,
    close(): void {
      for (const s of sessions.values()) s.close();
      sessions.clear();
    },
  };
}
