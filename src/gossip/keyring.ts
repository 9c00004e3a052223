// AES-GCM for gossip packets and push-pull bodies. The first key encrypts; every key is tried to
// decrypt, so a key can be rotated in (add everywhere, then make it first) and out (remove)
// without a flag day. Layout: version byte | 12-byte nonce | ciphertext | 16-byte tag.

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

const VERSION = 1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const AAD = new Uint8Array([VERSION]);

export const ENCRYPTION_OVERHEAD = 1 + NONCE_BYTES + TAG_BYTES;

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

export class Keyring {
  private readonly keys: Uint8Array[];

  constructor(keys: readonly Uint8Array[]) {
    if (keys.length === 0) throw new Error("gossip keyring needs at least one key");
    for (const k of keys) algorithm(k);
    this.keys = keys.map((k) => new Uint8Array(k));
  }

  /** Parses GOSSIP_KEY: comma-separated base64 keys, the first one encrypting. */
  static fromEnv(value: string): Keyring {
    const keys = value
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "")
      .map((s) => {
        if (!/^[A-Za-z0-9+/]+={0,2}$/.test(s)) throw new Error("GOSSIP_KEY entries must be base64");
        return new Uint8Array(Buffer.from(s, "base64"));
      });
    return new Keyring(keys);
  }

  encrypt(plain: Uint8Array): Uint8Array {
    const key = this.keys[0] as Uint8Array;
    const nonce = randomBytes(NONCE_BYTES);
    const c = createCipheriv(algorithm(key), key, nonce, { authTagLength: TAG_BYTES });
    c.setAAD(AAD);
    const body = c.update(plain);
    const fin = c.final();
    const tag = c.getAuthTag();
    const out = new Uint8Array(1 + NONCE_BYTES + body.length + fin.length + TAG_BYTES);
    out[0] = VERSION;
    out.set(nonce, 1);
    out.set(body, 1 + NONCE_BYTES);
    out.set(fin, 1 + NONCE_BYTES + body.length);
    out.set(tag, out.length - TAG_BYTES);
    return out;
  }

  /** The plaintext, or null if no key authenticates these bytes. Never throws. */
  decrypt(sealed: Uint8Array): Uint8Array | null {
    if (sealed.length < ENCRYPTION_OVERHEAD || sealed[0] !== VERSION) return null;
    const nonce = sealed.subarray(1, 1 + NONCE_BYTES);
    const body = sealed.subarray(1 + NONCE_BYTES, sealed.length - TAG_BYTES);
    const tag = sealed.subarray(sealed.length - TAG_BYTES);
    for (const key of this.keys) {
      try {
        const d = createDecipheriv(algorithm(key), key, nonce, { authTagLength: TAG_BYTES });
        d.setAAD(AAD);
        d.setAuthTag(tag);
        const a = d.update(body);
        const b = d.final();
        const out = new Uint8Array(a.length + b.length);
        out.set(a, 0);
        out.set(b, a.length);
        return out;
      } catch {
        // Wrong key or tampered bytes: try the next key.
      }
    }
    return null;
  }
}
