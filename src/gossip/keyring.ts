// AES-GCM for gossip packets and push-pull bodies. The first key encrypts; every key is tried to
// decrypt, so a key can be rotated in (add everywhere, then make it first) and out (remove)
// without a flag day. Layout: version byte | 4-byte epoch | 12-byte nonce | ciphertext | 16-byte tag.
//
// Replay: the epoch is a coarse clock (EPOCH_MS windows of wall time since the Unix epoch), sent
// in clear but authenticated as associated data, and the receiver accepts only its own epoch and
// the two adjacent ones. A captured packet therefore replays for at most ~2 epochs (60 s) and
// never after; within that window a replay only repeats news (incarnations make it a no-op) or a
// probe (whose answer goes to a known member, rate-limited: see swim.ts). Clock skew: servers
// whose wall clocks differ by more than one epoch (30 s) cannot gossip; the same bound the peer
// HMAC's ±30 s window puts on Raft traffic, so NTP-synchronised servers are required either way.

import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

const VERSION = 2;
const EPOCH_BYTES = 4;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + EPOCH_BYTES;
export const EPOCH_MS = 30_000;
/** Fixed HKDF info string: the gossip key derived from CLUSTER_KEY is used for nothing else. */
const DERIVE_INFO = "phalanx gossip key v1";

export const ENCRYPTION_OVERHEAD = HEADER_BYTES + NONCE_BYTES + TAG_BYTES;

function algorithm(key: Uint8Array): "aes-128-gcm" | "aes-192-gcm" | "aes-256-gcm" {
  switch (key.length) {
    case 16:
      return "aes-128-gcm";
    case 24:
      return "aes-192-gcm";
    case 32:
      return "aes-256-gcm";
    default:
      throw new Error(`gossip key must be 16, 24 or 32 bytes, got ${key.length}`);
  }
}

export interface KeyringOptions {
  /** Wall clock in ms since the Unix epoch; injectable for tests. */
  now?: () => number;
}

export class Keyring {
  private readonly keys: Uint8Array[];
  private readonly now: () => number;

  constructor(keys: readonly Uint8Array[], opts: KeyringOptions = {}) {
    if (keys.length === 0) throw new Error("gossip keyring needs at least one key");
    for (const k of keys) algorithm(k);
    this.keys = keys.map((k) => new Uint8Array(k));
    this.now = opts.now ?? Date.now;
  }

  /** Parses GOSSIP_KEY: comma-separated base64 keys, the first one encrypting. */
  static fromEnv(value: string, opts: KeyringOptions = {}): Keyring {
    const keys = value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map((s) => {
        if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) throw new Error("GOSSIP_KEY entries must be base64");
        return new Uint8Array(Buffer.from(s, "base64"));
      });
    return new Keyring(keys, opts);
  }

  /**
   * The gossip key of a cluster that sets only CLUSTER_KEY: HKDF-SHA256 with a fixed info string,
   * so that the two secrets are independent (knowing the gossip key reveals nothing of CLUSTER_KEY).
   */
  static fromClusterKey(clusterKey: string, opts: KeyringOptions = {}): Keyring {
    if (clusterKey === "") throw new Error("CLUSTER_KEY is empty");
    const key = new Uint8Array(hkdfSync("sha256", clusterKey, new Uint8Array(0), DERIVE_INFO, 32));
    return new Keyring([key], opts);
  }

  /** The epoch a packet sealed now carries. */
  epoch(): number {
    return Math.floor(this.now() / EPOCH_MS) >>> 0;
  }

  encrypt(plain: Uint8Array): Uint8Array {
    const key = this.keys[0] as Uint8Array;
    const header = headerFor(this.epoch());
    const nonce = randomBytes(NONCE_BYTES);
    const c = createCipheriv(algorithm(key), key, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(header);
    const body = c.update(plain);
    const fin = c.final();
    const tag = c.getAuthTag();
    const out = new Uint8Array(HEADER_BYTES + NONCE_BYTES + body.length + fin.length + TAG_BYTES);
    out.set(header, 0);
    out.set(nonce, HEADER_BYTES);
    out.set(body, HEADER_BYTES + NONCE_BYTES);
    out.set(fin, HEADER_BYTES + NONCE_BYTES + body.length);
    out.set(tag, out.length - TAG_BYTES);
    return out;
  }

  /** The plaintext, or null if no key authenticates these bytes or they are stale. Never throws. */
  decrypt(sealed: Uint8Array): Uint8Array | null {
    return this.open(sealed).plain;
  }

  /** Like decrypt, with the reason for a refusal (for counters and logs). */
  open(sealed: Uint8Array): { plain: Uint8Array; refused: null } | { plain: null; refused: "garbage" | "stale" } {
    if (sealed.length < ENCRYPTION_OVERHEAD || sealed[0] !== VERSION) return { plain: null, refused: "garbage" };
    const header = sealed.subarray(0, HEADER_BYTES);
    const nonce = sealed.subarray(HEADER_BYTES, HEADER_BYTES + NONCE_BYTES);
    const body = sealed.subarray(HEADER_BYTES + NONCE_BYTES, sealed.length - TAG_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    for (const key of this.keys) {
      try {
        const d = createDecipheriv(algorithm(key), key, nonce, { authTagLength: TAG_BYTES });
        d.setAAD(header);
        d.setAuthTag(tag);
        const a = d.update(body);
        const b = d.final();
        // Authentic: only now does the epoch mean anything (it was covered by the tag).
        const sent = new DataView(header.buffer, header.byteOffset, HEADER_BYTES).getUint32(1);
        if (Math.abs(sent - this.epoch()) > 1) return { plain: null, refused: "stale" };
        const out = new Uint8Array(a.length + b.length);
        out.set(a, 0);
        out.set(b, a.length);
        return { plain: out, refused: null };
      } catch {
        // Wrong key or tampered bytes: try the next key.
      }
    }
    return { plain: null, refused: "garbage" };
  }
}

function headerFor(epoch: number): Uint8Array {
  const h = new Uint8Array(HEADER_BYTES);
  h[0] = VERSION;
  new DataView(h.buffer).setUint32(1, epoch);
  return h;
}
