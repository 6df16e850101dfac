import { parseBool, parseInteger } from './basic.js';
import { parseCommand } from './command.js';
import { parseDuration } from './duration.js';
import { Invalid, nonEmptyText } from './invalid.js';
import { parseKvList } from './kvlist.js';
import { parseAbsolutePath } from './paths.js';
import { parseSignal } from './signal.js';

/** One attached daemon, whichever key declared it. */
export interface DaemonSpec {
  /** The key it came from. */
  source: 'attach-daemon' | 'attach-daemon2' | 'smart-attach-daemon';
  /** `smart`: the program daemonizes itself and is tracked through its pidfile. */
  kind: 'plain' | 'smart';
  command: string[];
  stopSignal: string | number;
  /** Undefined: a reload is a stop then a start. */
  reloadSignal: string | number | undefined;
  pidfile: string | undefined;
  /** Smart daemons: seconds between pidfile checks, and to wait for the pidfile after a start. */
  freqSeconds: number;
  chdir: string | undefined;
  /** When it dies, the whole vassal stops (uWSGI's attach-control-daemon). */
  control: boolean;
  /** Emperor forks it into the background and writes `pidfile` for it. */
  daemonize: boolean;
  /** Files whose change restarts it. */
  touch: string[];
  /** Keep stdin open (otherwise /dev/null). */
  stdin: boolean;
  maxThrottleMs: number | undefined;
  /** Send the reload signal on a vassal reload even for a smart daemon. */
  notifyPid: boolean;
}

const base = (source: DaemonSpec['source'], command: string[]): DaemonSpec => ({
  source,
  kind: 'plain',
  command,
  stopSignal: 'SIGTERM',
  reloadSignal: undefined,
  pidfile: undefined,
  freqSeconds: 10,
  chdir: undefined,
  control: false,
  daemonize: false,
  touch: [],
  stdin: false,
  maxThrottleMs: undefined,
  notifyPid: false,
});

/** `attach-daemon = COMMAND`. */
export const parseAttachDaemon = (raw: unknown): DaemonSpec => base('attach-daemon', parseCommand(raw));

const KEYS2 = [
  'command', 'cmd', 'exec', 'freq', 'pidfile', 'control', 'daemonize', 'daemon', 'touch', 'stopsignal',
  'stop_signal', 'reloadsignal', 'reload_signal', 'stdin', 'uid', 'gid', 'ns_pid', 'chdir', 'max_throttle',
  'notifypid',
] as const;

const sub = <T>(key: string, value: string, parse: (v: string) => T): T => {
  try {
    return parse(value);
  } catch (e) {
    if (e instanceof Invalid) throw new Invalid(`${key}=: ${e.expected}`, { found: e.found ?? JSON.stringify(value), ...(e.hint ? { hint: e.hint } : {}) });
    throw e;
  }
};

/** `attach-daemon2 = cmd=...,stopsignal=...,...` (uWSGI's key=value form; a mapping in json/yaml). */
export const parseAttachDaemon2 = (raw: unknown): DaemonSpec => {
  const kv = parseKvList(raw, KEYS2, 'a key=value list like cmd=celery worker,stopsignal=TERM');
  const cmd = kv.get('command') ?? kv.get('cmd') ?? kv.get('exec');
  if (cmd === undefined || cmd === '') throw new Invalid('a key=value list with cmd=', { found: 'no cmd', hint: 'add cmd=COMMAND' });
  for (const k of ['uid', 'gid'] as const) {
    if (kv.has(k)) throw new Invalid(`no ${k}= key`, { found: `${k}=${kv.get(k)}`, hint: 'every process of a vassal runs as the vassal user; set uid/gid on the vassal' });
  }
  if (kv.has('ns_pid')) throw new Invalid('no ns_pid= key', { found: 'ns_pid', hint: 'every vassal already has its own pid namespace' });
  const d = base('attach-daemon2', parseCommand(cmd));
  const get = (a: string, b?: string): string | undefined => kv.get(a) ?? (b === undefined ? undefined : kv.get(b));
  const stop = get('stopsignal', 'stop_signal');
  if (stop !== undefined) d.stopSignal = sub('stopsignal', stop, parseSignal);
  const reload = get('reloadsignal', 'reload_signal');
  if (reload !== undefined) d.reloadSignal = sub('reloadsignal', reload, parseSignal);
  const pidfile = get('pidfile');
  if (pidfile !== undefined) d.pidfile = sub('pidfile', pidfile, (v) => parseAbsolutePath(v, 'an absolute path inside the jail'));
  const freq = get('freq');
  if (freq !== undefined) d.freqSeconds = sub('freq', freq, (v) => parseInteger(v, 1, 3600, 'seconds'));
  const chdir = get('chdir');
  if (chdir !== undefined) d.chdir = sub('chdir', chdir, (v) => parseAbsolutePath(v, 'an absolute path inside the jail'));
  for (const [k, alias] of [['control', undefined], ['daemonize', 'daemon'], ['stdin', undefined], ['notifypid', undefined]] as const) {
    const v = get(k, alias);
    if (v === undefined) continue;
    const b = sub(k, v === '' ? '1' : v, parseBool);
    if (k === 'control') d.control = b;
    else if (k === 'daemonize') d.daemonize = b;
    else if (k === 'stdin') d.stdin = b;
    else d.notifyPid = b;
  }
  const touch = get('touch');
  if (touch !== undefined) {
    d.touch = touch.split(';').filter((t) => t !== '').map((t) => sub('touch', t, (v) => parseAbsolutePath(v, 'absolute paths separated by ;')));
  }
  const mt = get('max_throttle');
  if (mt !== undefined) d.maxThrottleMs = sub('max_throttle', mt, (v) => parseDuration(v, 3_600_000, 1));
  if (d.daemonize && d.pidfile === undefined) throw new Invalid('pidfile= with daemonize=', { found: 'daemonize without pidfile' });
  d.kind = d.pidfile !== undefined && !d.daemonize ? 'smart' : 'plain';
  return d;
};

/** `smart-attach-daemon = PIDFILE[,FREQ] COMMAND`: the command daemonizes itself and writes PIDFILE. */
export const parseSmartAttachDaemon = (raw: unknown): DaemonSpec => {
  const expected = 'PIDFILE[,FREQ] COMMAND, like /run/redis.pid redis-server /etc/redis.conf';
  const s = nonEmptyText(raw, expected);
  const m = /^(\S+)\s+(.+)$/.exec(s);
  if (m === null || m[1] === undefined || m[2] === undefined) throw new Invalid(expected);
  const [pid, freq, extra] = m[1].split(',');
  if (extra !== undefined) throw new Invalid(expected);
  const d = base('smart-attach-daemon', parseCommand(m[2]));
  d.kind = 'smart';
  d.pidfile = parseAbsolutePath(pid, 'an absolute pidfile path inside the jail');
  if (freq !== undefined) d.freqSeconds = parseInteger(freq, 1, 3600, 'a check interval in seconds');
  return d;
};
