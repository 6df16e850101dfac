import { readdirSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { EmperorError } from '@emperor/errors';
import { COLS, frame, HELLO, OUT_EXIT, OUT_STDERR, OutputReader, ROWS, STDIN_EOF, stdinFrames } from './frames.js';

/** The pty socket of the calling user's vassal: the one in RUN/vassals/* owned by our uid. */
export const findPtySocket = (runDir: string, uid: number, name?: string): string => {
  const base = join(runDir, 'vassals');
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    throw new EmperorError('EMPEROR_ERR_CONTROL', `expected the emperor's run dir at ${runDir}, got none`, { hint: 'is the emperor running?' });
  }
  const mine = names.filter((n) => {
    const st = statSync(join(base, n, 'pty.sock'), { throwIfNoEntry: false });
    return st?.isSocket() === true && st.uid === uid;
  });
  if (name !== undefined) {
    if (!mine.includes(name)) throw new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected a vassal of yours named ${name}, got none`, { hint: mine.length ? `yours: ${mine.join(', ')}` : 'you have no vassal with a pty' });
    return join(base, name, 'pty.sock');
  }
  if (mine.length === 0) throw new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected a vassal running as uid ${uid}, got none`, { hint: 'ask your host to start your app (pty = on)' });
  if (mine.length > 1) throw new EmperorError('EMPEROR_ERR_NO_VASSAL', `expected one vassal of yours, got ${mine.length}: ${mine.join(', ')}`, { hint: 'set EMPEROR_VASSAL to the one to enter' });
  return join(base, mine[0] as string, 'pty.sock');
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
