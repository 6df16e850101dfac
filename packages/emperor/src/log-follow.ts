import { watch, type FSWatcher } from 'node:fs';
import { open, stat, type FileHandle } from 'node:fs/promises';
import type { Writable } from 'node:stream';

const CHUNK = 64 * 1024;
/** How often a quiet log is looked at even without a watch event (a rotation, a missed event). */
const POLL_MS = 1000;

/** Resolves true once `out` drains, false when it closes or `ms` pass first; leaves no listener behind. */
export const drained = (out: Writable, ms: number): Promise<boolean> =>
  new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(t);
      out.off('drain', onDrain);
      out.off('close', onClose);
      resolve(ok);
    };
    const onDrain = () => done(true);
    const onClose = () => done(false);
    const t = setTimeout(() => done(false), ms);
    out.on('drain', onDrain);
    out.on('close', onClose);
  });

/**
 * Streams a log file to `out` and keeps following it (`tail -F`): one open file and one watcher per
 * follower whatever the writer does, reading only while `out` takes what it is given (backpressure), so a
 * client that never reads costs one chunk of memory. Follows rotation (a new file at the path) and
 * truncation. Resolves when `out` closes or `stop` is called; the file and watcher are closed then.
 */
export const followLog = async (path: string, out: Writable, options: { stallMs: number; onStall: () => void }): Promise<void> => {
  let closed = out.destroyed;
  let wake: (() => void) | undefined;
  const onClose = () => {
    closed = true;
    wake?.();
  };
  out.once('close', onClose);
  let fh: FileHandle | undefined;
  let watcher: FSWatcher | undefined;
  let ino = -1;
  let pos = 0;
  const buf = Buffer.allocUnsafe(CHUNK);
  const reopen = async (): Promise<void> => {
    await fh?.close();
    watcher?.close();
    fh = await open(path, 'r');
    ino = (await fh.stat()).ino;
    pos = 0;
    watcher = watch(path, () => wake?.());
    watcher.on('error', () => {}); // the file went (rotated): the poll notices
  };
  try {
    await reopen();
    while (!closed) {
      const { bytesRead } = await (fh as FileHandle).read(buf, 0, CHUNK, pos);
      if (bytesRead > 0) {
        pos += bytesRead;
        if (!out.write(Buffer.from(buf.subarray(0, bytesRead)))) {
          // The client is not reading: wait for it, but not forever (it holds a connection of a capped few).
          if (!(await drained(out, options.stallMs)) && !closed) return options.onStall();
        }
        continue;
      }
      const now = await stat(path).catch(() => undefined);
      if (now !== undefined && now.ino !== ino) {
        await reopen(); // rotated: the rest of the old file was read above, the new one starts at 0
        continue;
      }
      if (now !== undefined && now.size < pos) pos = 0; // truncated
      let t: NodeJS.Timeout | undefined;
      await new Promise<void>((r) => {
        wake = r;
        t = setTimeout(r, POLL_MS);
      });
      clearTimeout(t);
      wake = undefined;
    }
  } catch {
    // The log went away (the vassal was removed): the stream ends.
  } finally {
    out.off('close', onClose);
    watcher?.close();
    await fh?.close().catch(() => undefined);
  }
};
