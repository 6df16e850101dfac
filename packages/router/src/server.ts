import { createSocket, type Socket } from 'node:dgram';
import { listenUnixDatagram, type UnixDatagramListener } from '@emperor/jail';
import { decodePacket, getNumber, getText, MalformedPacket, MAX_PACKET, SUBSCRIPTION_MODIFIER1, type Packet } from './packet.js';
import { KeyDirectory, signedParts, verifyParts } from './sign.js';
import { ALGOS, type Algo, type Announcement, type SubscriptionTable } from './table.js';

/** Why a datagram changed nothing; each is a counter in the stats. */
export type Refusal =
  | 'malformed' | 'not-subscription' | 'bad-key' | 'bad-address' | 'no-address' | 'bad-proto' | 'too-many-keys' | 'too-many-nodes'
  | 'unsigned' | 'bad-signature' | 'bad-key-file' | 'stale' | 'replayed' | 'replay-memory-full' | 'own-address';

export interface SignCheck {
  /** `<dir>/<key>.pem`: the public key of each key that must be signed. */
  dir: string;
  /** RSA's digest (uWSGI: the DIGEST of `subscriptions-sign-check DIGEST:DIR`); ed25519 needs none. */
  digest: string;
  /** Every key must be signed, also those without a key file (which are then refused). Default: only keys with one. */
  required: boolean;
  /** A signed packet's `unix` within this of now (seconds; default 300). */
  toleranceS: number;
}

export interface ServerOptions {
  table: SubscriptionTable;
  sign?: SignCheck;
  /** Addresses a node may not have: the router's own listeners (a loop). */
  forbiddenAddresses?: ReadonlySet<string>;
  log?: (level: 'info' | 'warn', msg: string, detail: Record<string, unknown>) => void;
}

export interface ServerCounters {
  received: number;
  subscribed: number;
  refreshed: number;
  unsubscribed: number;
  /** Unsubscribes of a node the table did not hold (already expired or never seen). */
  unknownNode: number;
  refused: Record<Refusal, number>;
}

/** How long a node's last `unix` is remembered past the tolerance, and how many are. */
const REPLAY_MEMORY = 200_000;
const LOG_EVERY_MS = 10_000;

const KEY_RE = /^[^\s\0-\x1f\x7f]{1,255}$/;
const ADDRESS_RE = /^(\/[^\0]{1,254}|@[^\0]{1,254}|[A-Za-z0-9.:[\]-]{1,250}:\d{1,5})$/;

/**
 * The subscription server: takes uWSGI subscription datagrams and keeps the table. Every datagram is
 * either applied or counted as refused (and logged, at most once per reason every 10 s); none throws.
 */
export class SubscriptionServer {
  readonly counters: ServerCounters = {
    received: 0, subscribed: 0, refreshed: 0, unsubscribed: 0, unknownNode: 0,
    refused: {
      malformed: 0, 'not-subscription': 0, 'bad-key': 0, 'bad-address': 0, 'no-address': 0, 'bad-proto': 0, 'too-many-keys': 0, 'too-many-nodes': 0,
      unsigned: 0, 'bad-signature': 0, 'bad-key-file': 0, stale: 0, replayed: 0, 'replay-memory-full': 0, 'own-address': 0,
    },
  };
  readonly table: SubscriptionTable;
  readonly #sign: SignCheck | undefined;
  readonly #keys: KeyDirectory | undefined;
  readonly #forbidden: ReadonlySet<string>;
  readonly #log: NonNullable<ServerOptions['log']>;
  /** key \0 address -> the last accepted `unix` of a signed node, and when (kept after the node goes). */
  readonly #lastUnix = new Map<string, { unix: number; at: number }>();
  readonly #lastLog = new Map<string, { at: number; suppressed: number }>();
  readonly #sockets: Socket[] = [];
  readonly #unix: UnixDatagramListener[] = [];

  constructor(options: ServerOptions) {
    this.table = options.table;
    this.#sign = options.sign;
    this.#keys = options.sign === undefined ? undefined : new KeyDirectory(options.sign.dir);
    this.#forbidden = options.forbiddenAddresses ?? new Set();
    this.#log = options.log ?? (() => {});
  }

  /** Binds a UDP listener (`host:port`, IPv4 or [IPv6]); resolves with the bound port. */
  async listenUdp(host: string, port: number): Promise<number> {
    const v6 = host.includes(':');
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', recvBufferSize: 4 * 1024 * 1024 });
    sock.on('message', (msg, rinfo) => this.handle(msg, `${rinfo.address}:${rinfo.port}`));
    // A dgram socket's errors (ICMP, buffer) are the sender's problem, never the router's end.
    sock.on('error', (err) => this.#log('warn', `subscription socket ${host}:${port}: ${err.message}`, {}));
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind(port, host, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    this.#sockets.push(sock);
    return sock.address().port;
  }

  /**
   * Binds a unix datagram listener (uWSGI's `--http-subscription-server /path`), mode 0600 unless told: who
   * may write to it may announce. Datagrams JS could not take fast enough are dropped and counted.
   */
  listenUnix(path: string, mode = 0o600): void {
    this.#unix.push(listenUnixDatagram(path, mode, (d) => this.handle(d, path)));
  }

  /** Datagrams a unix listener dropped because the router was behind (a flood). */
  get unixDropped(): number {
    return this.#unix.reduce((a, l) => a + l.dropped(), 0);
  }

  close(): void {
    for (const s of this.#sockets.splice(0)) s.close();
    for (const l of this.#unix.splice(0)) l.close();
  }

  #refuse(why: Refusal, from: string, detail: Record<string, unknown> = {}): Refusal {
    this.counters.refused[why]++;
    const now = Date.now();
    const l = this.#lastLog.get(why);
    if (l !== undefined && now - l.at < LOG_EVERY_MS) {
      l.suppressed++;
      return why;
    }
    const suppressed = l?.suppressed ?? 0;
    this.#lastLog.set(why, { at: now, suppressed: 0 });
    this.#log('warn', `subscription packet refused: ${why}`, { from, ...detail, ...(suppressed > 0 ? { alsoRefusedSinceLastLog: suppressed } : {}) });
    return why;
  }

  /** Applies one datagram; returns what it did (tests read it; the socket ignores it). */
  handle(raw: Buffer, from: string, now = Date.now()): 'subscribed' | 'refreshed' | 'unsubscribed' | 'unknown-node' | Refusal {
    this.counters.received++;
    let p: Packet;
    try {
      if (raw.length > MAX_PACKET) throw new MalformedPacket(`${raw.length} bytes`);
      p = decodePacket(raw);
    } catch (e) {
      return this.#refuse('malformed', from, { reason: e instanceof MalformedPacket ? e.message : String(e) });
    }
    if (p.modifier1 !== SUBSCRIPTION_MODIFIER1) return this.#refuse('not-subscription', from, { modifier1: p.modifier1 });
    const key = getText(p, 'key')?.toLowerCase();
    if (key === undefined || !KEY_RE.test(key)) return this.#refuse('bad-key', from, { key });
    const address = getText(p, 'address');
    if (address === undefined || address === '') return this.#refuse('no-address', from, { key });
    if (!ADDRESS_RE.test(address)) return this.#refuse('bad-address', from, { key, address });
    if (this.#forbidden.has(address)) return this.#refuse('own-address', from, { key, address });
    const subscribe = p.modifier2 === 0;
    const signed = this.#checkSignature(p, raw, key, address, from, now);
    if (signed !== true) return signed;
    if (!subscribe) {
      if (!this.table.unsubscribe(key, address)) {
        this.counters.unknownNode++;
        return 'unknown-node';
      }
      this.counters.unsubscribed++;
      this.#log('info', `unsubscribed ${address} from ${key}`, { key, address, from });
      return 'unsubscribed';
    }
    const proto = getText(p, 'proto');
    const c = proto === undefined || proto === '' ? 'u' : proto[0];
    if (c !== 'u' && c !== 'h') return this.#refuse('bad-proto', from, { key, proto, expected: 'uwsgi or http' });
    const algoText = getText(p, 'algo');
    const algo = ALGOS.find((x) => x === algoText);
    const a: Announcement = {
      key, address, modifier1: getNumber(p, 'modifier1') ?? 0, modifier2: getNumber(p, 'modifier2') ?? 0, cores: getNumber(p, 'cores') ?? 0,
      load: getNumber(p, 'load') ?? 0, weight: getNumber(p, 'weight') ?? 1, backup: getNumber(p, 'backup') ?? 0,
      proto: c === 'h' ? 'http' : 'uwsgi', algo: algo as Algo | undefined, vassal: getText(p, 'vassal'),
    };
    const r = this.table.subscribe(a, now);
    if (r === 'too-many-keys' || r === 'too-many-nodes') return this.#refuse(r, from, { key, address });
    if (r === 'new') {
      this.counters.subscribed++;
      this.#log('info', `subscribed ${address} to ${key}`, { key, address, from });
      return 'subscribed';
    }
    this.counters.refreshed++;
    return 'refreshed';
  }

  /** True when the packet may be applied; else the refusal. */
  #checkSignature(p: Packet, raw: Buffer, key: string, address: string, from: string, now: number): true | Refusal {
    const check = this.#sign;
    const keys = this.#keys;
    if (check === undefined || keys === undefined) return true;
    // With mountpoints a key is host/path: the host's key file signs for all its paths (as uWSGI).
    const base = key.split('/')[0] ?? key;
    const found = keys.lookup(base, now);
    if (found.error !== undefined) return this.#refuse('bad-key-file', from, { key, error: found.error });
    if (found.key === null) return check.required ? this.#refuse('unsigned', from, { key, reason: `no ${keys.dir}/${base}.pem and signatures are required` }) : true;
    const sig = p.pairs.find(([k]) => k === 'sign')?.[1];
    if (sig === undefined) return this.#refuse('unsigned', from, { key });
    const parts = signedParts(raw, sig);
    if (parts === undefined) return this.#refuse('bad-signature', from, { key, reason: 'sign is not the last pair' });
    if (verifyParts(parts, found.key, check.digest) === 'bad') return this.#refuse('bad-signature', from, { key, address });
    const unix = getNumber(p, 'unix');
    const nowS = Math.floor(now / 1000);
    if (unix === undefined || Math.abs(unix - nowS) > check.toleranceS) return this.#refuse('stale', from, { key, address, unix, now: nowS, toleranceS: check.toleranceS });
    const id = `${key}\0${address}`;
    const last = this.#lastUnix.get(id);
    if (last !== undefined && unix <= last.unix) return this.#refuse('replayed', from, { key, address, unix, last: last.unix });
    if (last === undefined && this.#lastUnix.size >= REPLAY_MEMORY) {
      this.#prune(now);
      if (this.#lastUnix.size >= REPLAY_MEMORY) return this.#refuse('replay-memory-full', from, { key, address });
    }
    this.#lastUnix.delete(id); // re-inserted last: the map's order is the age order #prune walks
    this.#lastUnix.set(id, { unix, at: now });
    return true;
  }

  /** Forgets `unix` values too old to matter (a packet that old is stale anyway). */
  #prune(now: number): void {
    const check = this.#sign;
    if (check === undefined) return;
    const cutoff = now - 2 * check.toleranceS * 1000;
    for (const [id, v] of this.#lastUnix) {
      if (v.at >= cutoff) break;
      this.#lastUnix.delete(id);
    }
  }
}
