import { readFileSync } from 'node:fs';
import { BOUNDED_KEYS, builtinLimits, type Bound, type OperatorLimits } from './operator-limits.js';
import { ConfigError, type ConfigProblem } from './problem.js';
import { parseBool, parseInteger } from './values/basic.js';
import { Invalid, show } from './values/invalid.js';
import { parseDuration } from './values/duration.js';
import { parseRlimit, parseRlimitMax, showRlimit } from './values/rlimit.js';
import { parseSize } from './values/size.js';
import { parseIfName, parseIpv4, parseIpv4Net, parseNetRule, parseRate, type Ipv4Net, type NetRule } from './values/net.js';
import { parseSubscriptionServer } from './values/subscription.js';
import { parseUser } from './values/users.js';

/** The daemon's own settings from emperor.ini (the command line may override each). */
export interface EmperorIniSettings {
  dir?: string;
  'run-dir'?: string;
  'log-dir'?: string;
  tyrant?: boolean;
  'cgroup-parent'?: string;
  'log-format'?: 'auto' | 'pretty' | 'journal' | 'json';
  'jail-builds'?: number;
}

/** The operator's network for `net = nat` jails (docs/network.md). */
export interface NetworkSettings {
  /** Where jail addresses come from: one /30 per jail. */
  pool: Ipv4Net;
  /** Interfaces jail traffic leaves by (NAT); empty: the default route's, found when the first jail starts. */
  uplinks: string[];
  /** Resolvers the jails' /etc/resolv.conf names (reachable from every jail); empty: the host's own. */
  dns: number[];
  /** Destinations every nat jail may reach, private ones included. */
  allow: NetRule[];
  /** Where each was set, for messages. */
  from: { pool: string; uplinks: string; dns: string };
}

/** 10.208.0.0/16 (16,384 jails): RFC 1918, chosen to be unlikely on a hosting LAN; set net-pool to move it. */
export const builtinNetwork = (): NetworkSettings => ({ pool: { addr: 0x0ad00000, bits: 16 }, uplinks: [], dns: [], allow: [], from: { pool: 'the built-in default', uplinks: 'the built-in default', dns: 'the built-in default' } });

/** What an emperor.ini holds: the daemon's settings, the operator's limits and network. */
export interface EmperorIni {
  settings: EmperorIniSettings;
  limits: OperatorLimits;
  network: NetworkSettings;
}

const G = 1024 ** 3;
const T = 1024 ** 4;
const cpu = (r: unknown) => parseInteger(String(r).replace(/%$/, ''), 1, 100_000, 'a percent of one CPU');
/** The value parser of each bounded key's default and max-. */
const PARSERS: Record<keyof typeof BOUNDED_KEYS, (raw: unknown) => number> = {
  'memory-limit': (r) => parseSize(r, 4 * 1024 ** 2, T),
  'cpu-limit': cpu,
  'pids-limit': (r) => parseInteger(r, 1, 4_194_304, 'a number of processes'),
  'tmp-size': (r) => parseSize(r, 1024 ** 2, 64 * G),
  'run-dir-size': (r) => parseSize(r, 1024 ** 2, 64 * G),
  'pty-sessions': (r) => parseInteger(r, 0, 1000, 'a number of sessions'),
  'stop-timeout': (r) => parseDuration(r, 3_600_000),
  'net-rate': parseRate,
  'net-connections': (r) => parseInteger(r, 1, 1_000_000, 'a number of connections'),
};
const LOG_FORMATS = ['auto', 'pretty', 'journal', 'json'] as const;
const PLAIN = ['dir', 'run-dir', 'log-dir', 'tyrant', 'cgroup-parent', 'log-format', 'jail-builds', 'tyrant-vassals-per-uid', 'tyrant-min-uid', 'tyrant-socket-owners', 'rlimit', 'max-rlimit', 'net-pool', 'net-uplink', 'net-dns', 'net-allow', 'subscription-servers'];
/** Keys that may repeat (each line adds). */
const REPEATED = new Set(['rlimit', 'max-rlimit', 'net-allow']);
const KNOWN = [...PLAIN, ...Object.keys(BOUNDED_KEYS).flatMap((k) => [k, `max-${k}`])];

/**
 * Reads emperor.ini's `[emperor]` section (`key = value`, `;`/`#` comments; `rlimit` and `max-rlimit` may
 * repeat). Every problem is reported at once, with its line, as a {@link ConfigError}.
 */
export const readEmperorIni = (file: string): EmperorIni => {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [{ code: 'EMPEROR_ERR_CONFIG_READ', file, message: `expected a readable emperor.ini, got ${(e as NodeJS.ErrnoException).code ?? String(e)}` }]);
  }
  return parseEmperorIni(text, file);
};

/** Parses emperor.ini text; see {@link readEmperorIni}. */
export const parseEmperorIni = (text: string, file: string): EmperorIni => {
  const problems: ConfigProblem[] = [];
  const settings: EmperorIniSettings = {};
  const limits = builtinLimits();
  const network = builtinNetwork();
  const seen = new Set<string>();
  let section = '';
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const where = `${file}:${line}`;
    const l = raw.trim();
    if (l === '' || l.startsWith(';') || l.startsWith('#')) return;
    if (l.startsWith('[')) {
      section = l.slice(1, -1).trim().toLowerCase();
      if (section !== 'emperor') problems.push({ code: 'EMPEROR_ERR_CONFIG_SECTION', file, line, message: `expected an [emperor] section, got ${JSON.stringify(l)}` });
      return;
    }
    const eq = l.indexOf('=');
    const key = eq < 0 ? l.toLowerCase() : l.slice(0, eq).trim().toLowerCase();
    const value = eq < 0 ? '' : l.slice(eq + 1).trim();
    const problem = (message: string, hint?: string, code: ConfigProblem['code'] = 'EMPEROR_ERR_CONFIG_VALUE') => problems.push({ code, file, line, key, message, hint });
    if (section !== 'emperor') return problem('expected the key inside an [emperor] section, got it outside', 'put [emperor] on the first line', 'EMPEROR_ERR_CONFIG_SECTION');
    if (eq <= 0) return problem(`expected KEY = VALUE, got ${JSON.stringify(l)}`, undefined, 'EMPEROR_ERR_CONFIG_SYNTAX');
    if (!KNOWN.includes(key)) return problem(`expected one of ${KNOWN.join(', ')}, got ${JSON.stringify(key)}`, undefined, 'EMPEROR_ERR_CONFIG_UNKNOWN_KEY');
    if (!REPEATED.has(key)) {
      if (seen.has(key)) return problem('expected it once, got it a second time', 'keep one', 'EMPEROR_ERR_CONFIG_DUPLICATE_KEY');
      seen.add(key);
    }
    try {
      if (key === 'tyrant') settings.tyrant = parseBool(value);
      else if (key === 'dir' || key === 'run-dir' || key === 'log-dir' || key === 'cgroup-parent') settings[key] = value;
      else if (key === 'jail-builds') settings['jail-builds'] = parseInteger(value, 1, 1024, 'a number of jails built at once');
      else if (key === 'log-format') {
        const format = LOG_FORMATS.find((f) => f === value.toLowerCase());
        if (format === undefined) throw new Invalid(`one of ${LOG_FORMATS.join(', ')}`, { hint: 'auto: pretty on a terminal, journal lines under systemd, JSON otherwise' });
        settings['log-format'] = format;
      }
      else if (key === 'tyrant-vassals-per-uid') limits.vassalsPerUid = { value: parseInteger(value, 1, 100_000, 'a number of vassals'), from: where };
      else if (key === 'tyrant-min-uid') limits.tyrantMinUid = { value: parseInteger(value, 1, 4_294_967_294, 'a uid'), from: where };
      else if (key === 'tyrant-socket-owners') {
        // Each must exist now: a misspelt web server user would otherwise be dropped without a word.
        const names = value.split(',').map((n) => n.trim()).filter((n) => n !== '');
        for (const n of names) parseUser(n);
        limits.socketOwners = { names, from: where };
      }
      else if (key === 'subscription-servers') {
        const list = value.split(/[\s,]+/).filter((n) => n !== '');
        for (const s of list) parseSubscriptionServer(s);
        limits.subscriptionServers = { list, from: where };
      }
      else if (key === 'net-pool') {
        const pool = parseIpv4Net(value, 'an IPv4 network like 10.208.0.0/16, from /8 to /28 (one /30 per jail)');
        if (pool.bits < 8 || pool.bits > 28) throw new Invalid('an IPv4 network like 10.208.0.0/16, from /8 to /28 (one /30 per jail)');
        network.pool = pool;
        network.from.pool = where;
      } else if (key === 'net-uplink') {
        network.uplinks = value.split(',').map((n) => n.trim()).filter((n) => n !== '').map(parseIfName);
        network.from.uplinks = where;
      } else if (key === 'net-dns') {
        network.dns = value.split(',').map((n) => n.trim()).filter((n) => n !== '').map(parseIpv4);
        if (network.dns.length === 0 || network.dns.length > 3) throw new Invalid('one to three IPv4 resolvers, comma-separated, like 192.0.2.53, 192.0.2.54');
        network.from.dns = where;
      } else if (key === 'net-allow') network.allow.push(parseNetRule(value));
      else if (key === 'rlimit') {
        const r = parseRlimit(value);
        Object.assign(limits.rlimits[r.name], { default: r.value, defaultFrom: where });
      } else if (key === 'max-rlimit') {
        const r = parseRlimitMax(value);
        Object.assign(limits.rlimits[r.name], { max: r.max, maxFrom: where });
      } else {
        const base = (key.startsWith('max-') ? key.slice(4) : key) as keyof typeof BOUNDED_KEYS;
        const b = limits[BOUNDED_KEYS[base].limit] as Bound;
        if (key.startsWith('max-')) Object.assign(b, { max: PARSERS[base](value), maxFrom: where });
        else Object.assign(b, { default: PARSERS[base](value), defaultFrom: where });
      }
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      problem(`expected ${e.expected}, got ${e.found ?? show(value)}`, e.hint);
    }
  });
  // A default above its own ceiling would make every vassal that sets nothing invalid.
  for (const [key, { limit, show: fmt }] of Object.entries(BOUNDED_KEYS)) {
    const b = limits[limit] as Bound;
    if (b.default > b.max) problems.push({ code: 'EMPEROR_ERR_CONFIG_VALUE', file, key, message: `expected ${key} (${fmt(b.default)}, ${b.defaultFrom}) at most max-${key} (${fmt(b.max)}, ${b.maxFrom}), got more`, hint: `lower ${key} or raise max-${key}` });
  }
  for (const [name, b] of Object.entries(limits.rlimits)) {
    if (b.default[1] > b.max) problems.push({ code: 'EMPEROR_ERR_CONFIG_VALUE', file, key: 'rlimit', message: `expected the hard ${name} limit (${showRlimit(name as never, b.default[1])}, ${b.defaultFrom}) at most max-rlimit ${name} (${showRlimit(name as never, b.max)}, ${b.maxFrom}), got more`, hint: `lower rlimit = ${name}=... or raise max-rlimit = ${name}=...` });
  }
  if (problems.length > 0) throw new ConfigError(file, problems);
  return { settings, limits, network };
};
