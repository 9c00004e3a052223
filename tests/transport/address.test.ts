import { expect, test } from "bun:test";
import { formatHostPort, originOf, parseHostPort } from "../../src/transport/address.ts";

test("host:port in both families", () => {
  expect(parseHostPort("127.0.0.1:9000")).toEqual({ host: "127.0.0.1", port: 9000 });
  expect(parseHostPort("[::1]:9000")).toEqual({ host: "::1", port: 9000 });
  expect(parseHostPort("[::]:0")).toEqual({ host: "::", port: 0 });
  expect(parseHostPort("node-a.vm.phalanx.internal:7000")).toEqual({ host: "node-a.vm.phalanx.internal", port: 7000 });
  expect(formatHostPort("fdaa::3", 80)).toBe("[fdaa::3]:80");
  expect(originOf("[::1]:9000", true)).toBe("https://[::1]:9000");
  expect(originOf("10.0.0.1:80", false)).toBe("http://10.0.0.1:80");
});

test("anything else is refused", () => {
  for (const bad of ["::1:9000", "[::1]", "host", "host:99999", "[nothex]:1", "a b:1", ":80", "http://x:1"]) {
    expect(() => parseHostPort(bad)).toThrow(/invalid/);
  }
});
