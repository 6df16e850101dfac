import { execFileSync } from 'node:child_process';
import { lchownSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { helperPath, type Jail } from '@emperor/jail';
import { spawn as spawnPty, type IPty } from 'node-pty';
import { frame, FrameError, FrameReader, MAX_BODY, OUT_EXIT, OUT_STDERR, OUT_STDOUT, type Frame } from './frames.js';

/** Window sizes beyond this are refused (clamped): nothing real is that big, and it bounds allocations. */
const MAX_DIM = 1000;

const loginShell = (uid: number): string => {
  try {
    const shell = execFileSync('getent', ['passwd', String(uid)], { encoding: 'utf8' }).trim().split(':')[6];
    return shell && shell.startsWith('/') && !shell.endsWith('nologin') && !shell.endsWith('false') ? shell : '/bin/sh';
  } catch {
    return '/bin/sh';
  }
};

/** Something the router reports (to the emperor's log). */
export type RouterEvent = { event: 'session'; mode: 'pty' | 'command' } | { event: 'session-end'; code: number | null; signal: number | null } | { event: 'bad-client'; error: string };

/**
 * A vassal's pty router: a unix socket in its run dir (owned by the vassal user, mode 0600). Every connection
 * gets a new login shell inside the jail on a pty of the jail's own devpts (`emperor-jail exec --pty`, run on
 * a node-pty so window sizes travel); with the Emperor hello, a command over plain pipes instead.
 */
export class PtyRouter {
  readonly path: string;
  readonly #jail: Jail;
  readonly #server: Server;
  readonly #sessions = new Set<() => void>();
  readonly #onEvent: (e: RouterEvent) => void;

  readonly #shell: string[] | undefined;

  /** `shell` replaces the user's login shell (benchmarks run the same shell as their peer). */
  constructor(jail: Jail, path: string, onEvent: (e: RouterEvent) => void = () => {}, shell?: string[]) {
    this.#shell = shell;
    this.#jail = jail;
    this.path = path;
    this.#onEvent = onEvent;
    this.#server = createServer((sock) => this.#session(sock));
  }

  async listen(): Promise<void> {
    rmSync(this.path, { force: true });
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
    lchownSync(this.path, this.#jail.spec.uid as number, this.#jail.spec.gid as number);
  }

  async close(): Promise<void> {
    for (const end of this.#sessions) end();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    rmSync(this.path, { force: true });
  }

  #session(sock: Socket): void {
    const reader = new FrameReader();
    let rows = 24;
    let cols = 80;
    let started: 'pty' | 'command' | undefined;
    let pty: IPty | undefined;
    let cmd: ReturnType<Jail['exec']> | undefined;
    let framed = false;
    const end = () => {
      pty?.kill('SIGHUP');
      cmd?.kill('SIGHUP');
      sock.destroy();
    };
    this.#sessions.add(end);
    const send = (channel: number, data: Buffer) => {
      if (sock.destroyed) return;
      if (!framed) return void sock.write(data);
      for (let i = 0; i < data.length; i += MAX_BODY) sock.write(frameOut(channel, data.subarray(i, i + MAX_BODY)));
    };
    const finish = (code: number | null, signal: number | null) => {
      this.#onEvent({ event: 'session-end', code, signal });
      if (framed && !sock.destroyed) sock.write(frameOut(OUT_EXIT, Buffer.from(JSON.stringify({ code, signal }))));
      sock.end();
      this.#sessions.delete(end);
    };
    const spec = this.#jail.spec;
    const home = spec.home ?? '/';
    const env = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: home, ...spec.env };
    const startPty = () => {
      started = 'pty';
      this.#onEvent({ event: 'session', mode: 'pty' });
      const shell = loginShell(spec.uid as number);
      const args = ['exec', ...this.#jail.enterArgs(), '--uid', String(spec.uid), '--gid', String(spec.gid), '--cwd', home,
        ...Object.entries({ ...env, TERM: termOf ?? 'xterm', SHELL: shell }).flatMap(([k, v]) => ['--env', `${k}=${v}`]), '--pty', '--', ...(this.#shell ?? [shell, '-l'])];
      // encoding: null: bytes both ways, so UTF-8 (and anything else) passes through untouched.
      pty = spawnPty(helperPath(), args, { cols, rows, name: 'xterm', encoding: null, env: { PATH: process.env.PATH ?? '/usr/bin:/bin' } });
      pty.onData((d: string | Buffer) => send(OUT_STDOUT, typeof d === 'string' ? Buffer.from(d, 'utf8') : d));
      pty.onExit(({ exitCode, signal }) => {
        pty = undefined; // no more writes to a closed pty (node-pty would report EBADF)
        ptyGone = true;
        finish(signal ? null : exitCode, signal || null);
      });
    };
    let termOf: string | undefined;
    let ptyGone = false;
    const startCommand = (command: string) => {
      started = 'command';
      this.#onEvent({ event: 'session', mode: 'command' });
      const shell = loginShell(spec.uid as number);
      cmd = this.#jail.exec({ argv: [shell, '-c', command], env, cwd: home, stdio: ['pipe', 'pipe', 'pipe'] });
      cmd.subprocess.stdout?.on('data', (d: Buffer) => send(OUT_STDOUT, d));
      cmd.subprocess.stderr?.on('data', (d: Buffer) => send(OUT_STDERR, d));
      cmd.subprocess.stdin?.on('error', () => {}); // EPIPE when the command stops reading: harmless
      void cmd.exited.then((e) => finish(e.code, e.signal));
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
      if (ptyGone) return;
      if (f.kind === 'stdin') {
        if (pty) pty.write(f.data);
        else cmd?.subprocess.stdin?.write(f.data);
      } else if (f.kind === 'eof') {
        if (cmd) cmd.subprocess.stdin?.end();
        else pty?.write('\x04');
      } else if (f.kind === 'rows' || f.kind === 'cols') {
        if (f.value === 0) return; // 0 is "unknown" (a client without a terminal): keep the current size
        const v = Math.min(MAX_DIM, f.value);
        if (f.kind === 'rows') rows = v;
        else cols = v;
        pty?.resize(cols, rows);
      } else if (f.kind === 'signal') {
        if (pty) pty.kill(signalName(f.signal));
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
        const msg = e instanceof FrameError ? e.message : String(e);
        this.#onEvent({ event: 'bad-client', error: msg });
        if (!sock.destroyed) sock.end(`\r\nemperor pty: ${msg}; closing\r\n`);
        end();
        this.#sessions.delete(end);
      }
    });
    sock.on('close', () => {
      clearTimeout(grace);
      if (reader.pending > 0) this.#onEvent({ event: 'bad-client', error: `connection closed mid-frame (${reader.pending} bytes)` });
      end();
      this.#sessions.delete(end);
    });
    sock.on('error', () => end());
  }
}

const frameOut = (channel: number, data: Buffer): Buffer => frame(channel, data);

const SIGNALS: Record<number, NodeJS.Signals> = { 1: 'SIGHUP', 2: 'SIGINT', 3: 'SIGQUIT', 9: 'SIGKILL', 10: 'SIGUSR1', 12: 'SIGUSR2', 15: 'SIGTERM', 18: 'SIGCONT', 19: 'SIGSTOP', 20: 'SIGTSTP', 28: 'SIGWINCH' };
const signalName = (n: number): NodeJS.Signals => SIGNALS[n] ?? 'SIGTERM';
