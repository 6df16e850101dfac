import { execFile } from 'node:child_process';
import { lchownSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { removeSocketFile, type Jail, type JailPty } from '@emperor/jail';
import { isEmperorError } from '@emperor/errors';
import { frame, FrameError, FrameReader, MAX_BODY, OUT_EXIT, OUT_STDERR, OUT_STDOUT, type Frame } from './frames.js';

/** Window sizes beyond this are refused (clamped): nothing real is that big, and it bounds allocations. */
const MAX_DIM = 1000;
/** Output the client has not read yet, beyond which the source is paused (backpressure). */
const OUT_HIGH_WATER = 64 * 1024;
/**
 * Output buffered for one client at most. With backpressure the buffer stays near one chunk; a client
 * that made it grow past this is closed (it can only get there through a bug, which must not cost memory).
 */
export const MAX_CLIENT_BUFFER = 1024 * 1024;
/** Input queued towards the pty that the shell has not read yet, beyond which the client is paused. */
const IN_HIGH_WATER = 256 * 1024;
const IN_LOW_WATER = 64 * 1024;
/** A frame that stays incomplete this long closes the session (a client that sends half a frame and stalls). */
export const FRAME_TIMEOUT_MS = 30_000;
/** Output the client has not read for this long (with the source paused) closes the session. */
export const STALL_MS = 60_000;

/** How long a login shell looked up is used before it is looked up again (chsh, a panel's change). */
const SHELL_TTL_MS = 30_000;
/** After the shell has exited, how long what it wrote last may take to be read before the pty is hung up. */
const DRAIN_MS = 250;

/** The user's login shell (getent: NSS, so LDAP users too), or /bin/sh for none, nologin or false. */
const lookUpShell = (uid: number): Promise<string> =>
  new Promise((resolve) => {
    execFile('getent', ['passwd', '--', String(uid)], { encoding: 'utf8', timeout: 5000 }, (err, out) => {
      const shell = err ? undefined : out.trim().split(':')[6];
      resolve(shell && shell.startsWith('/') && !shell.endsWith('nologin') && !shell.endsWith('false') ? shell : '/bin/sh');
    });
  });

/** Something the router reports (to the emperor's log). */
export type RouterEvent =
  | { event: 'session'; mode: 'pty' | 'command' }
  | { event: 'session-end'; code: number | null; signal: number | null }
  | { event: 'bad-client'; error: string }
  | { event: 'refused'; reason: string; alsoRefused: number };

/** Bounds of a router; see docs/security.md. */
export interface RouterOptions {
  /** Replaces the user's login shell (benchmarks run the same shell as their peer). */
  shell?: string[] | undefined;
  /** Concurrent sessions at most; further connections are told so and closed. Default 4. */
  maxSessions?: number;
  /**
   * Asks a budget shared by all of the customer's sockets for one more connection: a release function,
   * or undefined when the customer has too many already.
   */
  admit?: () => (() => void) | undefined;
  /** See {@link FRAME_TIMEOUT_MS} and {@link STALL_MS} (tests shorten them). */
  frameTimeoutMs?: number;
  stallMs?: number;
}

/**
 * A vassal's pty router: a unix socket in its run dir (owned by the vassal user, mode 0600). Every connection
 * gets a new login shell inside the jail on a pty of the jail's own devpts, started by the jail's shim,
 * which hands the pty's master to the router (one relay: client socket <-> pty); with the Emperor hello, a
 * command over plain pipes instead (`emperor-jail exec`).
 *
 * Nothing a client does makes the router buffer without bound: output stops being read from the pty or
 * the command while the client is not reading, input stops being read from the client while the shell is
 * not reading, sessions are capped, and a half-sent frame times out.
 */
export class PtyRouter {
  readonly path: string;
  readonly #jail: Jail;
  readonly #server: Server;
  readonly #sessions = new Set<() => void>();
  /** Every connection, in a session or not yet (or no longer): close() ends them all. */
  readonly #sockets = new Set<Socket>();
  readonly #onEvent: (e: RouterEvent) => void;
  readonly #options: RouterOptions;
  /** Refusals not reported yet: a flood of connections makes one report per interval, not one each. */
  #refusedQuiet = 0;
  #refusedAt = 0;
  #shell: { value: Promise<string>; at: number } | undefined;

  constructor(jail: Jail, path: string, onEvent: (e: RouterEvent) => void = () => {}, options: RouterOptions = {}) {
    this.#options = options;
    this.#jail = jail;
    this.path = path;
    this.#onEvent = onEvent;
    this.#server = createServer((sock) => this.#admit(sock));
  }

  async listen(): Promise<void> {
    removeSocketFile(this.path);
    const old = process.umask(0o177); // 0600 from the start
    try {
      await new Promise<void>((resolve, reject) => {
        this.#server.once('error', reject);
        this.#server.listen(this.path, () => resolve());
      });
    } finally {
      process.umask(old);
    }
    // lchown: never follows a symlink (the run dir's sticky bit already keeps the vassal from swapping it).
    lchownSync(this.path, this.#jail.spec.uid, this.#jail.spec.gid);
  }

  /** Ends every session and stops listening; never throws, whatever the customer left at the socket's path. */
  async close(): Promise<void> {
    for (const end of this.#sessions) end();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    removeSocketFile(this.path);
  }

  /** The vassal user's login shell, looked up at most every SHELL_TTL_MS (never blocking the event loop). */
  #loginShell(): Promise<string> {
    const now = Date.now();
    if (this.#shell === undefined || now - this.#shell.at > SHELL_TTL_MS) this.#shell = { value: lookUpShell(this.#jail.spec.uid), at: now };
    return this.#shell.value;
  }

  /** Sessions running now. */
  get sessions(): number {
    return this.#sessions.size;
  }

  #admit(sock: Socket): void {
    this.#sockets.add(sock);
    sock.once('close', () => this.#sockets.delete(sock));
    const max = this.#options.maxSessions ?? 4;
    const refuse = (reason: string) => {
      const now = Date.now();
      if (now - this.#refusedAt >= 10_000) {
        this.#onEvent({ event: 'refused', reason, alsoRefused: this.#refusedQuiet });
        this.#refusedAt = now;
        this.#refusedQuiet = 0;
      } else {
        this.#refusedQuiet++;
      }
      sock.on('error', () => {});
      sock.end(`emperor pty: ${reason}; closing\r\n`);
      sock.destroySoon();
    };
    if (this.#sessions.size >= max) return refuse(`too many sessions (${max} allowed for this vassal)`);
    const release = this.#options.admit === undefined ? () => {} : this.#options.admit();
    if (release === undefined) return refuse('too many connections from this customer');
    sock.once('close', release);
    this.#session(sock);
  }

  #session(sock: Socket): void {
    const reader = new FrameReader();
    let rows = 24;
    let cols = 80;
    let started: 'pty' | 'command' | undefined;
    let pty: JailPty | undefined;
    let cmd: ReturnType<Jail['exec']> | undefined;
    /** Input that came while the pty was being opened (the client is paused meanwhile: one chunk at most). */
    let early: Buffer[] | undefined;
    let eofEarly = false;
    /** A write to the pty or the command's stdin is waiting for its drain (the client stays paused). */
    let draining = false;
    let framed = false;
    let outPaused = false;
    /** The client is gone or was closed (end), or the session is over (finish). */
    let ended = false;
    let finished = false;
    let frameTimer: NodeJS.Timeout | undefined;
    let stallTimer: NodeJS.Timeout | undefined;
    /** True while the router itself stopped reading the client (backpressure): no frame timeout runs then. */
    let inPaused = false;
    const pauseInput = (pause: boolean) => {
      inPaused = pause;
      if (pause) {
        clearTimeout(frameTimer);
        sock.pause();
      } else {
        sock.resume();
        armFrameTimer();
      }
    };
    const armFrameTimer = () => {
      clearTimeout(frameTimer);
      const frameMs = this.#options.frameTimeoutMs ?? FRAME_TIMEOUT_MS;
      frameTimer = reader.pending === 0 || inPaused ? undefined : setTimeout(() => badClient(`a frame stayed incomplete for ${frameMs / 1000} s (${reader.pending} bytes)`), frameMs);
    };
    const stopTimers = () => {
      clearTimeout(frameTimer);
      clearTimeout(stallTimer);
    };
    const end = () => {
      ended = true;
      stopTimers();
      if (pty !== undefined) {
        pty.process.kill('SIGHUP');
        pty.close();
      }
      cmd?.kill('SIGHUP');
      sock.destroy();
      this.#sessions.delete(end);
    };
    this.#sessions.add(end);
    const badClient = (error: string) => {
      this.#onEvent({ event: 'bad-client', error });
      if (!sock.destroyed) sock.end(`\r\nemperor pty: ${error}; closing\r\n`);
      end();
    };
    const pauseOutput = (pause: boolean) => {
      outPaused = pause;
      clearTimeout(stallTimer);
      // Paused output is the client's to read; one that reads nothing for this long is gone or hostile.
      const stallMs = this.#options.stallMs ?? STALL_MS;
      stallTimer = pause ? setTimeout(() => badClient(`the client read no output for ${stallMs / 1000} s (${sock.writableLength} bytes waiting)`), stallMs) : undefined;
      for (const s of [cmd?.subprocess.stdout, cmd?.subprocess.stderr, pty?.terminal]) {
        if (pause) s?.pause();
        else s?.resume();
      }
    };
    const send = (channel: number, data: Buffer) => {
      if (sock.destroyed) return;
      if (!framed) sock.write(data);
      else for (let i = 0; i < data.length; i += MAX_BODY) sock.write(frame(channel, data.subarray(i, i + MAX_BODY)));
      if (sock.writableLength > MAX_CLIENT_BUFFER) return badClient(`the client did not read ${sock.writableLength} bytes of output`);
      // Stop reading the pty (or the command's pipes) until the client has read what it has: the shell then
      // blocks on its own writes, inside its jail and its memory limit, not in the emperor.
      if (sock.writableLength > OUT_HIGH_WATER && !outPaused) {
        pauseOutput(true);
        sock.once('drain', () => pauseOutput(false));
      }
    };
    const finish = (code: number | null, signal: number | null) => {
      if (finished) return;
      finished = ended = true;
      this.#onEvent({ event: 'session-end', code, signal });
      if (framed && !sock.destroyed) sock.write(frame(OUT_EXIT, Buffer.from(JSON.stringify({ code, signal }))));
      sock.end();
      stopTimers();
      pty?.close(); // hangs up what still holds the terminal (a background job): the session is over
      this.#sessions.delete(end);
    };
    const spec = this.#jail.spec;
    const env = { ...spec.env };
    const fail = (e: unknown) => {
      send(OUT_STDERR, Buffer.from(`emperor: ${isEmperorError(e) ? e.message : String(e)}\r\n`));
      finish(1, null);
    };
    const startPty = () => {
      started = 'pty';
      this.#onEvent({ event: 'session', mode: 'pty' });
      early = [];
      pauseInput(true);
      void (async () => {
        const shell = await this.#loginShell();
        const opened = await this.#jail.openPty({ argv: this.#options.shell ?? [shell, '-l'], env: { ...env, TERM: termOf ?? 'xterm', SHELL: shell }, cwd: this.#jail.home, rows, cols });
        return opened;
      })().then((opened) => {
        if (ended) {
          // The client went while the shell was starting: it gets the hangup a closed terminal gives.
          void opened.process.exited.then((exit) => finish(exit.code, exit.signal));
          opened.process.kill('SIGHUP');
          opened.close();
          return;
        }
        pty = opened;
        const t = opened.terminal;
        t.on('data', (d: Buffer) => send(OUT_STDOUT, d));
        if (outPaused) t.pause();
        // The shell's exit, then what it wrote last (up to DRAIN_MS, or the pty's end), then the session's.
        let closed = false;
        const gone = new Promise<void>((resolve) => t.once('close', () => {
          closed = true;
          resolve();
        }));
        void opened.process.exited.then(async (exit) => {
          if (!closed) await Promise.race([gone, new Promise((r) => setTimeout(r, DRAIN_MS))]);
          finish(exit.code, exit.signal);
        });
        const queued = early ?? [];
        early = undefined;
        for (const d of queued) input(d);
        if (eofEarly) t.write('\x04');
        if (!ended && !draining) pauseInput(false); // unless the replayed input already filled the pty
      }, (e: unknown) => (ended ? finish(1, null) : fail(e)));
    };
    let termOf: string | undefined;
    const startCommand = (command: string) => {
      started = 'command';
      this.#onEvent({ event: 'session', mode: 'command' });
      void this.#loginShell().then((shell) => {
        if (ended) return;
        try {
          cmd = this.#jail.exec({ argv: [shell, '-c', command], env, cwd: this.#jail.home, stdio: ['pipe', 'pipe', 'pipe'] });
        } catch (e) {
          return fail(e);
        }
        cmd.subprocess.stdout?.on('data', (d: Buffer) => send(OUT_STDOUT, d));
        cmd.subprocess.stderr?.on('data', (d: Buffer) => send(OUT_STDERR, d));
        cmd.subprocess.stdin?.on('error', () => {}); // EPIPE when the command stops reading: harmless
        if (outPaused) pauseOutput(true);
        const queued = early ?? [];
        early = undefined;
        for (const d of queued) input(d);
        if (eofEarly) cmd.subprocess.stdin?.end();
        void cmd.exited.then((e) => finish(e.code, e.signal));
        if (!ended && !draining) pauseInput(false); // unless the replayed input already filled the pty
      });
      early = [];
      pauseInput(true);
    };
    /** Input the shell or command has not taken yet: stop reading the client until it has. */
    const input = (data: Buffer) => {
      if (early !== undefined) {
        early.push(data);
        return;
      }
      const to = pty?.terminal ?? cmd?.subprocess.stdin;
      if (to && !to.destroyed && !to.write(data) && !draining) {
        draining = true;
        pauseInput(true);
        to.once('drain', () => {
          draining = false;
          pauseInput(false);
        });
      }
    };
    const apply = (f: Frame) => {
      if (f.kind === 'hello') {
        if (started) throw new FrameError('expected the hello frame first, got it mid-session');
        let hello: { command?: unknown; term?: unknown };
        try {
          hello = JSON.parse(f.body.toString('utf8')) as typeof hello;
        } catch {
          throw new FrameError('expected a JSON hello, got something else');
        }
        framed = true;
        termOf = typeof hello.term === 'string' && /^[A-Za-z0-9._+-]{1,64}$/.test(hello.term) ? hello.term : undefined;
        if (typeof hello.command === 'string' && hello.command !== '') return startCommand(hello.command);
        return startPty();
      }
      if (started === undefined) startPty();
      if (ended) return;
      if (f.kind === 'stdin') input(f.data);
      else if (f.kind === 'eof') {
        if (early !== undefined) eofEarly = true;
        else if (cmd) cmd.subprocess.stdin?.end();
        else pty?.terminal.write('\x04');
      } else if (f.kind === 'rows' || f.kind === 'cols') {
        if (f.value === 0) return; // 0 is "unknown" (a client without a terminal): keep the current size
        const v = Math.min(MAX_DIM, f.value);
        if (f.kind === 'rows') rows = v;
        else cols = v;
        pty?.resize(rows, cols);
      } else if (f.kind === 'signal') {
        if (pty) pty.process.kill(signalName(f.signal));
        else cmd?.kill(signalName(f.signal));
      }
    };
    // A uWSGI client sends no hello: its first frames (often the window size) must not start a shell
    // before the size is known, so the pty starts on the first stdin frame or after a short grace period.
    const grace = setTimeout(() => {
      if (started === undefined && !sock.destroyed) startPty();
    }, 50);
    sock.on('data', (chunk: Buffer) => {
      try {
        for (const f of reader.push(chunk)) {
          if (started === undefined && (f.kind === 'rows' || f.kind === 'cols')) {
            apply(f);
            continue;
          }
          clearTimeout(grace);
          apply(f);
        }
      } catch (e) {
        return badClient(e instanceof FrameError ? e.message : String(e));
      }
      // The reader holds at most one unfinished frame (64 KiB); one that never completes closes the session.
      armFrameTimer();
    });
    sock.on('close', () => {
      clearTimeout(grace);
      if (reader.pending > 0) this.#onEvent({ event: 'bad-client', error: `connection closed mid-frame (${reader.pending} bytes)` });
      end();
    });
    sock.on('error', () => end());
  }
}

const SIGNALS: Record<number, NodeJS.Signals> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 9: 'SIGKILL', 10: 'SIGUSR1', 12: 'SIGUSR2', 15: 'SIGTERM', 18: 'SIGCONT', 19: 'SIGSTOP', 20: 'SIGTSTP', 28: 'SIGWINCH' };
const signalName = (n: number): NodeJS.Signals => SIGNALS[n] ?? 'SIGTERM';
