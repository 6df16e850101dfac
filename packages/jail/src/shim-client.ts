import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { EmperorError } from '@emperor/errors';
import { frameRequest, readStatus, type StatusEvent } from './protocol.js';

/**
 * The emperor's end of a jail shim's control socket (native/src/shim.c): requests are a u32 length and
 * NUL-terminated words, events are the status protocol's JSON lines. One module knows that protocol; this
 * is its client. `close` is emitted once the shim is gone (or the socket broke: the same, for the emperor).
 */
export class ShimClient extends EventEmitter<{ event: [StatusEvent]; close: [] }> {
  readonly path: string;
  readonly #socket: Socket;
  #closed = false;

  private constructor(path: string, socket: Socket) {
    super();
    this.path = path;
    this.#socket = socket;
    readStatus(socket, (e) => this.emit('event', e));
    socket.on('error', () => {}); // ECONNRESET and the like end in 'close'
    socket.on('close', () => {
      this.#closed = true;
      this.emit('close');
    });
  }

  /** Connects to the shim at `path`; rejects with a coded error when nothing answers there. */
  static connect(path: string): Promise<ShimClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      const fail = (e: Error) => reject(new EmperorError('EMPEROR_ERR_JAIL_HELPER', `jail shim ${path}: expected it to answer, got ${(e as NodeJS.ErrnoException).code ?? e.message}`, { hint: 'the jail is gone (its shim was killed)', cause: e }));
      socket.once('error', fail);
      socket.once('connect', () => {
        socket.off('error', fail);
        resolve(new ShimClient(path, socket));
      });
    });
  }

  /** True until the connection is gone. */
  get open(): boolean {
    return !this.#closed;
  }

  /** Sends one request (its words); false when the shim is gone. */
  send(words: readonly string[]): boolean {
    if (this.#closed) return false;
    this.#socket.write(frameRequest(words));
    return true;
  }

  /** Closes the connection (the shim and its jail run on). */
  close(): void {
    this.#socket.destroy();
  }
}
