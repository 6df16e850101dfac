import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { EmperorError } from '@emperor/errors';

/**
 * The helper's status fd: one JSON object per line. This is the one module that knows the protocol
 * (native/src/status.h writes it).
 */
export type StatusEvent =
  | { event: 'ready'; shim: number; init: number; init_start: number; shim_start: number; socket_fd: number; born_in_cgroup: boolean; control?: boolean }
  | { event: 'spawn'; id?: string; pid: number; jail_pid: number; start?: number; born_in_cgroup: boolean }
  | { event: 'notify'; id?: string; pid: number; ready: boolean }
  | { event: 'exit'; id?: string; pid?: number; code: number | null; signal: number | null }
  | { event: 'error'; id?: string; step?: string; errno: number; error: string; message: string }
  | { event: 'output'; id: string; fd: 1 | 2; data: string }
  | { event: 'state'; label: string; shim: number; shim_start: number; init: number; init_start: number; socket_fd: number; born_in_cgroup: boolean }
  | { event: 'proc'; id: string; pid: number; jail_pid: number; start: number; ready: boolean; exited: boolean; code: number; signal: number }
  | { event: 'state-end' }
  | { event: 'replaced' }
  | { event: 'pty'; id: string; pid: number };

const EVENTS = new Set(['ready', 'spawn', 'notify', 'exit', 'error', 'output', 'state', 'proc', 'state-end', 'replaced', 'pty']);

/** Parses one status line; a line that is not an event is reported, never thrown at the caller. */
export const parseStatusLine = (line: string): StatusEvent | undefined => {
  try {
    const v = JSON.parse(line) as { event?: unknown };
    return typeof v === 'object' && v !== null && EVENTS.has(String(v.event)) ? (v as StatusEvent) : undefined;
  } catch {
    return undefined;
  }
};

/** Calls `onEvent` for every event read from the stream, in order. */
export const readStatus = (stream: Readable, onEvent: (e: StatusEvent) => void): void => {
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  rl.on('error', () => {}); // a broken stream ends like a closed one: its owner sees the close
  rl.on('line', (line) => {
    const e = parseStatusLine(line);
    if (e !== undefined) onEvent(e);
  });
};

/** The error a helper's error event stands for: the step, the errno name and the message. */
export const helperError = (who: string, e: Extract<StatusEvent, { event: 'error' }>): EmperorError => {
  const errno = e.error === '' ? '' : ` (${e.error})`;
  return new EmperorError('EMPEROR_ERR_JAIL_SETUP', `${who}: ${e.step === undefined ? '' : `${e.step}: `}${e.message}${errno}`, { hint: hintFor(e) });
};

const hintFor = (e: Extract<StatusEvent, { event: 'error' }>): string | undefined => {
  switch (e.error) {
    case 'ENOENT':
      return 'a path it names does not exist: create it or fix the vassal file';
    case 'ELOOP':
      return 'a symlink is in the way; jails never follow symlinks in mount paths';
    case 'EROFS':
      return 'the destination is inside a read-only directory; bind it somewhere writable like /srv or /data';
    case 'ESRCH':
      return 'the jail is not running';
    case 'EAGAIN':
      return 'the jail is at its pids-limit (a process born in its cgroup counts at once): raise pids-limit, or find what forks without end';
    case 'EACCES':
    case 'EPERM':
      return 'the emperor must run as root';
    default:
      return undefined;
  }
};
