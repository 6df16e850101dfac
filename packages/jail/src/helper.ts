import type { ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { EmperorError } from '@emperor/errors';

/** The helper built by `make -C native`, unless EMPEROR_JAIL_HELPER names another (the ASan build in tests). */
export const helperPath = (): string => {
  const path = process.env.EMPEROR_JAIL_HELPER ?? fileURLToPath(new URL('../../../native/build/emperor-jail', import.meta.url));
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected the jail helper at ${path}, got none`, { hint: 'run bash scripts/setup.sh to build native/' });
  }
  return path;
};

/** The helper's arguments as it reads them from --args-fd (and the shim its requests): each one NUL-terminated. */
export const encodeArgs = (args: readonly string[]): Buffer => {
  for (const a of args) {
    if (a.includes('\0')) throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', `expected helper arguments without NUL bytes, got one in ${JSON.stringify(a.slice(0, 40))}`);
  }
  return Buffer.from(args.map((a) => `${a}\0`).join(''));
};

/**
 * `emperor-jail COMMAND --args-fd N` with the arguments written to fd N (a pipe the helper reads to its
 * end), so nothing of them (the vassal's env, host paths, cgroups) shows in `ps` or in the jail. Returns
 * the helper argv and what the spawner must do with that fd: `stdio` gets one more 'pipe' at index `fd`.
 */
export const helperArgsOnFd = (command: 'create' | 'exec', fd: number): string[] => [command, '--args-fd', String(fd)];

/** Writes the arguments on the pipe `helperArgsOnFd` asked for, and closes it. */
export const sendHelperArgs = (pipe: NodeJS.WritableStream | null | undefined, args: readonly string[]): void => {
  if (pipe === null || pipe === undefined) throw new EmperorError('EMPEROR_ERR_JAIL_HELPER', 'expected a pipe for the helper\'s arguments, got none');
  // EPIPE when the helper died before reading: its exit and status say why, not this write.
  (pipe as NodeJS.WritableStream & { on(e: 'error', f: () => void): void }).on('error', () => {});
  pipe.end(encodeArgs(args));
};

/** Resolves when a helper has exited and its status fd is fully read (spawn errors count as an exit). */
export const processEnd = (child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> =>
  new Promise((resolve) => {
    let result: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let statusClosed = child.stdio[3] === null || child.stdio[3] === undefined;
    const finish = () => {
      if (result !== undefined && statusClosed) resolve(result);
    };
    child.stdio[3]?.on('close', () => {
      statusClosed = true;
      finish();
    });
    child.on('error', () => {
      result ??= { code: 125, signal: null };
      statusClosed = true;
      finish();
    });
    child.on('exit', (code, signal) => {
      result = { code, signal };
      finish();
    });
  });
