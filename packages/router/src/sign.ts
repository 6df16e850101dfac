import { createPrivateKey, createPublicKey, sign as cryptoSign, verify as cryptoVerify, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { encodeBody, encodeHeader, SUBSCRIPTION_MODIFIER1 } from './packet.js';

/**
 * Signed subscriptions. A signature is the last pair, `sign`, over what comes before it, and `unix` is a
 * number that must grow with every packet of a node.
 *
 * - Emperor's scheme (what the emperor sends): the signature covers the whole packet up to the `sign` pair,
 *   its 4-byte header included (so subscribe and unsubscribe cannot be swapped).
 * - uWSGI's scheme (what `uwsgi --subscribe-to ...,SHA1:key.pem` sends): the body only; accepted for RSA keys,
 *   so real uWSGI nodes work, with the header then covered by the growing `unix` instead (a swapped packet
 *   carries a `unix` already seen).
 */

/** The file of a key's public key: uWSGI's rule, every byte outside [A-Za-z0-9._-] becomes `_`. */
export const keyFileName = (key: string): string => `${key.replace(/[^A-Za-z0-9._-]/g, '_')}.pem`;

/** The bytes a signature covers, and which scheme. */
export interface SignedParts {
  /** Header + body before the `sign` pair. */
  whole: Buffer;
  /** Body before the `sign` pair (uWSGI's). */
  body: Buffer;
  signature: Buffer;
}

/** The signed parts of a raw packet whose last pair is `sign`; undefined when it is not the last pair. */
export const signedParts = (raw: Buffer, signature: Buffer): SignedParts | undefined => {
  const tail = 2 + 4 + 2 + signature.length;
  const end = raw.length - tail;
  if (end < 4 || raw.readUInt16LE(end) !== 4 || raw.subarray(end + 2, end + 6).toString('latin1') !== 'sign') return undefined;
  if (!raw.subarray(end + 8).equals(signature)) return undefined;
  return { whole: raw.subarray(0, end), body: raw.subarray(4, end), signature };
};

/** A digest name as uWSGI writes it (SHA1, sha256, ...) as Node knows it. */
const digestName = (d: string): string => d.toLowerCase().replace(/^sha-/, 'sha');

export type Verdict = 'emperor' | 'uwsgi' | 'bad';

/** Checks a signature with a public key: the emperor's scheme, then (RSA only) uWSGI's. */
export const verifyParts = (parts: SignedParts, key: KeyObject, digest: string): Verdict => {
  try {
    if (key.asymmetricKeyType === 'ed25519' || key.asymmetricKeyType === 'ed448') {
      return cryptoVerify(null, parts.whole, key, parts.signature) ? 'emperor' : 'bad';
    }
    if (key.asymmetricKeyType !== 'rsa') return 'bad';
    const d = digestName(digest);
    if (cryptoVerify(d, parts.whole, key, parts.signature)) return 'emperor';
    return cryptoVerify(d, parts.body, key, parts.signature) ? 'uwsgi' : 'bad';
  } catch {
    return 'bad';
  }
};

interface CachedKey {
  checkedAt: number;
  ino: number;
  mtimeMs: number;
  key: KeyObject | null;
  error: string | undefined;
}

/** How often a key's file is looked at again (a key added, replaced or removed takes effect within this). */
export const KEY_RECHECK_MS = 1_000;
const MAX_CACHED = 10_000;

/** The public keys of a directory, `<dir>/<key>.pem` (PEM: SPKI RSA or ed25519, or PKCS#1 RSA). */
export class KeyDirectory {
  readonly dir: string;
  readonly #cache = new Map<string, CachedKey>();

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The key's public key; null when it has none (or its file cannot be used: `error` says why). */
  lookup(key: string, now = Date.now()): { key: KeyObject | null; error: string | undefined } {
    const name = keyFileName(key);
    const c = this.#cache.get(name);
    if (c !== undefined && now - c.checkedAt < KEY_RECHECK_MS) return c;
    const file = join(this.dir, name);
    let st;
    try {
      st = statSync(file);
    } catch {
      return this.#store(name, { checkedAt: now, ino: 0, mtimeMs: 0, key: null, error: undefined });
    }
    if (c !== undefined && c.ino === st.ino && c.mtimeMs === st.mtimeMs) {
      c.checkedAt = now;
      return c;
    }
    try {
      if (!st.isFile()) throw new Error('not a regular file');
      if (st.size > 16_384) throw new Error(`${st.size} bytes, more than a public key`);
      const pk = createPublicKey(readFileSync(file));
      return this.#store(name, { checkedAt: now, ino: st.ino, mtimeMs: st.mtimeMs, key: pk, error: undefined });
    } catch (e) {
      return this.#store(name, { checkedAt: now, ino: st.ino, mtimeMs: st.mtimeMs, key: null, error: `${file}: ${(e as Error).message}` });
    }
  }

  #store(name: string, c: CachedKey): CachedKey {
    if (this.#cache.size >= MAX_CACHED) this.#cache.clear();
    this.#cache.set(name, c);
    return c;
  }
}

/** A private key to sign the emperor's packets with. */
export interface Signer {
  key: KeyObject;
  digest: string;
  /** The signature's length (the header's size counts it before it is made). */
  length: number;
}

export const loadSigner = (file: string, digest: string, pem?: Buffer): Signer => {
  const key = createPrivateKey(pem ?? readFileSync(file));
  const t = key.asymmetricKeyType;
  if (t === 'ed25519') return { key, digest, length: 64 };
  if (t === 'rsa') return { key, digest, length: (key.asymmetricKeyDetails?.modulusLength ?? 2048) / 8 };
  throw new Error(`${file}: a ${t ?? 'unknown'} key; expected an RSA or ed25519 private key`);
};

/** A signed packet, emperor's scheme: `unix` and `sign` appended, the signature over header and body. */
export const signedPacket = (modifier2: number, pairs: Array<[string, Buffer | string]>, unix: number, signer: Signer): Buffer => {
  const body = encodeBody([...pairs, ['unix', String(unix)]]);
  const header = encodeHeader(SUBSCRIPTION_MODIFIER1, body.length + 8 + signer.length, modifier2);
  const signed = Buffer.concat([header, body]);
  const sig = signer.key.asymmetricKeyType === 'ed25519' ? cryptoSign(null, signed, signer.key) : cryptoSign(digestName(signer.digest), signed, signer.key);
  if (sig.length !== signer.length) throw new Error(`a signature of ${sig.length} bytes, expected ${signer.length}`);
  return Buffer.concat([signed, encodeBody([['sign', sig]])]);
};
