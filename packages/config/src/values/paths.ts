import { posix } from 'node:path';
import { Invalid, nonEmptyText } from './invalid.js';

const hasDotDot = (p: string): boolean => p.split('/').includes('..');

/** An absolute path with no `..` and no NUL, normalized (`/a//b/` -> `/a/b`). */
export const parseAbsolutePath = (raw: unknown, what = 'an absolute path'): string => {
  const expected = `${what} (starting with /, without ..)`;
  const s = nonEmptyText(raw, expected);
  if (!s.startsWith('/') || hasDotDot(s) || s.includes('\0')) throw new Invalid(expected);
  const n = posix.normalize(s);
  return n.length > 1 && n.endsWith('/') ? n.slice(0, -1) : n;
};

/**
 * A socket path relative to the vassal's run dir. It may not be absolute nor climb out with `..`,
 * so a vassal file can never place a socket elsewhere on the host.
 */
/** Names the emperor itself uses in a vassal's run dir. */
export const RESERVED_RUN_NAMES = ['pty.sock', 'control.sock'];

export const parseRunDirPath = (raw: unknown): string => {
  const expected = 'a path relative to the vassal run dir, like app.sock or sockets/app.sock';
  const s = nonEmptyText(raw, expected);
  const hint = 'the socket is created in the vassal run dir, seen as /run inside the jail';
  if (s.startsWith('/') || hasDotDot(s) || s.includes('\0')) throw new Invalid(expected, { hint });
  const n = posix.normalize(s);
  if (n === '.' || n.endsWith('/')) throw new Invalid(expected, { hint });
  // sun_path holds 108 bytes with the run dir in front; keep room for /run/emperor/vassals/NAME/.
  if (Buffer.byteLength(n) > 40) throw new Invalid(`${expected}, at most 40 bytes long`);
  // The emperor's own names in the run dir: a socket there would stand in for the pty router or the
  // customer control socket (and catch another customer's ssh login), or for the notify sockets.
  const first = n.split('/')[0] ?? n;
  if (RESERVED_RUN_NAMES.includes(first) || first.startsWith('.emperor')) {
    throw new Invalid(`${expected}, other than the emperor's own ${RESERVED_RUN_NAMES.join(', ')} and .emperor-*`, { hint: 'choose another name, like app.sock' });
  }
  return n;
};

/** Places a vassal must never bind: the kernel's pseudo file systems and the host's root itself. */
const FORBIDDEN_HOST = ['/proc', '/sys', '/dev'];
const FORBIDDEN_JAIL = ['/proc', '/sys', '/dev', '/run', '/var/run'];
const under = (p: string, roots: readonly string[]): boolean =>
  roots.some((r) => p === r || p.startsWith(`${r}/`));

/** A bind mount. */
export interface BindSpec {
  host: string;
  jail: string;
  readOnly: boolean;
}

/** `HOST_PATH:JAIL_PATH` (or one path for both), both absolute. */
export const parseBind = (raw: unknown, readOnly: boolean): BindSpec => {
  const expected = 'HOST_PATH:JAIL_PATH, both absolute, like /srv/data/alice:/data';
  const s = nonEmptyText(raw, expected);
  const parts = s.split(':');
  if (parts.length > 2) throw new Invalid(expected, { hint: 'paths with ":" cannot be bound' });
  const host = parseAbsolutePath(parts[0], 'an absolute host path');
  const jail = parseAbsolutePath(parts[1] ?? parts[0], 'an absolute path inside the jail');
  if (host === '/' || under(host, FORBIDDEN_HOST)) {
    throw new Invalid(expected, { found: `host path ${host}`, hint: 'binding /, /proc, /sys or /dev would expose the host' });
  }
  if (jail === '/' || under(jail, FORBIDDEN_JAIL)) {
    throw new Invalid(expected, { found: `jail path ${jail}`, hint: 'the jail builds /, /proc, /sys, /dev and /run itself' });
  }
  return { host, jail, readOnly };
};
