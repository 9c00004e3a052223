// The backup file format: a good file decodes to what was encoded; any flipped byte, any
// truncation and any trailing garbage is refused with a reason, before the image is used.
import { expect, test } from "bun:test";
import { BadBackupError, decodeBackup, encodeBackup } from "../../src/kv/backup_file.ts";

const meta = { clusterId: "c:abc", node: "n1", index: 42, term: 3, conf: { voters: ["n1", "n2", "n3"], learners: ["n4"] }, createdAt: new Date("2026-01-02T03:04:05Z") };
const image = new Uint8Array(5000).map((_, i) => (i * 7919) % 251);

function fileOf(): Uint8Array {
  return new Uint8Array(Buffer.concat(encodeBackup(meta, image).parts));
}

function refusal(bytes: Uint8Array): string {
  try {
    decodeBackup(bytes);
  } catch (err) {
    expect(err).toBeInstanceOf(BadBackupError);
    return (err as Error).message;
  }
  throw new Error("a damaged file was accepted");
}

test("round trip: header fields and the image come back as written", () => {
  const file = fileOf();
  expect(encodeBackup(meta, image).bytes).toBe(file.byteLength);
  const { header, data } = decodeBackup(file);
  expect(header).toMatchObject({ format: 1, clusterId: "c:abc", node: "n1", index: 42, term: 3, conf: meta.conf, createdAt: "2026-01-02T03:04:05.000Z", dataBytes: 5000 });
  expect(Buffer.compare(data, image)).toBe(0);
});

test("every flipped byte is refused: header, image and footer", () => {
  const file = fileOf();
  // Every byte of the head and footer, and a stride through the image.
  const head = file.indexOf(0x0a, 17) + 1;
  const positions = [...Array(head).keys(), ...Array.from({ length: 50 }, (_, i) => head + i * 100), ...Array.from({ length: 77 }, (_, i) => file.byteLength - 77 + i)];
  for (const at of positions) {
    const bad = file.slice();
    bad[at] = bad[at]! ^ 0x01;
    expect(refusal(bad).length).toBeGreaterThan(0);
  }
  const bad = file.slice();
  bad[head + 1234] = bad[head + 1234]! ^ 0x80;
  expect(refusal(bad)).toContain("checksum mismatch");
});

test("truncated files and trailing bytes are refused, saying so", () => {
  const file = fileOf();
  for (const n of [0, 5, 17, 30, 200, 1000, file.byteLength - 78, file.byteLength - 1]) {
    const msg = refusal(file.subarray(0, n));
    expect(msg).toMatch(n === 0 ? /empty/ : n < 17 ? /not a phalanx snapshot/ : /truncated/);
  }
  expect(refusal(Buffer.concat([file, Buffer.from("x")]))).toContain("after its end");
  expect(refusal(Buffer.from("SQLite format 3\0 and more"))).toContain("not a phalanx snapshot");
});

test("a future format version is named, not called damage", () => {
  const text = Buffer.from(fileOf()).toString("latin1").replace('"format":1', '"format":2');
  expect(refusal(Buffer.from(text, "latin1"))).toContain("format 2");
});
