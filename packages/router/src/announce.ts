import { encodePacket, SUBSCRIPTION_MODIFIER1 } from './packet.js';
import { signedPacket, type Signer } from './sign.js';
import type { Announcement } from './table.js';

/** What one node announces for one key (the table's {@link Announcement}; `proto` may be left out, or any uWSGI's). */
export type NodeAnnouncement = Omit<Announcement, 'proto'> & { proto: 'uwsgi' | 'http' | 'fastcgi' | 'scgi' | undefined };

/**
 * A subscribe (cmd 0) or unsubscribe (cmd 1) packet, keys in uWSGI's order. Signed (emperor's scheme: the
 * header is covered too) when a signer is given, with `unix` (which must grow from packet to packet).
 */
export const subscriptionPacket = (cmd: 0 | 1, a: NodeAnnouncement, sign?: { signer: Signer; unix: number }): Buffer => {
  const pairs: Array<[string, string]> = [
    ['key', a.key], ['address', a.address], ['modifier1', String(a.modifier1)], ['modifier2', String(a.modifier2)],
    ['cores', String(a.cores)], ['load', String(a.load)], ['weight', String(a.weight)], ['backup', String(a.backup)],
  ];
  if (a.vassal !== undefined) pairs.push(['vassal', a.vassal]);
  if (a.proto !== undefined) pairs.push(['proto', a.proto]);
  if (a.algo !== undefined) pairs.push(['algo', a.algo]);
  return sign === undefined ? encodePacket(SUBSCRIPTION_MODIFIER1, cmd, pairs) : signedPacket(cmd, pairs, sign.unix, sign.signer);
};
