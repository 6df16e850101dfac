import { EventEmitter } from 'node:events';
import { constants } from 'node:os';
import { EmperorError } from '@emperor/errors';
import { helperError, signalNumber, type JailExit, type Started, type StatusEvent } from './protocol.js';

/**
 * A process the jail's shim started and supervises: it is the shim's child, not the emperor's, so it runs
 * on when the emperor goes, and a new emperor takes it over from the shim's state (`adopted`).
 */
export class ShimProcess extends EventEmitter<{ output: [fd: 1 | 2, data: Buffer] }> {
  readonly id: string;
  /** Resolves once it runs in the jail (rejects when it could not be started at all). */
  readonly started: Promise<Started>;
  /** Resolves when it sends READY=1 on its NOTIFY_SOCKET (only with `notify`; never otherwise). */
  readonly ready: Promise<void>;
  /** Resolves with its exit: a code, or a signal; `error` when the shim said why it failed. */
  readonly exited: Promise<JailExit & { error: EmperorError | undefined }>;
  /** Host pid, once it runs. */
  pid: number | undefined;
  readonly #send: (words: string[]) => boolean;
  readonly #who: string;
  #onStart: (s: Started) => void = () => {};
  #onFail: (e: Error) => void = () => {};
  #onReady: () => void = () => {};
  #onExit: (e: JailExit & { error: EmperorError | undefined }) => void = () => {};
  #error: EmperorError | undefined;
  #done = false;

  /** `send` reaches the jail's shim (whatever connection the jail has to it now). */
  constructor(send: (words: string[]) => boolean, id: string, who: string) {
    super();
    this.#send = send;
    this.id = id;
    this.#who = who;
    this.started = new Promise<Started>((resolve, reject) => {
      this.#onStart = resolve;
      this.#onFail = reject;
    });
    this.started.catch(() => {}); // callers that only await `exited` must not see an unhandled rejection
    this.ready = new Promise<void>((resolve) => (this.#onReady = resolve));
    this.exited = new Promise((resolve) => (this.#onExit = resolve));
  }

  /** One event of the shim's about this process. */
  handle(e: StatusEvent): void {
    if (e.event === 'spawn') {
      this.pid = e.pid;
      this.#onStart({ pid: e.pid, jailPid: e.jail_pid, bornInCgroup: e.born_in_cgroup });
    } else if (e.event === 'notify' && e.ready) {
      this.#onReady();
    } else if (e.event === 'error') {
      this.#error ??= helperError(this.#who, e);
      if (this.pid === undefined) this.#end({ code: 125, signal: null }); // nothing was started
    } else if (e.event === 'output') {
      this.emit('output', e.fd, Buffer.from(e.data, 'base64'));
    } else if (e.event === 'exit') {
      this.#end({ code: e.code, signal: e.signal });
    } else if (e.event === 'proc') {
      // The shim's state, for a new emperor: what it knew of this process.
      this.pid = e.pid;
      this.#onStart({ pid: e.pid, jailPid: e.jail_pid, bornInCgroup: true });
      if (e.ready) this.#onReady();
      if (e.exited) this.#end({ code: e.signal ? null : e.code, signal: e.signal || null });
    }
  }

  #end(exit: JailExit): void {
    if (this.#done) return;
    this.#done = true;
    this.#onFail(this.#error ?? new EmperorError('EMPEROR_ERR_JAIL_HELPER', `${this.#who}: expected it to start, got exit ${exit.code ?? exit.signal}`));
    this.#onExit({ ...exit, error: this.#error });
    // The shim keeps an exited process until told: once its exit is ours, it may go.
    this.#send(['forget', this.id]);
  }

  /** It was never started (the shim refused it, saying why). */
  fail(error: EmperorError): void {
    this.#error ??= error;
    this.#end({ code: 125, signal: null });
  }

  /** The shim went away (its jail is gone): the process went with it. */
  lost(): void {
    this.#end({ code: null, signal: constants.signals.SIGKILL });
  }

  /** True until it has exited. */
  get running(): boolean {
    return !this.#done;
  }

  /** A signal to its whole process group (through the shim, never to a pid already reaped). */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): void {
    if (!this.#done) this.#send(['signal', this.id, String(signalNumber(signal))]);
  }
}
