// readCappedBody (src/transport/body.ts): a body read into memory never past its cap, whichever
// way it arrives: the Request's web stream, or a body already held in memory (a forwarded
// request's frame, api/forward.ts).
import { expect, test } from "bun:test";
import { BodyTooLargeError, incomingOf, readCappedBody } from "../../src/transport/body.ts";

const bytes = (n: number) => Uint8Array.from({ length: n }, (_, i) => i % 251);

test("a held body is returned as it is, not read again from the Request", async () => {
  const held = bytes(1000);
  // The Request carries other bytes: what counts is the held body, taken as the body itself.
  const req = new Request("http://x/v1/kv/k", { method: "PUT", body: "ignored" });
  const got = await readCappedBody(req, 4096, incomingOf({ incoming: { url: "/v1/kv/k", held } }));
  expect(got).toBe(held);
});

test("a held body over the cap is refused, with or without a declared length", async () => {
  const held = bytes(5000);
  const undeclared = new Request("http://x/v1/kv/k", { method: "PUT" });
  await expect(readCappedBody(undeclared, 4096, incomingOf({ incoming: { url: "/v1/kv/k", held } }))).rejects.toBeInstanceOf(BodyTooLargeError);
  const declared = new Request("http://x/v1/kv/k", { method: "PUT", headers: { "content-length": "5000" } });
  await expect(readCappedBody(declared, 4096, incomingOf({ incoming: { url: "/v1/kv/k", held } }))).rejects.toBeInstanceOf(BodyTooLargeError);
});

test("without a held body or a Node request, the Request's stream is read, under the same cap", async () => {
  expect(incomingOf({ incoming: { url: "/v1/kv/k" } })).toBeUndefined();
  expect(incomingOf(undefined)).toBeUndefined();
  const small = await readCappedBody(new Request("http://x/", { method: "PUT", body: bytes(100) }), 4096, undefined);
  expect(small).toEqual(bytes(100));
  await expect(readCappedBody(new Request("http://x/", { method: "PUT", body: bytes(5000) }), 4096, undefined)).rejects.toBeInstanceOf(BodyTooLargeError);
});
