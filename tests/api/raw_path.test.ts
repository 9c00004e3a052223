// The dot-segment rule of raw_path.ts, checked against its definition: split the path at "/" and
// "\", decode %2e in each segment, refuse a segment that is then "." or "..". The one-regex scan
// that runs per request must agree with that on every path, including near misses (%2, %2f, "...").
import { describe, expect, test } from "bun:test";
import { dotSegment } from "../../src/api/raw_path.ts";
import { randomInt, seededRng } from "../../src/gossip/rng.ts";

/** The rule as the URL parser sees it (WHATWG: "." / "%2e" segments, "\" is a separator too). */
function definition(path: string): string | null {
  for (const seg of path.split(/[/\\]/)) {
    const s = seg.replace(/%2e/gi, ".");
    if (s === "." || s === "..") return seg;
  }
  return null;
}

describe("dotSegment", () => {
  test("finds the segments the URL parser would remove, as the client wrote them", () => {
    expect(dotSegment("/v1/kv/dir/../etc")).toBe("..");
    expect(dotSegment("/v1/kv/x/%2e%2e/y")).toBe("%2e%2e");
    expect(dotSegment("/v1/kv/x/%2E./y")).toBe("%2E.");
    expect(dotSegment("/v1/kv/x/.")).toBe(".");
    expect(dotSegment("/v1/kv/q\\..\\etc")).toBe("..");
    expect(dotSegment("./v1")).toBe(".");
    for (const clean of ["/v1/kv/a.b", "/v1/kv/...", "/v1/kv/.x", "/v1/kv/%2e%2e%2e", "/v1/kv/a%2F..%2Fb", "/v1/kv/%2", "", "/v1/kv/x/%2e%2f"]) {
      expect(dotSegment(clean)).toBeNull();
    }
  });

  test("agrees with the definition on 50,000 random paths built from the tricky pieces", () => {
    const rng = seededRng(10);
    const pieces = ["/", "\\", ".", "..", "%2e", "%2E", "%2", "e", "E", "%", "a", "%2f", "%25"];
    for (let i = 0; i < 50_000; i++) {
      let path = "";
      const n = randomInt(rng, 9);
      for (let k = 0; k < n; k++) path += pieces[randomInt(rng, pieces.length)];
      expect({ path, found: dotSegment(path) }).toEqual({ path, found: definition(path) });
    }
  });
});
