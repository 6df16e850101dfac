import { Cron } from 'croner';
import { parseBool } from './basic.js';
import { parseCommand } from './command.js';
import { parseDuration } from './duration.js';
import { Invalid, nonEmptyText } from './invalid.js';
import { parseKvList } from './kvlist.js';

/** uWSGI's numeric schedule: -1 any, -N every N, else an exact value (weekday 7 is Sunday). */
export interface UwsgiSchedule {
  kind: 'uwsgi';
  minute: number;
  hour: number;
  day: number;
  month: number;
  week: number;
}

/** A standard 5-field crontab expression (or @hourly, @daily, @weekly, @monthly, @yearly). */
export interface CrontabSchedule {
  kind: 'crontab';
  expression: string;
}

/** One cron job. */
export interface CronSpec {
  source: 'cron' | 'cron2' | 'unique-cron';
  schedule: UwsgiSchedule | CrontabSchedule;
  command: string[];
  /** Skip a run while the previous one is still going. */
  unique: boolean;
  /** Per-job timeout (uWSGI's harakiri): undefined uses `cron-harakiri`; 0 means none. */
  timeoutMs: number | undefined;
}

const FIELDS = [
  ['minute', 0, 59],
  ['hour', 0, 23],
  ['day', 1, 31],
  ['month', 1, 12],
  ['week', 0, 7],
] as const;

const NUMERIC = /^-?\d+$/;
const NICKNAMES = ['@yearly', '@annually', '@monthly', '@weekly', '@daily', '@hourly'];

const uwsgiField = (name: string, text: string, min: number, max: number): number => {
  const n = Number(text);
  // -1 is "any"; -N is "every N" and needs N within the field's range.
  if (n === -1 || (n < -1 && -n <= max) || (n >= min && n <= max)) return n;
  throw new Invalid(`${name} from ${min} to ${max}, -1 for any or -N for every N`, { found: JSON.stringify(text) });
};

const crontab = (expression: string): CrontabSchedule => {
  let next: Date | null | undefined;
  try {
    next = new Cron(expression, { paused: true }).nextRun();
  } catch (e) {
    const why = e instanceof Error ? e.message.replace(/^CronPattern: /, '') : String(e);
    throw new Invalid('a 5-field crontab schedule like */10 * * * *', { found: `"${expression}" (${why})` });
  }
  if (next === null || next === undefined) throw new Invalid('a schedule that can run', { found: `"${expression}", which never matches a date` });
  return { kind: 'crontab', expression };
};

/**
 * `cron` and `unique-cron`: `MIN HOUR DAY MONTH WEEKDAY COMMAND`. Five whole numbers select uWSGI's numeric
 * form; anything else (`*`, `*\/10`, `1-5`, `MON`, `@daily`) is a standard crontab expression.
 */
export const parseCron = (raw: unknown, source: 'cron' | 'unique-cron'): CronSpec => {
  const expected = 'MIN HOUR DAY MONTH WEEKDAY COMMAND, like */10 * * * * cmd or 0 -2 -1 -1 -1 cmd';
  const s = nonEmptyText(raw, expected);
  const tokens = s.split(/\s+/);
  const first = tokens[0] ?? '';
  let schedule: CronSpec['schedule'];
  let rest: string;
  if (NICKNAMES.includes(first.toLowerCase())) {
    schedule = crontab(first.toLowerCase());
    rest = s.slice(first.length).trim();
  } else {
    if (tokens.length < 6) throw new Invalid(expected, { hint: 'a schedule has five fields, then the command' });
    const fields = tokens.slice(0, 5);
    rest = s.replace(/^(\S+\s+){5}/, '').trim();
    if (fields.every((f) => NUMERIC.test(f))) {
      const [minute, hour, day, month, week] = FIELDS.map(([n, lo, hi], i) => uwsgiField(n, fields[i] ?? '', lo, hi)) as [number, number, number, number, number];
      schedule = { kind: 'uwsgi', minute, hour, day, month, week };
    } else {
      schedule = crontab(fields.join(' '));
    }
  }
  if (rest === '') throw new Invalid(expected, { found: 'a schedule with no command' });
  return { source, schedule, command: parseCommand(rest), unique: source === 'unique-cron', timeoutMs: undefined };
};

const KEYS2 = ['minute', 'hour', 'day', 'month', 'week', 'unique', 'harakiri', 'legion', 'command', 'cmd'] as const;

/**
 * `cron2 = [minute=..,hour=..,day=..,month=..,week=..,unique=1,harakiri=N] COMMAND`; a bare command runs
 * every minute. In json/yaml a mapping with `command` works too.
 */
export const parseCron2 = (raw: unknown): CronSpec => {
  const expected = 'key=value,... COMMAND, like minute=0,hour=3,unique=1 backup.sh';
  let kvRaw: unknown = '';
  let cmd: string | undefined;
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
    kvRaw = raw;
  } else {
    const s = nonEmptyText(raw, expected);
    const m = /^([A-Za-z_]+=\S*)\s+(.+)$/.exec(s);
    if (m !== null && m[1] !== undefined) {
      kvRaw = m[1];
      cmd = m[2];
    } else {
      cmd = s;
    }
  }
  const kv = parseKvList(kvRaw, KEYS2, expected);
  cmd = cmd ?? kv.get('command') ?? kv.get('cmd');
  if (cmd === undefined || cmd.trim() === '') throw new Invalid(expected, { found: 'no command' });
  if (kv.has('legion')) throw new Invalid(`${expected}, without legion=`, { found: 'legion=', hint: 'Legion clustering is not supported' });
  const [minute, hour, day, month, week] = FIELDS.map(([n, lo, hi]) => {
    const v = kv.get(n);
    if (v === undefined) return -1;
    if (!NUMERIC.test(v)) throw new Invalid(`${n}= from ${lo} to ${hi}, -1 for any or -N for every N`, { found: JSON.stringify(v) });
    return uwsgiField(n, v, lo, hi);
  }) as [number, number, number, number, number];
  const unique = kv.has('unique') ? parseBool(kv.get('unique') === '' ? '1' : kv.get('unique')) : false;
  const h = kv.get('harakiri');
  const timeoutMs = h === undefined ? undefined : parseDuration(h, 86_400_000);
  return { source: 'cron2', schedule: { kind: 'uwsgi', minute, hour, day, month, week }, command: parseCommand(cmd), unique, timeoutMs };
};
