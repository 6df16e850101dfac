import type { Readable } from 'node:stream';
import { EmperorError } from '@emperor/errors';
import { spawn, type ChildProcess } from 'node:child_process';
import { helperPath, processEnd } from './helper.js';
import { execArgs, helperArgsOnFd, helperError, readStatus, sendHelperArgs, type ExecOptions, type JailExit, type JailRef, type Started } from './protocol.js';

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
  static start(jail: JailRef, options: ExecOptions): JailProcess {
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
