import { isIPv4 } from 'node:net';

/** How a key spreads requests over its nodes. */
export type Algo = 'wrr' | 'lrc' | 'wlrc' | 'iphash' | 'chash';
export const ALGOS: readonly Algo[] = ['wrr', 'lrc', 'wlrc', 'iphash', 'chash'];

/** The protocol the router speaks to a node: uWSGI's own (modifier1 0, the default) or plain HTTP. */
export type NodeProto = 'uwsgi' | 'http';

/** What a subscribe packet (or the emperor's list) says of one node of a key. */
export interface Announcement {
  key: string;
  address: string;
  modifier1: number;
  modifier2: number;
  cores: number;
  load: number;
  weight: number;
  backup: number;
  proto: NodeProto;
  algo: Algo | undefined;
  vassal: string | undefined;
}

/** A node of a key: what it announced (refreshed by each announcement), and what the router saw of it. */
export interface Node extends Omit<Announcement, 'key' | 'algo' | 'address'> {
  readonly address: string;
  /** When it last announced (ms since the epoch). */
  lastCheck: number;
  /** Requests in flight (uWSGI's `reference`). */
  inflight: number;
  requests: number;
  /** Requests since its last announcement. */
  lastRequests: number;
  /** Connections that failed (refused, reset before a response, timed out). */
  failures: number;
  /** Refused a connection: not chosen until it announces again (uWSGI's death_mark). */
  dead: boolean;
  /** Bytes sent to it and received from it (bodies and heads). */
  tx: number;
  rx: number;
  /** Smooth weighted round robin's running score. */
  current: number;
}

export interface Slot {
  readonly key: string;
  algo: Algo;
  readonly nodes: Node[];
  hits: number;
}

export interface TableLimits {
  /** Keys the table holds at most (a flood of new keys is refused past it, the known ones keep working). */
  maxKeys: number;
  /** Nodes one key holds at most. */
  maxNodesPerKey: number;
  /** A node that has not announced for this long is removed (uWSGI's subscription-tolerance, 17 s). */
  toleranceMs: number;
}

export const DEFAULT_TABLE_LIMITS: TableLimits = { maxKeys: 100_000, maxNodesPerKey: 64, toleranceMs: 17_000 };

/** What a subscribe did: `new` node, `refresh` of a known one, or why it was refused. */
export type SubscribeResult = 'new' | 'refresh' | 'too-many-keys' | 'too-many-nodes';

export interface TableEvents {
  added?(key: string, node: Node): void;
  removed?(key: string, node: Node, why: 'expired' | 'unsubscribed'): void;
}

/** FNV-1a over a string, then a final avalanche (fast, good enough to spread a rendezvous hash). */
const hash32 = (s: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
};

/** uWSGI's iphash: the IPv4 address's in_addr read as a native (little-endian) u32; others hashed. */
const ipValue = (ip: string): number => {
  const v4 = ip.startsWith('::ffff:') && isIPv4(ip.slice(7)) ? ip.slice(7) : ip;
  if (isIPv4(v4)) {
    const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
    return ((d << 24) | (c << 16) | (b << 8) | a) >>> 0;
  }
  return hash32(ip);
};

/**
 * The subscription table: key -> nodes, with uWSGI's semantics (a node is key + address; a weight of 0
 * counts as 1; backup levels; expiry after the tolerance) and an eager expiry timer (uWSGI expires only
 * when a request looks the key up, so a dead node's stats linger and a key is never freed without traffic).
 */
export class SubscriptionTable {
  readonly limits: TableLimits;
  readonly #slots = new Map<string, Slot>();
  readonly #events: TableEvents;
  readonly #defaultAlgo: Algo;
  #timer: NodeJS.Timeout | undefined;
  #timerAt = Infinity;
  #nodeCount = 0;

  constructor(limits: Partial<TableLimits> = {}, defaultAlgo: Algo = 'wrr', events: TableEvents = {}) {
    this.limits = { ...DEFAULT_TABLE_LIMITS, ...limits };
    this.#defaultAlgo = defaultAlgo;
    this.#events = events;
  }

  get size(): number {
    return this.#slots.size;
  }

  get nodeCount(): number {
    return this.#nodeCount;
  }

  slots(): IterableIterator<Slot> {
    return this.#slots.values();
  }

  get(key: string): Slot | undefined {
    return this.#slots.get(key);
  }

  node(key: string, address: string): Node | undefined {
    return this.#slots.get(key)?.nodes.find((n) => n.address === address);
  }

  subscribe(a: Announcement, now = Date.now()): SubscribeResult {
    let slot = this.#slots.get(a.key);
    if (slot === undefined) {
      if (this.#slots.size >= this.limits.maxKeys) return 'too-many-keys';
      slot = { key: a.key, algo: a.algo ?? this.#defaultAlgo, nodes: [], hits: 0 };
      this.#slots.set(a.key, slot);
    }
    const weight = a.weight < 1 ? 1 : a.weight;
    const known = slot.nodes.find((n) => n.address === a.address);
    if (known !== undefined) {
      Object.assign(known, { modifier1: a.modifier1, modifier2: a.modifier2, cores: a.cores, load: a.load, weight, backup: a.backup, proto: a.proto, vassal: a.vassal, lastCheck: now, lastRequests: 0, dead: false });
      if (a.algo !== undefined) slot.algo = a.algo;
      return 'refresh';
    }
    if (slot.nodes.length >= this.limits.maxNodesPerKey) return 'too-many-nodes';
    const node: Node = {
      address: a.address, modifier1: a.modifier1, modifier2: a.modifier2, cores: a.cores, load: a.load, weight, backup: a.backup, proto: a.proto,
      vassal: a.vassal, lastCheck: now, inflight: 0, requests: 0, lastRequests: 0, failures: 0, dead: false, tx: 0, rx: 0, current: 0,
    };
    slot.nodes.push(node);
    if (a.algo !== undefined) slot.algo = a.algo;
    this.#nodeCount++;
    this.#arm(now + this.limits.toleranceMs);
    this.#events.added?.(a.key, node);
    return 'new';
  }

  /** Removes a node; false when the key has no such node. */
  unsubscribe(key: string, address: string): boolean {
    return this.#remove(key, address, 'unsubscribed');
  }

  #remove(key: string, address: string, why: 'expired' | 'unsubscribed'): boolean {
    const slot = this.#slots.get(key);
    const i = slot?.nodes.findIndex((n) => n.address === address) ?? -1;
    if (slot === undefined || i < 0) return false;
    const [node] = slot.nodes.splice(i, 1);
    this.#nodeCount--;
    if (slot.nodes.length === 0) this.#slots.delete(key);
    if (node !== undefined) this.#events.removed?.(key, node, why);
    return true;
  }

  /** Removes every node silent for longer than the tolerance; returns how many. */
  expire(now = Date.now()): number {
    const cutoff = now - this.limits.toleranceMs;
    let n = 0;
    let next = Infinity;
    for (const slot of [...this.#slots.values()]) {
      for (const node of [...slot.nodes]) {
        if (node.lastCheck < cutoff) {
          this.#remove(slot.key, node.address, 'expired');
          n++;
        } else {
          next = Math.min(next, node.lastCheck + this.limits.toleranceMs);
        }
      }
    }
    this.#timerAt = Infinity;
    if (next !== Infinity) this.#arm(next);
    return n;
  }

  /** The timer fires at the earliest moment a node can expire (a refresh only moves that later). */
  #arm(at: number): void {
    if (at >= this.#timerAt) return;
    clearTimeout(this.#timer);
    this.#timerAt = at;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.expire();
    }, Math.max(0, at - Date.now()) + 5);
    this.#timer.unref();
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#timerAt = Infinity;
  }

  /**
   * The key to route a request for `host` and `path` to: with `mountpoints` = N, host plus the first N path
   * segments, then fewer, then the host alone (uWSGI's fallback), then `fallback`.
   */
  lookup(host: string, path: string, mountpoints: number, fallback?: string): Slot | undefined {
    if (mountpoints > 0) {
      const q = path.indexOf('?');
      const segs = (q < 0 ? path : path.slice(0, q)).split('/').filter((s) => s !== '').slice(0, mountpoints);
      for (let n = segs.length; n > 0; n--) {
        const s = this.#slots.get(`${host}/${segs.slice(0, n).join('/')}`);
        if (s !== undefined) return s;
      }
    }
    return this.#slots.get(host) ?? (fallback === undefined ? undefined : this.#slots.get(fallback));
  }

  /** Chooses a node of `slot` for a client, or undefined when none is alive. `skip` are nodes already tried. */
  pick(slot: Slot, client: string, skip?: ReadonlySet<Node>): Node | undefined {
    const live = slot.nodes.filter((n) => !n.dead && (skip === undefined || !skip.has(n)));
    if (live.length === 0) return undefined;
    if (slot.algo === 'iphash') return live[ipValue(client) % live.length];
    // The lowest backup level that has a live node; higher levels are used only when it has none.
    let level = Infinity;
    for (const n of live) if (n.backup < level) level = n.backup;
    const pool = live.filter((n) => n.backup === level);
    switch (slot.algo) {
      case 'lrc':
        return pool.reduce((best, n) => (n.inflight < best.inflight || (n.inflight === best.inflight && n.lastRequests < best.lastRequests) ? n : best));
      case 'wlrc':
        return pool.reduce((best, n) => (n.inflight / n.weight < best.inflight / best.weight ? n : best));
      case 'chash': {
        // Rendezvous hashing, weighted: a client keeps its node while that node lives; when one goes, only
        // its own clients move.
        let best: Node | undefined;
        let score = -Infinity;
        for (const n of pool) {
          const h = (hash32(`${client}\0${n.address}`) + 0.5) / 4294967296;
          const s = -n.weight / Math.log(h);
          if (s > score) {
            score = s;
            best = n;
          }
        }
        return best;
      }
      default: {
        // Smooth weighted round robin (nginx's): weights 2,1 give A,B,A, A,B,A, ...
        let total = 0;
        let best: Node | undefined;
        for (const n of pool) {
          n.current += n.weight;
          total += n.weight;
          if (best === undefined || n.current > best.current) best = n;
        }
        if (best !== undefined) best.current -= total;
        return best;
      }
    }
  }
}
