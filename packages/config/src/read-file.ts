import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import type { ConfigProblem } from './problem.js';
import { human } from './values/size.js';

/** Vassal files are small; anything larger is a mistake (a log written to the wrong place). */
export const MAX_VASSAL_FILE_BYTES = 1024 * 1024;

/** The formats a vassal file can have, by extension. */
export type VassalFormat = 'ini' | 'json' | 'yaml';

const FORMATS: Record<string, VassalFormat> = { '.ini': 'ini', '.json': 'json', '.yaml': 'yaml', '.yml': 'yaml' };

/** A vassal name: it becomes a directory, a cgroup and a default hostname, so it is kept plain. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** The vassal name and format of a path, or the problem with it. */
export const vassalNameOf = (file: string): { name: string; format: VassalFormat } | ConfigProblem => {
  const ext = extname(file).toLowerCase();
  const format = FORMATS[ext];
  if (format === undefined) {
    return { code: 'EMPEROR_ERR_CONFIG_NAME', file, message: `expected a file ending in .ini, .json, .yaml or .yml, got ${ext === '' ? 'no extension' : JSON.stringify(ext)}` };
  }
  const name = basename(file, extname(file));
  if (!NAME.test(name) || name.includes('..')) {
    return { code: 'EMPEROR_ERR_CONFIG_NAME', file, message: `expected a vassal name of letters, digits, ".", "_" and "-" (at most 64, starting with a letter or digit), got ${JSON.stringify(name)}`, hint: 'the name becomes a directory and a cgroup; rename the file' };
  }
  return { name, format };
};

/** Options of {@link readVassalText}. */
export interface ReadOptions {
  /** Refuse symlinks (tyrant mode). */
  noFollow?: boolean;
}

/** The text of a vassal file and its owner, or the problem with reading it. */
export type ReadOutcome = { text: string; uid: number; gid: number } | ConfigProblem;

/**
 * Reads a vassal file safely: a FIFO never blocks (O_NONBLOCK, then fstat), a directory, a device or a huge
 * file is refused before reading, and the bytes must be UTF-8 text without NULs.
 */
export const readVassalText = async (file: string, options: ReadOptions = {}): Promise<ReadOutcome> => {
  const problem = (code: ConfigProblem['code'], message: string, hint?: string): ConfigProblem => ({ code, file, message, hint });
  let fh;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | (options.noFollow ? constants.O_NOFOLLOW : 0));
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return problem('EMPEROR_ERR_CONFIG_READ', 'expected a vassal file, got no such file');
    if (code === 'EACCES' || code === 'EPERM') return problem('EMPEROR_ERR_CONFIG_READ', 'expected a readable file, got permission denied', 'make the file readable by the emperor');
    if (code === 'ELOOP') return problem('EMPEROR_ERR_CONFIG_READ', 'expected a regular file, got a symlink', 'tyrant mode refuses symlinks; copy the file instead');
    if (code === 'EISDIR') return problem('EMPEROR_ERR_CONFIG_READ', 'expected a vassal file, got a directory');
    return problem('EMPEROR_ERR_CONFIG_READ', `expected a readable file, got ${code ?? String(e)}`);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) return problem('EMPEROR_ERR_CONFIG_READ', 'expected a vassal file, got a directory');
    if (!st.isFile()) return problem('EMPEROR_ERR_CONFIG_READ', 'expected a regular file, got a device, FIFO or socket');
    if (st.size > MAX_VASSAL_FILE_BYTES) {
      return problem('EMPEROR_ERR_CONFIG_READ', `expected at most ${human(MAX_VASSAL_FILE_BYTES)}, got ${(st.size / 1024 / 1024).toFixed(1)}M`, 'a vassal file is a short list of keys; is this the right file?');
    }
    // Read one byte past the limit: a file that grew after fstat is still caught.
    const buf = Buffer.alloc(MAX_VASSAL_FILE_BYTES + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_VASSAL_FILE_BYTES) return problem('EMPEROR_ERR_CONFIG_READ', `expected at most ${human(MAX_VASSAL_FILE_BYTES)}, got more`);
    const bytes = buf.subarray(0, bytesRead);
    const nul = bytes.indexOf(0);
    if (nul >= 0) return { ...problem('EMPEROR_ERR_CONFIG_ENCODING', 'expected text, got binary data (a NUL byte)', 'is this the right file?'), line: bytes.subarray(0, nul).toString('latin1').split('\n').length };
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      const line = firstBadUtf8Line(bytes);
      return { ...problem('EMPEROR_ERR_CONFIG_ENCODING', 'expected UTF-8 text, got invalid UTF-8', 'save the file as UTF-8'), line };
    }
    return { text: text.startsWith('\uFEFF') ? text.slice(1) : text, uid: st.uid, gid: st.gid };
  } finally {
    await fh.close();
  }
};

const firstBadUtf8Line = (bytes: Buffer): number | undefined => {
  const dec = new TextDecoder('utf-8', { fatal: true });
  let start = 0;
  let line = 1;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      try {
        dec.decode(bytes.subarray(start, i));
      } catch {
        return line;
      }
      start = i + 1;
      line++;
    }
  }
  return undefined;
};
