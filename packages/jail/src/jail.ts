import { existsSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import type { Readable } from 'node:stream';
import type { VassalSpec } from '@emperor/config';
import { EmperorError, isEmperorError } from '@emperor/errors';
import { spawn, type ChildProcess } from 'node:child_process';
import type { Hierarchy } from './cgroup-detect.js';
import { JailCgroups, type CgroupUsage } from './cgroups.js';
import { helperArgsOnFd, helperPath, sendHelperArgs } from './helper.js';
import { mountArgs } from './layout.js';
import { JailProcess, type ExecOptions } from './jail-process.js';
import { helperError, readStatus, type StatusEvent } from './status.js';

/** Where and how a jail is built, beyond its vassal spec. */
export interface JailOptions {
  /** The vassal's run dir on the host (must exist): /run and /var/run in the jail. */
  runDir: string;
  /** The vassal's home on the host, bound read-write at the same path. Default: from the spec. */
  home?: string | undefined;
  /** The directory under the emperor's own cgroup that holds the jails. Default `emperor`. */
  cgroupParent?: string;
  /** The listening socket the shim creates and holds (path relative to the run dir, owner, mode). */
  socket?: { path: string; uid: number; gid: number; mode: number } | undefined;
  /** For tests: the cgroup hierarchies to use. */
  hierarchies?: Hierarchy[];
}

/** How a jail ended. */
export interface JailExit {
  code: number | null;
  signal: number | null;
}

/**
 * A running jail: the shim (host side), its init (PID 1 inside), and the cgroups. Processes are started
 * in it with {@link Jail.exec}; {@link Jail.stop} ends every one of them and removes the cgroups.
 */
export class Jail {
  readonly name: string;
  readonly spec: VassalSpec;
  readonly cgroups: JailCgroups;
  readonly shimPid: number;
  /** The vassal's home inside the jail (HOME and the default cwd), or `/` when it has none on the host. */
  readonly home: string;
  /** The passwd home that does not exist on the host (login(1) falls back to `/` too), if so. */
  readonly missingHome: string | undefined;
  readonly initPid: number;
  /** Resolves once the shim has exited and the cgroups are removed. */
  readonly exited: Promise<JailExit>;
  readonly #ready: Extract<StatusEvent, { event: 'ready' }>;
  readonly #shim: ChildProcess;
  readonly #stderr: () => string;
  #stopped = false;
  #cgroupError: string | undefined;

  private constructor(spec: VassalSpec, cgroups: JailCgroups, shim: ChildProcess, ready: Extract<StatusEvent, { event: 'ready' }>, exited: Promise<JailExit>, stderr: () => string, home: string | undefined) {
    this.#stderr = stderr;
    this.home = home ?? '/';
    this.missingHome = home === undefined ? spec.home : undefined;
    this.name = spec.name;
    this.spec = spec;
    this.cgroups = cgroups;
    this.#shim = shim;
    this.#ready = ready;
    this.shimPid = ready.shim;
    this.initPid = ready.init;
    this.exited = exited.then(async (e) => {
      this.#stopped = true;
      try {
        await this.cgroups.drainAndRemove();
      } catch (err) {
        // Never a rejection nobody waits for: the error stays readable in diagnostics().
        this.#cgroupError = isEmperorError(err) ? err.describe() : String(err);
      }
      return e;
    });
  }

  /** Builds the jail of a vassal and waits until its init is ready. */
  static async create(spec: VassalSpec, options: JailOptions): Promise<Jail> {
    if (spec.uid === undefined || spec.gid === undefined || spec.uid === 0 || spec.gid === 0) {
      throw new EmperorError('EMPEROR_ERR_JAIL_USER', `jail ${spec.name}: expected an unprivileged uid and gid, got ${spec.uid ?? 'none'}:${spec.gid ?? 'none'}`, { hint: 'set uid in the vassal file' });
    }
    const helper = helperPath();
    // A user without a home directory (useradd -M, /nonexistent) gets `/`, as login(1) does.
    const wanted = options.home ?? spec.home;
    const home = wanted !== undefined && existsSync(wanted) ? wanted : undefined;
    const mounts = mountArgs(spec, { runDir: options.runDir, home });
    const cgroups = JailCgroups.create(spec.name, options.cgroupParent ?? 'emperor', options.hierarchies);
    try {
      cgroups.apply({ memoryBytes: spec.memoryLimitBytes, cpuPercent: spec.cpuLimitPercent, cpuWeight: spec.cpuWeight, pids: spec.pidsLimit, raw: spec.cgroupOpts });
      const s = options.socket;
      if (s !== undefined && (isAbsolute(s.path) || s.path.split('/').includes('..'))) {
        throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${spec.name}: expected a socket path relative to the run dir, got ${s.path}`);
      }
      const args = [
        '--status-fd', '3', '--ns', spec.unshare.join(','), '--hostname', spec.hostname,
        ...cgroups.dirs.flatMap((d) => ['--cgroup', d]),
        ...mounts,
        ...(s === undefined ? [] : ['--listen', options.runDir, s.path, String(s.uid), String(s.gid), s.mode.toString(8)]),
      ];
      // node:child_process rather than execa here: a jail start spawns two helpers, and execa's stream
      // set-up costs about 2 ms per spawn on this machine (docs/benchmarks.md). The arguments go on fd 4.
      const shim = spawn(helper, helperArgsOnFd('create', 4), { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
      sendHelperArgs(shim.stdio[4] as NodeJS.WritableStream, args);
      const stderr = tail(shim.stderr);
      let error: EmperorError | undefined;
      let exit: JailExit = { code: null, signal: null };
      let onReady: (e: Extract<StatusEvent, { event: 'ready' }>) => void = () => {};
      const ready = new Promise<Extract<StatusEvent, { event: 'ready' }>>((resolve) => (onReady = resolve));
      readStatus(shim.stdio[3] as Readable, (e) => {
        if (e.event === 'ready') onReady(e);
        else if (e.event === 'error') error ??= helperError(`jail ${spec.name}`, e);
        else if (e.event === 'exit') exit = { code: e.code, signal: e.signal };
      });
      const done = processEnd(shim).then(() => exit);
      const first = await Promise.race([ready, done.then(() => undefined)]);
      if (first === undefined) {
        await done;
        throw error ?? new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail ${spec.name}: expected the helper to report ready, got an exit without a report${stderr() ? `: ${stderr()}` : ''}`);
      }
      return new Jail(spec, cgroups, shim, first, done, stderr, home);
    } catch (e) {
      // The failed init may still be leaving its cgroups: wait for them, so a retry finds nothing in the way.
      await cgroups.drainAndRemove().catch(() => undefined);
      throw e;
    }
  }

  /** True when the init was born in the jail's cgroup (cgroup v2, clone3 CLONE_INTO_CGROUP), not moved there. */
  get bornInCgroup(): boolean {
    return this.#ready.born_in_cgroup;
  }

  /** The last lines the shim wrote to stderr (for the emperor's log; empty when all is well). */
  diagnostics(): string {
    return [this.#stderr(), this.#cgroupError ?? ''].filter((x) => x !== '').join(' | ');
  }

  /** True until the jail has stopped. */
  get running(): boolean {
    return !this.#stopped;
  }

  /** The arguments `emperor-jail exec` needs to enter this jail. */
  enterArgs(): string[] {
    const r = this.#ready;
    return ['--init', String(r.init), String(r.init_start), '--ns', this.spec.unshare.join(','), ...this.cgroups.dirs.flatMap((d) => ['--cgroup', d])];
  }

  /** The arguments that hand the listening socket held by the shim to a process as fd 3. */
  socketArgs(): string[] {
    const r = this.#ready;
    if (r.socket_fd < 0) throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${this.name}: expected a listening socket, got none`, { hint: 'set socket in the vassal file' });
    return ['--socket-from', String(r.shim), String(r.shim_start), String(r.socket_fd)];
  }

  /** Starts a process inside the jail as the vassal user. */
  exec(options: ExecOptions): JailProcess {
    if (!this.running) throw new EmperorError('EMPEROR_ERR_JAIL_STOPPED', `jail ${this.name}: expected a running jail, got a stopped one`, { hint: 'start the vassal again' });
    return JailProcess.start(this, options);
  }

  /** Memory, cpu, pids and OOM kills of the whole jail. */
  usage(): CgroupUsage {
    return this.cgroups.usage();
  }

  /**
   * Ends the jail at once (shutdown past its deadline): cgroup.kill on v2, SIGKILL to its init (which takes
   * every process of its pid namespace with it) and to the shim. {@link exited} resolves as for a stop.
   */
  kill(): void {
    if (!this.running) return;
    this.cgroups.kill();
    for (const pid of [this.initPid, this.shimPid]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // ESRCH: already gone
      }
    }
  }

  /** Stops the jail: kills its init (and so every process in it), waits, removes the cgroups. */
  async stop(): Promise<JailExit> {
    if (this.running) this.#shim.kill('SIGTERM');
    return this.exited;
  }
}

/** Resolves when a helper has exited and its status fd is fully read (spawn errors count as an exit). */
export const processEnd = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve) => {
    let result: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let statusClosed = child.stdio[3] === null || child.stdio[3] === undefined;
    const finish = () => {
      if (result !== undefined && statusClosed) resolve(result);
    };
    child.stdio[3]?.on('close', () => {
      statusClosed = true;
      finish();
    });
    child.on('error', () => {
      result ??= { code: 125, signal: null };
      statusClosed = true;
      finish();
    });
    child.on('exit', (code, signal) => {
      result = { code, signal };
      finish();
    });
  });

/** Keeps the last few KB of a stream, for error messages. */
const tail = (stream: Readable | null): (() => string) => {
  let text = '';
  stream?.on('data', (d: Buffer) => {
    text = (text + d.toString()).slice(-4096);
  });
  return () => text.trim().split('\n').slice(-3).join(' | ');
};
