import { fstatSync } from 'node:fs';
import { pino, transport, type Logger } from 'pino';

/** How the daemon writes its own log: pretty on a terminal, journal lines under systemd, JSON otherwise. */
export type LogFormat = 'pretty' | 'journal' | 'json';

/** The formats `--log-format` takes; `auto` picks one of the others from where stdout goes. */
export const LOG_FORMATS = ['auto', 'pretty', 'journal', 'json'] as const;

/**
 * `auto`: a terminal gets pino-pretty; a stdout that is journald's stream (systemd sets JOURNAL_STREAM to
 * its device:inode, systemd.exec(5)) gets journal lines; anything else (a pipe, a file, a collector) JSON.
 */
export const chooseLogFormat = (wanted: (typeof LOG_FORMATS)[number], env: NodeJS.ProcessEnv = process.env, fd = 1): LogFormat => {
  if (wanted !== 'auto') return wanted;
  if (fd === 1 && process.stdout.isTTY) return 'pretty';
  const stream = env.JOURNAL_STREAM?.split(':');
  if (stream?.length === 2) {
    try {
      const st = fstatSync(fd, { bigint: true });
      if (String(st.dev) === stream[0] && String(st.ino) === stream[1]) return 'journal';
    } catch {
      // EBADF: no stdout at all; JSON to nowhere is as good as anything
    }
  }
  return 'json';
};

/** pino's levels as syslog priorities (sd-daemon(3)'s <N> prefixes): trace/debug 7, info 6, warn 4, error 3, fatal 2. */
const priority = (level: number): number => (level >= 60 ? 2 : level >= 50 ? 3 : level >= 40 ? 4 : level >= 30 ? 6 : 7);

/** Fields every record has (or that the text already says): not repeated as key=value. */
const SKIP = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg', 'vassal', 'event', 'detail', 'err']);
/** The same for an event's detail: its own pid (the app's) is worth saying. */
const SKIP_DETAIL = new Set(['time', 'vassal', 'event']);

/** A value as it reads in a line: plain words bare, anything else (spaces, quotes, control bytes) JSON-quoted. */
const value = (v: unknown): string => {
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (typeof v === 'string') return /^[\w./:@+-]+$/.test(v) ? v : JSON.stringify(v);
  const text = JSON.stringify(v) ?? 'null';
  return text.length > 2000 ? `${text.slice(0, 2000)}...` : text;
};

/**
 * One pino record as one journal line: `<priority>alice: spawned (pid=123 state=running)`. journald reads
 * the prefix as PRIORITY (so `journalctl -u emperor -p warning` works and errors show red); every value a
 * customer could have written (a command, a problem text) is JSON-quoted, so no newline or escape of
 * theirs can forge a line of the emperor's. Errors keep their code and hint; a stack only for a bug.
 */
export const journalLine = (record: Record<string, unknown>): string => {
  const vassal = typeof record.vassal === 'string' ? record.vassal : undefined;
  let text = typeof record.msg === 'string' ? record.msg : '';
  if (vassal !== undefined && !text.startsWith(`${vassal}:`)) text = `${vassal}: ${text}`;
  const fields: string[] = [];
  const detail = record.detail !== null && typeof record.detail === 'object' ? (record.detail as Record<string, unknown>) : {};
  for (const [k, v] of Object.entries(detail)) if (!SKIP_DETAIL.has(k) && v !== undefined) fields.push(`${k}=${value(v)}`);
  for (const [k, v] of Object.entries(record)) if (!SKIP.has(k) && v !== undefined) fields.push(`${k}=${value(v)}`);
  const err = record.err as { message?: unknown; code?: unknown; hint?: unknown; stack?: unknown } | undefined;
  if (err !== undefined && err !== null) {
    text += `: ${typeof err.message === 'string' ? err.message : value(err)}`;
    if (typeof err.code === 'string') fields.push(`code=${value(err.code)}`);
    if (typeof err.hint === 'string') fields.push(`hint=${value(err.hint)}`);
    if (typeof err.stack === 'string' && !(typeof err.code === 'string' && err.code.startsWith('EMPEROR_'))) fields.push(`stack=${value(err.stack)}`);
  }
  return `<${priority(Number(record.level))}>${escapeControls(text)}${fields.length > 0 ? ` (${fields.join(' ')})` : ''}\n`;
};

/** Control bytes (a newline above all) as JSON escapes: one record is always one line. */
const escapeControls = (text: string): string => text.replace(/[\u0000-\u001f\u007f]/g, (c) => JSON.stringify(c).slice(1, -1));

/** The daemon's root logger in `format`, writing to stdout (`write` replaces it in tests). */
export const createLogger = (format: LogFormat, write?: (line: string) => void): Logger => {
  const options = { name: 'emperor', base: { pid: process.pid } };
  if (format === 'pretty') return pino(options, transport({ target: 'pino-pretty', options: { colorize: true } }));
  if (format === 'json') return write === undefined ? pino(options) : pino(options, { write });
  const out = write ?? ((l: string) => void process.stdout.write(l));
  return pino(options, {
    write: (line: string) => {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return out(`<6>${escapeControls(line.trimEnd())}\n`);
      }
      out(journalLine(record));
    },
  });
};
