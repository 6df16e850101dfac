import { readFileSync } from 'node:fs';
import { RLIMIT_NAMES, showRlimit, type RlimitName, type RlimitPair } from './values/rlimit.js';
import { human } from './values/size.js';
import { showRate } from './values/net.js';

/** A limit the operator sets: what a vassal gets when its file says nothing, and the most it may ask for. */
export interface Bound {
  default: number;
  max: number;
  /** Where each was set, for messages: `the built-in default` or `FILE:LINE`. */
  defaultFrom: string;
  maxFrom: string;
}

/** An rlimit the operator sets: default soft and hard values, and the highest hard value a vassal may ask for. */
export interface RlimitBound {
  default: RlimitPair;
  max: number;
  defaultFrom: string;
  maxFrom: string;
}

/**
 * The operator's defaults and ceilings (emperor.ini). Nothing is unlimited by default: a vassal file that
 * sets no limit gets these defaults, and one that asks for more than a ceiling is refused.
 */
export interface OperatorLimits {
  memory: Bound;
  /** Percent of one CPU. */
  cpu: Bound;
  pids: Bound;
  tmpSize: Bound;
  runDirSize: Bound;
  ptySessions: Bound;
  /** Milliseconds: bounds how long one vassal can hold up a stop and the emperor's shutdown. */
  stopTimeout: Bound;
  /** Bits per second of egress (net = nat); Infinity: unlimited. */
  netRate: Bound;
  /** Open connections (conntrack entries) of one jail. */
  netConnections: Bound;
  rlimits: Record<RlimitName, RlimitBound>;
  /** Tyrant mode: how many vassal files one uid may have running. */
  vassalsPerUid: { value: number; from: string };
  /** Tyrant mode: files owned by a uid below this (system users) are refused. */
  tyrantMinUid: { value: number; from: string };
  /** Tyrant mode: the users `chown-socket` may name besides the file's owner (the web server). */
  socketOwners: { names: string[]; from: string };
  /** Tyrant mode: the subscription servers (routers) a vassal may announce itself to, as written in emperor.ini. */
  subscriptionServers: { list: string[]; from: string };
}

/** UID_MIN of /etc/login.defs (where customers' uids start), else 1000. */
const loginDefsUidMin = (): { value: number; from: string } => {
  try {
    const m = /^\s*UID_MIN\s+(\d+)/m.exec(readFileSync('/etc/login.defs', 'utf8'));
    if (m?.[1] !== undefined) return { value: Number(m[1]), from: 'UID_MIN of /etc/login.defs' };
  } catch {
    // no login.defs: the usual value
  }
  return { value: 1000, from: BUILTIN };
};

const BUILTIN = 'the built-in default';
const M = 1024 ** 2;
const G = 1024 ** 3;
const bound = (def: number, max: number): Bound => ({ default: def, max, defaultFrom: BUILTIN, maxFrom: BUILTIN });
const rl = (soft: number, hard: number, max: number): RlimitBound => ({ default: [soft, hard], max, defaultFrom: BUILTIN, maxFrom: BUILTIN });

/**
 * What a hosting company would ship (docs/security.md explains each): 512M of memory, one CPU, 512
 * processes, a 64M /tmp and a 16M run dir, 4 pty sessions; ceilings an operator raises on purpose.
 * `as` and `cpu` stay unlimited: the memory and cpu cgroups bound them, and an address-space limit breaks
 * runtimes that reserve large virtual ranges (the JVM, Go, V8).
 */
export const builtinLimits = (): OperatorLimits => ({
  memory: bound(512 * M, 8 * G),
  cpu: bound(100, 400),
  pids: bound(512, 16_384),
  tmpSize: bound(64 * M, G),
  runDirSize: bound(16 * M, 256 * M),
  ptySessions: bound(4, 32),
  stopTimeout: bound(10_000, 300_000),
  netRate: bound(Infinity, Infinity),
  netConnections: bound(1024, 16_384),
  rlimits: {
    nofile: rl(1024, 4096, 65_536),
    nproc: rl(4096, 4096, 65_536),
    core: rl(0, 0, G),
    memlock: rl(8 * M, 8 * M, 64 * M),
    stack: rl(8 * M, 64 * M, 256 * M),
    fsize: rl(16 * G, 16 * G, 1024 * G),
    as: rl(Infinity, Infinity, Infinity),
    cpu: rl(Infinity, Infinity, Infinity),
  },
  vassalsPerUid: { value: 8, from: BUILTIN },
  tyrantMinUid: loginDefsUidMin(),
  socketOwners: { names: ['www-data'], from: BUILTIN },
  subscriptionServers: { list: [], from: BUILTIN },
});

/** How each bounded vassal key shows its values in messages, and its emperor.ini names. */
export const BOUNDED_KEYS = {
  'memory-limit': { limit: 'memory', show: human },
  'cpu-limit': { limit: 'cpu', show: (n: number) => `${n}%` },
  'pids-limit': { limit: 'pids', show: String },
  'tmp-size': { limit: 'tmpSize', show: human },
  'run-dir-size': { limit: 'runDirSize', show: human },
  'pty-sessions': { limit: 'ptySessions', show: String },
  'stop-timeout': { limit: 'stopTimeout', show: (ms: number) => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`) },
  'net-rate': { limit: 'netRate', show: (b: number) => (b === Infinity ? 'unlimited' : showRate(b)) },
  'net-connections': { limit: 'netConnections', show: String },
} as const satisfies Record<string, { limit: keyof OperatorLimits; show: (n: number) => string }>;

/** A bounded vassal key. */
export type BoundedKey = keyof typeof BOUNDED_KEYS;

/** "expected at most 8G (max-memory-limit, the built-in default)" and its hint, or undefined when within. */
export const overCeiling = (key: BoundedKey, value: number, limits: OperatorLimits): { message: string; hint: string } | undefined => {
  const { limit, show } = BOUNDED_KEYS[key];
  const b = limits[limit] as Bound;
  if (value <= b.max) return undefined;
  return { message: `expected at most ${show(b.max)} (max-${key}, set in ${b.maxFrom}), got ${show(value)}`, hint: `ask for ${show(b.max)} or less, or have the operator raise max-${key} in emperor.ini` };
};

/** The same for one rlimit's hard value. */
export const rlimitOverCeiling = (name: RlimitName, hard: number, limits: OperatorLimits): { message: string; hint: string } | undefined => {
  const b = limits.rlimits[name];
  if (hard <= b.max) return undefined;
  return { message: `expected ${name} at most ${showRlimit(name, b.max)} (max-rlimit ${name}, set in ${b.maxFrom}), got ${showRlimit(name, hard)}`, hint: `ask for ${name}=${showRlimit(name, b.max)} or less, or have the operator raise max-rlimit = ${name}=... in emperor.ini` };
};

/** Every rlimit a vassal gets: its own where it set one, the operator's default for the rest. */
export const effectiveRlimits = (own: Array<{ name: RlimitName; value: RlimitPair }>, limits: OperatorLimits): Record<RlimitName, RlimitPair> => {
  const out = Object.fromEntries(RLIMIT_NAMES.map((n) => [n, [...limits.rlimits[n].default]])) as Record<RlimitName, RlimitPair>;
  for (const r of own) out[r.name] = r.value;
  return out;
};
