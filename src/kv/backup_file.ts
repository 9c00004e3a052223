// The backup file of `phalanx snapshot save`: one consistent state machine image (snapshot.ts)
// wrapped so it can be checked and described without trusting anything in it.
//
//   PHALANX-SNAPSHOT\n                      magic line
//   {"format":1,...}\n                      header, one JSON line (see BackupHeader)
//   <dataBytes bytes>                       the SQLite image of the kv, session and member tables
//   PHALANX-END <sha256 hex>\n              footer: sha256 over the magic and header lines
//
// The header carries the image's sha256 and length and the footer seals the header, so the
// footer covers every byte before it while the image is hashed once (taking a backup blocks the
// node's loop, and sha256 of a large image is a real part of it). A truncated copy (footer
// missing, length short) and a flipped bit anywhere are told apart from a good file before any
// of it is used.
import { createHash } from "node:crypto";
import { z } from "zod";
import { plainZodMessage } from "../transport/zod_message.ts";
import type { ConfState } from "../raft/types.ts";

export const BACKUP_FORMAT = 1;
const MAGIC = "PHALANX-SNAPSHOT\n";
const FOOTER_PREFIX = "PHALANX-END ";
/** "PHALANX-END " + 64 hex digits + "\n". */
export const FOOTER_BYTES = FOOTER_PREFIX.length + 64 + 1;
/** A header line longer than this is not one of ours (the conf lists are the only variable part). */
const MAX_HEADER_BYTES = 1 << 20;

const idList = z.array(z.string().min(1).max(256)).max(10_000);
const headerSchema = z.strictObject({
  format: z.literal(BACKUP_FORMAT),
  /** The cluster the snapshot came from; null when the node has none recorded (static PEERS). */
  clusterId: z.string().max(256).nullable(),
  /** The node that took it. */
  node: z.string().min(1).max(256),
  index: z.number().int().nonnegative(),
  term: z.number().int().nonnegative(),
  conf: z.strictObject({ voters: idList, learners: idList }),
  /** ISO 8601, when the image was taken. */
  createdAt: z.string().max(64),
  dataBytes: z.number().int().nonnegative(),
  dataSha256: z.string().regex(/^[0-9a-f]{64}$/),
});

export type BackupHeader = z.infer<typeof headerSchema>;

export interface BackupMeta {
  clusterId: string | null;
  node: string;
  index: number;
  term: number;
  conf: ConfState;
  createdAt: Date;
}

/** The file is not a complete, intact backup; the message says what is wrong with it. */
export class BadBackupError extends Error {
  override name = "BadBackupError";
}

function sha256(...parts: Uint8Array[]): string {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest("hex");
}

/** The file as parts (head, image, footer): written out in order, without copying the image. */
export function encodeBackup(meta: BackupMeta, data: Uint8Array): { header: BackupHeader; parts: Uint8Array[]; bytes: number } {
  const header: BackupHeader = {
    format: BACKUP_FORMAT,
    clusterId: meta.clusterId,
    node: meta.node,
    index: meta.index,
    term: meta.term,
    conf: { voters: [...meta.conf.voters], learners: [...meta.conf.learners] },
    createdAt: meta.createdAt.toISOString(),
    dataBytes: data.byteLength,
    dataSha256: sha256(data),
  };
  const head = Buffer.from(`${MAGIC}${JSON.stringify(header)}\n`, "utf8");
  const footer = Buffer.from(`${FOOTER_PREFIX}${sha256(head)}\n`, "latin1");
  return { header, parts: [head, data, footer], bytes: head.byteLength + data.byteLength + footer.byteLength };
}

/**
 * Checks a whole backup file and returns its header and image. Throws BadBackupError naming the
 * first problem: not a backup, truncated, trailing bytes, or a checksum mismatch.
 */
export function decodeBackup(file: Uint8Array): { header: BackupHeader; data: Uint8Array } {
  const buf = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (buf.byteLength < MAGIC.length || buf.toString("latin1", 0, MAGIC.length) !== MAGIC) {
    throw new BadBackupError(buf.byteLength === 0 ? "the file is empty" : "not a phalanx snapshot file (no PHALANX-SNAPSHOT header)");
  }
  const eol = buf.indexOf(0x0a, MAGIC.length);
  if (eol < 0) {
    if (buf.byteLength - MAGIC.length > MAX_HEADER_BYTES) throw new BadBackupError("the header line is too long: not a phalanx snapshot file");
    throw new BadBackupError(`the file is truncated: it ends inside the header (${buf.byteLength} bytes)`);
  }
  if (eol - MAGIC.length > MAX_HEADER_BYTES) throw new BadBackupError("the header line is too long: not a phalanx snapshot file");
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString("utf8", MAGIC.length, eol));
  } catch {
    throw new BadBackupError("the header is not valid JSON (damaged file)");
  }
  const r = headerSchema.safeParse(parsed);
  if (!r.success) {
    const format = (parsed as { format?: unknown } | null)?.format;
    if (typeof format === "number" && format !== BACKUP_FORMAT) {
      throw new BadBackupError(`snapshot format ${format}; this build reads format ${BACKUP_FORMAT}`);
    }
    throw new BadBackupError(`the header is malformed (damaged file): ${plainZodMessage(r.error)}`);
  }
  const header = r.data;
  const dataStart = eol + 1;
  const expected = dataStart + header.dataBytes + FOOTER_BYTES;
  if (buf.byteLength < expected) {
    throw new BadBackupError(`the file is truncated: ${buf.byteLength} bytes, its header says ${expected}`);
  }
  if (buf.byteLength > expected) throw new BadBackupError(`the file has ${buf.byteLength - expected} bytes after its end (damaged or concatenated)`);
  const footerStart = dataStart + header.dataBytes;
  const footer = buf.toString("latin1", footerStart, expected);
  const m = /^PHALANX-END ([0-9a-f]{64})\n$/.exec(footer);
  if (m === null) throw new BadBackupError("the footer is missing or damaged (truncated or corrupt file)");
  const data = buf.subarray(dataStart, footerStart);
  if (sha256(buf.subarray(0, dataStart)) !== m[1]) throw new BadBackupError("checksum mismatch: the header is corrupt (its sha256 does not match the footer)");
  if (sha256(data) !== header.dataSha256) throw new BadBackupError("checksum mismatch: the snapshot image does not match the sha256 in the header");
  return { header, data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}
