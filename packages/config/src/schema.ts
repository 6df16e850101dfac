import { z } from 'zod';
import { parseBool, parseEnum, parseInteger, parseWordList } from './values/basic.js';
import { parseCommand } from './values/command.js';
import { parseCron, parseCron2 } from './values/cron.js';
import { parseAttachDaemon, parseAttachDaemon2, parseSmartAttachDaemon } from './values/daemon.js';
import { parseDuration } from './values/duration.js';
import { Invalid, scalarText, show } from './values/invalid.js';
import { parseMode } from './values/mode.js';
import { parseAbsolutePath, parseBind, parseRunDirPath } from './values/paths.js';
import { parseSignal } from './values/signal.js';
import { parseRlimit } from './values/rlimit.js';
import { parseSize } from './values/size.js';
import { parseNetRule, parseRate } from './values/net.js';
import { parseSubscribe2, parseSubscribeTo } from './values/subscription.js';
import { parseGroup, parseOwner, parseUser } from './values/users.js';

/**
 * A zod schema around one value parser. The parser throws {@link Invalid}; the issue carries what was
 * expected, what was found and a hint, so every format reports the same words.
 */
const field = <T>(parse: (raw: unknown) => T) =>
  z.unknown().transform((raw, ctx): T => {
    try {
      return parse(raw);
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      ctx.addIssue({ code: 'custom', message: e.expected, params: { found: e.found ?? show(raw), hint: e.hint } });
      return z.NEVER;
    }
  });

const NAMESPACES = ['fs', 'ipc', 'uts', 'net', 'pid'] as const;
/** uWSGI's aliases for the mount namespace. */
const NS_ALIASES: Record<string, (typeof NAMESPACES)[number]> = { mount: 'fs', mnt: 'fs', ns: 'fs' };

const parseUnshare = (raw: unknown): Array<(typeof NAMESPACES)[number]> => {
  const expected = `namespaces from ${NAMESPACES.join(',')}, comma-separated (fs and pid are required)`;
  const out = new Set<(typeof NAMESPACES)[number]>();
  for (const w of parseWordList(raw, expected)) {
    const ns = NS_ALIASES[w] ?? NAMESPACES.find((n) => n === w);
    if (ns === undefined) throw new Invalid(expected, { found: JSON.stringify(w) });
    out.add(ns);
  }
  // The jail's read-only root needs its own mount namespace, and its init needs its own pid namespace.
  for (const need of ['fs', 'pid'] as const) {
    if (!out.has(need)) throw new Invalid(expected, { found: `a list without ${need}`, hint: `${need === 'fs' ? 'the read-only root needs fs' : 'the jail init and process isolation need pid'}` });
  }
  return NAMESPACES.filter((n) => out.has(n));
};

const parseEnv = (raw: unknown): [string, string] => {
  const expected = 'KEY=VALUE with KEY made of letters, digits and _';
  const s = scalarText(raw, expected);
  const eq = s.indexOf('=');
  const k = eq < 0 ? s : s.slice(0, eq).trim();
  if (eq <= 0 || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(k) || s.includes('\0')) throw new Invalid(expected);
  return [k, s.slice(eq + 1)];
};

const parseCgroupOpt = (raw: unknown): { file: string; value: string } => {
  const expected = 'FILE=VALUE for a cgroup control file, like memory.high=200M';
  const s = scalarText(raw, expected);
  const m = /^([a-z0-9_]+\.[a-z0-9_.]+)\s*[=:]\s*(.+)$/.exec(s);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Invalid(expected);
  if (/^(cgroup\.|tasks$|notify_on_release$|release_agent$)/.test(m[1])) {
    throw new Invalid(expected, { found: JSON.stringify(m[1]), hint: 'membership and release files are managed by the emperor' });
  }
  return { file: m[1], value: m[2] };
};

const parseHostname = (raw: unknown): string => {
  const expected = 'a hostname of letters, digits, "-" and ".", at most 64 characters';
  const s = scalarText(raw, expected);
  if (s.length === 0 || s.length > 64 || !/^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(s)) {
    throw new Invalid(expected);
  }
  return s;
};

const parseRootfs = (raw: unknown): string => {
  const s = scalarText(raw, 'host, or an absolute path to a distro tree like /distros/bookworm');
  return s === 'host' ? 'host' : parseAbsolutePath(s, 'host, or an absolute path to a distro tree like /distros/bookworm');
};

const GiB = 1024 ** 3;
const TiB = 1024 ** 4;

/**
 * Every key of a vassal file: `multi` keys may repeat (each occurrence is one list item); the others may
 * appear once. `docs/vassal-file.md` documents exactly these keys (a test keeps them equal).
 */
export const KEYS = {
  command: { multi: false, schema: field(parseCommand) },
  chdir: { multi: false, schema: field((r) => parseAbsolutePath(r, 'an absolute path inside the jail')) },
  env: { multi: true, schema: field(parseEnv) },
  uid: { multi: false, schema: field(parseUser) },
  gid: { multi: false, schema: field(parseGroup) },
  socket: { multi: false, schema: field(parseRunDirPath) },
  'chown-socket': { multi: false, schema: field(parseOwner) },
  'chmod-socket': { multi: false, schema: field(parseMode) },
  ready: { multi: false, schema: field((r) => parseEnum(r, ['none', 'notify'] as const)) },
  'ready-timeout': { multi: false, schema: field((r) => parseDuration(r, 3_600_000)) },
  'stop-signal': { multi: false, schema: field(parseSignal) },
  'reload-signal': { multi: false, schema: field(parseSignal) },
  'stop-timeout': { multi: false, schema: field((r) => parseDuration(r, 3_600_000)) },
  rootfs: { multi: false, schema: field(parseRootfs) },
  hostname: { multi: false, schema: field(parseHostname) },
  unshare: { multi: false, schema: field(parseUnshare) },
  bind: { multi: true, schema: field((r) => parseBind(r, false)) },
  'bind-ro': { multi: true, schema: field((r) => parseBind(r, true)) },
  'tmp-size': { multi: false, schema: field((r) => parseSize(r, 1024 * 1024, 64 * GiB)) },
  'memory-limit': { multi: false, schema: field((r) => parseSize(r, 4 * 1024 * 1024, TiB)) },
  'cpu-limit': {
    multi: false,
    schema: field((r) => {
      const s = scalarText(r, 'a percent of one CPU like 50% or 200%');
      if (!/^\d+%?$/.test(s)) throw new Invalid('a percent of one CPU like 50% or 200%');
      return parseInteger(s.replace('%', ''), 1, 100_000, 'a percent of one CPU');
    }),
  },
  'cpu-weight': { multi: false, schema: field((r) => parseInteger(r, 1, 10_000, 'a weight')) },
  'pids-limit': { multi: false, schema: field((r) => parseInteger(r, 1, 4_194_304, 'a number of processes')) },
  'cgroup-opt': { multi: true, schema: field(parseCgroupOpt) },
  'run-dir-size': { multi: false, schema: field((r) => parseSize(r, 1024 * 1024, 64 * GiB)) },
  rlimit: { multi: true, schema: field(parseRlimit) },
  'attach-daemon': { multi: true, schema: field(parseAttachDaemon) },
  'attach-daemon2': { multi: true, schema: field(parseAttachDaemon2) },
  'smart-attach-daemon': { multi: true, schema: field(parseSmartAttachDaemon) },
  cron: { multi: true, schema: field((r) => parseCron(r, 'cron')) },
  cron2: { multi: true, schema: field(parseCron2) },
  'unique-cron': { multi: true, schema: field((r) => parseCron(r, 'unique-cron')) },
  'cron-harakiri': { multi: false, schema: field((r) => parseDuration(r, 86_400_000)) },
  'touch-reload': { multi: true, schema: field((r) => parseAbsolutePath(r, 'an absolute path inside the jail')) },
  pty: { multi: false, schema: field(parseBool) },
  'pty-sessions': { multi: false, schema: field((r) => parseInteger(r, 0, 1000, 'a number of sessions')) },
  net: { multi: false, schema: field((r) => parseEnum(r, ['none', 'nat'] as const)) },
  'net-allow': { multi: true, schema: field(parseNetRule) },
  'net-deny': { multi: true, schema: field(parseNetRule) },
  'net-rate': { multi: false, schema: field(parseRate) },
  'net-connections': { multi: false, schema: field((r) => parseInteger(r, 1, 1_000_000, 'a number of connections')) },
  'subscribe-to': { multi: true, schema: field(parseSubscribeTo) },
  subscribe2: { multi: true, schema: field(parseSubscribe2) },
} as const;

/** A vassal file key. */
export type VassalKey = keyof typeof KEYS;

/** Every key, in documentation order. */
export const vassalKeys = (): VassalKey[] => Object.keys(KEYS) as VassalKey[];

/** True for keys that may repeat. */
export const isMultiKey = (key: VassalKey): boolean => KEYS[key].multi;

type Shape = { [K in VassalKey]: z.ZodOptional<(typeof KEYS)[K]['schema'] | z.ZodArray<(typeof KEYS)[K]['schema']>> };

/** The one schema of a vassal file, for all three formats. */
export const vassalSchema = z.strictObject(
  Object.fromEntries(
    Object.entries(KEYS).map(([k, d]) => [k, (d.multi ? z.array(d.schema) : d.schema).optional()]),
  ) as unknown as Shape,
);

/** What the schema yields: each key's parsed value (a list for multi keys). */
export type VassalInput = {
  [K in VassalKey]?: (typeof KEYS)[K]['multi'] extends true ? Array<z.output<(typeof KEYS)[K]['schema']>> : z.output<(typeof KEYS)[K]['schema']>;
};
