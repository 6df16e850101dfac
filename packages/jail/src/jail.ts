import { chmodSync, closeSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { Readable } from 'node:stream';
import type { VassalSpec } from '@emperor/config';
import { EmperorError, isEmperorError } from '@emperor/errors';
import { spawn } from 'node:child_process';
import type { Hierarchy } from './cgroup-detect.js';
import { JailCgroups, limitsOf, type CgroupUsage } from './cgroups.js';
import { helperPath, processEnd } from './helper.js';
import { mountArgs } from './layout.js';
import { JailProcess } from './jail-process.js';
import { fdAddon, JailPty } from './pty.js';
import { ShimClient } from './shim-client.js';
import { ShimProcess } from './shim-process.js';
import { frameRequest, helperArgsOnFd, helperError, parseStatusLine, ptyArgs, readStatus, sendHelperArgs, startArgs, type ExecOptions, type JailExit, type PtyOptions, type StartOptions, type StatusEvent } from './protocol.js';

export type { JailExit } from './protocol.js';

/** Where and how a jail is built, beyond its vassal spec. */
export interface JailOptions {
  /** The vassal's run dir on the host (must exist): /run and /var/run in the jail. */
  runDir: string;
  /**
   * The root-only directory of the jails' control sockets (`NAME.sock`; made 0700 if missing). No jail
   * sees it: it is not under any run dir.
   */
  controlDir: string;
  /** The vassal's home on the host, bound read-write at the same path. Default: from the spec. */
  home?: string | undefined;
  /** The directory under the emperor's own cgroup that holds the jails. Default `emperor`. */
  cgroupParent?: string;
  /** The listening socket the shim creates and holds (path relative to the run dir, owner, mode). */
  socket?: { path: string; uid: number; gid: number; mode: number } | undefined;
  /** What the shim keeps for a later emperor (the emperor's spec hash and such); at most 2000 bytes. */
  label?: string;
  /** For tests: the cgroup hierarchies to use. */
  hierarchies?: Hierarchy[];
  /** net = nat: the resolv.conf bound over /etc/resolv.conf ({@link JailNetwork.prepare}). */
  resolvConf?: string;
}

/** What the shim says of its jail (its `ready` at creation, its `state` to a later emperor). */
interface ShimInfo {
  shim: number;
  shim_start: number;
  init: number;
  init_start: number;
  socket_fd: number;
  born_in_cgroup: boolean;
  label: string;
  /** The shim serves `pty` requests (false or missing: built by an emperor before issue 11's ptys). */
  pty?: boolean;
}

/** A running jail a new emperor found, with the processes its shim supervises. */
export interface AdoptedJail {
  jail: Jail;
  processes: ShimProcess[];
}

/**
 * A running jail: the shim (host side, in the jail's cgroups, its supervisor), its init (PID 1 inside),
 * and the cgroups. Supervised processes are started through the shim with {@link Jail.start}: they run on
 * when the emperor goes, and a new emperor takes the jail over with {@link Jail.adopt}. {@link Jail.exec}
 * starts a process through the exec helper instead (ptys, pipes to the emperor). {@link Jail.stop} ends
 * every one of them and removes the cgroups.
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
  /** The init's start time (clock ticks since boot): with its pid, names it against pid reuse. */
  get initStart(): number {
    return this.#info.init_start;
  }
  /** The shim's control socket. */
  readonly controlPath: string;
  /** What the jail was created with as its label. */
  readonly label: string;
  /** Resolves once the shim has exited and the cgroups are removed. */
  readonly exited: Promise<JailExit>;
  readonly #info: ShimInfo;
  #client!: ShimClient;
  #onGone: (e: JailExit) => void = () => {};
  #exit: JailExit | undefined;
  #detached = false;
  /** Another connection to the shim (a Jail.adopt elsewhere) took the jail over: this one has let go of it. */
  replaced = false;
  /** Times the connection to the shim broke while the shim lived on, and was made again. */
  reconnects = 0;
  /** Requests made while the connection is being made again (undefined when connected). */
  #pending: string[][] | undefined;
  readonly #processes = new Map<string, ShimProcess>();
  readonly #stderr: () => string;
  #stopped = false;
  #cgroupError: string | undefined;
  #seq = 0;

  private constructor(spec: VassalSpec, cgroups: JailCgroups, info: ShimInfo, client: ShimClient, home: string | undefined, stderr: () => string) {
    this.#stderr = stderr;
    this.home = home ?? '/';
    this.missingHome = home === undefined ? spec.home : undefined;
    this.name = spec.name;
    this.spec = spec;
    this.cgroups = cgroups;
    this.#info = info;
    this.controlPath = client.path;
    this.label = info.label;
    this.shimPid = info.shim;
    this.initPid = info.init;
    const gone = new Promise<JailExit>((resolve) => (this.#onGone = resolve));
    this.#attach(client);
    this.exited = gone.then(async (e) => {
      this.#stopped = true;
      for (const p of this.#processes.values()) p.lost();
      if (this.replaced) return e; // the jail runs on, another emperor's now: nothing of it is ours to remove
      try {
        await this.cgroups.drainAndRemove();
      } catch (err) {
        // Never a rejection nobody waits for: the error stays readable in diagnostics().
        this.#cgroupError = isEmperorError(err) ? err.describe() : String(err);
      }
      return e;
    });
  }

  /**
   * Listens to the shim on `client`. A connection can break while the shim lives on (the shim drops an
   * emperor that falls behind): then it connects again and asks for the state, which brings every exit
   * it missed. Only a shim that is gone ends the jail.
   */
  #attach(client: ShimClient): void {
    this.#client = client;
    client.on('event', (e) => {
      const id = (e as { id?: string }).id;
      if (id !== undefined) {
        const p = this.#processes.get(id);
        if (p !== undefined) p.handle(e);
        else if (e.event === 'proc' && e.exited) this.#send(['forget', id]); // its exit was dealt with already
        return;
      }
      if (e.event === 'exit') this.#exit = { code: e.code, signal: e.signal };
      if (e.event === 'replaced') this.replaced = true;
    });
    client.on('close', () => {
      if (this.#client !== client) return;
      // Another emperor took the shim over (one the run dir's lock did not stop): never take it back.
      if (this.#exit === undefined && !this.#detached && !this.replaced && shimAlive(this.#info)) {
        this.#pending = [];
        void this.#reconnect();
        return;
      }
      this.#onGone(this.#exit ?? { code: null, signal: null });
    });
  }

  async #reconnect(): Promise<void> {
    for (let attempt = 0; attempt < 50; attempt++) {
      await new Promise((r) => setTimeout(r, attempt === 0 ? 10 : 100));
      if (!shimAlive(this.#info)) break;
      try {
        const client = await ShimClient.connect(this.controlPath);
        this.reconnects++;
        const pending = this.#pending ?? [];
        this.#pending = undefined;
        this.#attach(client);
        // Every process's state: the exits missed while disconnected end their ShimProcess now. Then what
        // was asked meanwhile, in order.
        client.send(['state']);
        for (const words of pending) client.send(words);
        return;
      } catch {
        // the shim is busy or going: try again, or find it gone
      }
    }
    this.#pending = undefined;
    this.#onGone(this.#exit ?? { code: null, signal: null });
  }

  /**
   * Asks the shim for every process's state again: exits this side has not seen end their ShimProcess. (What
   * a reconnection does; also for an emperor that was paused long enough to doubt what it knows.)
   */
  resync(): void {
    this.#send(['state']);
  }

  /** To the shim; while reconnecting, kept (bounded) for the new connection. */
  #send(words: string[]): boolean {
    if (this.#pending === undefined) return this.#client.send(words);
    if (this.#pending.length >= MAX_PENDING) return false;
    this.#pending.push(words);
    return true;
  }

  /** Builds the jail of a vassal and waits until its shim serves it. */
  static async create(spec: VassalSpec, options: JailOptions): Promise<Jail> {
    if (!(spec.uid > 0 && spec.gid > 0)) {
      throw new EmperorError('EMPEROR_ERR_JAIL_USER', `jail ${spec.name}: expected an unprivileged uid and gid, got ${spec.uid ?? 'none'}:${spec.gid ?? 'none'}`, { hint: 'set uid in the vassal file' });
    }
    if ((options.label ?? '').length > 2000) throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${spec.name}: expected a label of at most 2000 bytes, got ${options.label?.length}`);
    const helper = helperPath();
    // A user without a home directory (useradd -M, /nonexistent) gets `/`, as login(1) does.
    const wanted = options.home ?? spec.home;
    const home = wanted !== undefined && existsSync(wanted) ? wanted : undefined;
    const mounts = mountArgs(spec, { runDir: options.runDir, home, resolvConf: options.resolvConf });
    const controlPath = controlPathOf(options.controlDir, spec.name);
    const cgroups = JailCgroups.create(spec.name, options.cgroupParent ?? 'emperor', options.hierarchies);
    try {
      cgroups.apply(limitsOf(spec));
      const s = options.socket;
      if (s !== undefined && (isAbsolute(s.path) || s.path.split('/').includes('..'))) {
        throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${spec.name}: expected a socket path relative to the run dir, got ${s.path}`);
      }
      const args = [
        '--status-fd', '3', '--ns', spec.unshare.join(','), '--hostname', spec.hostname,
        '--control', controlPath, '--label', options.label ?? '', '--run-dir', options.runDir,
        '--pty-max', String(ptyMaxOf(spec)),
        ...cgroups.dirs.flatMap((d) => ['--cgroup', d]),
        ...mounts,
        ...(s === undefined ? [] : ['--listen', options.runDir, s.path, String(s.uid), String(s.gid), s.mode.toString(8)]),
      ];
      // node:child_process rather than execa here: execa's stream set-up costs about 2 ms per spawn on this
      // machine (docs/benchmarks.md). The arguments go on fd 4.
      const shim = spawn(helper, helperArgsOnFd('create', 4), { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
      sendHelperArgs(shim.stdio[4] as NodeJS.WritableStream, args);
      const stderr = tail(shim.stderr);
      let error: EmperorError | undefined;
      let onReady: (e: Extract<StatusEvent, { event: 'ready' }>) => void = () => {};
      const ready = new Promise<Extract<StatusEvent, { event: 'ready' }>>((resolve) => (onReady = resolve));
      readStatus(shim.stdio[3] as Readable, (e) => {
        if (e.event === 'ready') onReady(e);
        else if (e.event === 'error') error ??= helperError(`jail ${spec.name}`, e);
      });
      const first = await Promise.race([ready, processEnd(shim).then(() => undefined)]);
      if (first === undefined) {
        throw error ?? new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail ${spec.name}: expected the helper to report ready, got an exit without a report${stderr() ? `: ${stderr()}` : ''}`);
      }
      // The shim no longer needs us: it is reaped whenever it ends, and talks on its control socket.
      shim.unref();
      const client = await ShimClient.connect(controlPath);
      // A connection is the emperor's from its first request on (native/src/shim.c): make one now.
      client.send(['state']);
      return new Jail(spec, cgroups, { ...first, label: options.label ?? '' }, client, home, stderr);
    } catch (e) {
      // The failed init may still be leaving its cgroups: wait for them, so a retry finds nothing in the way.
      await cgroups.drainAndRemove().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Takes over the running jail of `spec.name` (its shim's control socket in `options.controlDir`): the
   * shim says what it runs, and every process it supervises comes back as a {@link ShimProcess}. Undefined
   * when no shim answers there (none, a dead one's socket, or one that says nothing within 60 s).
   */
  static async adopt(spec: VassalSpec, options: Omit<JailOptions, 'socket' | 'label'> & { stateTimeoutMs?: number }): Promise<AdoptedJail | undefined> {
    const controlPath = controlPathOf(options.controlDir, spec.name);
    if (!existsSync(controlPath)) return undefined;
    let client: ShimClient;
    try {
      client = await ShimClient.connect(controlPath);
    } catch {
      return undefined;
    }
    const procs: Array<Extract<StatusEvent, { event: 'proc' }>> = [];
    const state = await new Promise<Extract<StatusEvent, { event: 'state' }> | undefined>((resolve) => {
      let info: Extract<StatusEvent, { event: 'state' }> | undefined;
      const on = (e: StatusEvent) => {
        if (e.event === 'state') info = e;
        else if (e.event === 'proc') procs.push(e);
        else if (e.event === 'state-end') done(info);
      };
      const done = (v: Extract<StatusEvent, { event: 'state' }> | undefined) => {
        clearTimeout(timer);
        client.off('event', on);
        client.off('close', closed);
        resolve(v);
      };
      const closed = () => done(undefined);
      // A shim that accepts but does not answer (stopped, or wedged) is not waited for without end. The
      // timer gives up only after one more pass over I/O (setImmediate runs after the poll phase): an event
      // loop that was busy past the timeout (a slow machine starting hundreds of vassals) reads an answer that
      // came meanwhile before it concludes there was none.
      const timer = setTimeout(() => setImmediate(closed), options.stateTimeoutMs ?? ADOPT_TIMEOUT_MS);
      client.on('event', on);
      client.on('close', closed);
      client.send(['state']);
    });
    if (state === undefined) {
      client.close();
      return undefined;
    }
    const wanted = options.home ?? spec.home;
    const home = wanted !== undefined && existsSync(wanted) ? wanted : undefined;
    const cgroups = JailCgroups.existing(spec.name, options.cgroupParent ?? 'emperor', options.hierarchies);
    const jail = new Jail(spec, cgroups, state, client, home, () => '');
    const processes = procs.map((p) => {
      const sp = jail.#track(p.id);
      sp.handle(p);
      return sp;
    });
    jail.#seq = Math.max(0, ...procs.map((p) => Number(/-(\d+)$/.exec(p.id)?.[1] ?? 0)));
    return { jail, processes };
  }

  /** True when the init was born in the jail's cgroup (cgroup v2, clone3 CLONE_INTO_CGROUP), not moved there. */
  get bornInCgroup(): boolean {
    return this.#info.born_in_cgroup;
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
    const r = this.#info;
    return ['--init', String(r.init), String(r.init_start), '--ns', this.spec.unshare.join(','), ...this.cgroups.dirs.flatMap((d) => ['--cgroup', d])];
  }

  /** The arguments that hand the listening socket held by the shim to a process as fd 3. */
  socketArgs(): string[] {
    const r = this.#info;
    if (r.socket_fd < 0) throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${this.name}: expected a listening socket, got none`, { hint: 'set socket in the vassal file' });
    return ['--socket-from', String(r.shim), String(r.shim_start), String(r.socket_fd)];
  }

  #track(id: string): ShimProcess {
    const p = new ShimProcess((words) => this.#send(words), id, `jail ${this.name}: ${id}`);
    this.#processes.set(id, p);
    void p.exited.then(() => this.#processes.delete(id));
    return p;
  }

  /**
   * Starts a process the shim supervises (the app, a daemon, a cron job): as the vassal user, in every
   * namespace and cgroup of the jail, its output to a log file the shim writes (or to the emperor).
   * `name` prefixes its id in the shim (`app`, `daemon-0`, ...).
   */
  start(name: string, options: StartOptions): ShimProcess {
    this.#assertRunning();
    const id = `${name}-${++this.#seq}`;
    const p = this.#track(id);
    if (!this.#send(startArgs(this, id, options))) p.lost();
    return p;
  }

  /**
   * Starts `options.argv` on a new pty of the jail's devpts, through the shim (as the vassal user, like
   * {@link start}), and takes the pty's master from it: the caller reads and writes the terminal itself.
   * Rejects with the shim's reason when it could not start (and leaves nothing running then).
   */
  async openPty(options: PtyOptions): Promise<JailPty> {
    this.#assertRunning();
    // A shim of an older emperor would take the pty connection for a new emperor's (and drop ours).
    if (this.#info.pty !== true) throw new EmperorError('EMPEROR_ERR_JAIL_SETUP', `jail ${this.name}: a pty: expected a shim that opens ptys, got one built by an older emperor`, { hint: `restart the vassal (emperor restart ${this.name}) to give it a jail of this version` });
    const id = `pty-${++this.#seq}`;
    const p = this.#track(id);
    let reply: { fd: number; line: string };
    try {
      reply = await fdAddon().requestFd(this.controlPath, frameRequest(ptyArgs(this, id, options), PTY_REQUEST_MAX), PTY_TIMEOUT_MS);
    } catch (e) {
      p.lost();
      throw isEmperorError(e) ? e : new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail ${this.name}: a pty: expected the shim to answer, got ${(e as NodeJS.ErrnoException).code ?? String(e)}`, { hint: 'the jail is gone or its shim is busy; try again', cause: e });
    }
    const e = parseStatusLine(reply.line.trim());
    if (e?.event === 'pty' && reply.fd >= 0) {
      if (p.pid === undefined) p.pid = e.pid;
      return new JailPty(p, reply.fd);
    }
    if (reply.fd >= 0) closeSync(reply.fd);
    const error = e?.event === 'error' ? helperError(`jail ${this.name}: a pty`, e) : new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail ${this.name}: a pty: expected the pty's master from the shim, got ${JSON.stringify(reply.line.slice(0, 200))}`);
    p.fail(error);
    throw error;
  }

  /** Starts a process in the jail through the exec helper (pipes to the emperor) as the vassal user. */
  exec(options: ExecOptions): JailProcess {
    this.#assertRunning();
    return JailProcess.start(this, options);
  }

  #assertRunning(): void {
    if (!this.running) throw new EmperorError('EMPEROR_ERR_JAIL_STOPPED', `jail ${this.name}: expected a running jail, got a stopped one`, { hint: 'start the vassal again' });
  }

  /** Memory, cpu, pids and OOM kills of the whole jail. */
  usage(): CgroupUsage {
    return this.cgroups.usage();
  }

  /** Lets the jail run on without us (the emperor hands it over to the next one): closes the connection. */
  detach(): void {
    this.#detached = true;
    this.#client.removeAllListeners();
    this.#client.close();
  }

  /**
   * Ends the jail at once (shutdown past its deadline): cgroup.kill on v2 (the shim is in the cgroup too),
   * SIGKILL to its init (which takes every process of its pid namespace with it) and to the shim.
   * {@link exited} resolves as for a stop.
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

  /** Stops the jail: its shim kills the init (and so every process in it); then the cgroups go. */
  async stop(): Promise<JailExit> {
    if (this.running && !this.#send(['stop'])) this.kill();
    return this.exited;
  }
}

/**
 * The ptys a jail's devpts may hold at once: its pty sessions, and as many again plus 16 for what the
 * customer opens in them (tmux, screen, script). docs/security.md.
 */
export const ptyMaxOf = (spec: VassalSpec): number => Math.min(4096, 2 * spec.ptySessions + 16);

/** How long a shim may take to tell a new emperor its state (generous: it answers at once when it can). */
const ADOPT_TIMEOUT_MS = 60_000;

/** A pty request's size at most (native/src/shim.c MAX_PTY_REQUEST), and how long the shim may take to answer. */
const PTY_REQUEST_MAX = 256 * 1024;
const PTY_TIMEOUT_MS = 10_000;

/** Requests kept while reconnecting to a shim: more means something is wrong with the emperor itself. */
const MAX_PENDING = 1000;

/** The shim is still the process it was (same pid, same start time: not a reused pid). */
const shimAlive = (info: ShimInfo): boolean => {
  try {
    const stat = readFileSync(`/proc/${info.shim}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]) === info.shim_start;
  } catch {
    return false;
  }
};

/** The control socket of a jail named `name`. */
export const controlPathOf = (dir: string, name: string): string => {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  return join(dir, `${name}.sock`);
};

/** Keeps the last few KB of a stream, for error messages. */
const tail = (stream: Readable | null): (() => string) => {
  let text = '';
  stream?.on('data', (d: Buffer) => {
    text = (text + d.toString()).slice(-4096);
  });
  return () => text.trim().split('\n').slice(-3).join(' | ');
};
