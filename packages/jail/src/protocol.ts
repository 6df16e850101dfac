import { constants } from 'node:os';
import { createInterface } from 'node:readline';
import type { Readable, Stream } from 'node:stream';
import type { VassalSpec } from '@emperor/config';
import { EmperorError } from '@emperor/errors';

/*
 * The protocol between packages/jail and native/, in one module: what is said to the helper and to a jail's
 * shim, and what comes back.
 *   - the helper's arguments (`emperor-jail create|exec --args-fd N`): NUL-terminated words on a pipe;
 *   - requests to a shim (native/src/shim.c): a u32 length, then the same words: start, pty, signal,
 *     forget, state, stop;
 *   - events, on the helper's status fd and on a shim's connection: one JSON object per line.
 */

// --- words -------------------------------------------------------------------------------------------

/** The helper's arguments as it reads them from --args-fd (and the shim its requests): each one NUL-terminated. */
export const encodeArgs = (args: readonly string[]): Buffer => {
  for (const a of args) {
    if (a.includes('\0')) throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected helper arguments without NUL bytes, got one in ${JSON.stringify(a.slice(0, 40))}`);
  }
  return Buffer.from(args.map((a) => `${a}\0`).join(''));
};

/**
 * `emperor-jail COMMAND --args-fd N` with the arguments written to fd N (a pipe the helper reads to its
 * end), so nothing of them (the vassal's env, host paths, cgroups) shows in `ps` or in the jail. Returns
 * the helper argv and what the spawner must do with that fd: `stdio` gets one more 'pipe' at index `fd`.
 */
export const helperArgsOnFd = (command: 'create' | 'exec', fd: number): string[] => [command, '--args-fd', String(fd)];

/** Writes the arguments on the pipe `helperArgsOnFd` asked for, and closes it. */
export const sendHelperArgs = (pipe: NodeJS.WritableStream | null | undefined, args: readonly string[]): void => {
  if (pipe === null || pipe === undefined) throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', 'expected a pipe for the helper\'s arguments, got none');
  // EPIPE when the helper died before reading: its exit and status say why, not this write.
  (pipe as NodeJS.WritableStream & { on(e: 'error', f: () => void): void }).on('error', () => {});
  pipe.end(encodeArgs(args));
};

/** At most this many bytes of one request (the shim refuses more, native/src/shim.c). */
const MAX_REQUEST = 1 << 20;

/** One request as the shim reads it: a little-endian u32 length, then the words, each NUL-terminated. */
export const frameRequest = (words: readonly string[], max = MAX_REQUEST): Buffer => {
  const body = encodeArgs(words);
  if (body.length > max) throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected a shim request of at most ${max} bytes, got ${body.length}`, { hint: 'the vassal\'s env or command is too large' });
  const head = Buffer.alloc(4);
  head.writeUInt32LE(body.length);
  return Buffer.concat([head, body]);
};


// --- how a process is started ----------------------------------------------------------------------------

/** What the argument builders need of a jail (Jail is one; this module never imports it). */
export interface JailRef {
  readonly name: string;
  readonly spec: VassalSpec;
  /** HOME and the default cwd inside the jail. */
  readonly home: string;
  /** `emperor-jail exec`'s options that enter the jail. */
  enterArgs(): string[];
  /** `emperor-jail exec`'s options that give a process the listening socket the shim holds. */
  socketArgs(): string[];
}

/** Where a supervised process's stdout and stderr go. */
export type Output =
  /** A log file, written by the shim (it outlives the emperor) and rotated by size: PATH, PATH.1 ... PATH.KEEP. */
  | { log: string; gid: number; maxBytes?: number; keep?: number }
  /** To the emperor, as `output` events (dropped while no emperor is connected). */
  | 'emperor'
  | 'null';

/** The log rotation of the emperor's LogFile: 10 MiB a file, three kept. */
export const LOG_MAX_BYTES = 10 * 1024 * 1024;
export const LOG_KEEP = 3;

/** The shim's --out word for an output. */
export const outputWord = (o: Output | undefined): string =>
  o === undefined || o === 'null' ? 'null' : o === 'emperor' ? 'emperor' : `log:${o.maxBytes ?? LOG_MAX_BYTES}:${o.keep ?? LOG_KEEP}:${o.gid}:${o.log}`;

/** A signal name or number as its number (the shim takes numbers). */
export const signalNumber = (signal: NodeJS.Signals | number): number => (typeof signal === 'number' ? signal : constants.signals[signal]);

/** One of node's stdio forms for a child's fd. */
export type Stdio = 'pipe' | 'ignore' | 'inherit' | number | Stream | null | undefined;

/** How to run a process in a jail. */
export interface ExecOptions {
  argv: string[];
  /** Working directory inside the jail. Default: the vassal's chdir, else its home, else /. */
  cwd?: string | undefined;
  /** The environment on top of PATH and HOME. Default: the env of the spec the jail was built with. */
  env?: Record<string, string> | undefined;
  /** Give the process the vassal's listening socket as fd 3 (LISTEN_FDS=1). */
  socket?: boolean;
  /** Allocate a pty in the jail's own devpts and relay it to the helper's stdio. */
  pty?: boolean;
  /** stdio of the helper, which the process inherits (node's stdio forms). Default: ignore, pipe, pipe. */
  stdio?: [Stdio, Stdio, Stdio];
  /** Create an sd_notify socket at this path inside the jail and set NOTIFY_SOCKET (ready = notify). */
  notify?: string | undefined;
  /** Resource limits, e.g. { nofile: [1024, 4096] } (Infinity: unlimited). Default: the spec's. */
  rlimits?: Record<string, [number, number]>;
}

const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';

const limitText = (n: number): string => (n === Infinity ? 'unlimited' : String(n));

/** How to start a process the jail's shim supervises (`Jail.start`). */
export interface StartOptions {
  argv: string[];
  /** Working directory inside the jail. Default: the vassal's chdir, else its home, else /. */
  cwd?: string | undefined;
  /** The environment on top of PATH and HOME. Default: the env of the spec the jail was built with. */
  env?: Record<string, string> | undefined;
  /** Give the process the vassal's listening socket as fd 3 (LISTEN_FDS=1). */
  socket?: boolean;
  /** An sd_notify socket in the jail's /run and NOTIFY_SOCKET (ready = notify). */
  notify?: boolean;
  /** Resource limits, e.g. { nofile: [1024, 4096] } (Infinity: unlimited). Default: the spec's. */
  rlimits?: Record<string, [number, number]>;
  /** Where stdout and stderr go. Default: nowhere. */
  output?: Output;
}

/** The options every process of a jail gets, whoever starts it: who, where, which environment and limits. */
const userArgs = (jail: JailRef, options: { cwd?: string | undefined; env?: Record<string, string> | undefined; rlimits?: Record<string, [number, number]> }): string[] => {
  const spec = jail.spec;
  const env: Record<string, string> = { PATH: DEFAULT_PATH, HOME: jail.home, ...(options.env ?? spec.env) };
  const rlimits = options.rlimits ?? spec.rlimits;
  return [
    '--ns', spec.unshare.join(','),
    '--uid', String(spec.uid), '--gid', String(spec.gid),
    '--cwd', options.cwd ?? spec.chdir ?? jail.home,
    ...Object.entries(env).flatMap(([k, v]) => ['--env', `${k}=${v}`]),
    ...Object.entries(rlimits).flatMap(([k, [soft, hard]]) => ['--rlimit', `${k}=${limitText(soft)}:${limitText(hard)}`]),
  ];
};

/**
 * The `emperor-jail exec` arguments after `exec` (and its status fd) that start `options.argv` in `jail` as
 * the vassal user: the one place that knows them (the pty router runs the same on a pty).
 */
export const execArgs = (jail: JailRef, options: ExecOptions): string[] => [
  ...jail.enterArgs(),
  ...userArgs(jail, options),
  ...(options.socket ? jail.socketArgs() : []),
  ...(options.pty ? ['--pty'] : []),
  ...(options.notify === undefined ? [] : ['--notify', options.notify]),
  '--', ...options.argv,
];

/** The words of a shim's `start` request (native/src/shim.c) for process `id`. */
export const startArgs = (jail: JailRef, id: string, options: StartOptions): string[] => [
  'start', id,
  ...userArgs(jail, options),
  ...(options.socket ? ['--socket'] : []),
  ...(options.notify ? ['--notify', `.emperor-notify-${id}`] : []),
  '--out', outputWord(options.output),
  '--', ...options.argv,
];

/** How to start a login on a new pty of the jail (`Jail.openPty`). */
export interface PtyOptions {
  argv: string[];
  /** Working directory inside the jail. Default: the vassal's chdir, else its home, else /. */
  cwd?: string | undefined;
  /** The environment on top of PATH and HOME. Default: the env of the spec the jail was built with. */
  env?: Record<string, string> | undefined;
  /** The window size it starts with (1 to 1000 each). */
  rows: number;
  cols: number;
}

/** The words of a shim's `pty` request (native/src/shim.c) for process `id`. */
export const ptyArgs = (jail: JailRef, id: string, options: PtyOptions): string[] => [
  'pty', id, String(options.rows), String(options.cols),
  ...userArgs(jail, options),
  '--', ...options.argv,
];

/** A process that has started in a jail. */
export interface Started {
  pid: number;
  jailPid: number;
  bornInCgroup: boolean;
}


// --- events ----------------------------------------------------------------------------------------------

/** How a jail ended. */
export interface JailExit {
  code: number | null;
  signal: number | null;
}

/**
 * The helper's status fd: one JSON object per line. This is the one module that knows the protocol
 * (native/src/status.h writes it).
 */
export type StatusEvent =
  | { event: 'ready'; shim: number; init: number; init_start: number; shim_start: number; socket_fd: number; born_in_cgroup: boolean; control?: boolean; pty?: boolean }
  | { event: 'spawn'; id?: string; pid: number; jail_pid: number; start?: number; born_in_cgroup: boolean }
  | { event: 'notify'; id?: string; pid: number; ready: boolean }
  | { event: 'exit'; id?: string; pid?: number; code: number | null; signal: number | null }
  | { event: 'error'; id?: string; step?: string; errno: number; error: string; message: string }
  | { event: 'output'; id: string; fd: 1 | 2; data: string }
  | { event: 'state'; label: string; shim: number; shim_start: number; init: number; init_start: number; socket_fd: number; born_in_cgroup: boolean; pty?: boolean }
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
