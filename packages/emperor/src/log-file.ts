import { chownSync, closeSync, fstatSync, mkdirSync, openSync, renameSync, writeSync, existsSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * A per-process log file under the log dir, rotated by size (FILE, FILE.1 ... FILE.N), readable by the
 * vassal's group (mode 0640 root:GID) so the customer can read it and nobody else can.
 */
export class LogFile {
  readonly path: string;
  readonly #gid: number;
  readonly #maxBytes: number;
  readonly #keep: number;
  #fd: number;
  #size: number;

  constructor(path: string, gid: number, maxBytes = 10 * 1024 * 1024, keep = 3) {
    this.path = path;
    this.#gid = gid;
    this.#maxBytes = maxBytes;
    this.#keep = keep;
    mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
    chownSync(dirname(path), 0, gid);
    this.#fd = this.#open();
    this.#size = fstatSync(this.#fd).size;
  }

  #open(): number {
    const fd = openSync(this.path, 'a', 0o640);
    chownSync(this.path, 0, this.#gid);
    return fd;
  }

  write(chunk: Buffer | string): void {
    if (this.#fd < 0) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (this.#size + buf.length > this.#maxBytes && this.#size > 0) this.#rotate();
    writeSync(this.#fd, buf);
    this.#size += buf.length;
  }

  #rotate(): void {
    closeSync(this.#fd);
    const last = `${this.path}.${this.#keep}`;
    if (existsSync(last)) unlinkSync(last);
    for (let i = this.#keep - 1; i >= 1; i--) if (existsSync(`${this.path}.${i}`)) renameSync(`${this.path}.${i}`, `${this.path}.${i + 1}`);
    renameSync(this.path, `${this.path}.1`);
    this.#fd = this.#open();
    this.#size = 0;
  }

  close(): void {
    if (this.#fd >= 0) closeSync(this.#fd);
    this.#fd = -1;
  }
}
