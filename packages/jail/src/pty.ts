import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ReadStream } from 'node:tty';
import { EmperorError } from '@emperor/errors';
import type { ShimProcess } from './shim-process.js';

/** native/addon/fd.c: what Node.js cannot do itself (receive an fd, size a pty). */
interface FdAddon {
  requestFd(path: string, request: Buffer, timeoutMs: number): Promise<{ fd: number; line: string }>;
  setWinsize(fd: number, rows: number, cols: number): void;
  /** One unix datagram to a path, never blocking (EAGAIN when the receiver is full). */
  sendDgram(path: string, packet: Buffer): void;
  listenDgram(path: string, onMessage: (datagram: Buffer) => void): { close(): number; dropped(): number };
}

let addon: FdAddon | undefined;

/** The addon built by `make -C native` (Node-API: one build for every Node.js major). */
export const fdAddon = (): FdAddon => {
  if (addon !== undefined) return addon;
  const path = new URL('../../../native/build/emperor-fd.node', import.meta.url).pathname;
  try {
    addon = createRequire(import.meta.url)(path) as FdAddon;
  } catch (e) {
    throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected the addon ${path} to load, got ${String((e as Error).message ?? e).split('\n')[0]}`, { hint: 'run bash scripts/setup.sh to build native/' });
  }
  return addon;
};

/**
 * A login on a pty of the jail's own devpts, started by the jail's shim, whose master the shim handed over
 * (SCM_RIGHTS): the emperor reads and writes the terminal directly, with no relay process between.
 */
export class JailPty {
  /** The shim's process (its exit, and signals to its process group). */
  readonly process: ShimProcess;
  /** The pty master, both ways: what the shell writes, and what it reads. Destroying it hangs the pty up. */
  readonly terminal: ReadStream;
  readonly #fd: number;

  constructor(process: ShimProcess, fd: number) {
    this.process = process;
    this.#fd = fd;
    // A readable tty handle: libuv keeps the master non-blocking and queues writes (no blocking writes).
    this.terminal = new ReadStream(fd);
    // EIO once the slave side is closed (the shell ended): the end of the session, not an error.
    this.terminal.on('error', () => this.terminal.destroy());
  }

  /** A new window size (the shell gets SIGWINCH); false once the pty is closed. */
  resize(rows: number, cols: number): boolean {
    if (this.terminal.destroyed) return false;
    try {
      fdAddon().setWinsize(this.#fd, rows, cols);
      return true;
    } catch {
      return false;
    }
  }

  /** Closes the master: the kernel hangs the pty up (SIGHUP to the session). */
  close(): void {
    this.terminal.destroy();
  }
}

/** One unix datagram to `path` (a uWSGI subscription server's socket), never blocking; throws EAGAIN when it is full. */
export const sendUnixDatagram = (path: string, packet: Buffer): void => fdAddon().sendDgram(path, packet);

/** A unix datagram listener; close() returns how many datagrams were dropped because JS was behind. */
export interface UnixDatagramListener {
  readonly path: string;
  dropped(): number;
  close(): number;
}

/**
 * Binds a unix datagram socket at `path` (a stale socket left there is removed; anything else there is an
 * error), mode `mode`, and calls `onMessage` for each datagram (at most 4097 bytes of it; at most 1024 waiting).
 */
export const listenUnixDatagram = (path: string, mode: number, onMessage: (datagram: Buffer) => void): UnixDatagramListener => {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st !== undefined) {
    if (!st.isSocket()) throw Object.assign(new Error(`${path} exists and is not a socket`), { code: 'EEXIST' });
    unlinkSync(path);
  }
  const l = fdAddon().listenDgram(path, onMessage);
  try {
    chmodSync(path, mode);
  } catch (e) {
    l.close();
    throw e;
  }
  let closed = false;
  return {
    path,
    dropped: () => l.dropped(),
    close: () => {
      if (closed) return l.dropped();
      closed = true;
      const n = l.close();
      const now = lstatSync(path, { throwIfNoEntry: false });
      if (now?.isSocket()) unlinkSync(path);
      return n;
    },
  };
};
