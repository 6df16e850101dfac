import type { Readable } from 'node:stream';
import { EmperorError } from '@emperor/errors';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Stream } from 'node:stream';
import { helperArgsOnFd, helperPath, processEnd, sendHelperArgs } from './helper.js';
import type { Jail, JailExit } from './jail.js';
import { outputWord, type Output } from './shim-process.js';
import { helperError, readStatus } from './status.js';

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

/** How to start a process the jail's shim supervises ({@link Jail.start}). */
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
const userArgs = (jail: Jail, options: { cwd?: string | undefined; env?: Record<string, string> | undefined; rlimits?: Record<string, [number, number]> }): string[] => {
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
export const execArgs = (jail: Jail, options: ExecOptions): string[] => [
  ...jail.enterArgs(),
  ...userArgs(jail, options),
  ...(options.socket ? jail.socketArgs() : []),
  ...(options.pty ? ['--pty'] : []),
  ...(options.notify === undefined ? [] : ['--notify', options.notify]),
  '--', ...options.argv,
];

/** The words of a shim's `start` request (native/src/shim.c) for process `id`. */
export const startArgs = (jail: Jail, id: string, options: StartOptions): string[] => [
  'start', id,
  ...userArgs(jail, options),
  ...(options.socket ? ['--socket'] : []),
  ...(options.notify ? ['--notify', `.emperor-notify-${id}`] : []),
  '--out', outputWord(options.output),
  '--', ...options.argv,
];

/** How to start a login on a new pty of the jail ({@link Jail.openPty}). */
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
export const ptyArgs = (jail: Jail, id: string, options: PtyOptions): string[] => [
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

/** A process running inside a jail, through the `emperor-jail exec` helper that entered it. */
export class JailProcess {
  /** The helper's child process: its stdout/stderr are the process's. */
  readonly subprocess: ChildProcess;
  /**
   * Resolves when the process is running inside the jail: host pid, pid inside the jail, and whether it was
   * born in the jail's cgroup (cgroup v2, clone3 CLONE_INTO_CGROUP) rather than moved there (v1).
   */
  readonly started: Promise<Started>;
  /** Resolves when the process sends READY=1 on NOTIFY_SOCKET (only with `notify`; never otherwise). */
  readonly ready: Promise<void>;
  /** Resolves with the exit code (128+signal when killed, 125 when the jail could not be entered). */
  readonly exited: Promise<JailExit & { error: EmperorError | undefined }>;

  private constructor(subprocess: ChildProcess, started: JailProcess['started'], ready: Promise<void>, exited: JailProcess['exited']) {
    this.subprocess = subprocess;
    this.ready = ready;
    this.started = started;
    this.exited = exited;
  }

  /** Starts `options.argv` in `jail`. */
  static start(jail: Jail, options: ExecOptions): JailProcess {
    const [stdin, stdout, stderr] = options.stdio ?? ['ignore', 'pipe', 'pipe'];
    // The arguments (the vassal's env among them) on fd 4, never on the command line (`ps`).
    const sub = spawn(helperPath(), helperArgsOnFd('exec', 4), { stdio: [stdin, stdout, stderr, 'pipe', 'pipe'] });
    sendHelperArgs(sub.stdio[4] as NodeJS.WritableStream, ['--status-fd', '3', ...execArgs(jail, options)]);
    let error: EmperorError | undefined;
    let onStart: (v: Started) => void = () => {};
    let onFail: (e: Error) => void = () => {};
    const started = new Promise<Started>((resolve, reject) => {
      onStart = resolve;
      onFail = reject;
    });
    started.catch(() => {}); // callers that only await `exited` must not see an unhandled rejection
    let exit: JailExit = { code: null, signal: null };
    let onReady: () => void = () => {};
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    readStatus(sub.stdio[3] as Readable, (e) => {
      if (e.event === 'spawn') onStart({ pid: e.pid, jailPid: e.jail_pid, bornInCgroup: e.born_in_cgroup });
      else if (e.event === 'notify' && e.ready) onReady();
      else if (e.event === 'error') error ??= helperError(`jail ${jail.name}: exec ${options.argv[0] ?? ''}`, e);
      else if (e.event === 'exit') exit = { code: e.code, signal: e.signal };
    });
    const exited = processEnd(sub).then((r) => {
      if (exit.code === null && exit.signal === null) exit = { code: r.code, signal: null };
      onFail(error ?? new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail ${jail.name}: exec ${options.argv[0] ?? ''}: expected it to start, got exit ${r.code ?? r.signal}`));
      return { ...exit, error };
    });
    return new JailProcess(sub, started, ready, exited);
  }

  /** Sends a signal to the process's whole process group (through the helper, which forwards it). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.subprocess.kill(signal);
  }
}
