import { lstatSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EmperorError } from '@emperor/errors';
import { COLS, frame, HELLO, OUT_EXIT, OUT_STDERR, OutputReader, ROWS, STDIN_EOF, stdinFrames } from './frames.js';

/** Group or others may write: not a directory whose contents only root decides. */
const othersWrite = (mode: number): boolean => (mode & 0o022) !== 0;

/**
 * The pty socket of the calling user's vassal, as the emperor lists it: `RUN/logins/UID/NAME`, symlinks
 * only root makes, in a directory only root writes (packages/emperor/src/logins.ts). Nothing else is looked
 * at: a socket or symlink another customer made anywhere cannot redirect or block this login.
 */
export const findPtySocket = (runDir: string, uid: number, name?: string): string => {
  const logins = join(runDir, 'logins');
  const top = lstatSync(logins, { throwIfNoEntry: false });
  if (top === undefined) throw new EmperorError('EMPEROR_ERR_CONTROL', `expected the emperor's login directory at ${logins}, got none`, { hint: 'is the emperor running?' });
  if (!top.isDirectory() || top.uid !== 0 || othersWrite(top.mode)) {
    throw new EmperorError('EMPEROR_ERR_CONTROL', `expected ${logins} to be a directory only root writes, got uid ${top.uid} mode ${(top.mode & 0o7777).toString(8)}`, { hint: 'ask your host: the run dir is not the emperor\'s' });
  }
  const dir = join(logins, String(uid));
  const st = lstatSync(dir, { throwIfNoEntry: false });
  const none = () => new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected a vassal running as uid ${uid}, got none`, { hint: 'ask your host to start your app (pty = on)' });
  if (st === undefined) throw none();
  if (!st.isDirectory() || (st.uid !== uid && st.uid !== 0)) throw new EmperorError('EMPEROR_ERR_CONTROL', `expected ${dir} to be your login directory, got something else`, { hint: 'ask your host' });
  // Only root's symlinks count: an entry of anyone else is not the emperor's (the uid could chmod its own directory).
  const mine = readdirSync(dir).filter((n) => {
    const e = lstatSync(join(dir, n), { throwIfNoEntry: false });
    return e?.isSymbolicLink() === true && e.uid === 0;
  }).sort();
  if (name !== undefined) {
    if (!mine.includes(name)) throw new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected a vassal of yours named ${name}, got none`, { hint: mine.length ? `yours: ${mine.join(', ')}` : 'you have no vassal with a pty' });
    return join(dir, name);
  }
  if (mine.length === 0) throw none();
  if (mine.length > 1) throw new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected one vassal of yours, got ${mine.length}: ${mine.join(', ')}`, { hint: 'set EMPEROR_VASSAL to the one to enter' });
  return join(dir, mine[0] as string);
};

/** Terminal and stdio the client works with (the process's, or a test's). */
export interface ClientIo {
  stdin: NodeJS.ReadStream | NodeJS.ReadableStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * `emperor pty`: the ForceCommand client. With a command (ssh host cmd, scp, rsync, git), runs it in the
 * jail over plain pipes; otherwise a login shell on a pty, the local terminal in raw mode, resized on
 * SIGWINCH. Resolves with the remote exit code (128+signal when killed).
 */
export const runClient = (socketPath: string, command: string | undefined, io: ClientIo = process): Promise<number> =>
  new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    const tty = (io.stdin as NodeJS.ReadStream).isTTY === true && command === undefined;
    const out = new OutputReader();
    let code: number | undefined;
    const size = () => {
      const s = io.stdout as NodeJS.WriteStream;
      if (s.isTTY) sock.write(Buffer.concat([frame(ROWS, undefined, s.rows), frame(COLS, undefined, s.columns)]));
    };
    const onWinch = () => size();
    const cleanup = () => {
      if (tty) (io.stdin as NodeJS.ReadStream).setRawMode(false);
      process.off('SIGWINCH', onWinch);
      io.stdin.pause();
    };
    sock.on('connect', () => {
      sock.write(frame(HELLO, Buffer.from(JSON.stringify({ command, term: process.env.TERM }))));
      if (tty) {
        (io.stdin as NodeJS.ReadStream).setRawMode(true);
        size();
        process.on('SIGWINCH', onWinch);
      }
      io.stdin.on('data', (d: Buffer) => {
        for (const f of stdinFrames(Buffer.isBuffer(d) ? d : Buffer.from(d))) sock.write(f);
      });
      io.stdin.on('end', () => sock.write(frame(STDIN_EOF)));
      io.stdin.resume();
    });
    sock.on('data', (chunk: Buffer) => {
      for (const { channel, data } of out.push(chunk)) {
        if (channel === OUT_EXIT) {
          const e = JSON.parse(data.toString('utf8')) as { code: number | null; signal: number | null };
          code = e.code ?? 128 + (e.signal ?? 0);
        } else (channel === OUT_STDERR ? io.stderr : io.stdout).write(data);
      }
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      cleanup();
      reject(new EmperorError('EMPEROR_ERR_CONTROL', `expected your vassal's pty socket at ${socketPath}, got ${e.code ?? e.message}`, { hint: 'is your app running? ask your host' }));
    });
    sock.on('close', () => {
      cleanup();
      resolve(code ?? 255);
    });
  });
