/**
 * uWSGI's packets: a 4-byte header (modifier1, u16le body size, modifier2) and a body of u16le-length
 * key/value pairs. Subscriptions are modifier1 224, modifier2 0 (subscribe) or anything else (unsubscribe).
 */

/** The largest datagram uWSGI's subscription server reads, and so the largest one we send or accept. */
export const MAX_PACKET = 4096;
/** uWSGI's subscription packets' modifier1. */
export const SUBSCRIPTION_MODIFIER1 = 224;

export interface Packet {
  modifier1: number;
  modifier2: number;
  /** The pairs in their order (a key may come twice; the first counts when read with {@link Packet.get}). */
  pairs: Array<[string, Buffer]>;
}

/** Why a datagram is not a packet (counted and logged by the server, never thrown further). */
export class MalformedPacket extends Error {
  override name = 'MalformedPacket';
}

/** The body bytes of pairs (no header): one allocation, whatever the number of pairs. */
export const encodeBody = (pairs: Iterable<[string, Buffer | string]>): Buffer => {
  const list = [...pairs];
  let size = 0;
  for (const [k, v] of list) {
    const kl = Buffer.byteLength(k);
    const vl = typeof v === 'string' ? Buffer.byteLength(v) : v.length;
    if (kl > 0xffff || vl > 0xffff) throw new RangeError(`uwsgi pair ${k} too long`);
    size += 4 + kl + vl;
  }
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const [k, v] of list) {
    const kl = out.write(k, at + 2);
    out.writeUInt16LE(kl, at);
    at += 2 + kl;
    const vl = typeof v === 'string' ? out.write(v, at + 2) : v.copy(out, at + 2);
    out.writeUInt16LE(vl, at);
    at += 2 + vl;
  }
  return out;
};

/** The 4-byte header of a body of `size` bytes. */
export const encodeHeader = (modifier1: number, size: number, modifier2: number): Buffer => {
  if (size > 0xffff) throw new RangeError(`uwsgi packet body of ${size} bytes`);
  const h = Buffer.alloc(4);
  h.writeUInt8(modifier1, 0);
  h.writeUInt16LE(size, 1);
  h.writeUInt8(modifier2, 3);
  return h;
};

/** A whole packet: header and body. */
export const encodePacket = (modifier1: number, modifier2: number, pairs: Iterable<[string, Buffer | string]>): Buffer => {
  const body = encodeBody(pairs);
  return Buffer.concat([encodeHeader(modifier1, body.length, modifier2), body], body.length + 4);
};

/**
 * Reads a datagram. The body size must match the datagram (uWSGI trusts it; a short or long datagram is
 * refused here) and every pair must fit: a truncated pair is malformed, not silently dropped.
 */
export const decodePacket = (buf: Buffer): Packet => {
  if (buf.length < 4) throw new MalformedPacket(`a datagram of ${buf.length} bytes, shorter than the 4-byte header`);
  if (buf.length > MAX_PACKET) throw new MalformedPacket(`a datagram of ${buf.length} bytes, more than ${MAX_PACKET}`);
  const size = buf.readUInt16LE(1);
  if (size !== buf.length - 4) throw new MalformedPacket(`a header announcing ${size} bytes of body in a datagram of ${buf.length - 4}`);
  const pairs: Array<[string, Buffer]> = [];
  let at = 4;
  while (at < buf.length) {
    if (at + 2 > buf.length) throw new MalformedPacket(`a key length cut off at byte ${at}`);
    const kl = buf.readUInt16LE(at);
    at += 2;
    if (at + kl + 2 > buf.length) throw new MalformedPacket(`a key of ${kl} bytes at byte ${at - 2} running past the end`);
    const key = buf.subarray(at, at + kl).toString('latin1');
    at += kl;
    const vl = buf.readUInt16LE(at);
    at += 2;
    if (at + vl > buf.length) throw new MalformedPacket(`the value of ${JSON.stringify(key)} (${vl} bytes) running past the end`);
    pairs.push([key, buf.subarray(at, at + vl)]);
    at += vl;
  }
  return { modifier1: buf.readUInt8(0), modifier2: buf.readUInt8(3), pairs };
};

/** The first value of `key` in a packet, as text. */
export const getText = (p: Packet, key: string): string | undefined => {
  const found = p.pairs.find(([k]) => k === key);
  return found === undefined ? undefined : found[1].toString('latin1');
};

/** The first value of `key` as a decimal number (uWSGI writes numbers as ASCII); undefined if absent or not a number. */
export const getNumber = (p: Packet, key: string): number | undefined => {
  const t = getText(p, key);
  if (t === undefined || !/^\d{1,15}$/.test(t)) return undefined;
  return Number(t);
};
