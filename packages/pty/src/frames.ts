/**
 * uWSGI's forkpty "urouter" framing (client to router): a 4-byte header [modifier1 (ignored), size u16le,
 * modifier2]. modifier2 0: `size` bytes of stdin follow; 100: rows = size; 101: cols = size; 1-99: send that
 * signal; no body for those. Router to client is raw output, so `uwsgi --pty-uconnect` works as a client.
 *
 * Emperor's extension, used only by `emperor pty` (uWSGI clients never send it): modifier2 200 opens the
 * session with a JSON body ({"command": "...", "term": "..."}); from then on the router frames its output
 * too, [0, size, channel]: channel 0 stdout, 1 stderr, 2 the exit status as JSON ({"code","signal"});
 * modifier2 201 from the client means end of stdin.
 */
export const STDIN = 0;
export const ROWS = 100;
export const COLS = 101;
export const HELLO = 200;
export const STDIN_EOF = 201;
export const OUT_STDOUT = 0;
export const OUT_STDERR = 1;
export const OUT_EXIT = 2;
export const MAX_BODY = 65535;

/** One parsed client frame. */
export type Frame =
  | { kind: 'stdin'; data: Buffer }
  | { kind: 'rows' | 'cols'; value: number }
  | { kind: 'signal'; signal: number }
  | { kind: 'hello'; body: Buffer }
  | { kind: 'eof' };

/** A frame that cannot be: the connection is closed with this message, the router keeps serving. */
export class FrameError extends Error {}

/** Incremental parser: feed it bytes as they come; frames split across reads are reassembled. */
export class FrameReader {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Frame[] {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Frame[] = [];
    for (;;) {
      if (this.#buf.length < 4) break;
      const size = this.#buf.readUInt16LE(1);
      const mod2 = this.#buf[3] ?? 0;
      const hasBody = mod2 === STDIN || mod2 === HELLO;
      if (hasBody && this.#buf.length < 4 + size) break;
      const body = hasBody ? this.#buf.subarray(4, 4 + size) : Buffer.alloc(0);
      this.#buf = this.#buf.subarray(hasBody ? 4 + size : 4);
      if (mod2 === STDIN) out.push({ kind: 'stdin', data: Buffer.from(body) });
      else if (mod2 === ROWS) out.push({ kind: 'rows', value: size });
      else if (mod2 === COLS) out.push({ kind: 'cols', value: size });
      else if (mod2 >= 1 && mod2 <= 64) out.push({ kind: 'signal', signal: mod2 });
      else if (mod2 === HELLO) out.push({ kind: 'hello', body: Buffer.from(body) });
      else if (mod2 === STDIN_EOF) out.push({ kind: 'eof' });
      else throw new FrameError(`expected a frame type 0, 1-64, 100, 101, 200 or 201, got ${mod2}`);
    }
    return out;
  }

  /** Bytes of an unfinished frame (a connection closed mid-frame). */
  get pending(): number {
    return this.#buf.length;
  }
}

/** A client frame. */
export const frame = (mod2: number, body: Buffer = Buffer.alloc(0), size = body.length): Buffer => {
  const h = Buffer.alloc(4);
  h[0] = 0;
  h.writeUInt16LE(size, 1);
  h[3] = mod2;
  return Buffer.concat([h, body]);
};

/** Splits data into stdin frames of at most MAX_BODY bytes. */
export const stdinFrames = (data: Buffer): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < data.length; i += MAX_BODY) out.push(frame(STDIN, data.subarray(i, i + MAX_BODY)));
  return out;
};

/** Incremental parser of the router's framed output (the Emperor extension). */
export class OutputReader {
  #buf: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Array<{ channel: number; data: Buffer }> {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const out: Array<{ channel: number; data: Buffer }> = [];
    while (this.#buf.length >= 4) {
      const size = this.#buf.readUInt16LE(1);
      if (this.#buf.length < 4 + size) break;
      out.push({ channel: this.#buf[3] ?? 0, data: Buffer.from(this.#buf.subarray(4, 4 + size)) });
      this.#buf = this.#buf.subarray(4 + size);
    }
    return out;
  }
}
